//! No secret value or token reaches what is written: every secret-bearing shape through the
//! decoder (stored columns) and through quarantine (records as written), plus the property test
//! and `fuzz_…` tests that generate random shapes around a marker value.

use std::io::Write;

use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use super::*;
use crate::columns::MASKED_ANNOTATION;
use crate::lake::Lake;
use crate::quarantine::QuarantineWriter;
use crate::redact::LAST_APPLIED;

const MARK: &str = "ZZSECRETZZ";

/// Every column of a batch as JSON text: what the Parquet file will hold.
fn stored_text(b: &RecordBatch) -> String {
    // Timestamps hold no text (and arrow's JSON writer cannot name the "UTC" zone).
    let keep: Vec<usize> = (0..b.num_columns())
        .filter(|&i| {
            !matches!(
                b.schema().field(i).data_type(),
                arrow::datatypes::DataType::Timestamp(..)
            )
        })
        .collect();
    let b = b.project(&keep).unwrap();
    let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
    w.write_batches(&[&b]).unwrap();
    w.finish().unwrap();
    String::from_utf8(w.into_inner()).unwrap()
}

/// Everything quarantine writes for these rejects (records and sidecars), via the real writer.
fn quarantined_text(rejects: &[Reject]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut q = QuarantineWriter::new(&lake);
    for r in rejects {
        q.write(r).unwrap();
    }
    q.sync().unwrap();
    read_tree(&lake.quarantine_dir())
}

fn read_tree(dir: &std::path::Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out += &read_tree(&p);
        } else {
            out += &String::from_utf8_lossy(&std::fs::read(&p).unwrap());
        }
    }
    out
}

/// An audit event line around the given bodies (JSON text, inserted as is).
fn event(
    id: &str,
    resource: &str,
    subresource: Option<&str>,
    verb: &str,
    request: Option<&str>,
    response: Option<&str>,
) -> String {
    let sub = subresource.map_or(String::new(), |s| format!(r#","subresource":"{s}""#));
    let mut ev = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/{resource}/x","verb":"{verb}","user":{{"username":"alice"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"{resource}","namespace":"ns","name":"x","apiVersion":"v1"{sub}}},"responseStatus":{{"metadata":{{}},"code":200}}"#
    );
    if let Some(r) = request {
        ev += &format!(r#","requestObject":{r}"#);
    }
    if let Some(r) = response {
        ev += &format!(r#","responseObject":{r}"#);
    }
    ev += r#","requestReceivedTimestamp":"2026-11-22T05:55:01.100000Z","stageTimestamp":"2026-11-22T05:55:01.101234Z","annotations":{"authorization.k8s.io/decision":"allow"}}"#;
    ev
}

/// Decodes lines; asserts the marker is in no stored column and no quarantine record.
fn assert_never_written(lines: &[String]) -> Decoded {
    let mut d = Decoder::new(DecodeOptions::new("prod"));
    for (i, l) in lines.iter().enumerate() {
        d.decode(
            l.as_bytes(),
            &SourcePosition {
                line: Some(i as u64 + 1),
                ..SourcePosition::default()
            },
        );
    }
    let out = d.take();
    for b in &out.batches {
        let text = stored_text(&b.batch);
        assert!(!text.contains(MARK), "stored:\n{text}");
    }
    let q = quarantined_text(&out.rejects);
    assert!(!q.contains(MARK), "quarantined:\n{q}");
    out
}

fn secret_json(name: &str) -> String {
    serde_json::json!({"kind":"Secret","apiVersion":"v1","metadata":{"name":name,"annotations":{
        LAST_APPLIED: serde_json::json!({"apiVersion":"v1","kind":"Secret","data":{"password":MARK}}).to_string()}},
        "data":{"password":MARK},"type":"Opaque"})
    .to_string()
}

#[test]
fn service_account_tokens_token_reviews_and_token_requests_are_redacted() {
    let token_request = format!(
        r#"{{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{{"name":"default"}},"spec":{{"audiences":["api"],"expirationSeconds":3600}},"status":{{"token":"eyJ.{MARK}.sig","expirationTimestamp":"2026-11-22T06:55:01Z"}}}}"#
    );
    let review = format!(
        r#"{{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{{"token":"{MARK}"}},"status":{{"authenticated":true}}}}"#
    );
    let out = assert_never_written(&[
        event(
            "t1",
            "serviceaccounts",
            Some("token"),
            "create",
            Some(r#"{"kind":"TokenRequest","spec":{"audiences":["api"]}}"#),
            Some(&token_request),
        ),
        event(
            "t2",
            "tokenreviews",
            None,
            "create",
            Some(&review),
            Some(&review),
        ),
        event(
            "t3",
            "tokenrequests",
            None,
            "create",
            None,
            Some(&token_request),
        ),
    ]);
    assert_eq!((out.events, out.rejects.len()), (3, 0));
    let text = stored_text(&out.batches[0].batch);
    assert!(
        text.contains("<redacted>") && text.contains("expirationTimestamp"),
        "{text}"
    );
}

#[test]
fn secret_patches_of_every_patch_type_are_redacted() {
    let la = serde_json::to_string(&secret_json("db")).unwrap();
    let la_pointer = "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration";
    let bodies = [
        format!(r#"[{{"op":"add","path":"/data","value":{{"password":"{MARK}"}}}}]"#),
        format!(r#"[{{"op":"replace","path":"/data/password","value":"{MARK}"}}]"#),
        format!(r#"[{{"op":"add","path":"/stringData","value":{{"password":"{MARK}"}}}}]"#),
        format!(
            r#"[{{"op":"add","path":"/metadata/annotations","value":{{"{LAST_APPLIED}":{la}}}}}]"#
        ),
        format!(
            r#"[{{"op":"replace","path":"/metadata","value":{{"name":"db","annotations":{{"{LAST_APPLIED}":{la}}}}}}}]"#
        ),
        format!(r#"[{{"op":"add","path":"{la_pointer}","value":{la}}}]"#),
        format!(r#"{{"data":{{"password":"{MARK}"}}}}"#),
        format!(
            r#"{{"stringData":{{"password":"{MARK}"}},"metadata":{{"annotations":{{"{LAST_APPLIED}":{la}}}}}}}"#
        ),
        format!(r#"{{"$patch":"replace","data":{{"password":"{MARK}"}}}}"#),
    ];
    let lines: Vec<String> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            event(
                &format!("p{i}"),
                "secrets",
                None,
                "patch",
                Some(b),
                Some(&secret_json("db")),
            )
        })
        .collect();
    let out = assert_never_written(&lines);
    assert_eq!((out.events, out.rejects.len()), (bodies.len() as u64, 0));
}

#[test]
fn tables_and_lists_of_secrets_are_redacted() {
    let secret: serde_json::Value = serde_json::from_str(&secret_json("a")).unwrap();
    let table = serde_json::json!({"kind":"Table","apiVersion":"meta.k8s.io/v1","columnDefinitions":[{"name":"Name","type":"string"}],
        "rows":[{"cells":["a","Opaque",1,"5m"],"object":secret},
                {"cells":["b"],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":secret["metadata"]}}]})
    .to_string();
    let mut item = secret.clone();
    item.as_object_mut().unwrap().remove("kind");
    let list =
        serde_json::json!({"kind":"SecretList","apiVersion":"v1","metadata":{},"items":[item]})
            .to_string();
    let out = assert_never_written(&[
        event("l1", "secrets", None, "list", None, Some(&table)),
        event("l2", "secrets", None, "list", None, Some(&list)),
        // A List holding a Secret, applied in one go, recorded for another resource.
        event(
            "l3",
            "deployments",
            None,
            "create",
            Some(&format!(
                r#"{{"kind":"List","items":[{}]}}"#,
                secret_json("c")
            )),
            None,
        ),
    ]);
    assert_eq!(out.events, 3);
}

#[test]
fn duplicate_data_keys_never_store_the_original_text() {
    let body = format!(
        r#"{{"kind":"Secret","metadata":{{"name":"db"}},"data":{{"password":"{MARK}"}},"data":{{}}}}"#
    );
    let out = assert_never_written(&[event(
        "d1",
        "secrets",
        None,
        "create",
        Some(&body),
        Some(&body),
    )]);
    assert_eq!(out.events, 1);
    let text = stored_text(&out.batches[0].batch);
    assert!(
        text.contains(MASKED_ANNOTATION) && text.contains("duplicate keys"),
        "{text}"
    );
}

#[test]
fn secret_bodies_nested_past_the_parser_limit_are_masked_and_marked() {
    let deep = format!(
        r#"{{"kind":"Secret","metadata":{{"name":"db","labels":{{"deep":{}1{}}}}},"data":{{"password":"{MARK}"}}}}"#,
        "[".repeat(300),
        "]".repeat(300)
    );
    let out = assert_never_written(&[event("n1", "secrets", None, "create", Some(&deep), None)]);
    assert_eq!(out.events, 1, "{:?}", out.rejects);
    let text = stored_text(&out.batches[0].batch);
    assert!(
        text.contains(MASKED_ANNOTATION) && text.contains("requestObject: nested deeper"),
        "{text}"
    );
    // The mark sits in the annotations column, queryable like any annotation.
    assert!(text.contains("authorization.k8s.io/decision"), "{text}");
}

#[test]
fn managed_cloud_envelopes_are_redacted_too() {
    let line = event("g0", "secrets", None, "get", None, Some(&secret_json("db")));
    let aks = serde_json::json!({"records":[{"category":"kube-audit","properties":{"log":line}}]})
        .to_string();
    let eks = serde_json::json!({"messageType":"DATA_MESSAGE","logGroup":"/aws/eks/prod/cluster","logEvents":[{"id":"1","timestamp":1,"message":line.replace("g0","g1")}]}).to_string();
    let gke = serde_json::json!({"insertId":"g2","timestamp":"2026-11-22T10:00:00Z",
        "protoPayload":{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.serviceaccounts.token.create",
            "resourceName":"core/v1/namespaces/ns/serviceaccounts/default/token",
            "authenticationInfo":{"principalEmail":"a@example.com"},"status":{},
            "response":{"kind":"TokenRequest","status":{"token":MARK}}}})
    .to_string();
    let out = assert_never_written(&[aks, eks, gke]);
    assert_eq!((out.events, out.rejects.len()), (3, 0), "{:?}", out.rejects);
}

#[test]
fn a_truncated_secrets_event_is_quarantined_masked_and_marked() {
    let line = event(
        "q1",
        "secrets",
        None,
        "create",
        Some(&secret_json("db")),
        None,
    );
    let cut = &line[..line.find(MARK).unwrap() + 4];
    let mut d = Decoder::new(DecodeOptions::new("prod"));
    d.decode(cut.as_bytes(), &SourcePosition::default());
    let out = d.take();
    assert_eq!(out.rejects.len(), 1);
    let q = quarantined_text(&out.rejects);
    assert!(!q.contains("ZZSE"), "{q}");
    let rec: serde_json::Value = serde_json::from_str(q.lines().next().unwrap()).unwrap();
    assert_eq!(rec["masked"], true);
    let raw = rec["raw"].as_str().unwrap();
    assert!(
        raw.contains("\"auditID\":\"q1\"") && raw.contains("<redacted>"),
        "{raw}"
    );

    // A harmless reject stays byte-exact and unmarked.
    let harmless = r#"{"kind":"Event","auditID":"h1","stage":"Nope"}"#;
    let mut d = Decoder::new(DecodeOptions::new("prod"));
    d.decode(harmless.as_bytes(), &SourcePosition::default());
    let rec: serde_json::Value =
        serde_json::from_str(quarantined_text(&d.take().rejects).lines().next().unwrap()).unwrap();
    assert_eq!(rec["raw"], harmless);
    assert!(rec.get("masked").is_none());
}

#[test]
fn a_damaged_compressed_payload_is_quarantined_decompressed_and_masked() {
    let line = event("z1", "secrets", None, "get", None, Some(&secret_json("db")));
    let payload = serde_json::json!({"messageType":"DATA_MESSAGE","logEvents":[{"message":line}]})
        .to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(payload.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    // Stored (level 0) deflate keeps the marker readable in the bytes; cut before the trailer.
    let cut = &gz[..gz.len() - 12];
    let mut d = Decoder::new(DecodeOptions::new("prod"));
    d.decode(cut, &SourcePosition::default());
    let out = d.take();
    assert_eq!(out.rejects.len(), 1);
    let q = quarantined_text(&out.rejects);
    assert!(!q.contains(MARK), "{q}");
    let rec: serde_json::Value = serde_json::from_str(q.lines().next().unwrap()).unwrap();
    assert_eq!(
        (rec["masked"].as_bool(), rec["decompressed"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(rec["raw"].as_str().unwrap().contains("z1"));
}

#[test]
fn oversized_lines_stream_to_quarantine_masked() {
    let line = event("o1", "secrets", None, "get", None, Some(&secret_json("db")));
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut q = QuarantineWriter::new(&lake);
    q.write_streamed(
        "prod",
        "line longer than 10 bytes",
        &SourcePosition::default(),
        |w| {
            for chunk in line.as_bytes().chunks(7) {
                w.write_all(chunk)?;
            }
            Ok(line.len() as u64)
        },
    )
    .unwrap();
    q.sync().unwrap();
    let text = read_tree(&lake.quarantine_dir());
    assert!(
        !text.contains(MARK) && text.contains("\"masked\":true"),
        "{text}"
    );
    assert!(
        text.contains("\"auditID\":\"o1\""),
        "the sidecar keeps the rest: {text}"
    );
}

// ---- generated shapes ----

#[derive(Debug, Clone)]
enum Wrap {
    Plain,
    Aks,
    Eks,
    Gke,
}

/// A random secret-bearing body: (resource, subresource, request body, response body).
fn shape(
    kind: u8,
    mark: &str,
    key_first: bool,
    dup: bool,
    depth: usize,
) -> (String, Option<String>, Option<String>, Option<String>) {
    let deep = if depth == 0 {
        String::new()
    } else {
        format!(r#","deep":{}0{}"#, "[".repeat(depth), "]".repeat(depth))
    };
    let dup_data = if dup { r#","data":{}"# } else { "" };
    let data = format!(r#""data":{{"k":"{mark}"}}"#);
    let metadata = format!(
        r#"{{"name":"s","annotations":{{"{LAST_APPLIED}":{}}}}}"#,
        serde_json::to_string(&format!(r#"{{"kind":"Secret","data":{{"k":"{mark}"}}}}"#)).unwrap()
    );
    let meta_la = format!(r#""metadata":{metadata}"#);
    let secret = |with_kind: bool| {
        let kind = if with_kind { r#""kind":"Secret","# } else { "" };
        if key_first {
            format!(r#"{{{kind}{data},{meta_la}{dup_data}{deep}}}"#)
        } else {
            format!(r#"{{{kind}{meta_la},{data}{dup_data}{deep}}}"#)
        }
    };
    let s = |x: &str| Some(x.to_owned());
    match kind % 12 {
        0 => (
            "secrets".into(),
            None,
            Some(secret(true)),
            Some(secret(true)),
        ),
        1 => (
            "secrets".into(),
            None,
            None,
            Some(format!(
                r#"{{"kind":"SecretList","items":[{}]}}"#,
                secret(false)
            )),
        ),
        2 => (
            "secrets".into(),
            None,
            None,
            Some(format!(
                r#"{{"kind":"Table","rows":[{{"cells":["s"],"object":{}}}]}}"#,
                secret(false)
            )),
        ),
        3 => (
            "secrets".into(),
            None,
            None,
            Some(format!(
                r#"{{"type":"MODIFIED","object":{}}}"#,
                secret(false)
            )),
        ),
        4 => {
            let path =
                ["/data", "/data/k", "/stringData/k", "", "/Data/k"][(kind as usize / 12) % 5];
            let value = if path.ends_with("/k") {
                format!(r#""{mark}""#)
            } else {
                format!(r#"{{"k":"{mark}"}}"#)
            };
            (
                "secrets".into(),
                None,
                s(&format!(
                    r#"[{{"op":"add","path":"{path}","value":{value}{deep}}}]"#
                )),
                None,
            )
        }
        5 => (
            "secrets".into(),
            None,
            s(&format!(
                r#"[{{"op":"add","path":"/metadata","value":{metadata}{deep}}}]"#
            )),
            None,
        ),
        6 => ("secrets".into(), None, Some(secret(false)), None), // merge / strategic-merge patch
        7 => (
            "serviceaccounts".into(),
            s("token"),
            s(r#"{"kind":"TokenRequest","spec":{"audiences":["api"]}}"#),
            s(&format!(
                r#"{{"kind":"TokenRequest","status":{{"token":"{mark}"}}{deep}}}"#
            )),
        ),
        8 => {
            let b = format!(r#"{{"kind":"TokenReview","spec":{{"token":"{mark}"}}{deep}}}"#);
            ("tokenreviews".into(), None, Some(b.clone()), Some(b))
        }
        9 => (
            "tokenrequests".into(),
            None,
            None,
            s(&format!(r#"{{"status":{{"token":"{mark}"}}{deep}}}"#)),
        ),
        10 => (
            "deployments".into(),
            None,
            s(&format!(r#"{{"kind":"List","items":[{}]}}"#, secret(true))),
            None,
        ),
        _ => (
            "pods".into(),
            None,
            s(&format!(r#"{{"kind":"Pod",{meta_la}{deep}}}"#)),
            None,
        ),
    }
}

fn wrap(
    line: String,
    how: &Wrap,
    resource: &str,
    sub: Option<&str>,
    req: Option<&str>,
    resp: Option<&str>,
) -> String {
    match how {
        Wrap::Plain => line,
        Wrap::Aks => serde_json::json!({"records":[{"category":"kube-audit","properties":{"log":line}}]}).to_string(),
        Wrap::Eks => serde_json::json!({"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":line}]}).to_string(),
        Wrap::Gke => {
            let group_res = match sub {
                Some(sub) => format!("{resource}.{sub}"),
                None => resource.to_owned(),
            };
            let mut text = format!(
                r#"{{"insertId":"g","timestamp":"2026-11-22T10:00:00Z","protoPayload":{{"serviceName":"k8s.io","methodName":"io.k8s.core.v1.{group_res}.create","resourceName":"core/v1/namespaces/ns/{resource}/x","status":{{}}"#
            );
            if let Some(r) = req {
                text += &format!(r#","request":{r}"#);
            }
            if let Some(r) = resp {
                text += &format!(r#","response":{r}"#);
            }
            text + "}}"
        }
    }
}

fn wrap_strategy() -> impl Strategy<Value = Wrap> {
    prop_oneof![
        Just(Wrap::Plain),
        Just(Wrap::Aks),
        Just(Wrap::Eks),
        Just(Wrap::Gke)
    ]
}

/// One generated case: the line, and whether it must land as an event.
fn generated_line(
    kind: u8,
    mark_tail: &str,
    key_first: bool,
    dup: bool,
    depth: usize,
    how: &Wrap,
    cut: Option<f64>,
) -> (Vec<u8>, bool) {
    let mark = format!("{MARK}{mark_tail}");
    let (resource, sub, req, resp) = shape(kind, &mark, key_first, dup, depth);
    let line = event(
        "gen",
        &resource,
        sub.as_deref(),
        "create",
        req.as_deref(),
        resp.as_deref(),
    );
    let line = wrap(
        line,
        how,
        &resource,
        sub.as_deref(),
        req.as_deref(),
        resp.as_deref(),
    );
    match cut {
        Some(f) => {
            let at = ((line.len() as f64) * f) as usize;
            (line.as_bytes()[..at.min(line.len())].to_vec(), false)
        }
        // serde_json parses a GKE entry whole, so a body nested past its limit rejects it.
        None => (line.into_bytes(), !matches!(how, Wrap::Gke) || depth < 100),
    }
}

fn check_generated(line: &[u8], must_land: bool) {
    let mut d = Decoder::new(DecodeOptions::new("prod"));
    d.decode(line, &SourcePosition::default());
    let out = d.take();
    if must_land {
        assert_eq!(out.events, 1, "rejects: {:?}", out.rejects);
    } else if !line.trim_ascii().is_empty() {
        // A cut line lands or is quarantined; it is never dropped silently.
        assert!(out.events + out.rejects.len() as u64 >= 1);
    }
    for b in &out.batches {
        let text = stored_text(&b.batch);
        assert!(!text.contains(MARK), "stored:\n{text}");
    }
    let q = quarantined_text(&out.rejects);
    assert!(!q.contains(MARK), "quarantined:\n{q}");
    // The same line streamed to quarantine as an oversized line.
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path());
    let mut qw = QuarantineWriter::new(&lake);
    qw.write_streamed("prod", "too long", &SourcePosition::default(), |w| {
        for c in line.chunks(97) {
            w.write_all(c)?;
        }
        Ok(line.len() as u64)
    })
    .unwrap();
    qw.sync().unwrap();
    let s = read_tree(&lake.quarantine_dir());
    assert!(!s.contains(MARK), "streamed:\n{s}");
}

proptest! {
    #[test]
    fn fuzz_redaction_never_leaks_marker(
        kind in any::<u8>(),
        mark_tail in proptest::collection::vec(0usize..64, 0..12),
        key_first in any::<bool>(),
        dup in any::<bool>(),
        depth in prop_oneof![Just(0usize), 1usize..20, 120usize..400],
        how in wrap_strategy(),
        cut in proptest::option::of(0.0f64..1.0),
    ) {
        // A base64-looking tail, as Secret values are.
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mark_tail: String = mark_tail.iter().map(|&i| B64[i] as char).collect();
        let (line, must_land) = generated_line(kind, &mark_tail, key_first, dup, depth, &how, cut);
        check_generated(&line, must_land);
    }

    #[test]
    fn fuzz_masker_never_leaks_marker_in_cut_or_nested_text(
        kind in any::<u8>(),
        nest in 0usize..4,
        cut in 0.0f64..1.0,
        pieces in 1usize..64,
    ) {
        // The body alone, embedded in `nest` levels of JSON strings, cut anywhere, fed in pieces.
        let (_, _, req, resp) = shape(kind, MARK, kind % 2 == 0, kind % 3 == 0, 0);
        let mut text = req.or(resp).unwrap();
        for _ in 0..nest {
            text = serde_json::json!({"log": text}).to_string();
        }
        let at = ((text.len() as f64) * cut) as usize;
        let mut w = crate::mask::MaskingWriter::new(Vec::new());
        for c in text.as_bytes()[..at].chunks(pieces) {
            w.write_all(c).unwrap();
        }
        let (out, _) = w.finish().unwrap();
        prop_assert!(!String::from_utf8_lossy(&out).contains(MARK), "{}", String::from_utf8_lossy(&out));
    }
}
