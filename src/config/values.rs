//! Config values whose type is their validation: a value that deserializes is one the
//! components accept, so no later check can be forgotten and no `expect("validated")` is
//! needed. toml's error names the key and its line; the message says the rule.
//!
//! Counts and sizes that must be at least 1 are `std::num::NonZero*` (serde's message: "expected
//! a nonzero usize"); the types here cover the other ranges. Checks that relate two keys (a TLS
//! certificate needs its key, a body must fit the WAL) stay in `validate.rs`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Why a value was refused.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    // Worded as serde's own ("invalid value: integer `0`, expected a nonzero usize"), which
    // toml follows with "in `the.key`".
    #[error("invalid value: `{value}`, expected {min} to {max}")]
    Between { value: i64, min: i64, max: i64 },
    #[error("invalid value: `{value}`, expected more than 0 and at most {max} seconds")]
    Seconds { value: f64, max: f64 },
    #[error("invalid value: `{value}`, expected at least {min}")]
    AtLeast { value: u64, min: u64 },
    /// The ingest crate's own message (which names the rule).
    #[error(transparent)]
    Cluster(auditlake_ingest::IngestError),
}

/// A zstd level, 1–22.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct ZstdLevel(i32);

impl ZstdLevel {
    pub fn get(self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for ZstdLevel {
    type Error = ValueError;
    fn try_from(value: i64) -> Result<Self, ValueError> {
        match i32::try_from(value) {
            Ok(level @ 1..=22) => Ok(ZstdLevel(level)),
            _ => Err(ValueError::Between {
                value,
                min: 1,
                max: 22,
            }),
        }
    }
}

/// A timeout or interval in seconds: more than 0 and at most an hour. Longer would hold
/// acknowledged data or a stuck connection past what any operator means.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "f64")]
pub struct Seconds(f64);

impl Seconds {
    const MAX: f64 = 3600.0;

    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }
}

impl TryFrom<f64> for Seconds {
    type Error = ValueError;
    fn try_from(value: f64) -> Result<Self, ValueError> {
        // Also refuses NaN (every comparison with it is false).
        if value > 0.0 && value <= Self::MAX {
            Ok(Seconds(value))
        } else {
            Err(ValueError::Seconds {
                value,
                max: Self::MAX,
            })
        }
    }
}

/// A count of at least `MIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct AtLeast<const MIN: u64>(u64);

impl<const MIN: u64> AtLeast<MIN> {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl<const MIN: u64> TryFrom<u64> for AtLeast<MIN> {
    type Error = ValueError;
    fn try_from(value: u64) -> Result<Self, ValueError> {
        if value >= MIN {
            Ok(AtLeast(value))
        } else {
            Err(ValueError::AtLeast { value, min: MIN })
        }
    }
}

/// A cluster name the lake accepts as a partition value (`auditlake_ingest::validate_cluster_name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ClusterName(String);

impl std::ops::Deref for ClusterName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ClusterName {
    type Error = ValueError;
    fn try_from(name: String) -> Result<Self, ValueError> {
        auditlake_ingest::validate_cluster_name(&name).map_err(ValueError::Cluster)?;
        Ok(ClusterName(name))
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for ClusterName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_refuses_what_its_rule_refuses() {
        assert_eq!(ZstdLevel::try_from(22).unwrap().get(), 22);
        for bad in [0, 23, -1, i64::from(i32::MAX) + 1] {
            assert!(ZstdLevel::try_from(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Seconds::try_from(0.25).unwrap().duration(),
            Duration::from_millis(250)
        );
        for bad in [0.0, -1.0, 3600.5, f64::NAN, f64::INFINITY] {
            assert!(Seconds::try_from(bad).is_err(), "{bad}");
        }
        assert!(AtLeast::<2>::try_from(1).is_err());
        assert_eq!(AtLeast::<2>::try_from(2).unwrap().get(), 2);
        assert!(ClusterName::try_from("a/b".to_owned()).is_err());
        assert!(ClusterName::try_from(String::new()).is_err());
        assert_eq!(
            ClusterName::try_from("prod-1".to_owned()).unwrap(),
            "prod-1"
        );
    }
}
