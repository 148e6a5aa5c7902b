// "Verified in your browser": checks, with the browser's own Web Crypto (Ed25519 and SHA-256),
// that the entry this page shows is in the ledger the operator signed.
//
//   1. the operator key: from /v1/ledger; its fingerprint is shown for the visitor to compare
//      with the one the operator publishes (the one thing taken on trust);
//   2. the checkpoint: /v1/checkpoint, a C2SP signed note; the operator's Ed25519 signature over
//      the note text, found by key name (the origin) and key ID = SHA-256(name || 0x0A || 0x01 ||
//      key)[0..4];
//   3. witness cosignatures (C2SP tlog-cosignature, Ed25519 cosignature/v1) of the witnesses the
//      service lists in /v1/ledger (their fingerprints shown): each one present must verify over
//      "cosignature/v1\ntime <t>\n" followed by the note text; a witness that has not cosigned
//      this checkpoint yet is said so;
//   4. the entry: /v1/entries/{seq}; its leaf is JCS(envelope) (RFC 8785), its leaf hash
//      SHA-256(0x00 || leaf), and the figures on the page must be the entry's own;
//   5. the inclusion proof: /v1/proofs/inclusion; the RFC 9162 root is recomputed from the leaf
//      hash computed here, and must be the checkpoint's root.
//
// The outcome is written to the section's data-verified ("true" or "false") and data-failed
// (the step that failed), and each step to the list under it. No inline script: the page's
// Content-Security-Policy allows this file only.
"use strict";

(function () {
  const enc = new TextEncoder();

  class CheckFailed extends Error {
    constructor(step, message) {
      super(message);
      this.step = step;
    }
  }

  function bytesOfBase64(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function bytesOfHex(text) {
    if (!/^[0-9a-f]{64}$/.test(text)) throw new Error(`"${text}" is not a hex SHA-256 hash`);
    const out = new Uint8Array(32);
    for (let i = 0; i < 32; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
    return out;
  }

  function hex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function equal(a, b) {
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // RFC 8785 (JCS) for the values a ledger entry holds: strings, integers, booleans, null,
  // arrays and objects. Decimals are strings on this wire, so no float ever needs ES's number
  // formatting; JSON.stringify escapes strings exactly as JCS requires, and the default sort
  // compares UTF-16 code units, as JCS sorts member names.
  function jcs(value) {
    if (Array.isArray(value)) return "[" + value.map(jcs).join(",") + "]";
    if (value !== null && typeof value === "object") {
      return (
        "{" +
        Object.keys(value)
          .sort()
          .map((k) => JSON.stringify(k) + ":" + jcs(value[k]))
          .join(",") +
        "}"
      );
    }
    if (typeof value === "number" && !Number.isSafeInteger(value)) {
      throw new Error(`the number ${value} is not an integer this check can encode`);
    }
    return JSON.stringify(value);
  }

  // RFC 9162 §2.1.3.2: the root an inclusion proof leads to.
  async function rootFromInclusion(leafHash, index, treeSize, proof) {
    let fn = BigInt(index);
    let sn = BigInt(treeSize) - 1n;
    if (fn > sn) throw new Error(`entry ${index} is not below the tree size ${treeSize}`);
    let r = leafHash;
    for (const p of proof) {
      if (sn === 0n) throw new Error("the proof is longer than the tree allows");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await sha256(concat(Uint8Array.of(1), p, r));
        if ((fn & 1n) === 0n) {
          while ((fn & 1n) === 0n && fn !== 0n) {
            fn >>= 1n;
            sn >>= 1n;
          }
        }
      } else {
        r = await sha256(concat(Uint8Array.of(1), r, p));
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new Error("the proof is shorter than the tree needs");
    return r;
  }

  // C2SP signed-note: the text ends at the last blank line; each signature line is
  // "— <name> <base64(key ID || signature)>".
  function parseNote(note) {
    if (!note.endsWith("\n")) throw new Error("the note does not end with a newline");
    const split = note.lastIndexOf("\n\n");
    if (split < 0) throw new Error("the note has no blank line before its signatures");
    const text = note.slice(0, split + 1);
    const signatures = note
      .slice(split + 2, -1)
      .split("\n")
      .map((line) => {
        const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
        if (!m) throw new Error(`a signature line is malformed: ${line}`);
        const blob = bytesOfBase64(m[2]);
        return { name: m[1], keyId: blob.slice(0, 4), signature: blob.slice(4) };
      });
    return { text, signatures };
  }

  async function keyIdOf(name, publicKey) {
    return (await sha256(concat(enc.encode(name), Uint8Array.of(0x0a, 0x01), publicKey))).slice(0, 4);
  }

  async function verifyEd25519(publicKey, signature, message) {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  }

  // A witness's verifier key: "<name>+<hex key ID>+<base64(0x04 || 32-byte key)>".
  async function parseWitnessKey(vkey) {
    const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey);
    if (!m) throw new Error(`"${vkey}" is not a witness verifier key`);
    const material = bytesOfBase64(m[3]);
    if (material.length !== 33 || material[0] !== 0x04) throw new Error(`"${vkey}" is not an Ed25519 cosignature key`);
    const publicKey = material.slice(1);
    const keyId = (await sha256(concat(enc.encode(m[1]), Uint8Array.of(0x0a, 0x04), publicKey))).slice(0, 4);
    if (hex(keyId) !== m[2]) throw new Error(`the key ID of "${vkey}" does not match its key`);
    return { name: m[1], keyId, publicKey };
  }

  // Each listed witness's cosignatures on the note: each present must verify; one absent is
  // reported as not cosigned (yet).
  async function checkCosignatures(parsed, vkeys) {
    const results = [];
    for (const vkey of vkeys) {
      const witness = await parseWitnessKey(vkey);
      const lines = parsed.signatures.filter((s) => s.name === witness.name && equal(s.keyId, witness.keyId));
      if (lines.length === 0) {
        results.push({ witness: witness.name, cosigned: false, ok: true });
        continue;
      }
      for (const line of lines) {
        if (line.signature.length !== 72) {
          results.push({ witness: witness.name, cosigned: true, ok: false, reason: "the cosignature is not 8 + 64 bytes" });
          continue;
        }
        let time = 0n;
        for (const b of line.signature.slice(0, 8)) time = (time << 8n) | BigInt(b);
        const message = enc.encode(`cosignature/v1\ntime ${time}\n${parsed.text}`);
        const ok = await verifyEd25519(witness.publicKey, line.signature.slice(8), message);
        results.push({
          witness: witness.name,
          fingerprint: fingerprint(hex(await sha256(witness.publicKey))).slice(0, 19),
          cosigned: true,
          ok,
          reason: ok ? "" : "its cosignature does not verify over this checkpoint",
        });
      }
    }
    return results;
  }

  function fingerprint(hexText) {
    return hexText.match(/.{1,4}/g).join(" ");
  }

  async function fetchOk(path, as) {
    let response;
    try {
      response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
    } catch (e) {
      throw new CheckFailed("network", `${path} could not be fetched: ${e.message}`);
    }
    if (!response.ok) throw new CheckFailed("network", `${path} answered ${response.status}`);
    return as === "text" ? response.text() : response.json();
  }

  async function check(section, report) {
    if (!window.crypto || !crypto.subtle) {
      throw new CheckFailed(
        "webcrypto",
        "this browser offers no Web Crypto here (pages must be served over HTTPS for it)"
      );
    }
    const seq = Number(section.dataset.seq);

    // 1. The operator key.
    const ledger = await fetchOk("/v1/ledger");
    const publicKey = bytesOfBase64(ledger.operator_public_key);
    if (publicKey.length !== 32) throw new CheckFailed("key", "the operator key is not 32 bytes");
    const keyPrint = fingerprint(hex(await sha256(publicKey)));
    document.getElementById("key-fingerprint-checked").textContent = keyPrint;
    const shown = document.getElementById("key-fingerprint-page");
    if (shown && shown.textContent.trim() !== keyPrint) {
      throw new CheckFailed("key", "the service's operator key is not the key this page shows");
    }
    report("key", `operator key ${keyPrint.slice(0, 19)}… (compare it with the published one)`);

    // 2. The checkpoint and its signature.
    const note = await fetchOk("/v1/checkpoint", "text");
    let parsed;
    try {
      parsed = parseNote(note);
    } catch (e) {
      throw new CheckFailed("checkpoint-format", `the checkpoint is malformed: ${e.message}`);
    }
    const keyId = await keyIdOf(ledger.origin, publicKey);
    const mine = parsed.signatures.filter((s) => s.name === ledger.origin && equal(s.keyId, keyId));
    if (mine.length === 0) {
      throw new CheckFailed("checkpoint-signature", "the checkpoint carries no signature by the operator key");
    }
    for (const s of mine) {
      let ok = false;
      try {
        ok = await verifyEd25519(publicKey, s.signature, enc.encode(parsed.text));
      } catch (e) {
        throw new CheckFailed("checkpoint-signature", `the signature could not be checked: ${e.message}`);
      }
      if (!ok) {
        throw new CheckFailed("checkpoint-signature", "the checkpoint's signature does not verify with the operator key: the checkpoint was altered or forged");
      }
    }
    const lines = parsed.text.split("\n");
    const size = lines[1];
    if (lines[0] !== ledger.origin) {
      throw new CheckFailed("checkpoint-format", `the checkpoint is of "${lines[0]}", not of this ledger`);
    }
    if (!/^(0|[1-9][0-9]*)$/.test(size)) throw new CheckFailed("checkpoint-format", "the checkpoint's size is malformed");
    const root = bytesOfBase64(lines[2]);
    if (root.length !== 32) throw new CheckFailed("checkpoint-format", "the checkpoint's root is not 32 bytes");
    report("checkpoint-signature", `checkpoint of ${size} entries signed by the operator (Ed25519) ✓, root ${hex(root).slice(0, 16)}…`);

    // 3. Witness cosignatures of the witnesses the service lists.
    let cosigned;
    try {
      cosigned = await checkCosignatures(parsed, ledger.witnesses || []);
    } catch (e) {
      throw new CheckFailed("cosignature", `a witness key is malformed: ${e.message}`);
    }
    const failed = cosigned.find((c) => !c.ok);
    if (failed) throw new CheckFailed("cosignature", `witness ${failed.witness}: ${failed.reason}`);
    const good = cosigned.filter((c) => c.cosigned);
    const waiting = cosigned.filter((c) => !c.cosigned).map((c) => c.witness);
    report(
      "cosignatures",
      cosigned.length === 0
        ? "witness cosignatures: the service lists no witness"
        : `cosigned by ${good.length} of ${cosigned.length} witnesses ✓ ${good.map((c) => `${c.witness} (key ${c.fingerprint}…)`).join(", ")}` +
            (waiting.length ? `; not yet cosigned by ${waiting.join(", ")}` : "")
    );

    if (BigInt(seq) >= BigInt(size)) {
      throw new CheckFailed("inclusion", `entry ${seq} is newer than the checkpoint (${size} entries); reload to check it`);
    }

    // 4. The entry: its leaf hash computed here, and the page's figures against it.
    const entry = await fetchOk(`/v1/entries/${seq}`);
    const envelope = entry.envelope;
    if (!envelope || envelope.seq !== seq) throw new CheckFailed("leaf", `the service sent another entry than #${seq}`);
    const body = envelope.entry && envelope.entry.body;
    if (!body || body.ledger !== ledger.origin) throw new CheckFailed("leaf", "the entry was not made for this ledger");
    const leafHash = await sha256(concat(Uint8Array.of(0), enc.encode(jcs(envelope))));
    const mismatches = [];
    const matched = [];
    for (const el of document.querySelectorAll("[data-claim]")) {
      const field = el.dataset.claim;
      const value = body[field];
      const written = value === undefined || value === null ? "" : String(value);
      if (written !== el.dataset.value) mismatches.push(`${field}: the page shows "${el.dataset.value}", the signed entry says "${written}"`);
      else matched.push(`${field} ${written}`);
    }
    if (mismatches.length) throw new CheckFailed("claims", `the page's figures are not the signed entry's: ${mismatches.join("; ")}`);
    report("leaf", `entry #${seq} (${body.type} ${body.id}), leaf hash ${hex(leafHash).slice(0, 16)}…${matched.length ? "; the page's figures are the entry's: " + matched.join(", ") : ""}`);

    // 5. The inclusion proof up to the checkpoint's root.
    const proof = await fetchOk(`/v1/proofs/inclusion?seq=${seq}&tree_size=${size}`);
    if (String(proof.tree_size) !== size || proof.seq !== seq) {
      throw new CheckFailed("inclusion", "the proof is for another entry or tree size");
    }
    let computed;
    try {
      computed = await rootFromInclusion(leafHash, seq, size, proof.proof.map(bytesOfHex));
    } catch (e) {
      throw new CheckFailed("inclusion", `the inclusion proof is malformed: ${e.message}`);
    }
    if (!equal(computed, root)) {
      throw new CheckFailed("inclusion", "the inclusion proof does not lead to the checkpoint's root: this entry is not in the ledger the operator signed");
    }
    report("inclusion", `inclusion proof (${proof.proof.length} hashes) leads to the signed root ✓`);
    return { seq, size, cosigned: good.length, witnesses: cosigned.length };
  }

  async function run(section) {
    const steps = document.getElementById("verify-steps");
    const status = document.getElementById("verify-status");
    steps.textContent = "";
    section.dataset.verified = "pending";
    delete section.dataset.failed;
    status.textContent = "正在验证… Checking…";
    const report = (step, text, ok = true) => {
      const li = document.createElement("li");
      li.className = ok ? "ok" : "bad";
      li.dataset.step = step;
      li.textContent = text;
      steps.appendChild(li);
    };
    try {
      const { seq, size, cosigned, witnesses } = await check(section, report);
      section.dataset.verified = "true";
      const witnessed = witnesses ? ` and ${cosigned} of ${witnesses} witnesses cosigned` : "";
      status.textContent = `已验证 Verified: entry #${seq} is in the ledger of ${size} entries that the operator signed${witnessed}.`;
    } catch (e) {
      const step = e instanceof CheckFailed ? e.step : "error";
      report(step, e.message, false);
      section.dataset.verified = "false";
      section.dataset.failed = step;
      status.textContent = `验证失败 Not verified: ${e.message}`;
    }
  }

  function start() {
    const section = document.getElementById("verify");
    if (!section) return;
    const again = document.getElementById("verify-again");
    if (again) again.addEventListener("click", () => run(section));
    run(section);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
