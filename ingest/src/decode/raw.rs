//! Borrowed serde views of the `audit.k8s.io` JSON: they point into the input buffer wherever a
//! string has no escapes, so decoding an event allocates almost nothing.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A string borrowed from the input when it has no escapes, owned otherwise.
/// (serde's own `Cow<str>` always allocates inside `Option`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'a> Str<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object of string → T kept in input order, without hashing.
#[derive(Debug)]
pub struct PairsRef<'a, T>(pub Vec<(Str<'a>, T)>);

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for PairsRef<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(std::marker::PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = PairsRef<'a, T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(4));
                while let Some((k, v)) = m.next_entry::<Str<'a>, T>()? {
                    out.push((k, v));
                }
                Ok(PairsRef(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// `null` or a list of strings; tolerates `null` elements by skipping them.
#[derive(Debug, Default)]
pub struct StrList<'a>(pub Vec<Str<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for StrList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = StrList<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut s: S) -> Result<Self::Value, S::Error> {
                let mut out = Vec::with_capacity(s.size_hint().unwrap_or(2));
                while let Some(v) = s.next_element::<Option<Str<'a>>>()? {
                    out.extend(v);
                }
                Ok(StrList(out))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// One line or message before we know whether it is an `Event` or an `EventList`: the union of
/// both shapes' fields. Unknown fields are skipped (forward compatibility with new API fields).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEvent<'a> {
    #[serde(borrow)]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub api_version: Option<Str<'a>>,
    #[serde(borrow)]
    pub level: Option<Str<'a>>,
    #[serde(rename = "auditID", borrow)]
    pub audit_id: Option<Str<'a>>,
    #[serde(borrow)]
    pub stage: Option<Str<'a>>,
    #[serde(rename = "requestURI", borrow)]
    pub request_uri: Option<Str<'a>>,
    #[serde(borrow)]
    pub verb: Option<Str<'a>>,
    #[serde(borrow)]
    pub user: Option<UserInfo<'a>>,
    #[serde(borrow)]
    pub impersonated_user: Option<UserInfo<'a>>,
    #[serde(rename = "sourceIPs", borrow)]
    pub source_ips: Option<StrList<'a>>,
    #[serde(borrow)]
    pub user_agent: Option<Str<'a>>,
    #[serde(borrow)]
    pub object_ref: Option<ObjectRef<'a>>,
    #[serde(borrow)]
    pub response_status: Option<Status<'a>>,
    #[serde(borrow)]
    pub request_object: Option<&'a RawValue>,
    #[serde(borrow)]
    pub response_object: Option<&'a RawValue>,
    #[serde(borrow)]
    pub request_received_timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    pub stage_timestamp: Option<Str<'a>>,
    /// `v1beta1` only: deprecated event time, used when `stageTimestamp` is missing.
    #[serde(borrow)]
    pub timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    pub annotations: Option<PairsRef<'a, Option<Str<'a>>>>,
    /// `EventList` only.
    #[serde(borrow)]
    pub items: Option<Vec<&'a RawValue>>,
    /// AKS diagnostic settings export: `records[].properties.log` holds an Event as a string.
    #[serde(borrow)]
    pub records: Option<Vec<&'a RawValue>>,
    /// AKS diagnostic settings export to a storage account: one record per line,
    /// `{"category", "resourceId", "properties": {"log": …}}`.
    #[serde(borrow)]
    pub category: Option<Str<'a>>,
    #[serde(borrow)]
    pub properties: Option<&'a RawValue>,
    /// EKS: a CloudWatch Logs subscription payload; `logEvents[].message` holds an Event.
    #[serde(borrow)]
    pub log_events: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    pub message_type: Option<Str<'a>>,
    /// EKS subscription payloads: `/aws/eks/<cluster>/cluster`.
    #[serde(borrow)]
    pub log_group: Option<Str<'a>>,
    /// GKE: a Cloud Logging `LogEntry` whose `protoPayload` is a `google.cloud.audit.AuditLog`.
    #[serde(borrow)]
    pub proto_payload: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(borrow)]
    pub username: Option<Str<'a>>,
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow)]
    pub groups: Option<StrList<'a>>,
    #[serde(borrow)]
    pub extra: Option<PairsRef<'a, Option<StrList<'a>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    #[serde(borrow)]
    pub resource: Option<Str<'a>>,
    #[serde(borrow)]
    pub namespace: Option<Str<'a>>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub uid: Option<Str<'a>>,
    #[serde(borrow)]
    pub api_group: Option<Str<'a>>,
    #[serde(borrow)]
    pub api_version: Option<Str<'a>>,
    #[serde(borrow)]
    pub resource_version: Option<Str<'a>>,
    #[serde(borrow)]
    pub subresource: Option<Str<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Status<'a> {
    pub code: Option<i32>,
    #[serde(borrow)]
    pub status: Option<Str<'a>>,
    #[serde(borrow)]
    pub reason: Option<Str<'a>>,
    #[serde(borrow)]
    pub message: Option<Str<'a>>,
}
