#!/usr/bin/env python3
"""Generates entry-vectors.json for docs/ledger-format.md, independently of the Rust code.

It uses only Python's json module (sorted keys, no whitespace, UTF-8 output: the RFC 8785
canonical form for the strings and small integers these bodies hold) and the `cryptography`
package's Ed25519. The Rust tests check that the ledger reproduces every byte.

    python3 ledger-core/testdata/generate_entry_vectors.py > ledger-core/testdata/entry-vectors.json
"""
import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ORIGIN = "ledger.example/carbon-sink"
PREFIX = b"carbon-sink-ledger/v1/entry\n"
L = 2**252 + 27742317777372353535851937790883648493


def jcs(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key(seed_byte):
    seed = bytes([seed_byte]) * 32
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes_raw()
    return seed, private, base64.b64encode(public).decode()


def sign(private, body):
    return base64.b64encode(private.sign(PREFIX + jcs(body))).decode()


KEYS = {
    "xiazhuhu-wetland": key(0x11),
    "two-mountains-bank": key(0x22),
    "enterprise-a": key(0x33),
}


def entry(name, body, signers, seq, prev, accepted_at):
    signatures = [{"signer": s, "sig": sign(KEYS[s][1], body)} for s in signers]
    envelope = {"seq": seq, "prev": prev, "accepted_at": accepted_at,
                "entry": {"body": body, "signatures": signatures}}
    leaf = jcs(envelope)
    return {
        "name": name,
        "body": body,
        "jcs": jcs(body).decode(),
        "signing_message_sha256": hashlib.sha256(PREFIX + jcs(body)).hexdigest(),
        "signatures": signatures,
        "envelope": envelope,
        "leaf": leaf.decode(),
        "leaf_hash": hashlib.sha256(b"\x00" + leaf).hexdigest(),
    }


acquisition = {
    "type": "trade", "id": "T-2022-0001", "ledger": ORIGIN, "created_at": "2022-06-01T09:30:00Z",
    "kind": "acquisition", "seller": "xiazhuhu-wetland", "buyer": "two-mountains-bank",
    "batch": "XZH-2021", "quantity": "10000", "unit_price": "58.83", "currency": "CNY",
    "amount": "588300.00", "price_ref": "BM-2022-06",
}
retirement = {
    "type": "retire", "id": "CERT-2022-0001", "ledger": ORIGIN, "created_at": "2022-07-01T08:00:00Z",
    "holder": "enterprise-a", "batch": "XZH-2021", "quantity": "1000.5",
    "beneficiary": "某企业 \"A\"", "purpose": "2022 年度碳中和 🌿 Scope 1 \\ offset",
}

first = entry("acquisition", acquisition, ["xiazhuhu-wetland", "two-mountains-bank"],
              12, "ab" * 32, "2022-06-01T09:30:01Z")
second = entry("retirement-with-chinese-text-and-escapes", retirement, ["enterprise-a"],
               13, first["leaf_hash"], "2022-07-01T08:00:02.5Z")

# Negative cases: each is a submission (or raw text) and the error kind the ledger must return.
altered = dict(acquisition, quantity="1000")
no_prefix_sig = base64.b64encode(KEYS["xiazhuhu-wetland"][1].sign(jcs(acquisition))).decode()
good = first["signatures"]
raw_sig = base64.b64decode(good[0]["sig"])
s = int.from_bytes(raw_sig[32:], "little") + L
malleable = base64.b64encode(raw_sig[:32] + s.to_bytes(32, "little")).decode()
other_ledger = dict(acquisition, ledger="another.example/ledger")

negative = [
    {"name": "modified-body-quantity", "mutation": "quantity changed from 10000 to 1000 after signing",
     "submission": {"body": altered, "signatures": good}, "expect": "bad-signature"},
    {"name": "signed-without-prefix", "mutation": "the seller signed JCS(body) without the domain prefix",
     "submission": {"body": acquisition, "signatures": [{"signer": "xiazhuhu-wetland", "sig": no_prefix_sig}, good[1]]},
     "expect": "bad-signature"},
    {"name": "seller-signature-by-buyer-key", "mutation": "the seller's line carries the buyer's signature",
     "submission": {"body": acquisition, "signatures": [{"signer": "xiazhuhu-wetland", "sig": good[1]["sig"]}, good[1]]},
     "expect": "bad-signature"},
    {"name": "malleable-signature-s-plus-l", "mutation": "S replaced by S + L (same point equation, not canonical)",
     "submission": {"body": acquisition, "signatures": [{"signer": "xiazhuhu-wetland", "sig": malleable}, good[1]]},
     "expect": "bad-signature"},
    {"name": "signed-for-another-ledger", "mutation": "ledger set to another origin, then signed",
     "submission": {"body": other_ledger, "signatures": [
         {"signer": s, "sig": sign(KEYS[s][1], other_ledger)} for s in ["xiazhuhu-wetland", "two-mountains-bank"]]},
     "expect": "wrong-ledger"},
    {"name": "buyer-signature-only", "mutation": "the seller's signature line removed",
     "submission": {"body": acquisition, "signatures": [good[1]]}, "expect": "wrong-signers"},
    {"name": "duplicate-member", "mutation": "\"quantity\" given twice in the body",
     "text": json.dumps({"body": acquisition, "signatures": good}, ensure_ascii=False).replace(
         '"quantity": "10000"', '"quantity": "10000", "quantity": "1"'),
     "expect": "malformed-json"},
    {"name": "number-for-decimal", "mutation": "quantity as the JSON number 10000",
     "text": json.dumps({"body": dict(acquisition, quantity=10000), "signatures": good}),
     "expect": "malformed-entry"},
    {"name": "null-optional-field", "mutation": "price_ref given as null",
     "text": json.dumps({"body": dict(acquisition, price_ref=None), "signatures": good}),
     "expect": "malformed-entry"},
    {"name": "unknown-field", "mutation": "a field \"discount\" added",
     "text": json.dumps({"body": dict(acquisition, discount="0.1"), "signatures": good}),
     "expect": "malformed-entry"},
]

print(json.dumps({
    "description": "Entry vectors of the carbon-sink ledger format v1, generated independently of the "
                   "Rust code by generate_entry_vectors.py. Keys are Ed25519 seeds of one repeated byte. "
                   "Each entry gives the body, its JCS bytes, the signatures over prefix || JCS(body), "
                   "an envelope, its leaf bytes and its leaf hash. Negative cases are named by the "
                   "mutation applied and give the error kind the ledger must return.",
    "origin": ORIGIN,
    "signing_prefix": PREFIX.decode(),
    "keys": [{"participant": p, "seed": k[0].hex(), "public_key": k[2]} for p, k in KEYS.items()],
    "entries": [first, second],
    "negative": negative,
}, ensure_ascii=False, indent=1))
