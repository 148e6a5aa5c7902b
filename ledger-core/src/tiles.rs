//! The log as C2SP `tlog-tiles`: the Merkle tree and the leaves as static, cacheable resources.
//!
//! A *tile* is a run of up to 256 consecutive hashes of one level of the tree. At tile level
//! `L`, the `i`-th hash of tile `N` is the hash of the perfect subtree of `256^L` leaves that
//! starts at leaf `(N * 256 + i) * 256^L`: Merkle level `8 L`, index `N * 256 + i` (a
//! [`crate::merkle::NodeId`]). Level 0 holds the leaf hashes. A tile of 256 hashes is *full*
//! and never changes; the tiles on the tree's right edge are *partial*, of width 1 to 255, and a
//! partial tile of a given width never changes either. An *entry bundle* is the level-0 tile's
//! leaves themselves, each prefixed by its length as a big-endian `u16`.
//!
//! This module is the format only: paths (parsed and written), which tiles a tree of a given
//! size holds, and the bundle encoding. [`crate::ledger::Ledger::tile`] reads a tile's content
//! from the store.
//!
//! ```text
//!  tile/<L>/<N>[.p/<W>]        hash tile: W (or 256) hashes of 32 bytes
//!  tile/entries/<N>[.p/<W>]    entry bundle: W (or 256) leaves, each as u16 length ‖ bytes
//!  <N> in groups of three digits, all but the last starting with x: 1234067 → x001/x234/067
//! ```

use std::fmt;

/// Hashes in a full tile.
pub const TILE_WIDTH: u16 = 256;

/// Merkle levels one tile level spans (256 = 2⁸).
pub const TILE_HEIGHT: u8 = 8;

/// The highest tile level a path may name.
pub const MAX_TILE_LEVEL: u8 = 63;

/// The largest leaf an entry bundle can carry: its length is written as a `u16`.
pub const MAX_BUNDLE_LEAF_BYTES: usize = u16::MAX as usize;

/// What a tile holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Merkle hashes at tile level `level` (Merkle level `8 × level`).
    Hashes {
        /// The tile level, 0 to [`MAX_TILE_LEVEL`].
        level: u8,
    },
    /// The leaves of the level-0 tile of the same index (an entry bundle).
    Entries,
}

/// One tile or entry bundle: what it holds, its index in its level, and its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tile {
    /// Hashes or entries.
    pub kind: TileKind,
    /// The tile's position in its level, from the left.
    pub index: u64,
    /// Hashes (or entries) in it: [`TILE_WIDTH`] for a full tile, 1 to 255 for a partial one.
    pub width: u16,
}

/// Why a path does not name a tile. Each variant's text says what the path should have been.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TilePathError {
    /// The path is not `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
    #[error("a tile path is <L>/<N>[.p/<W>] or entries/<N>[.p/<W>], not \"{0}\"")]
    Shape(String),
    /// The level is not a decimal from 0 to 63 without leading zeros.
    #[error("a tile level is a decimal from 0 to 63 without leading zeros, not \"{0}\"")]
    Level(String),
    /// The index is not written in canonical groups of three digits.
    #[error(
        "a tile index is written in groups of three digits, all but the last starting with x, without a leading x000 group (1234067 is x001/x234/067), not \"{0}\""
    )]
    Index(String),
    /// The width of a partial tile is not a decimal from 1 to 255 without leading zeros.
    #[error(
        "a partial tile's width is a decimal from 1 to 255 without leading zeros, not \"{0}\""
    )]
    Width(String),
}

/// An entry bundle cannot carry a leaf longer than [`MAX_BUNDLE_LEAF_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {seq} is {bytes} bytes long, more than the {max} an entry bundle can carry", max = MAX_BUNDLE_LEAF_BYTES)]
pub struct LeafTooLarge {
    /// The entry's sequence number.
    pub seq: u64,
    /// Its length.
    pub bytes: usize,
}

impl Tile {
    /// The tile of `kind` at `index` as a tree of `tree_size` leaves holds it: full, partial, or
    /// `None` when the tree has none of its hashes yet.
    #[must_use]
    pub fn in_tree(kind: TileKind, index: u64, tree_size: u64) -> Option<Tile> {
        let before = index.checked_mul(u64::from(TILE_WIDTH))?;
        let held = hashes_held(kind, tree_size).checked_sub(before)?;
        let width = u16::try_from(held.min(u64::from(TILE_WIDTH))).ok()?;
        (width > 0).then_some(Tile { kind, index, width })
    }

    /// Whether the tile holds [`TILE_WIDTH`] hashes.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// Whether a tree of `tree_size` leaves holds every hash of this tile (a partial tile is held
    /// as long as the tree holds at least its width; a full tile once it is full).
    #[must_use]
    pub fn held_by(&self, tree_size: u64) -> bool {
        self.index
            .checked_mul(u64::from(TILE_WIDTH))
            .and_then(|first| first.checked_add(u64::from(self.width)))
            .is_some_and(|end| end <= hashes_held(self.kind, tree_size))
    }

    /// The Merkle level of the tile's hashes: `8 × level` (0 for an entry bundle, whose leaves
    /// hash to the level-0 tile).
    #[must_use]
    pub fn merkle_level(&self) -> u8 {
        match self.kind {
            TileKind::Hashes { level } => level.saturating_mul(TILE_HEIGHT),
            TileKind::Entries => 0,
        }
    }

    /// The Merkle index of the tile's first hash (for an entry bundle, the sequence number of its
    /// first leaf), or `None` if it does not fit in a `u64`.
    #[must_use]
    pub fn first(&self) -> Option<u64> {
        self.index.checked_mul(u64::from(TILE_WIDTH))
    }

    /// Reads a path relative to the log's `tile/` prefix: `0/x001/x234/067`, `1/000.p/17`,
    /// `entries/x001/067.p/5`. Every tile has exactly one path: leading zeros and a leading
    /// `x000` group are refused.
    pub fn parse(path: &str) -> Result<Tile, TilePathError> {
        let shape = || TilePathError::Shape(path.to_owned());
        let (head, rest) = path.split_once('/').ok_or_else(shape)?;
        let kind = if head == "entries" {
            TileKind::Entries
        } else {
            let level = parse_decimal(head, u64::from(MAX_TILE_LEVEL))
                .ok_or_else(|| TilePathError::Level(head.to_owned()))?;
            TileKind::Hashes {
                level: u8::try_from(level).map_err(|_| TilePathError::Level(head.to_owned()))?,
            }
        };
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let width = parse_decimal(width, u64::from(TILE_WIDTH) - 1)
                    .filter(|w| *w > 0)
                    .and_then(|w| u16::try_from(w).ok())
                    .ok_or_else(|| TilePathError::Width(width.to_owned()))?;
                (index, width)
            }
            None => (rest, TILE_WIDTH),
        };
        let index = parse_index(index).ok_or_else(|| TilePathError::Index(index.to_owned()))?;
        Ok(Tile { kind, index, width })
    }

    /// The tile's path relative to the log's prefix, `tile/…`.
    #[must_use]
    pub fn path(&self) -> String {
        let head = match self.kind {
            TileKind::Hashes { level } => level.to_string(),
            TileKind::Entries => "entries".to_owned(),
        };
        let mut path = format!("tile/{head}/{}", index_path(self.index));
        if !self.is_full() {
            path.push_str(&format!(".p/{}", self.width));
        }
        path
    }
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// How many hashes of `kind`'s level a tree of `tree_size` leaves holds: the perfect subtrees
/// of `256^L` leaves it contains.
fn hashes_held(kind: TileKind, tree_size: u64) -> u64 {
    let level = match kind {
        TileKind::Hashes { level } => u32::from(level) * u32::from(TILE_HEIGHT),
        TileKind::Entries => 0,
    };
    tree_size.checked_shr(level).unwrap_or(0)
}

/// A decimal of ASCII digits without leading zeros, at most `max`.
fn parse_decimal(text: &str, max: u64) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return None;
    }
    text.parse::<u64>().ok().filter(|n| *n <= max)
}

/// `N` written as the spec writes it: zero-padded groups of three digits, all but the last
/// prefixed with `x` (1234067 → `x001/x234/067`).
#[must_use]
pub fn index_path(index: u64) -> String {
    let mut groups = Vec::new();
    let mut rest = index;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let last = groups.remove(0);
    let mut path = String::new();
    for group in groups.iter().rev() {
        path.push_str(&format!("x{group:03}/"));
    }
    path.push_str(&format!("{last:03}"));
    path
}

/// Reads an index written by [`index_path`]; `None` for any other spelling or an index beyond
/// `u64`.
fn parse_index(text: &str) -> Option<u64> {
    let groups: Vec<&str> = text.split('/').collect();
    let (last, upper) = groups.split_last()?;
    let mut index: u64 = 0;
    for (position, group) in upper.iter().enumerate() {
        let digits = group.strip_prefix('x')?;
        if position == 0 && digits == "000" {
            return None;
        }
        index = push_group(index, digits)?;
    }
    push_group(index, last)
}

fn push_group(index: u64, digits: &str) -> Option<u64> {
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    index.checked_mul(1000)?.checked_add(digits.parse().ok()?)
}

/// An entry bundle: each leaf as its length (big-endian `u16`) followed by its bytes, in order.
/// `first_seq` is the first leaf's sequence number, for the error.
pub fn entry_bundle<'a>(
    first_seq: u64,
    leaves: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, LeafTooLarge> {
    let mut bundle = Vec::new();
    for (seq, leaf) in (first_seq..).zip(leaves) {
        let length = u16::try_from(leaf.len()).map_err(|_| LeafTooLarge {
            seq,
            bytes: leaf.len(),
        })?;
        bundle.extend_from_slice(&length.to_be_bytes());
        bundle.extend_from_slice(leaf);
    }
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASHES_0: TileKind = TileKind::Hashes { level: 0 };

    /// The spec's example: index 1234067 is `x001/x234/067`.
    #[test]
    fn index_paths_are_the_specs() {
        for (index, path) in [
            (0, "000"),
            (7, "007"),
            (999, "999"),
            (1000, "x001/000"),
            (1_234_067, "x001/x234/067"),
            (u64::MAX, "x018/x446/x744/x073/x709/x551/615"),
        ] {
            assert_eq!(index_path(index), path);
            assert_eq!(parse_index(path), Some(index), "{path}");
        }
    }

    #[test]
    fn every_tile_has_one_path() {
        for (path, tile) in [
            (
                "0/x001/x234/067",
                Tile {
                    kind: HASHES_0,
                    index: 1_234_067,
                    width: 256,
                },
            ),
            (
                "1/000.p/17",
                Tile {
                    kind: TileKind::Hashes { level: 1 },
                    index: 0,
                    width: 17,
                },
            ),
            (
                "63/x001/000.p/255",
                Tile {
                    kind: TileKind::Hashes { level: 63 },
                    index: 1000,
                    width: 255,
                },
            ),
            (
                "entries/x001/x234/067.p/1",
                Tile {
                    kind: TileKind::Entries,
                    index: 1_234_067,
                    width: 1,
                },
            ),
        ] {
            assert_eq!(Tile::parse(path), Ok(tile), "{path}");
            assert_eq!(tile.path(), format!("tile/{path}"));
        }
    }

    /// Each refusal, named after the mutation of a valid path.
    #[test]
    fn other_spellings_are_refused() {
        for (mutation, path) in [
            ("level-leading-zero", "00/000"),
            ("level-64", "64/000"),
            ("level-negative", "-1/000"),
            ("level-not-decimal", "a/000"),
            ("index-two-digits", "0/01"),
            ("index-four-digits", "0/0001"),
            ("index-unpadded", "0/1"),
            ("index-last-group-with-x", "0/x001"),
            ("index-upper-group-without-x", "0/001/234"),
            ("index-leading-x000", "0/x000/001"),
            ("index-beyond-u64", "0/x018/x446/x744/x073/x709/x551/616"),
            ("index-empty-group", "0/x001//067"),
            ("index-trailing-slash", "0/001/"),
            ("index-sign", "0/+01"),
            ("width-0", "0/000.p/0"),
            ("width-256", "0/000.p/256"),
            ("width-leading-zero", "0/000.p/07"),
            ("width-empty", "0/000.p/"),
            ("no-index", "0"),
            ("empty", ""),
            ("entries-without-index", "entries"),
        ] {
            assert!(Tile::parse(path).is_err(), "{mutation}: {path}");
        }
    }

    /// The spec's example: a tree of 70,000 leaves has 273 full level-0 tiles and a partial one
    /// of width 112, a full level-1 tile and a partial one of width 17, a partial level-2 tile of
    /// width 1; a tree of 256 a full level-0 tile and a level-1 tile of width 1.
    #[test]
    fn a_tree_holds_the_tiles_the_spec_lists() {
        let level = |l| TileKind::Hashes { level: l };
        let width = |kind, index, size| Tile::in_tree(kind, index, size).map(|t| t.width);
        assert_eq!(width(level(0), 272, 70_000), Some(256));
        assert_eq!(width(level(0), 273, 70_000), Some(112));
        assert_eq!(width(level(0), 274, 70_000), None);
        assert_eq!(width(TileKind::Entries, 273, 70_000), Some(112));
        assert_eq!(width(level(1), 0, 70_000), Some(256));
        assert_eq!(width(level(1), 1, 70_000), Some(17));
        assert_eq!(width(level(1), 2, 70_000), None);
        assert_eq!(width(level(2), 0, 70_000), Some(1));
        assert_eq!(width(level(3), 0, 70_000), None);
        assert_eq!(width(level(0), 0, 256), Some(256));
        assert_eq!(width(level(1), 0, 256), Some(1));
        assert_eq!(width(level(0), 0, 0), None);
        assert_eq!(width(level(7), 0, u64::MAX), Some(255));
        assert_eq!(width(level(8), 0, u64::MAX), None);
        assert_eq!(width(level(63), 0, u64::MAX), None);
        assert_eq!(width(level(0), u64::MAX, u64::MAX), None);

        let partial = Tile::in_tree(level(0), 273, 70_000).unwrap();
        assert!(partial.held_by(70_000));
        assert!(!partial.is_full());
        // A narrower partial tile stays held; a wider one, or the full one, is not yet.
        for (width, held) in [(1, true), (112, true), (113, false), (256, false)] {
            let tile = Tile { width, ..partial };
            assert_eq!(tile.held_by(70_000), held, "width {width}");
        }
        let huge = Tile {
            kind: level(0),
            index: u64::MAX,
            width: 1,
        };
        assert!(!huge.held_by(u64::MAX));
    }

    #[test]
    fn a_bundle_prefixes_each_leaf_with_its_length() {
        let leaves: [&[u8]; 3] = [b"{}", b"", &[7u8; 300]];
        let bundle = entry_bundle(0, leaves).unwrap();
        assert_eq!(&bundle[..4], &[0, 2, b'{', b'}']);
        assert_eq!(&bundle[4..6], &[0, 0]);
        assert_eq!(&bundle[6..8], &[1, 44]);
        assert_eq!(bundle.len(), 4 + 2 + 2 + 300);

        let largest = vec![b'a'; MAX_BUNDLE_LEAF_BYTES];
        let bundle = entry_bundle(0, [largest.as_slice()]).unwrap();
        assert_eq!(&bundle[..2], &[0xff, 0xff]);
        let too_large = vec![b'a'; MAX_BUNDLE_LEAF_BYTES + 1];
        assert_eq!(
            entry_bundle(510, [b"{}".as_slice(), too_large.as_slice()]),
            Err(LeafTooLarge {
                seq: 511,
                bytes: 65_536
            })
        );
    }
}
