#!/usr/bin/env python3
"""Writes the committed seed corpora in fuzz/corpus-seeds/<target>/ from ledger-core/testdata.

Run from anywhere: python3 fuzz/make_seeds.py. Files are named by content, small, and stable.
"""
import hashlib
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "..", "ledger-core", "testdata")
OUT = os.path.join(HERE, "corpus-seeds")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def compact(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


entries = json.load(open(os.path.join(TESTDATA, "entry-vectors.json"), encoding="utf-8"))
for e in entries["entries"]:
    sub = {"body": e["body"], "signatures": e["signatures"]}
    write("decode_submission", e["name"] + ".json", compact(sub))
    write("decode_submission", e["name"] + "-unsigned.json", compact({"body": e["body"], "signatures": []}))
    write("envelope", e["name"] + ".leaf", e["leaf"])
    write("canonical", e["name"] + "-body.json", json.dumps(e["body"], ensure_ascii=False, indent=1))
    write("canonical", e["name"] + "-jcs.json", e["jcs"])
for n in entries["negative"]:
    text = n["text"] if "text" in n else compact(n["submission"])
    write("decode_submission", "neg-" + n["name"] + ".json", text)

write("canonical", "numbers.json", '[0,-0,1e21,1e-7,123456789012345678,9007199254740991,0.1,-1.5e300,5e-324]')
write("canonical", "strings.json", '{"\\u20ac":"\\u0000\\u001f\\"\\\\/","\\ud83d\\ude00":1,"\\ue000":2,"a":[true,false,null,{}]}')

cp = json.load(open(os.path.join(TESTDATA, "checkpoint.json"), encoding="utf-8"))
write("checkpoint", "body.txt", cp["body"])
write("checkpoint", "note.txt", cp["note"])
for a in cp["accepted"]:
    write("checkpoint", "accepted-" + a["name"] + ".txt", a["note"])
for n in cp["negative"][:6]:
    if "note" in n:
        write("checkpoint", "neg-" + n["name"] + ".txt", n["note"])

for i, d in enumerate(["10000", "10000.000", "588300.00", "58.83", "58.8300", "0.1", "0.0", "0",
                       "0.9999", "999999999999.999", "1.", ".5", "007", "1e3", "-1", "1.23456"]):
    write("decimal", "d%02d" % i, d)


# Merkle proofs of a fixed tree of 7 leaves "leaf-<i>", as the proof target builds it.
def lh(b):
    return hashlib.sha256(b"\x00" + b).digest()


def nh(a, b):
    return hashlib.sha256(b"\x01" + a + b).digest()


def split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d):
    if len(d) == 0:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = split(len(d))
    return nh(mth(d[:k]), mth(d[k:]))


def path(m, d):
    if len(d) <= 1:
        return []
    k = split(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = split(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


leaves = [lh(("leaf-%d" % i).encode()) for i in range(7)]
for size in (1, 4, 5, 7):
    for idx in sorted({0, size // 2, size - 1}):
        p = path(idx, leaves[:size])
        write("proof", "incl-%d-%d" % (idx, size), struct.pack("<QQ", idx, size) + b"".join(p))
for old, new in ((1, 7), (3, 7), (4, 7), (6, 7), (2, 5)):
    p = subproof(old, leaves[:new], True)
    write("proof", "cons-%d-%d" % (old, new), struct.pack("<QQ", old, new) + b"".join(p))
write("proof", "huge", struct.pack("<QQ", 2**64 - 2, 2**64 - 1) + b"\x00" * 64)

for size, index, old in ((0, 0, 0), (6, 3, 4), (255, 100, 128), (299, 298, 257)):
    write("proof_roundtrip", "t-%d-%d-%d" % (size, index, old), struct.pack("<HHHB", size, index, old, 7))
