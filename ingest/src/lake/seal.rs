//! Seals: the chain head signed with an ed25519 key that does not live with the bucket.
//!
//! The hash chain (see `verify`) shows any change to a commit that has a successor, but someone
//! who can write the bucket can still delete the newest commits or rewrite the newest one. A
//! seal closes that gap: `auditlake seal` verifies the lake, then signs the head of each table
//! (version and SHA-256 of its newest commit). The seal is kept outside the bucket (a log
//! pipeline, a ticket, another account); `auditlake verify --seal` checks its signature with the
//! public key the auditor trusts (never the one the seal carries) and that each sealed commit is
//! still there with the same bytes. Because every commit records its predecessor's hash, a seal
//! vouches for all history up to the version it names.
//!
//! The signed bytes are the payload's JSON text exactly as written (`payload` is a string), so
//! verification never depends on re-serialising JSON the same way.

use chrono::{DateTime, SecondsFormat, Utc};
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

/// What a seal's payload says it is; a different value is refused.
pub const SEAL_FORMAT: &str = "auditlake-seal/1";

/// A seal file is one small JSON object: anything larger is not one (and is not read whole).
pub const MAX_SEAL_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The private key given to `seal` (the operator's).
    #[error(
        "the seal key is not an ed25519 private key (hex of PKCS#8, as `auditlake seal --generate-key` writes): {0}"
    )]
    BadKey(String),
    /// The public key given to `verify --seal` (the auditor's).
    #[error("the public key is not 64 hex digits (an ed25519 public key)")]
    BadPublicKey,
    /// The seal file itself.
    #[error("not an auditlake seal: {0}")]
    Malformed(String),
    #[error(
        "the seal's signature does not verify with the given public key (key id {key_id}): it was forged or altered, or signed by another key"
    )]
    BadSignature { key_id: String },
}

impl SealError {
    /// A key, a seal file or a signature given by the caller: always the caller's to fix.
    pub fn fault(&self) -> crate::Fault {
        crate::Fault::Caller
    }
}

/// One table's head as sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHead {
    /// `audit_events`, `findings` or `retention_log`.
    pub table: String,
    pub version: u64,
    /// SHA-256 (hex) of that version's commit file.
    pub sha256: String,
    /// The newest checkpoint at or before `version`, found to agree with the log: a later
    /// `verify --from-seal` starts there instead of at version 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<SealedCheckpoint>,
}

/// A checkpoint as sealed: its version and the SHA-256 of its bytes (of its parts, in name
/// order, for a multi-part checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedCheckpoint {
    pub version: u64,
    pub sha256: String,
}

/// What is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealPayload {
    pub format: String,
    /// The lake as the sealer named it (a path or URL; informative, not checked).
    pub lake: String,
    /// RFC 3339, UTC.
    pub sealed_at: String,
    pub heads: Vec<SealedHead>,
    /// First 16 hex digits of SHA-256 of the public key: which key to verify with.
    pub key_id: String,
}

/// The seal as stored and sent: the payload's exact text, its signature, and (as a hint only)
/// the public key that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    pub payload: String,
    /// ed25519 signature of `payload`'s bytes, hex.
    pub signature: String,
    pub public_key: String,
}

/// A seal whose signature verified with a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSeal {
    pub payload: SealPayload,
}

fn key_id(public_key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// A signing key. Its `Debug` names the key id only.
pub struct SealKey(Ed25519KeyPair);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.key_id())
    }
}

impl SealKey {
    /// A new key: (private key as hex PKCS#8 for the operator to keep secret, public key hex).
    pub fn generate() -> Result<(String, String), SealError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SealError::BadKey("the system random source failed".into()))?;
        let key = SealKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((hex::encode(pkcs8.as_ref()), key.public_hex()))
    }

    fn from_pkcs8(der: &[u8]) -> Result<SealKey, SealError> {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map(SealKey)
            .map_err(|e| SealError::BadKey(e.to_string()))
    }

    /// Reads a key as `--generate-key` writes it (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<SealKey, SealError> {
        let der = hex::decode(text.trim())
            .map_err(|_| SealError::BadKey("not hexadecimal".to_string()))?;
        SealKey::from_pkcs8(&der)
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.0.public_key().as_ref())
    }

    pub fn key_id(&self) -> String {
        key_id(self.0.public_key().as_ref())
    }

    /// Signs the heads of `lake` as of `at`.
    pub fn seal(&self, lake: &str, heads: Vec<SealedHead>, at: DateTime<Utc>) -> Seal {
        let payload = SealPayload {
            format: SEAL_FORMAT.to_owned(),
            lake: lake.to_owned(),
            sealed_at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            heads,
            key_id: self.key_id(),
        };
        let payload = serde_json::to_string(&payload).expect("a payload serialises");
        let signature = hex::encode(self.0.sign(payload.as_bytes()).as_ref());
        Seal {
            payload,
            signature,
            public_key: self.public_hex(),
        }
    }
}

/// Parses a seal and checks its signature with `trusted_public_key` (hex), never with the key the
/// seal carries: anyone can make a seal with a key of their own.
pub fn open_seal(text: &str, trusted_public_key: &str) -> Result<VerifiedSeal, SealError> {
    let public = hex::decode(trusted_public_key.trim()).map_err(|_| SealError::BadPublicKey)?;
    if public.len() != 32 {
        return Err(SealError::BadPublicKey);
    }
    let seal: Seal = serde_json::from_str(text).map_err(|e| SealError::Malformed(e.to_string()))?;
    let signature = hex::decode(&seal.signature)
        .map_err(|_| SealError::Malformed("the signature is not hexadecimal".into()))?;
    signature::UnparsedPublicKey::new(&signature::ED25519, &public)
        .verify(seal.payload.as_bytes(), &signature)
        .map_err(|_| SealError::BadSignature {
            key_id: key_id(&public),
        })?;
    // Only signed bytes are interpreted from here on.
    let payload: SealPayload = serde_json::from_str(&seal.payload)
        .map_err(|e| SealError::Malformed(format!("payload: {e}")))?;
    if payload.format != SEAL_FORMAT {
        return Err(SealError::Malformed(format!(
            "format {:?}, expected {SEAL_FORMAT:?}",
            payload.format
        )));
    }
    Ok(VerifiedSeal { payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads() -> Vec<SealedHead> {
        vec![SealedHead {
            table: "audit_events".into(),
            version: 41,
            sha256: "ab".repeat(32),
            checkpoint: None,
        }]
    }

    #[test]
    fn a_seal_verifies_with_its_key_and_carries_what_was_signed() {
        let (private, public) = SealKey::generate().unwrap();
        let key = SealKey::from_text(&format!("{private}\n")).unwrap();
        assert_eq!(key.public_hex(), public);
        let at = "2026-12-03T10:00:00Z".parse().unwrap();
        let seal = key.seal("s3://b/lake", heads(), at);
        let text = serde_json::to_string(&seal).unwrap();
        let opened = open_seal(&text, &public).unwrap();
        assert_eq!(opened.payload.heads, heads());
        assert_eq!(opened.payload.sealed_at, "2026-12-03T10:00:00.000Z");
        assert_eq!(opened.payload.key_id, key.key_id());
        assert!(!format!("{key:?}").contains(&private[..16]));
    }

    #[test]
    fn a_forged_or_altered_seal_is_refused() {
        let (private, public) = SealKey::generate().unwrap();
        let key = SealKey::from_text(&private).unwrap();
        let seal = key.seal("lake", heads(), Utc::now());

        // The payload altered (a later version claimed): the signature no longer holds.
        let mut altered = seal.clone();
        altered.payload = altered.payload.replace("\"version\":41", "\"version\":40");
        let err = open_seal(&serde_json::to_string(&altered).unwrap(), &public).unwrap_err();
        assert!(matches!(err, SealError::BadSignature { .. }), "{err}");

        // A seal made with another key, carrying that key: refused under the trusted one.
        let (other, _) = SealKey::generate().unwrap();
        let forged = SealKey::from_text(&other)
            .unwrap()
            .seal("lake", heads(), Utc::now());
        let err = open_seal(&serde_json::to_string(&forged).unwrap(), &public).unwrap_err();
        assert!(matches!(err, SealError::BadSignature { .. }), "{err}");

        // Not a seal, extra fields, a bad key.
        for text in [
            "{}".to_string(),
            "[".repeat(100_000),
            serde_json::json!({"payload": "{}", "signature": "zz", "public_key": ""}).to_string(),
        ] {
            assert!(matches!(
                open_seal(&text, &public),
                Err(SealError::Malformed(_))
            ));
        }
        assert!(matches!(
            open_seal(&serde_json::to_string(&seal).unwrap(), "abcd"),
            Err(SealError::BadPublicKey)
        ));
        assert!(matches!(
            SealKey::from_text("not a key"),
            Err(SealError::BadKey(_))
        ));
        assert!(matches!(
            SealKey::from_text(&public),
            Err(SealError::BadKey(_))
        ));
    }
}
