//! Secret-valued config keys: a plain string, `{ env = "VAR" }` or `{ file = "/path" }` (a
//! Kubernetes Secret mounted as a file or exposed as an environment variable), resolved once
//! when the config is loaded. Nothing here ever formats the value: `Debug` and `Display` say
//! where it comes from, errors name the config key and the variable or path.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq)]
enum Origin {
    Inline,
    Env(String),
    File(PathBuf),
}

#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    origin: Origin,
    /// Set by `resolve` (inline values at once).
    value: Option<String>,
}

impl Secret {
    /// The value, for the component that uses it. Config loading resolves every secret before
    /// anything can read one.
    pub fn expose(&self) -> &str {
        self.value
            .as_deref()
            .expect("secrets are resolved when the config is loaded")
    }

    /// Written inline in the config file (rather than read from the environment or a file).
    pub fn is_inline(&self) -> bool {
        self.origin == Origin::Inline
    }

    /// Reads an `env`/`file` secret; `key` (`sinks[0].headers.Authorization`) and `base_dir`
    /// (a relative path's directory: the config file's) are for the lookup and its errors.
    pub fn resolve(&mut self, key: &str, base_dir: &Path) -> anyhow::Result<()> {
        let value = match &self.origin {
            Origin::Inline => return Ok(()),
            Origin::Env(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    bail!("{key}: environment variable {var} is not set")
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    bail!("{key}: environment variable {var} is not valid UTF-8")
                }
            },
            Origin::File(path) => {
                let path = base_dir.join(path);
                let bytes = std::fs::read(&path).map_err(|e| {
                    // The OS error only (never anything read): "No such file or directory".
                    anyhow::anyhow!("{key}: reading secret file {}: {e}", path.display())
                })?;
                let Ok(mut text) = String::from_utf8(bytes) else {
                    bail!("{key}: secret file {} is not valid UTF-8", path.display());
                };
                // One trailing newline, as `echo` and editors leave it; a value that really
                // ends in a newline can still be written with two.
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
        };
        if value.is_empty() {
            // An empty mount or variable is a deployment mistake, not a credential.
            bail!("{key}: {} is empty", self.origin_text());
        }
        self.value = Some(value);
        Ok(())
    }

    fn origin_text(&self) -> String {
        match &self.origin {
            Origin::Inline => "inline value".into(),
            Origin::Env(var) => format!("environment variable {var}"),
            Origin::File(path) => format!("file {}", path.display()),
        }
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret {
            origin: Origin::Inline,
            value: Some(value.to_owned()),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.origin_text())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret: {}>", self.origin_text())
    }
}

const EXPECTED: &str = "a string, { env = \"VAR\" } or { file = \"/path\" }";

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct SecretVisitor;

        /// Refuses a value of the wrong type without serde's default message, which would
        /// quote it (`invalid type: integer 12345`).
        fn wrong<E: de::Error>(what: &str) -> E {
            E::custom(format!("expected {EXPECTED}, found {what}"))
        }

        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::from(v))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(wrong("a boolean"))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(wrong("a number (quote it)"))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(wrong("a number (quote it)"))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(wrong("a number (quote it)"))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
                Err(wrong("an array"))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
                let mut origin = None;
                while let Some(k) = map.next_key::<String>()? {
                    let next = match k.as_str() {
                        "env" => Origin::Env(map.next_value()?),
                        "file" => Origin::File(map.next_value()?),
                        other => {
                            return Err(<A::Error as de::Error>::custom(format!(
                                "unknown key `{other}`: expected {EXPECTED}"
                            )));
                        }
                    };
                    if origin.replace(next).is_some() {
                        return Err(<A::Error as de::Error>::custom(
                            "give one of `env` and `file`, not both",
                        ));
                    }
                }
                match origin {
                    Some(Origin::Env(v)) if v.is_empty() => {
                        Err(<A::Error as de::Error>::custom("`env` names no variable"))
                    }
                    Some(origin) => Ok(Secret {
                        origin,
                        value: None,
                    }),
                    None => Err(<A::Error as de::Error>::custom(format!(
                        "expected {EXPECTED}"
                    ))),
                }
            }
        }

        d.deserialize_any(SecretVisitor)
    }
}

/// Whether a key's *name* says it holds a credential (`sasl.password`, `ssl.key.pem`,
/// `aws_secret_access_key`, `azure_storage_account_key`, an `Authorization` or `X-Api-Key`
/// header), so an inline value there earns a warning. Names of paths (`ssl.key.location`,
/// `google_application_credentials`) and of identifiers (`aws_access_key_id`) do not.
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|w| n.contains(w))
        || n.ends_with("key")
        || (n.contains("key") && n.ends_with(".pem"))
}

/// Whether a URL carries a credential in its user-info or its query (`?token=…`); a secret in
/// a path cannot be told from an ordinary path.
pub fn url_looks_secret(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@') || rest.contains('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Holder {
        s: Secret,
    }

    fn parse(text: &str) -> Result<Secret, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.s)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn three_forms_resolve_and_never_format_the_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "T0KEN-FROM-FILE\n").unwrap();
        std::fs::write(dir.path().join("two"), "line\n\n").unwrap();
        // SAFETY: a variable only this test reads.
        unsafe { std::env::set_var("AUDITLAKE_TEST_SECRET_3F", "T0KEN-FROM-ENV") };
        for (text, want, shown) in [
            ("s = 'T0KEN-INLINE'", "T0KEN-INLINE", "inline value"),
            (
                "s = { env = 'AUDITLAKE_TEST_SECRET_3F' }",
                "T0KEN-FROM-ENV",
                "environment variable AUDITLAKE_TEST_SECRET_3F",
            ),
            ("s = { file = 'token' }", "T0KEN-FROM-FILE", "file token"),
            ("s = { file = 'two' }", "line\n", "file two"),
        ] {
            let mut s = parse(text).unwrap();
            s.resolve("k", dir.path()).unwrap();
            assert_eq!(s.expose(), want, "{text}");
            for formatted in [format!("{s:?}"), format!("{s}"), format!("{s:#?}")] {
                assert!(!formatted.contains("T0KEN"), "{formatted}");
                assert!(formatted.contains(shown), "{formatted}");
            }
        }
    }

    #[test]
    fn errors_name_the_key_and_the_source_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| {
            let mut s = parse(text).unwrap();
            format!(
                "{:#}",
                s.resolve("sinks[0].headers.Authorization", dir.path())
                    .unwrap_err()
            )
        };
        let e = err("s = { env = 'AUDITLAKE_TEST_UNSET_9Q' }");
        assert!(
            e.contains("sinks[0].headers.Authorization") && e.contains("AUDITLAKE_TEST_UNSET_9Q"),
            "{e}"
        );
        let e = err("s = { file = 'missing' }");
        assert!(
            e.contains("sinks[0].headers.Authorization")
                && e.contains(&dir.path().join("missing").display().to_string()),
            "{e}"
        );
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        assert!(err("s = { file = 'empty' }").contains("is empty"));
        for (bad, why) in [
            ("s = 123456789", "found a number"),
            ("s = { env = 'A', file = 'b' }", "not both"),
            ("s = { vault = 'x' }", "unknown key `vault`"),
            ("s = {}", "expected a string"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("123456789"), "{e}");
        }
    }

    #[test]
    fn secret_looking_names() {
        for yes in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "aws_secret_access_key",
            "aws_session_token",
            "azure_storage_account_key",
            "google_service_account_key",
            "Authorization",
            "X-Api-Key",
        ] {
            assert!(looks_secret(yes), "{yes}");
        }
        for no in [
            "ssl.key.location",
            "security.protocol",
            "aws_access_key_id",
            "aws_region",
            "google_application_credentials",
            "X-Scope-OrgID",
        ] {
            assert!(!looks_secret(no), "{no}");
        }
        assert!(url_looks_secret("https://u:p@host/x"));
        assert!(url_looks_secret("https://host/hook?token=x"));
        assert!(!url_looks_secret("http://alertmanager:9093"));
    }
}
