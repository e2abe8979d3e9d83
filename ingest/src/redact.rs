//! Secret redaction of audit bodies before they are stored. Base64 is not encryption: a Secret's
//! `data` in an audit body *is* the secret, and a service-account token is a bearer credential.
//!
//! Redaction goes by the shape of the body, not only by the request's resource:
//!
//! - **`secrets` requests** ([`BodyScope::Secret`]): the body is a Secret, a list of them (`items`,
//!   also `PartialObjectMetadataList`), a `Table` (`rows[].object`, metadata-only or whole), a
//!   watch event (`object`), a merge / strategic-merge / apply patch (Secret-shaped), or a JSON
//!   patch (ops whose path lands in `data`, `stringData`, the annotations, `metadata`, the whole
//!   document, or any field a Secret does not have). `data` / `stringData` values and annotations
//!   that carry the Secret's content (the last-applied annotation, any annotation holding a
//!   `data`/`stringData` document) become `"<redacted>"`; keys stay, so forensics can still see
//!   *which* keys were read or changed.
//! - **Token requests and reviews** ([`BodyScope::Token`]: `serviceaccounts/token`,
//!   `tokenrequests`, `tokenreviews`): every `token` field (`status.token`, `spec.token`).
//! - **Any body** ([`BodyScope::Other`] included): an object of `kind` `Secret` / `SecretList`
//!   anywhere (an applied `List`, a watch event, an admission object, …), a `TokenRequest` /
//!   `TokenReview` anywhere, and JSON documents embedded in strings (last-applied annotations of
//!   any object) that hold one of those.
//!
//! A body the parser cannot take faithfully — nested deeper than serde_json's recursion limit, or
//! with a duplicate key (the parser keeps the last one, so redacting the parsed value would let
//! the text of the first through) — is never stored as sent: it goes through the text masker
//! ([`crate::mask`]) and is marked ([`Redaction::Masked`]).

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// What a redacted value is replaced by.
pub const REDACTED: &str = "<redacted>";
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What a body is, by the request it belongs to (`objectRef.resource` / `subresource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyScope {
    /// A `secrets` request.
    Secret,
    /// `serviceaccounts/token`, `tokenrequests`, `tokenreviews`.
    Token,
    /// Anything else: only embedded Secrets and token objects are redacted.
    Other,
}

impl BodyScope {
    pub fn of(resource: Option<&str>, subresource: Option<&str>) -> Self {
        match (resource, subresource) {
            (Some("secrets"), _) => BodyScope::Secret,
            (Some("serviceaccounts"), Some("token"))
            | (Some("tokenrequests" | "tokenreviews"), _) => BodyScope::Token,
            _ => BodyScope::Other,
        }
    }
}

/// Why a body was masked as text instead of redacted by shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskReason {
    /// Nested deeper than serde_json's recursion limit (128).
    TooDeep,
    /// An object has the same key twice.
    DuplicateKey,
    /// Anything else the parser refused (e.g. a number out of range).
    Unparsable,
}

impl MaskReason {
    pub fn as_str(self) -> &'static str {
        match self {
            MaskReason::TooDeep => "nested deeper than the JSON parser's limit",
            MaskReason::DuplicateKey => "duplicate keys",
            MaskReason::Unparsable => "not parsable as JSON",
        }
    }
}

/// The outcome of [`redact_body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redaction {
    /// Nothing secret: store the body as sent.
    Unchanged,
    /// The body re-serialized with its secret values replaced.
    Redacted(String),
    /// The body could not be parsed faithfully: this is its text after masking (unchanged when
    /// the masker found nothing); the row must say so.
    Masked(String, MaskReason),
}

/// Redacts secret values and tokens in an audit request/response body (see the module docs).
pub fn redact_body(body: &str, scope: BodyScope) -> Redaction {
    if scope == BodyScope::Other && !may_embed_secret(body) {
        return Redaction::Unchanged;
    }
    match parse_strict(body) {
        Ok(mut value) => {
            if redact_value(&mut value, scope) {
                Redaction::Redacted(value.to_string())
            } else {
                Redaction::Unchanged
            }
        }
        Err(reason) => {
            let text = match crate::mask::mask_text(body.as_bytes()) {
                // The masker changes only bytes inside strings it replaces by ASCII, so valid
                // UTF-8 stays valid; the lossy conversion is a no-op kept for safety.
                Some(masked) => String::from_utf8_lossy(&masked).into_owned(),
                None => body.to_owned(),
            };
            Redaction::Masked(text, reason)
        }
    }
}

/// Cheap pre-check for bodies of other resources: an embedded Secret or token object names its
/// kind (`Secret`, `SecretList`, `TokenRequest`, `TokenReview`), also inside an escaped
/// last-applied annotation. Most bodies (pods, configmaps, …) skip the parse.
fn may_embed_secret(body: &str) -> bool {
    let b = body.as_bytes();
    memchr::memmem::find(b, b"Secret").is_some() || memchr::memmem::find(b, b"TokenRe").is_some()
}

/// Parses JSON into a Value, refusing duplicate keys (serde_json would keep the last silently).
fn parse_strict(text: &str) -> Result<Value, MaskReason> {
    match serde_json::from_str::<Strict>(text) {
        Ok(Strict(v)) => Ok(v),
        Err(e) => {
            let msg = e.to_string();
            Err(if msg.contains(DUPLICATE) {
                MaskReason::DuplicateKey
            } else if msg.contains("recursion limit") {
                MaskReason::TooDeep
            } else {
                MaskReason::Unparsable
            })
        }
    }
}

const DUPLICATE: &str = "auditlake: duplicate key";

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(out))
    }
}

fn redacted() -> Value {
    Value::String(REDACTED.into())
}

/// Redacts in place; true when anything changed.
fn redact_value(v: &mut Value, scope: BodyScope) -> bool {
    let mut changed = match scope {
        BodyScope::Secret => match v {
            Value::Object(obj) => redact_secret_request_object(obj),
            Value::Array(ops) => redact_secret_patch_ops(ops),
            // A Secret body is never a bare string; one that is (an encoded patch) is not
            // looked into.
            Value::String(_) => redact_whole(v),
            _ => false,
        },
        BodyScope::Token => match v {
            Value::String(_) => redact_whole(v),
            _ => redact_token_fields(v),
        },
        BodyScope::Other => false,
    };
    changed |= redact_embedded(v);
    changed
}

/// The root of a `secrets` request or response body.
fn redact_secret_request_object(obj: &mut Map<String, Value>) -> bool {
    // A Secret, or a merge / strategic-merge / apply patch of one.
    let mut changed = redact_secret_object(obj);
    // SecretList, List, PartialObjectMetadataList.
    if let Some(Value::Array(items)) = obj.get_mut("items") {
        for item in items.iter_mut() {
            if let Value::Object(item) = item {
                changed |= redact_secret_object(item);
            }
        }
    }
    // Table: a row's object is the Secret (includeObject=Object) or its metadata
    // (PartialObjectMetadata, whose annotations still hold last-applied).
    if let Some(Value::Array(rows)) = obj.get_mut("rows") {
        for row in rows.iter_mut() {
            if let Some(Value::Object(o)) = row.get_mut("object") {
                changed |= redact_secret_object(o);
            }
        }
    }
    // Watch event.
    if let Some(Value::Object(o)) = obj.get_mut("object") {
        changed |= redact_secret_object(o);
    }
    changed
}

/// A Secret (or a Secret-shaped patch): `data`, `stringData`, content-bearing annotations.
fn redact_secret_object(obj: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    for field in ["data", "stringData"] {
        if let Some(v) = obj.get_mut(field) {
            changed |= redact_secret_values(v);
        }
    }
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        changed |= redact_secret_metadata(meta);
    }
    changed
}

/// The values of a `data` / `stringData` map (keys kept), or the whole value if not a map.
fn redact_secret_values(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(values) => {
            let mut changed = false;
            for v in values.values_mut() {
                if !v.is_null() && *v != redacted() {
                    *v = redacted();
                    changed = true;
                }
            }
            changed
        }
        v => {
            let changed = *v != redacted();
            *v = redacted();
            changed
        }
    }
}

fn redact_secret_metadata(meta: &mut Map<String, Value>) -> bool {
    match meta.get_mut("annotations") {
        Some(Value::Object(annotations)) => redact_secret_annotations(annotations),
        _ => false,
    }
}

fn redact_secret_annotations(annotations: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    for (k, v) in annotations.iter_mut() {
        if annotation_carries_secret(k, v) {
            *v = redacted();
            changed = true;
        }
    }
    changed
}

/// On a Secret: the last-applied annotation, and any annotation holding a document with `data`
/// or `stringData` (kapp's `original`, other tools' copies of the manifest).
fn annotation_carries_secret(key: &str, v: &Value) -> bool {
    let Value::String(s) = v else {
        return !v.is_null();
    };
    if s == REDACTED {
        return false;
    }
    key == LAST_APPLIED
        || ["\"data\"", "\"stringData\"", "data:", "stringData:"]
            .iter()
            .any(|p| s.contains(p))
}

/// JSON patch ops on a Secret: each op's `value` is redacted by where its path lands.
fn redact_secret_patch_ops(ops: &mut [Value]) -> bool {
    let mut changed = false;
    for op in ops {
        let Value::Object(op) = op else { continue };
        if !op.contains_key("op") {
            // Not a JSON patch op: an array of Secret-shaped objects at worst.
            changed |= redact_secret_object(op);
            continue;
        }
        let path: Vec<String> = match op.get("path").and_then(Value::as_str) {
            Some(p) => pointer_tokens(p),
            None => Vec::new(),
        };
        if let Some(v) = op.get_mut("value") {
            changed |= redact_secret_at(&path, v);
        }
    }
    changed
}

/// `/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration` → tokens.
fn pointer_tokens(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Redacts `v`, the value placed at `path` inside a Secret.
fn redact_secret_at(path: &[String], v: &mut Value) -> bool {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        // The whole document replaced: each field as if patched on its own, so a field a
        // Secret does not have is redacted too.
        [] => match v {
            Value::Object(obj) => obj.iter_mut().fold(false, |c, (k, v)| {
                redact_secret_at(std::slice::from_ref(k), v) | c
            }),
            v => redact_whole(v),
        },
        ["data" | "stringData"] => redact_secret_values(v),
        ["data" | "stringData", ..] => redact_whole(v),
        ["metadata"] => match v {
            Value::Object(meta) => redact_secret_metadata(meta),
            _ => false,
        },
        ["metadata", "annotations"] => match v {
            Value::Object(a) => redact_secret_annotations(a),
            _ => false,
        },
        ["metadata", "annotations", key] => {
            if annotation_carries_secret(key, v) {
                *v = redacted();
                true
            } else {
                false
            }
        }
        ["metadata", ..] | ["kind" | "apiVersion" | "type" | "immutable"] => false,
        // A field a Secret does not have (`/Data/x`, a typo): the API server refuses it, but the
        // audit body still holds whatever was sent.
        _ => redact_whole(v),
    }
}

fn redact_whole(v: &mut Value) -> bool {
    if v.is_null() || *v == redacted() {
        return false;
    }
    *v = redacted();
    true
}

/// Every `token` field under `v` (TokenRequest `status.token`, TokenReview `spec.token`).
fn redact_token_fields(v: &mut Value) -> bool {
    match v {
        Value::Object(obj) => redact_token_fields_of(obj),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |c, v| redact_token_fields(v) | c),
        _ => false,
    }
}

fn redact_token_fields_of(obj: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    for (k, v) in obj.iter_mut() {
        if k == "token" {
            changed |= redact_whole(v);
        } else {
            changed |= redact_token_fields(v);
        }
    }
    changed
}

/// Secrets and token objects by `kind` anywhere under `v`, and JSON documents embedded in
/// strings that hold one.
fn redact_embedded(v: &mut Value) -> bool {
    match v {
        Value::Object(obj) => {
            // A 'static copy of the kind: the arms below borrow `obj` mutably.
            let kind: &'static str = match obj.get("kind").and_then(Value::as_str) {
                Some("Secret") => "Secret",
                Some("SecretList") => "SecretList",
                Some("TokenRequest" | "TokenReview") => "Token",
                _ => "",
            };
            let mut changed = match kind {
                "Secret" => redact_secret_object(obj),
                "SecretList" => match obj.get_mut("items") {
                    Some(Value::Array(items)) => items.iter_mut().fold(false, |c, item| {
                        c | match item {
                            Value::Object(item) => redact_secret_object(item),
                            _ => false,
                        }
                    }),
                    _ => false,
                },
                "Token" => redact_token_fields_of(obj),
                _ => false,
            };
            for v in obj.values_mut() {
                changed |= redact_embedded(v);
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |c, v| redact_embedded(v) | c),
        Value::String(s) => redact_embedded_document(s),
        _ => false,
    }
}

/// A string holding a JSON document (a last-applied annotation) that names a Secret or token
/// object: redacted inside, re-serialized; when it cannot be parsed, replaced whole.
fn redact_embedded_document(s: &mut String) -> bool {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) || !may_embed_secret(s) {
        return false;
    }
    match parse_strict(s) {
        Ok(mut inner) => {
            if redact_value(&mut inner, BodyScope::Other) {
                *s = inner.to_string();
                true
            } else {
                false
            }
        }
        Err(_) => {
            *s = REDACTED.into();
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &str = "S3CR3T-MARK";

    /// A body of a `secrets` request as stored; None when stored as sent.
    fn redact_secret_body(body: &str) -> Option<String> {
        match redact_body(body, BodyScope::Secret) {
            Redaction::Unchanged => None,
            Redaction::Redacted(s) | Redaction::Masked(s, _) => Some(s),
        }
    }

    fn redact(body: &str, scope: BodyScope) -> String {
        match redact_body(body, scope) {
            Redaction::Unchanged => body.to_owned(),
            Redaction::Redacted(s) | Redaction::Masked(s, _) => s,
        }
    }

    fn assert_clean(body: &str, scope: BodyScope) -> String {
        let out = redact(body, scope);
        assert!(!out.contains(MARK), "{scope:?}: {body}\n → {out}");
        out
    }

    #[test]
    fn secret_values_and_last_applied_are_redacted_keys_kept() {
        let body = r#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db-creds","annotations":{
            "kubectl.kubernetes.io/last-applied-configuration":"{\"data\":{\"password\":\"aHVudGVyMg==\"}}","team":"db"}},
            "data":{"password":"aHVudGVyMg==","user":"YWRtaW4="},"stringData":{"token":"plain"},"type":"Opaque"}"#;
        let out = redact_secret_body(body).unwrap();
        assert!(
            !out.contains("aHVudGVyMg==") && !out.contains("YWRtaW4=") && !out.contains("plain"),
            "{out}"
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["data"]["password"], REDACTED);
        assert_eq!(v["data"]["user"], REDACTED);
        assert_eq!(v["stringData"]["token"], REDACTED);
        assert_eq!(v["metadata"]["annotations"]["team"], "db");
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn secret_list_items_are_redacted() {
        let body = r#"{"kind":"SecretList","items":[{"metadata":{"name":"a"},"data":{"k":"c2VjcmV0"}},{"metadata":{"name":"b"}}]}"#;
        let out = redact_secret_body(body).unwrap();
        assert!(!out.contains("c2VjcmV0"));
        assert!(out.contains("\"k\":\"<redacted>\""));
    }

    #[test]
    fn json_patch_values_are_redacted() {
        let body = r#"[{"op":"replace","path":"/data/password","value":"bmV3"},{"op":"add","path":"/metadata/labels/x","value":"keep"}]"#;
        let out = redact_secret_body(body).unwrap();
        assert!(!out.contains("bmV3") && out.contains("keep"));
    }

    #[test]
    fn nothing_to_redact_keeps_the_body() {
        assert_eq!(redact_secret_body(r#"{"kind":"Status","code":403}"#), None);
        assert_eq!(
            redact_body(
                r#"{"kind":"Pod","spec":{"imagePullSecrets":[{"name":"r"}]}}"#,
                BodyScope::Other
            ),
            Redaction::Unchanged
        );
        assert_eq!(
            redact_body(r#"{"kind":"ConfigMap","data":{"a":"b"}}"#, BodyScope::Other),
            Redaction::Unchanged
        );
    }

    #[test]
    fn service_account_token_responses_and_token_reviews() {
        let scope = BodyScope::of(Some("serviceaccounts"), Some("token"));
        assert_eq!(scope, BodyScope::Token);
        let resp = format!(
            r#"{{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{{"name":"default"}},"spec":{{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":3600}},"status":{{"token":"eyJhbGciOi.{MARK}","expirationTimestamp":"2026-11-22T06:00:00Z"}}}}"#
        );
        let out = assert_clean(&resp, scope);
        assert!(out.contains("https://kubernetes.default.svc"), "{out}");
        let review = format!(
            r#"{{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{{"token":"{MARK}"}},"status":{{"authenticated":true,"user":{{"username":"system:serviceaccount:a:b"}}}}}}"#
        );
        assert_clean(&review, BodyScope::of(Some("tokenreviews"), None));
        assert_clean(&review, BodyScope::of(Some("tokenrequests"), None));
        // By kind, whatever the resource says.
        assert_clean(&resp, BodyScope::Other);
        assert_clean(&review, BodyScope::Other);
    }

    #[test]
    fn secret_patches_of_every_type() {
        let la =
            serde_json::json!({"apiVersion":"v1","kind":"Secret","data":{"k": MARK}}).to_string();
        let la_esc = serde_json::to_string(&la).unwrap();
        let patches = [
            // JSON patch
            format!(r#"[{{"op":"add","path":"/data","value":{{"k":"{MARK}"}}}}]"#),
            format!(r#"[{{"op":"replace","path":"/data/k","value":"{MARK}"}}]"#),
            format!(r#"[{{"op":"test","path":"/stringData/k","value":"{MARK}"}}]"#),
            format!(
                r#"[{{"op":"add","path":"/metadata/annotations","value":{{"{LAST_APPLIED}":{la_esc}}}}}]"#
            ),
            format!(
                r#"[{{"op":"add","path":"/metadata","value":{{"annotations":{{"{LAST_APPLIED}":{la_esc}}}}}}}]"#
            ),
            format!(
                r#"[{{"op":"add","path":"/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration","value":{la_esc}}}]"#
            ),
            format!(r#"[{{"op":"replace","path":"","value":{{"data":{{"k":"{MARK}"}}}}}}]"#),
            format!(r#"[{{"op":"add","path":"/Data/k","value":"{MARK}"}}]"#),
            // merge / strategic merge / apply
            format!(r#"{{"data":{{"k":"{MARK}"}}}}"#),
            format!(r#"{{"stringData":{{"k":"{MARK}"}},"$setElementOrder/x":[]}}"#),
            format!(r#"{{"metadata":{{"annotations":{{"{LAST_APPLIED}":{la_esc}}}}}}}"#),
            format!(r#"{{"metadata":{{"annotations":{{"kapp.k14s.io/original":{la_esc}}}}}}}"#),
        ];
        for p in &patches {
            assert_clean(p, BodyScope::Secret);
        }
        let out = assert_clean(
            &format!(
                r#"[{{"op":"add","path":"/metadata/labels/team","value":"db"}},{{"op":"add","path":"/data/k","value":"{MARK}"}}]"#
            ),
            BodyScope::Secret,
        );
        assert!(out.contains("\"db\""), "labels stay: {out}");
    }

    #[test]
    fn tables_lists_and_watch_events_of_secrets() {
        let secret = serde_json::json!({"kind":"Secret","apiVersion":"v1","metadata":{"name":"a",
            "annotations":{LAST_APPLIED: serde_json::json!({"kind":"Secret","data":{"k":MARK}}).to_string()}},
            "data":{"k":MARK}});
        let meta_only = serde_json::json!({"kind":"PartialObjectMetadata","metadata":secret["metadata"].clone()});
        let table = serde_json::json!({"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":[{"name":"Name"}],
            "rows":[{"cells":["a","Opaque",1],"object":secret.clone()},{"cells":["b"],"object":meta_only}]});
        let mut bare = secret.clone();
        bare.as_object_mut().unwrap().remove("kind");
        let list = serde_json::json!({"kind":"List","items":[bare.clone()]});
        let watch = serde_json::json!({"type":"ADDED","object":bare});
        for body in [&table, &list, &watch] {
            let out = assert_clean(&body.to_string(), BodyScope::Secret);
            assert!(out.contains("\"k\""), "keys stay: {out}");
        }
        // A Table or List of Secrets by kind needs no scope.
        assert_clean(&table.to_string(), BodyScope::Other);
        let mixed = serde_json::json!({"kind":"List","items":[{"kind":"ConfigMap","data":{"a":"keep"}},secret]});
        let out = assert_clean(&mixed.to_string(), BodyScope::Other);
        assert!(out.contains("keep"), "{out}");
    }

    #[test]
    fn a_secrets_last_applied_inside_any_body_is_redacted() {
        // A Deployment applied together with a Secret via a List, as an Other body: the embedded
        // annotation is redacted inside, the rest of it kept.
        let la = serde_json::json!({"apiVersion":"v1","kind":"List","items":[{"kind":"Secret","data":{"k":MARK}},{"kind":"ConfigMap","data":{"x":"keep"}}]}).to_string();
        let body =
            serde_json::json!({"kind":"Deployment","metadata":{"annotations":{LAST_APPLIED: la}}})
                .to_string();
        let out = assert_clean(&body, BodyScope::Other);
        assert!(out.contains("keep"), "{out}");
        // An embedded document that does not parse is replaced whole.
        let body = serde_json::json!({"kind":"Pod","metadata":{"annotations":{LAST_APPLIED: format!("{{\"kind\":\"Secret\",\"data\":{{\"k\":\"{MARK}\"")}}}).to_string();
        assert_clean(&body, BodyScope::Other);
    }

    #[test]
    fn duplicate_data_keys_do_not_let_the_first_through() {
        for body in [
            format!(r#"{{"kind":"Secret","data":{{"k":"{MARK}"}},"data":null}}"#),
            format!(r#"{{"kind":"Secret","data":{{"k":"{MARK}"}},"data":{{"k":"x"}}}}"#),
            format!(r#"{{"data":{{"k":"{MARK}","k":"again"}}}}"#),
        ] {
            let r = redact_body(&body, BodyScope::Secret);
            assert!(
                matches!(r, Redaction::Masked(_, MaskReason::DuplicateKey)),
                "{r:?}"
            );
            assert_clean(&body, BodyScope::Secret);
        }
        let other = format!(
            r#"{{"kind":"List","items":[{{"kind":"Secret","data":{{"k":"{MARK}"}},"data":{{}}}}]}}"#
        );
        assert_clean(&other, BodyScope::Other);
    }

    #[test]
    fn bodies_nested_past_the_parser_limit_are_masked_and_marked() {
        let deep = format!(
            r#"{{"kind":"Secret","data":{{"k":"{MARK}"}},"metadata":{{"labels":{{"x":"y"}}}},"z":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let r = redact_body(&deep, BodyScope::Secret);
        assert!(
            matches!(r, Redaction::Masked(_, MaskReason::TooDeep)),
            "{r:?}"
        );
        let out = assert_clean(&deep, BodyScope::Secret);
        assert!(out.contains("\"x\":\"y\""), "the rest is kept: {out}");
        // Nothing to mask: still marked, so a reader knows it was not checked by shape.
        let deep_plain = format!(
            r#"{{"kind":"Secret","z":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(matches!(
            redact_body(&deep_plain, BodyScope::Secret),
            Redaction::Masked(_, MaskReason::TooDeep)
        ));
    }
}
