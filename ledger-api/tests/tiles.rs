//! The log as C2SP tlog tiles, read through the router (`oneshot`) as a transparency tool would:
//! the paths of the spec, the signed checkpoint, hash tiles and entry bundles checked by a client
//! written here from the specs alone (SHA-256, Ed25519 and RFC 9162's tree hash; nothing of the
//! ledger's own Merkle or note code).

#[path = "../../tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine as _;
use common::*;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use ledger_api::{app, AppState, Limits};
use ledger_core::ledger::{Ledger, LedgerConfig};
use ledger_core::load::Market;
use ledger_core::store::MemoryStore;
use sha2::{Digest, Sha256};

type Hash = [u8; 32];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

// --- the client: RFC 9162 §2.1 hashes, C2SP signed-note and tlog-tiles encodings ------------

fn leaf_hash(leaf: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(leaf)
        .finalize()
        .into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// MTH over hashes already computed for the leaves: split at the largest power of two smaller
/// than their number.
fn tree_hash(hashes: &[Hash]) -> Hash {
    match hashes.len() {
        0 => Sha256::digest([]).into(),
        1 => hashes[0],
        n => {
            let split = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&tree_hash(&hashes[..split]), &tree_hash(&hashes[split..]))
        }
    }
}

/// A hash tile's hashes.
fn hashes_of(tile: &[u8]) -> Vec<Hash> {
    assert_eq!(tile.len() % 32, 0, "a tile is a whole number of hashes");
    tile.chunks(32).map(|h| h.try_into().unwrap()).collect()
}

/// An entry bundle's leaves: each a big-endian u16 length, then that many bytes.
fn leaves_of(bundle: &[u8]) -> Vec<Vec<u8>> {
    let mut leaves = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let length = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        leaves.push(rest[2..2 + length].to_vec());
        rest = &rest[2 + length..];
    }
    leaves
}

/// Checks the note's Ed25519 signature by `name` with `key` (key ID = SHA-256(name ‖ 0x0A ‖ 0x01
/// ‖ key)[..4]); returns its size and root.
fn open_note(note: &str, name: &str, key: &VerifyingKey) -> (u64, Hash) {
    let (text, signatures) = note.split_once("\n\n").unwrap();
    let text = format!("{text}\n");
    let id: [u8; 4] = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', 0x01])
        .chain_update(key.as_bytes())
        .finalize()[..4]
        .try_into()
        .unwrap();
    let signed = signatures.lines().any(|line| {
        let Some(rest) = line.strip_prefix(&format!("\u{2014} {name} ")) else {
            return false;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .unwrap();
        bytes.len() == 68
            && bytes[..4] == id
            && key
                .verify(
                    text.as_bytes(),
                    &Signature::from_bytes(&bytes[4..].try_into().unwrap()),
                )
                .is_ok()
    });
    assert!(signed, "the note is not signed by {name}: {note}");
    let lines: Vec<&str> = text.lines().collect();
    let root = base64::engine::general_purpose::STANDARD
        .decode(lines[2])
        .unwrap();
    (lines[1].parse().unwrap(), root.try_into().unwrap())
}

// --- the ledger ---------------------------------------------------------------------------

/// A ledger of the load market with `size` entries (at least its setup), and its router.
fn market_app(market: &Market, size: usize) -> (axum::Router, Arc<Ledger>) {
    let ledger = Arc::new(Ledger::in_memory(market.config().unwrap()).unwrap());
    market.setup(&ledger).unwrap();
    grow(market, &ledger, size);
    let state = AppState::new(Arc::clone(&ledger), Limits::default());
    (app(state), ledger)
}

fn grow(market: &Market, ledger: &Ledger, size: usize) {
    let first = usize::try_from(ledger.size()).unwrap() - 1 - market.setup_entries();
    let trades: Vec<_> = (first..first + size - usize::try_from(ledger.size()).unwrap())
        .map(|k| market.trade(k).unwrap())
        .collect();
    for group in trades.chunks(256) {
        ledger.submit_group(group.to_vec()).unwrap();
    }
    assert_eq!(ledger.size(), size as u64);
}

async fn bytes(app: &axum::Router, path: &str) -> Vec<u8> {
    let answer = get(app, path).await;
    assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
    assert_eq!(answer.content_type, "application/octet-stream", "{path}");
    assert_eq!(answer.headers["cache-control"], IMMUTABLE, "{path}");
    answer.body.to_vec()
}

/// A tree of 600 entries: level-0 tiles 000 and 001 full, 002 partial of width 88; level 1 one
/// partial tile of width 2. A client that trusts only the operator's key recomputes every tile
/// hash from the entry bundles, the level-1 hashes from the level-0 tiles, and from them the
/// signed checkpoint's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_recomputes_the_signed_root_from_the_tiles_and_the_bundles() {
    let market = Market::new(10);
    let (app, ledger) = market_app(&market, 600);

    let answer = get(&app, "/checkpoint").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "text/plain; charset=utf-8");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert!(answer.headers.get("x-ledger-size").is_none());
    let note = answer.text();
    // One way of signing: the versioned route answers the same note.
    assert_eq!(get(&app, "/v1/checkpoint").await.text(), note);
    let origin = ledger.origin().to_string();
    let (size, root) = open_note(&note, &origin, &ledger.operator_key());
    assert_eq!(size, 600);

    let mut leaf_hashes = Vec::new();
    let mut level_1 = Vec::new();
    for (tile, bundle) in [
        ("/tile/0/000", "/tile/entries/000"),
        ("/tile/0/001", "/tile/entries/001"),
        ("/tile/0/002.p/88", "/tile/entries/002.p/88"),
    ] {
        let hashes = hashes_of(&bytes(&app, tile).await);
        let leaves = leaves_of(&bytes(&app, bundle).await);
        assert_eq!(hashes.len(), leaves.len(), "{tile}");
        for (hash, leaf) in hashes.iter().zip(&leaves) {
            assert_eq!(*hash, leaf_hash(leaf), "{bundle}");
        }
        if hashes.len() == 256 {
            level_1.push(tree_hash(&hashes));
        }
        leaf_hashes.extend(hashes);
    }
    assert_eq!(leaf_hashes.len(), 600);
    // The bundles hold the leaves the log commits to: the export's lines, byte for byte.
    let export = get(&app, "/v1/export").await.body;
    let exported: Vec<Hash> = export
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(leaf_hash)
        .collect();
    assert_eq!(exported, leaf_hashes);

    // Level 1: each hash is the tree hash of a full level-0 tile.
    let upper = hashes_of(&bytes(&app, "/tile/1/000.p/2").await);
    assert_eq!(upper, level_1);
    // The root: the two full tiles' subtree (512 leaves), then the partial tile's 88.
    let from_tiles = node_hash(&tree_hash(&upper), &tree_hash(&leaf_hashes[512..]));
    assert_eq!(from_tiles, root);
    assert_eq!(tree_hash(&leaf_hashes), root);

    // A narrower partial tile is the prefix of the wider one, and of the full one.
    let narrow = bytes(&app, "/tile/0/002.p/5").await;
    assert_eq!(hashes_of(&narrow), leaf_hashes[512..517]);
    let prefix = bytes(&app, "/tile/0/000.p/255").await;
    assert_eq!(hashes_of(&prefix), leaf_hashes[..255]);
    let entries = leaves_of(&bytes(&app, "/tile/entries/001.p/1").await);
    assert_eq!(leaf_hash(&entries[0]), leaf_hashes[256]);

    // The ledger grows: what was served is served the same, and the edge tile fills up.
    let partial = bytes(&app, "/tile/0/002.p/88").await;
    grow(&market, &ledger, 800);
    assert_eq!(bytes(&app, "/tile/0/002.p/88").await, partial);
    let full = bytes(&app, "/tile/0/002").await;
    assert_eq!(full[..partial.len()], partial[..]);
    let upper = hashes_of(&bytes(&app, "/tile/1/000.p/3").await);
    assert_eq!(upper[2], tree_hash(&hashes_of(&full)));
    let note = get(&app, "/checkpoint").await.text();
    assert_eq!(open_note(&note, &origin, &ledger.operator_key()).0, 800);
}

/// Tiles the tree does not hold yet are 404 (and not cached); paths the spec does not allow are
/// 400, each named after its mutation of a valid path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_beyond_the_tree_are_404_and_other_spellings_400() {
    let market = Market::new(10);
    let (app, _) = market_app(&market, 600);
    for path in [
        "/tile/0/002",
        "/tile/0/002.p/89",
        "/tile/0/003.p/1",
        "/tile/0/x001/000",
        "/tile/1/000",
        "/tile/1/000.p/3",
        "/tile/2/000.p/1",
        "/tile/8/000.p/1",
        "/tile/63/000.p/1",
        "/tile/entries/002",
        "/tile/entries/002.p/89",
        "/tile/entries/003.p/1",
        "/tile/0/x018/x446/x744/x073/x709/x551/615",
    ] {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        answer.problem("not-found");
        assert_eq!(answer.headers["cache-control"], "no-store", "{path}");
    }
    for (mutation, path) in [
        ("level-64", "/tile/64/000"),
        ("level-leading-zero", "/tile/00/000"),
        ("level-not-decimal", "/tile/a/000"),
        ("index-unpadded", "/tile/0/1"),
        ("index-four-digits", "/tile/0/0001"),
        ("index-leading-x000", "/tile/0/x000/001"),
        ("index-last-group-with-x", "/tile/0/x001"),
        ("index-upper-group-without-x", "/tile/0/001/002"),
        (
            "index-beyond-u64",
            "/tile/0/x018/x446/x744/x073/x709/x551/616",
        ),
        ("width-0", "/tile/0/000.p/0"),
        ("width-256", "/tile/0/000.p/256"),
        ("width-leading-zero", "/tile/0/002.p/088"),
        ("entries-index-unpadded", "/tile/entries/2"),
        ("entries-width-256", "/tile/entries/000.p/256"),
    ] {
        let answer = get(&app, path).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{mutation}: {path}");
        answer.problem("malformed-request");
    }
    get(&app, "/tile/0").await.problem("no-such-route");
}

/// An entry bundle writes each leaf's length as a u16. A leaf longer than 65,535 bytes (the
/// market's rules keep envelopes far below it; here one is planted in the store) makes its
/// bundle unavailable, with a problem that says where to read the entry; the hash tile, which
/// holds only its hash, is still served.
#[tokio::test]
async fn a_bundle_with_a_leaf_too_long_for_it_is_refused_and_its_tile_served() {
    let market = Market::new(2);
    let store = Arc::new(MemoryStore::new());
    let config: LedgerConfig = market.config().unwrap();
    let ledger = Arc::new(Ledger::open(Box::new(Arc::clone(&store)), config).unwrap());
    market.setup(&ledger).unwrap();
    let size = ledger.size();
    let app = app(AppState::new(Arc::clone(&ledger), Limits::default()));
    let path = format!("/tile/entries/000.p/{size}");
    assert_eq!(leaves_of(&bytes(&app, &path).await).len() as u64, size);

    store.tamper_leaf(3, vec![b' '; 65_536]).unwrap();
    let answer = get(&app, &path).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let problem = answer.problem("leaf-too-large-for-bundle");
    assert!(
        problem.detail.contains("entry 3 is 65536 bytes")
            && problem.detail.contains("/v1/entries/3"),
        "{}",
        problem.detail
    );
    // A bundle that ends before it is served.
    assert_eq!(
        leaves_of(&bytes(&app, "/tile/entries/000.p/3").await).len(),
        3
    );
    bytes(&app, &format!("/tile/0/000.p/{size}")).await;

    // 65,535 bytes is the largest a bundle carries.
    store.tamper_leaf(3, vec![b' '; 65_535]).unwrap();
    let leaves = leaves_of(&bytes(&app, &path).await);
    assert_eq!(leaves[3].len(), 65_535);
}
