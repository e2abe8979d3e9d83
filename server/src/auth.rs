//! Who may send audit events, and for which cluster.
//!
//! A request names its cluster in the URL (`/audit/<cluster>`), or not (`/audit` → the configured
//! default). A credential may *bind* a cluster: a bearer token from the token file (`token,cluster`)
//! or a client certificate verified against the configured CA (its subject CN is the cluster,
//! unless `cert_binds_cluster = false`). A bound credential writes only its own cluster; the path
//! may repeat it but not contradict it (403). With authentication required, a request with no
//! valid credential gets 401 and nothing is stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use auditlake_ingest::validate_cluster_name;

use crate::error::ServerError;

/// The credential a TLS connection presented (verified by rustls against the client CA).
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    pub peer: Option<std::net::SocketAddr>,
    /// Subject CN of the verified client certificate, if one was presented.
    pub client_cn: Option<String>,
    /// A client certificate was presented and verified (it may lack a CN).
    pub client_verified: bool,
}

#[derive(Debug, Clone)]
struct TokenEntry {
    token: Vec<u8>,
    /// `None` for `*`: the token may write any cluster.
    cluster: Option<Arc<str>>,
}

/// Bearer tokens from a file: one `token,cluster` per line (`*` = any cluster), `#` comments.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    entries: Vec<TokenEntry>,
}

impl TokenTable {
    pub fn load(path: &Path) -> Result<TokenTable, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::ConfigFile {
            path: path.to_path_buf(),
            source,
        })?;
        TokenTable::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<TokenTable, ServerError> {
        let bad = |line: usize, reason: String| ServerError::TokenFile {
            path: PathBuf::from(path),
            line,
            reason,
        };
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((token, cluster)) = line.split_once(',') else {
                return Err(bad(i + 1, "expected `token,cluster`".into()));
            };
            let (token, cluster) = (token.trim(), cluster.trim());
            if token.len() < 16 {
                return Err(bad(i + 1, "token shorter than 16 characters".into()));
            }
            let cluster = match cluster {
                "*" => None,
                c => {
                    validate_cluster_name(c).map_err(|e| bad(i + 1, e.to_string()))?;
                    Some(Arc::from(c))
                }
            };
            entries.push(TokenEntry {
                token: token.as_bytes().to_vec(),
                cluster,
            });
        }
        if entries.is_empty() {
            return Err(bad(0, "no tokens".into()));
        }
        Ok(TokenTable { entries })
    }

    /// The entry whose token equals `presented`, compared in constant time over every entry.
    fn find(&self, presented: &[u8]) -> Option<&TokenEntry> {
        let mut found = None;
        for e in &self.entries {
            if constant_time_eq(&e.token, presented) {
                found = Some(e);
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone)]
pub struct AuthPolicy {
    pub tokens: Option<TokenTable>,
    /// Client certificates are verified against a CA (mTLS configured).
    pub client_certs: bool,
    /// Reject requests without a valid token or client certificate.
    pub require: bool,
    /// A client certificate's CN names the cluster it may write.
    pub cert_binds_cluster: bool,
    pub default_cluster: Arc<str>,
}

/// Why a request was refused: 401 (no or bad credential), 403 (credential not valid for the
/// cluster), 400 (the cluster in the path is not a valid name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Unauthenticated(String),
    Forbidden(String),
    BadCluster(String),
}

impl AuthPolicy {
    /// The cluster this request writes, or why it may not.
    pub fn resolve(
        &self,
        path_cluster: Option<&str>,
        conn: &ConnInfo,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<str>, AuthError> {
        self.resolve_binding(path_cluster, conn, authorization)
            .map(|(cluster, _)| cluster)
    }

    /// [`AuthPolicy::resolve`], and whether the cluster is *bound* — by the credential or named
    /// in the path — rather than the default. A bound cluster is authoritative over any cluster
    /// name inside the payload (a cloud envelope's): an envelope naming another is refused.
    pub fn resolve_binding(
        &self,
        path_cluster: Option<&str>,
        conn: &ConnInfo,
        authorization: Option<&[u8]>,
    ) -> Result<(Arc<str>, bool), AuthError> {
        let mut authenticated = false;
        let mut bound: Option<Arc<str>> = None;
        if let (Some(tokens), Some(header)) = (&self.tokens, authorization) {
            let token = header
                .strip_prefix(b"Bearer ")
                .or_else(|| header.strip_prefix(b"bearer "))
                .ok_or_else(|| {
                    AuthError::Unauthenticated("Authorization is not a Bearer token".into())
                })?;
            let entry = tokens
                .find(token.trim_ascii())
                .ok_or_else(|| AuthError::Unauthenticated("invalid bearer token".into()))?;
            authenticated = true;
            bound = entry.cluster.clone();
        } else if self.client_certs && conn.client_verified {
            authenticated = true;
            if self.cert_binds_cluster {
                let cn = conn.client_cn.as_deref().ok_or_else(|| {
                    AuthError::Forbidden(
                        "client certificate has no subject CN to name its cluster".into(),
                    )
                })?;
                validate_cluster_name(cn).map_err(|_| {
                    AuthError::Forbidden(format!(
                        "client certificate CN {cn:?} is not a valid cluster name"
                    ))
                })?;
                bound = Some(Arc::from(cn));
            }
        }
        if self.require && !authenticated {
            return Err(AuthError::Unauthenticated(
                match (&self.tokens, self.client_certs) {
                    (Some(_), true) => "a bearer token or a client certificate is required",
                    (Some(_), false) => "a bearer token is required",
                    _ => "a client certificate is required",
                }
                .into(),
            ));
        }
        if let Some(p) = path_cluster {
            validate_cluster_name(p).map_err(|e| AuthError::BadCluster(e.to_string()))?;
        }
        match (bound, path_cluster) {
            (Some(b), Some(p)) if &*b != p => Err(AuthError::Forbidden(format!(
                "this credential may write cluster {b:?}, not {p:?}"
            ))),
            (Some(b), _) => Ok((b, true)),
            (None, Some(p)) => Ok((Arc::from(p), true)),
            (None, None) => Ok((self.default_cluster.clone(), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(tokens: &str, certs: bool, require: bool) -> AuthPolicy {
        AuthPolicy {
            tokens: (!tokens.is_empty())
                .then(|| TokenTable::parse(tokens, Path::new("tokens.csv")).unwrap()),
            client_certs: certs,
            require,
            cert_binds_cluster: true,
            default_cluster: Arc::from("default"),
        }
    }

    const TOKENS: &str = "# token,cluster\nprod-token-0123456789,prod\nadmin-token-0123456789,*\n";

    #[test]
    fn without_auth_the_path_or_the_default_names_the_cluster() {
        let p = policy("", false, false);
        let none = ConnInfo::default();
        assert_eq!(&*p.resolve(Some("eu-1"), &none, None).unwrap(), "eu-1");
        assert_eq!(&*p.resolve(None, &none, None).unwrap(), "default");
        assert!(matches!(
            p.resolve(Some("a/b"), &none, None),
            Err(AuthError::BadCluster(_))
        ));
    }

    #[test]
    fn tokens_authenticate_and_bind_their_cluster() {
        let p = policy(TOKENS, false, true);
        let none = ConnInfo::default();
        let ok = |h: &str, path| p.resolve(path, &none, Some(h.as_bytes()));
        assert_eq!(&*ok("Bearer prod-token-0123456789", None).unwrap(), "prod");
        assert_eq!(
            &*ok("Bearer prod-token-0123456789", Some("prod")).unwrap(),
            "prod"
        );
        assert!(matches!(
            ok("Bearer prod-token-0123456789", Some("dev")),
            Err(AuthError::Forbidden(_))
        ));
        assert_eq!(
            &*ok("Bearer admin-token-0123456789", Some("dev")).unwrap(),
            "dev"
        );
        assert!(matches!(
            ok("Bearer wrong-token-0123456789", None),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            ok("Basic abc", None),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            p.resolve(None, &none, None),
            Err(AuthError::Unauthenticated(_))
        ));
    }

    #[test]
    fn a_verified_client_certificate_binds_its_cn() {
        let p = policy("", true, true);
        let cert = ConnInfo {
            peer: None,
            client_cn: Some("prod".into()),
            client_verified: true,
        };
        assert_eq!(&*p.resolve(None, &cert, None).unwrap(), "prod");
        assert!(matches!(
            p.resolve(Some("dev"), &cert, None),
            Err(AuthError::Forbidden(_))
        ));
        let no_cn = ConnInfo {
            client_cn: None,
            ..cert.clone()
        };
        assert!(matches!(
            p.resolve(None, &no_cn, None),
            Err(AuthError::Forbidden(_))
        ));
        assert!(matches!(
            p.resolve(None, &ConnInfo::default(), None),
            Err(AuthError::Unauthenticated(_))
        ));
    }

    #[test]
    fn token_file_errors_name_the_line() {
        let err = TokenTable::parse("ok-token-0123456789,prod\nshort,prod\n", Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.csv") && err.contains("line 2") && err.contains("shorter"),
            "{err}"
        );
        let err = TokenTable::parse("ok-token-0123456789,bad/name\n", Path::new("t.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && err.contains("cluster"), "{err}");
    }
}
