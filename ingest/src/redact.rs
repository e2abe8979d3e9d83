//! Secret redaction: audit bodies of `secrets` requests carry the secret values themselves
//! (base64 is not encryption). By default the lake never stores them.

use serde_json::{Map, Value};

/// What a redacted value is replaced by.
pub const REDACTED: &str = "<redacted>";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Redacts secret values in a `secrets` request/response body. Returns the new JSON text, or
/// `None` when there was nothing to redact (the body is then stored exactly as sent).
///
/// Handles a Secret, a SecretList (`items`), a strategic-merge/merge patch (`data`,
/// `stringData`, annotations) and a JSON patch (`[{"op","path":"/data/...","value"}]`).
/// The keys stay, so forensics can still see *which* keys were read or changed.
pub fn redact_secret_body(body: &str) -> Option<String> {
    let mut value: Value = serde_json::from_str(body).ok()?;
    let changed = match &mut value {
        Value::Object(obj) => redact_secret_object(obj),
        Value::Array(ops) => redact_json_patch(ops),
        _ => false,
    };
    changed.then(|| value.to_string())
}

fn redact_secret_object(obj: &mut Map<String, Value>) -> bool {
    let mut changed = false;
    for field in ["data", "stringData"] {
        match obj.get_mut(field) {
            Some(Value::Object(values)) => {
                for v in values.values_mut() {
                    if !v.is_null() {
                        *v = Value::String(REDACTED.into());
                        changed = true;
                    }
                }
            }
            Some(v @ Value::String(_)) => {
                *v = Value::String(REDACTED.into());
                changed = true;
            }
            _ => {}
        }
    }
    if let Some(Value::Object(annotations)) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        if let Some(v) = annotations.get_mut(LAST_APPLIED) {
            *v = Value::String(REDACTED.into());
            changed = true;
        }
    }
    if let Some(Value::Array(items)) = obj.get_mut("items") {
        for item in items {
            if let Value::Object(item) = item {
                changed |= redact_secret_object(item);
            }
        }
    }
    changed
}

fn redact_json_patch(ops: &mut [Value]) -> bool {
    let mut changed = false;
    for op in ops {
        let Value::Object(op) = op else { continue };
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let sensitive = path == "/data"
            || path == "/stringData"
            || path.starts_with("/data/")
            || path.starts_with("/stringData/")
            || path.contains(&LAST_APPLIED.replace('/', "~1"));
        if sensitive && let Some(v) = op.get_mut("value") {
            *v = match v {
                Value::Object(m) => Value::Object(
                    m.keys()
                        .map(|k| (k.clone(), Value::String(REDACTED.into())))
                        .collect(),
                ),
                _ => Value::String(REDACTED.into()),
            };
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(redact_secret_body("not json"), None);
    }
}
