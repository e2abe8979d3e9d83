//! SCRAM-SHA-256 (RFC 5802, RFC 7677) from stored verifiers, the way PostgreSQL stores them in
//! `pg_authid`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! pgwire's own SCRAM server needs the *salted password* (`Hi(password, salt, i)`), which is
//! password-equivalent: whoever reads it can log in. A verifier holds only StoredKey =
//! H(HMAC(SaltedPassword, "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"):
//! enough to check a client's proof and to prove the server knows the verifier, not enough to
//! log in. So the exchange is done here, and `pg.rs` plugs it into pgwire's startup.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use datafusion_postgres::pgwire::api::auth::sasl::scram::gen_salted_password;
use ring::{digest, hmac};

/// The SASL mechanism offered. Not `-PLUS`: channel binding is not implemented.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// PostgreSQL's default `scram_iterations`, and the least a verifier may use (RFC 7677 §4).
pub const MIN_ITERATIONS: u32 = 4096;

/// Why an exchange failed. `Rejected` is the only answer a wrong password or an unknown user
/// gets; the other variants are protocol errors that name no secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("SCRAM channel binding is not supported by this server (it offers {MECHANISM} only)")]
    ChannelBinding,
    #[error("password authentication failed")]
    Rejected,
}

/// Why a users-file verifier does not parse: the part that is wrong, never its text (the
/// caller's file to fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadVerifier {
    #[error("expected `{MECHANISM}$<iterations>:<salt>$<StoredKey>:<ServerKey>`")]
    Shape,
    #[error("expected `$` between `<iterations>:<salt>` and `<StoredKey>:<ServerKey>`")]
    NoKeys,
    #[error("expected `<iterations>:<salt>`")]
    NoSalt,
    #[error("expected `<StoredKey>:<ServerKey>`")]
    NoServerKey,
    #[error("the iteration count is not a number")]
    Iterations,
    #[error("{0} iterations: at least {MIN_ITERATIONS} are required")]
    TooFewIterations(u32),
    #[error("the salt is not base64")]
    Salt,
    #[error("the salt is empty")]
    EmptySalt,
    #[error("the {0} is not 32 bytes of base64")]
    Key(&'static str),
}

/// A stored SCRAM-SHA-256 verifier. Its `Debug` shows no key material: a verifier is not a
/// password, but it allows an offline dictionary attack, so it is not logged either.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier({MECHANISM}, {} iterations)", self.iterations)
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
    tag.as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes")
}

fn sha256(msg: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, msg)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// Equal without an early exit, so the time taken does not say how much of a key matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `n` bytes from the operating system's CSPRNG (through rustls's ring provider).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut out)
        .expect("the OS random source works");
    out
}

impl Verifier {
    /// The verifier of `password` (SASLprep-normalised, as PostgreSQL and libpq do) with a
    /// fresh 16-byte salt.
    pub fn from_password(password: &str, iterations: u32) -> Verifier {
        Verifier::with_salt(password, &random_bytes::<16>(), iterations)
    }

    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let salted = gen_salted_password(password, salt, iterations as usize);
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&hmac_sha256(&salted, b"Client Key")),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// A verifier no password matches, for a user that does not exist: its salt is derived from
    /// the user name and a per-process key, so asking twice gives the same salt and the answer
    /// does not reveal which names exist (PostgreSQL's `scram_mock_salt`).
    pub fn mock(user: &str, process_key: &[u8; 32]) -> Verifier {
        let salt = hmac_sha256(process_key, user.as_bytes());
        Verifier {
            iterations: MIN_ITERATIONS,
            salt: salt[..16].to_vec(),
            stored_key: random_bytes(),
            server_key: random_bytes(),
        }
    }

    /// PostgreSQL's form: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, base64.
    pub fn to_postgres(&self) -> String {
        format!(
            "{MECHANISM}${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }

    /// Parses PostgreSQL's form; the error says which part is wrong, never echoing it.
    pub fn parse(s: &str) -> Result<Verifier, BadVerifier> {
        let rest = s
            .strip_prefix(MECHANISM)
            .and_then(|r| r.strip_prefix('$'))
            .ok_or(BadVerifier::Shape)?;
        let (params, keys) = rest.split_once('$').ok_or(BadVerifier::NoKeys)?;
        let (iterations, salt) = params.split_once(':').ok_or(BadVerifier::NoSalt)?;
        let (stored, server) = keys.split_once(':').ok_or(BadVerifier::NoServerKey)?;
        let iterations: u32 = iterations.parse().map_err(|_| BadVerifier::Iterations)?;
        if iterations < MIN_ITERATIONS {
            return Err(BadVerifier::TooFewIterations(iterations));
        }
        let salt = B64.decode(salt).map_err(|_| BadVerifier::Salt)?;
        if salt.is_empty() {
            return Err(BadVerifier::EmptySalt);
        }
        let key = |what: &'static str, b64: &str| -> Result<[u8; 32], BadVerifier> {
            B64.decode(b64)
                .ok()
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or(BadVerifier::Key(what))
        };
        Ok(Verifier {
            iterations,
            salt,
            stored_key: key("StoredKey", stored)?,
            server_key: key("ServerKey", server)?,
        })
    }

    /// The server's first message for `client_first` (`n,,n=…,r=<nonce>`), and the state that
    /// checks the client's final message. `known` false (a mock verifier) fails the exchange at
    /// the end, like a wrong password.
    pub fn server_first(
        &self,
        known: bool,
        client_first: &str,
        server_nonce: &str,
    ) -> Result<(String, Exchange), ScramError> {
        let (cbind, rest) = client_first
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match cbind {
            // `y`: the client could bind but believes the server cannot — true here.
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel-binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        if !authzid.is_empty() {
            // As PostgreSQL: the user is the startup message's, no other identity is assumed.
            return Err(ScramError::Malformed(
                "authorization identities are not supported",
            ));
        }
        let gs2_header = &client_first[..client_first.len() - bare.len()];
        let mut attrs = bare.split(',');
        match attrs.next() {
            Some(a) if a.starts_with("n=") => {}
            Some(a) if a.starts_with("m=") => {
                return Err(ScramError::Malformed(
                    "mandatory extensions are not supported",
                ));
            }
            _ => return Err(ScramError::Malformed("no user attribute")),
        }
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b)))
            .ok_or(ScramError::Malformed("no client nonce"))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.salt),
            self.iterations
        );
        let exchange = Exchange {
            known,
            stored_key: self.stored_key,
            server_key: self.server_key,
            gs2_header: gs2_header.to_owned(),
            nonce,
            // The auth message starts with the client's first message without its GS2 header,
            // then the server's first message.
            auth_prefix: format!("{bare},{server_first}"),
        };
        Ok((server_first, exchange))
    }
}

/// An exchange waiting for the client's final message.
pub struct Exchange {
    known: bool,
    stored_key: [u8; 32],
    server_key: [u8; 32],
    gs2_header: String,
    nonce: String,
    auth_prefix: String,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exchange")
    }
}

impl Exchange {
    /// Checks the client's proof; on success the server's final message (`v=<signature>`),
    /// which proves to the client that this server holds its verifier.
    pub fn client_final(&self, client_final: &str) -> Result<String, ScramError> {
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel-binding attribute"))?;
        if binding != B64.encode(&self.gs2_header) {
            return Err(ScramError::Malformed(
                "channel-binding attribute does not match the GS2 header",
            ));
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("nonce mismatch"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("the proof is not 32 bytes of base64"))?;
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let client_signature = hmac_sha256(&self.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !(constant_time_eq(&sha256(&client_key), &self.stored_key) && self.known) {
            return Err(ScramError::Rejected);
        }
        let server_signature = hmac_sha256(&self.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil".
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_verifier() -> Verifier {
        Verifier::with_salt("pencil", &B64.decode(SALT).unwrap(), 4096)
    }

    #[test]
    fn the_rfc_7677_exchange_authenticates_from_the_verifier_alone() {
        // Through PostgreSQL's text form: only StoredKey and ServerKey reach the server.
        let v = Verifier::parse(&rfc_verifier().to_postgres()).unwrap();
        assert_eq!(v, rfc_verifier());
        let (first, exchange) = v.server_first(true, CLIENT_FIRST, SERVER_NONCE).unwrap();
        assert_eq!(first, SERVER_FIRST);
        assert_eq!(exchange.client_final(CLIENT_FINAL).unwrap(), SERVER_FINAL);
    }

    #[test]
    fn a_wrong_proof_an_unknown_user_and_a_tampered_exchange_are_refused() {
        let v = rfc_verifier();
        let (_, exchange) = v.server_first(true, CLIENT_FIRST, SERVER_NONCE).unwrap();
        // Another password's proof.
        let other = CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
        assert_eq!(exchange.client_final(&other), Err(ScramError::Rejected));
        // The right proof for a user that does not exist (a mock verifier) still fails.
        let (_, exchange) = v.server_first(false, CLIENT_FIRST, SERVER_NONCE).unwrap();
        assert_eq!(
            exchange.client_final(CLIENT_FINAL),
            Err(ScramError::Rejected)
        );
        // A replayed final message against a new server nonce.
        let (_, exchange) = v.server_first(true, CLIENT_FIRST, "another").unwrap();
        assert_eq!(
            exchange.client_final(CLIENT_FINAL),
            Err(ScramError::Malformed("nonce mismatch"))
        );
        // Channel binding the server never offered, and an authorization identity.
        assert_eq!(
            v.server_first(true, "p=tls-server-end-point,,n=,r=abc", "x")
                .unwrap_err(),
            ScramError::ChannelBinding
        );
        assert!(v.server_first(true, "n,a=admin,n=,r=abc", "x").is_err());
        // `y,,`: libpq's channel_binding=prefer against a server without -PLUS.
        let (_, exchange) = v.server_first(true, "y,,n=,r=abc", "x").unwrap();
        assert!(matches!(
            exchange.client_final("c=biws,r=abcx,p=AAAA"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn mock_salts_are_stable_per_user_and_differ_between_users() {
        let key = random_bytes::<32>();
        assert_eq!(
            Verifier::mock("a", &key).salt,
            Verifier::mock("a", &key).salt
        );
        assert_ne!(
            Verifier::mock("a", &key).salt,
            Verifier::mock("b", &key).salt
        );
    }

    #[test]
    fn parse_errors_say_what_is_wrong_without_echoing_it() {
        let good = rfc_verifier().to_postgres();
        assert!(
            good.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
            "{good}"
        );
        for (bad, why) in [
            (
                "correct-horse-battery".to_owned(),
                "expected `SCRAM-SHA-256$",
            ),
            (good.replace("$4096:", "$1000:"), "at least 4096"),
            (good.replace("$4096:", "$x:"), "not a number"),
            (format!("{good}AA"), "ServerKey is not 32 bytes"),
        ] {
            let err = Verifier::parse(&bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("horse"), "{err}");
        }
        assert!(!format!("{:?}", rfc_verifier()).contains(SALT));
    }
}
