#!/usr/bin/env python3
"""Generates state.json for docs/ledger-format.md section 9, independently of the Rust code.

The committed state of the reference case at 2022-06-02T09:00:00Z is written out below as plain
data. From it this script builds the rows (RFC 8785 JCS of [table, key, value], with Python's json:
sorted keys, no whitespace, UTF-8), orders them by the bytes of JCS([table, key]), and computes
the RFC 9162 Merkle tree over them with hashlib: leaf hashes, the root, the checkpoint's state
line, inclusion proofs of present rows, proofs of absent keys (the two neighbours), and altered
proofs that a verifier must refuse. The Rust tests check that the ledger reproduces every byte.

    python3 ledger-core/testdata/generate_state_vectors.py > ledger-core/testdata/state.json
"""
import base64
import copy
import hashlib
import json

AT = "2022-06-02T09:00:00Z"

STATE = [
    ("balances", ["enterprise-a", "XZH-2021"], {"available": "2000.000", "pledged": "0.000"}),
    ("balances", ["enterprise-b", "XZH-2021"], {"available": "2000.000", "pledged": "0.000"}),
    ("balances", ["two-mountains-bank", "XZH-2021"], {"available": "1000.000", "pledged": "4000.000"}),
    ("balances", ["xiazhuhu-wetland", "XZH-2021"], {"available": "5300.000", "pledged": "0.000"}),
    ("batches", "XZH-2021", {
        "id": "XZH-2021", "project": "XZH", "report": "XZH-MR-2021", "vintage": 2021, "seq": 11,
        "issued": "17000.000", "buffer": "1700.000", "buffer_initial": "1700.000",
        "available": "10300.000", "pledged": "4000.000", "retired": "1000.000",
        "reversed": "0.000",
    }),
    ("pledges", "PL-2022-001", {
        "id": "PL-2022-001", "seq": 17, "pledgor": "two-mountains-bank",
        "bank": "deqing-rural-bank", "batch": "XZH-2021", "quantity": "4000",
        "price_ref": "BM-2022-06", "unit_price": "58.83", "haircut": "0.30",
        "limit": "164724.00", "currency": "CNY", "maturity": "2023-06-01",
        "margin_threshold": "1.25", "drawn": "164724.00", "repaid": "0.00",
        "outstanding": "164724.00", "status": "active", "settled": None, "closed_seq": None,
    }),
    ("prices_in_force", "benchmark", {
        "id": "BM-2022-06", "seq": 12, "basis": "benchmark", "unit_price": "58.83",
        "currency": "CNY", "effective_at": "2022-06-01T00:00:00Z", "publisher": "deqing-pricing",
        "inputs": {"method": "cost of restoration per tonne"},
    }),
]


def jcs(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    """RFC 9162 section 2.1.3.1 PATH(m, D[n])."""
    if len(leaves) <= 1:
        return []
    k = split(len(leaves))
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


rows = sorted(
    ({"table": t, "key": k, "value": v, "sort_key": jcs([t, k]).decode(), "row": jcs([t, k, v])}
     for t, k, v in STATE),
    key=lambda r: r["sort_key"].encode(),
)
hashes = [leaf_hash(r["row"]) for r in rows]
root = mth(hashes)


def proved(index):
    return {
        "row": rows[index]["row"].decode(),
        "index": index,
        "proof": [h.hex() for h in path(index, hashes)],
    }


def absent(before, after):
    return {"absent": {"before": None if before is None else proved(before),
                       "after": None if after is None else proved(after)}}


proofs = [
    {"name": "pledge-present", "table": "pledges", "key": "PL-2022-001",
     "proof": {"present": proved(5)}},
    {"name": "pledgor-balance-present", "table": "balances", "key": ["two-mountains-bank", "XZH-2021"],
     "proof": {"present": proved(2)}},
    {"name": "balance-absent-between", "table": "balances", "key": ["enterprise-c", "XZH-2021"],
     "proof": absent(1, 2)},
    {"name": "balance-absent-before-the-first", "table": "balances", "key": ["bank-z", "XZH-2021"],
     "proof": absent(None, 0)},
    {"name": "price-absent-after-the-last", "table": "prices_in_force", "key": "market",
     "proof": absent(6, None)},
]


def mutated(name, mutation, base, change, error):
    proof = copy.deepcopy(next(p for p in proofs if p["name"] == base))
    change(proof)
    proof.update({"name": name, "mutation": mutation, "error": error})
    return proof


def set_row(proof, old, new):
    row = proof["proof"]["present"]
    assert old in row["row"]
    row["row"] = row["row"].replace(old, new)


def flip_first_hash(proof):
    row = proof["proof"]["present"]
    first = bytearray(bytes.fromhex(row["proof"][0]))
    first[0] ^= 0x08
    row["proof"][0] = first.hex()


def shift_index(proof):
    proof["proof"]["present"]["index"] += 1


def for_another_key(proof):
    proof["key"] = ["enterprise-a", "XZH-2021"]


def not_adjacent(proof):
    proof["proof"]["absent"]["before"] = proved(0)


def drop_before(proof):
    proof["proof"]["absent"]["before"] = None


def not_canonical(proof):
    row = proof["proof"]["present"]
    row["row"] = row["row"].replace(",", ", ", 1)


negative = [
    mutated("outstanding-lowered", "the pledge row's outstanding changed to 0.00", "pledge-present",
            lambda p: set_row(p, '"outstanding":"164724.00"', '"outstanding":"0.00"'), "not-included"),
    mutated("pledged-balance-raised", "the pledgor's pledged balance changed to 9000.000",
            "pledgor-balance-present",
            lambda p: set_row(p, '"pledged":"4000.000"', '"pledged":"9000.000"'), "not-included"),
    mutated("modified-proof[0]", "bit 3 of byte 0 of proof[0] flipped", "pledge-present",
            flip_first_hash, "not-included"),
    mutated("index-off-by-one", "the row's index raised by one", "pledge-present", shift_index,
            "not-included"),
    mutated("present-for-another-key", "a valid proof of the pledgor's balance offered for enterprise-a's",
            "pledgor-balance-present", for_another_key, "wrong-row"),
    mutated("absent-neighbours-not-adjacent", "the row before replaced by the first row (index 0)",
            "balance-absent-between", not_adjacent, "wrong-row"),
    mutated("absent-missing-neighbour", "the row before left out although the key is not the least",
            "balance-absent-between", drop_before, "wrong-row"),
    mutated("row-not-canonical", "a space after the first comma of the row", "pledge-present",
            not_canonical, "not-included"),
]

print(json.dumps({
    "description": "The committed state of the reference case (docs/ledger-format.md section 9), "
                   "made independently of the ledger's code by generate_state_vectors.py. Rows are "
                   "JCS([table, key, value]) in the byte order of JCS([table, key]); the state root "
                   "is the RFC 9162 Merkle root over them; proofs are RFC 9162 audit paths. Negative "
                   "proofs name the mutation and the error a verifier must report.",
    "at": AT,
    "rows": [{"sort_key": r["sort_key"], "row": r["row"].decode(), "leaf_hash": h.hex()}
             for r, h in zip(rows, hashes)],
    "root": root.hex(),
    "state_line": "state/v1 %d %s" % (len(rows), base64.b64encode(root).decode()),
    "proofs": proofs,
    "negative": negative,
}, indent=1, ensure_ascii=False))
