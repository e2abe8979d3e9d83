//! Fuzz targets of the decoders, on stable Rust (proptest): every decoder entry point gets
//! arbitrary and mutated input and must neither panic nor lose track of it — each non-blank
//! line becomes rows or a reject, never both silently nothing, and decompression never
//! produces more than its budget. `PROPTEST_CASES` sets how many inputs each target runs (256 in
//! the test suite; `benches/fuzz.sh` runs many more).

use std::io::Write;

use base64::Engine;
use proptest::prelude::*;

use super::*;
use crate::pipeline::{BodyFraming, decode_body};

fn event(id: &str, extra: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/pods/web","verb":"create","user":{{"username":"alice","groups":["dev"]}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"pods","namespace":"prod","name":"web","apiVersion":"v1"}},"responseStatus":{{"code":201}},"requestObject":{{"kind":"Pod","spec":{{"containers":[{{"name":"a","image":"nginx"}}],"hostPID":true{extra}}}}},"requestReceivedTimestamp":"2026-11-22T10:00:00.000001Z","stageTimestamp":"2026-11-22T10:00:00.000002Z"}}"#
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// The shapes of audit input the decoders accept, each around one event.
fn wrap(shape: u8, ev: &str, cluster: &str) -> Vec<u8> {
    match shape % 7 {
        0 => ev.as_bytes().to_vec(),
        1 => format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{ev}]}}"#)
            .into_bytes(),
        2 => format!("[{ev}]").into_bytes(),
        3 => serde_json::json!({"records": [{"resourceId": format!("/SUBSCRIPTIONS/X/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/{cluster}"),
            "category": "kube-audit", "properties": {"log": ev}}]})
        .to_string()
        .into_bytes(),
        4 => serde_json::json!({"messageType": "DATA_MESSAGE", "logGroup": format!("/aws/eks/{cluster}/cluster"),
            "logEvents": [{"id": "1", "timestamp": 1, "message": ev}]})
        .to_string()
        .into_bytes(),
        5 => gzip(ev.as_bytes()),
        _ => base64::engine::general_purpose::STANDARD
            .encode(gzip(ev.as_bytes()))
            .into_bytes(),
    }
}

/// Decodes `input` as one line and checks the invariants every decoder keeps.
fn decode_checked(input: &[u8], bound: bool, max_inflate: u64, must_account: bool) -> Decoded {
    let mut opts = DecodeOptions::new("fuzz");
    opts.envelope_cluster = !bound;
    opts.max_inflate = max_inflate;
    let mut d = Decoder::new(opts);
    d.decode(input, &SourcePosition::default());
    let out = d.take();
    let rows: usize = out.batches.iter().map(|b| b.batch.num_rows()).sum();
    assert_eq!(rows as u64, out.events, "every counted event is a row");
    for b in &out.batches {
        assert_eq!(b.keys.len(), b.batch.num_rows());
        if bound {
            assert_eq!(
                &*b.partition.cluster, "fuzz",
                "a bound cluster is never relabelled"
            );
        } else {
            assert!(crate::validate_cluster_name(&b.partition.cluster).is_ok());
        }
    }
    // Mutated envelopes may turn into what is skipped by design (another AKS category, an EKS
    // control message, an empty list); arbitrary bytes never do.
    if must_account && input.iter().any(|b| !b.is_ascii_whitespace()) {
        assert!(
            out.events > 0 || !out.rejects.is_empty(),
            "non-blank input vanished: {:?}",
            String::from_utf8_lossy(&input[..input.len().min(200)])
        );
    }
    out
}

proptest! {
    /// Arbitrary bytes as one line: no panic, never silently dropped.
    #[test]
    fn fuzz_decoder_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..2048), bound: bool) {
        decode_checked(&input, bound, 1 << 20, true);
    }

    /// Every accepted shape (Event, EventList, array, AKS, EKS, gzip, base64-gzip) with bytes
    /// flipped, cut or inserted.
    #[test]
    fn fuzz_decoder_mutated_shapes(
        shape in 0u8..7,
        cluster in "[a-z]([a-z0-9-]{0,18}[a-z0-9])?",
        bound: bool,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
        extra in prop_oneof![Just(String::new()), Just(",\"hostNetwork\":true".to_owned()), "[ -~]{0,40}".prop_map(|s| format!(",\"x\":{}", serde_json::Value::String(s)))],
    ) {
        let ev = event("fuzz-1", &extra);
        let mut input = wrap(shape, &ev, &cluster);
        let untouched = edits.is_empty();
        for (at, byte, op) in edits {
            if input.is_empty() {
                break;
            }
            let i = at.index(input.len());
            match op {
                0 => input[i] ^= byte | 1,
                1 => input.truncate(i),
                _ => input.insert(i, byte),
            }
        }
        let out = decode_checked(&input, bound, 1 << 20, false);
        if untouched {
            // Unmutated: the event lands, unless a bound cluster refused an envelope naming
            // another one (shapes 3 and 4), which is a reject with that reason.
            let refused = bound && (shape == 3 || shape == 4) && cluster != "fuzz";
            prop_assert_eq!(out.events, u64::from(!refused));
            prop_assert_eq!(out.cluster_conflicts, u64::from(refused));
        }
    }

    /// gzip and base64-gzip layers: the output never exceeds the budget, a payload over it is
    /// rejected as the bytes that arrived.
    #[test]
    fn fuzz_compressed_layers_stay_within_budget(
        payload in proptest::collection::vec(any::<u8>(), 0..4096),
        repeat in 1usize..64,
        base64: bool,
        budget in 0u64..100_000,
    ) {
        let mut inner = Vec::new();
        for _ in 0..repeat {
            inner.extend_from_slice(&payload);
        }
        let mut line = gzip(&inner);
        if base64 {
            line = base64::engine::general_purpose::STANDARD.encode(&line).into_bytes();
        }
        let out = decode_checked(&line, true, budget, false);
        if inner.len() as u64 > budget {
            prop_assert_eq!(out.events, 0);
            prop_assert_eq!(out.rejects.len(), 1);
            prop_assert_eq!(&out.rejects[0].raw, &line, "quarantined as it arrived, not expanded");
            prop_assert!(out.rejects[0].reason.contains("decompression budget"));
        }
    }

    /// A webhook or Kafka body: any framing, any mix of lines, one budget for all of them.
    #[test]
    fn fuzz_request_bodies(
        lines in proptest::collection::vec((0u8..7, proptest::collection::vec(any::<u8>(), 0..64), any::<bool>()), 0..12),
        lines_framing: bool,
        max in 0u64..200_000,
    ) {
        let mut body = Vec::new();
        for (i, (shape, noise, valid)) in lines.iter().enumerate() {
            if *valid {
                body.extend_from_slice(&wrap(*shape, &event(&format!("b{i}"), ""), "fuzz"));
            } else {
                body.extend_from_slice(noise);
            }
            body.push(b'\n');
        }
        let mut opts = DecodeOptions::new("fuzz");
        opts.max_inflate = max;
        let framing = if lines_framing { BodyFraming::Lines } else { BodyFraming::Document };
        let out = decode_body(&opts, &Arc::from("fuzz"), &Arc::from("webhook:fuzz"), 0, &body, framing);
        let rows: usize = out.batches.iter().map(|b| b.batch.num_rows()).sum();
        prop_assert_eq!(rows as u64, out.events);
    }

    /// GKE `LogEntry` lines with arbitrary values in the fields the mapping reads.
    #[test]
    fn fuzz_gke_log_entries(
        method in "[a-zA-Z0-9._/-]{0,60}",
        resource in "[a-zA-Z0-9._/-]{0,80}",
        code in any::<i64>(),
        cluster in "[ -~]{0,30}",
        bound: bool,
    ) {
        let line = serde_json::json!({"insertId": "g", "timestamp": "2026-11-22T10:00:00Z",
            "resource": {"type": "k8s_cluster", "labels": {"cluster_name": cluster}},
            "protoPayload": {"serviceName": "k8s.io", "methodName": method, "resourceName": resource,
                "authenticationInfo": {"principalEmail": "a@example.com"}, "status": {"code": code}}})
        .to_string();
        decode_checked(line.as_bytes(), bound, 1 << 20, false);
    }
}
