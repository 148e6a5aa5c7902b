//! Builders shared by the state-machine tests: bodies from JSON, contexts with given signers.
#![allow(dead_code)]

use ledger_core::entry::Body;
use ledger_core::error::RuleError;
use ledger_core::ids::{ParticipantId, Timestamp};
use ledger_core::state::{Context, Signers, State};
use serde_json::{json, Value};

pub const LEDGER: &str = "deqing.example/wetland-sink";

/// A deterministic public key for a participant name.
pub fn key_of(name: &str) -> String {
    use base64::Engine as _;
    let mut seed = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        seed[i % 32] ^= b.wrapping_add(u8::try_from(i % 251).unwrap());
    }
    seed[31] ^= u8::try_from(name.len() % 251).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

pub fn pid(s: &str) -> ParticipantId {
    s.parse().unwrap()
}

/// A body from its type-specific fields; id, ledger and created_at are added.
pub fn body(id: &str, fields: Value) -> Body {
    let mut value = fields;
    let map = value.as_object_mut().unwrap();
    map.insert("id".into(), json!(id));
    map.insert("ledger".into(), json!(LEDGER));
    map.entry("created_at")
        .or_insert(json!("2022-06-01T09:30:00Z"));
    serde_json::from_value(value).unwrap_or_else(|e| panic!("test body {id}: {e}"))
}

/// A distinct digest per sequence number (the state machine only compares them).
fn sha2_like(seq: u64) -> [u8; 32] {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&seq.to_be_bytes());
    digest
}

/// A small driver that numbers entries and hands the state machine the signers.
#[derive(Default)]
pub struct Market {
    pub state: State,
    pub seq: u64,
}

impl Market {
    pub fn apply(&mut self, body: &Body, signers: Signers) -> Result<(), RuleError> {
        let ctx = Context {
            seq: self.seq,
            accepted_at: "2022-06-01T10:00:00Z".parse::<Timestamp>().unwrap(),
            signers,
            body_digest: sha2_like(self.seq),
        };
        let result = self.state.apply(&ctx, body);
        if result.is_ok() {
            self.seq += 1;
            self.state.settle();
        }
        result
    }

    pub fn ok(&mut self, body: Body, signers: &[&str]) {
        let signers = Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter());
        let id = body.id.clone();
        self.apply(&body, signers)
            .unwrap_or_else(|e| panic!("entry {id} refused: {e}"));
    }

    pub fn ok_with_new_key(&mut self, body: Body, signers: &[&str]) {
        let signers =
            Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter()).with_new_key();
        let id = body.id.clone();
        self.apply(&body, signers)
            .unwrap_or_else(|e| panic!("entry {id} refused: {e}"));
    }

    pub fn refused(&mut self, body: Body, signers: &[&str]) -> RuleError {
        let before = self.state.clone();
        let signers = Signers::of(signers.iter().map(|s| pid(s)).collect::<Vec<_>>().iter());
        let err = self
            .apply(&body, signers)
            .expect_err("entry should be refused");
        assert_eq!(self.state, before, "a refused entry changed the state");
        err
    }

    pub fn register(&mut self, id: &str, name: &str, roles: &[&str]) {
        let b = body(
            &format!("reg-{id}"),
            json!({"type": "register_participant", "participant": id, "name": name,
                   "roles": roles, "public_key": key_of(id)}),
        );
        if self.state.operator().is_none() {
            self.ok_with_new_key(b, &[]);
        } else {
            let op = self.state.operator().unwrap().to_string();
            self.ok_with_new_key(b, &[&op]);
        }
    }
}
