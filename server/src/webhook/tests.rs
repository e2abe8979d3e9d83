use super::*;
use std::io::Write;
use std::path::Path as FsPath;

use auditlake_ingest::{Lake, NoObserver, PipelineOptions};
use axum::http::Request as HttpRequest;
use tower::ServiceExt;

use crate::auth::TokenTable;

fn event(id: &str) -> String {
    format!(
        r#"{{"auditID":"{id}","stage":"ResponseComplete","level":"Metadata","requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get","user":{{"username":"alice"}},"sourceIPs":["10.0.0.9"],"objectRef":{{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-11-22T10:00:00.000000Z"}}"#
    )
}

fn event_list(ids: &[&str]) -> String {
    let items: Vec<String> = ids.iter().map(|id| event(id)).collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    lake: Lake,
    state: Arc<AppState>,
}

fn fixture(tokens: Option<&str>, max_body: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::new(dir.path().join("lake"));
    let mut popts = PipelineOptions::new(&lake);
    popts.min_free_disk_bytes = 0;
    let (pipeline, _) = Pipeline::open(&lake, popts.clone(), Arc::new(NoObserver)).unwrap();
    let tokens = tokens.map(|t| TokenTable::parse(t, FsPath::new("tokens")).unwrap());
    let state = Arc::new(AppState {
        pipeline: Arc::new(pipeline),
        auth: AuthPolicy {
            require: tokens.is_some(),
            tokens,
            client_certs: false,
            cert_binds_cluster: true,
            default_cluster: Arc::from("default"),
        },
        metrics: Arc::new(Metrics::new()),
        max_body_bytes: max_body,
        body_timeout: std::time::Duration::from_secs(5),
        decode: popts.decode.clone(),
        retry_after_secs: 7,
    });
    Fixture {
        _dir: dir,
        lake,
        state,
    }
}

impl Fixture {
    async fn post(
        &self,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = HttpRequest::post(uri).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = router(self.state.clone())
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let resp = router(self.state.clone())
            .oneshot(HttpRequest::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Flushes and returns the committed (cluster partition dir name, rows) pairs: the files of
    /// the lake's table, not whatever lies in its directories.
    fn finish(&self) -> Vec<(String, i64)> {
        self.state.pipeline.shutdown().unwrap();
        let mut rows: std::collections::BTreeMap<String, i64> = Default::default();
        if self.lake.audit_events_dir().join("_delta_log").is_dir() {
            for f in self.lake.events().all_files().unwrap() {
                let cluster = f.path.split('/').next().unwrap().to_owned();
                let file = std::fs::File::open(self.lake.audit_events_dir().join(&f.path)).unwrap();
                *rows.entry(cluster).or_default() += parquet_rows(file);
            }
        }
        rows.into_iter().collect()
    }
}

fn parquet_rows(f: std::fs::File) -> i64 {
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    r.metadata().file_metadata().num_rows()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_list_is_acknowledged_after_the_wal_and_lands_in_its_cluster() {
    let fx = fixture(None, 1 << 20);
    let (status, body) = fx
        .post(
            "/audit/prod?timeout=30s",
            &[],
            event_list(&["a", "b"]).into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"], 2);
    assert_eq!(body["quarantined"], 0);
    let (status, _) = fx.post("/audit", &[], event("c").into_bytes()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = fx.get("/metrics").await;
    assert!(
        metrics.contains(r#"auditlake_webhook_events_received_total{cluster="prod"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"auditlake_webhook_requests_total{code="200"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("auditlake_wal_bytes "), "{metrics}");
    assert_eq!(
        fx.finish(),
        vec![("cluster=default".into(), 1), ("cluster=prod".into(), 2)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_decode_and_malformed_items_are_quarantined() {
    let fx = fixture(None, 1 << 20);
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{{"auditID":42}}]}}"#,
        event("g1")
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(body.as_bytes()).unwrap();
    let (status, resp) = fx
        .post(
            "/audit/prod",
            &[("content-encoding", "gzip")],
            gz.finish().unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(
        (resp["events"].as_u64(), resp["quarantined"].as_u64()),
        (Some(1), Some(1))
    );
    let lake = fx.lake.clone();
    fx.finish();
    let q = std::fs::read_dir(lake.quarantine_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let file = std::fs::read_dir(q)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let line = std::fs::read_to_string(file).unwrap();
    let rec: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert_eq!(rec["raw"], r#"{"auditID":42}"#);
    assert_eq!(rec["cluster"], "prod");
    assert_eq!(rec["position"]["item"], 1);
    assert!(
        rec["position"]["source"]
            .as_str()
            .unwrap()
            .starts_with("webhook:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparseable_body_gets_400_and_is_kept_in_quarantine() {
    let fx = fixture(None, 1 << 20);
    let (status, body) = fx.post("/audit", &[], b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a valid audit event"),
        "{body}"
    );
    let lake = fx.lake.clone();
    assert!(fx.finish().is_empty());
    assert!(lake.quarantine_dir().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_and_bad_credentials_401_or_403() {
    let fx = fixture(Some("prod-token-0123456789,prod\n"), 2048);
    let big = event_list(&["a"; 40]).into_bytes();
    let auth = [("authorization", "Bearer prod-token-0123456789")];
    assert_eq!(
        fx.post("/audit", &auth, big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Over the limit only once decompressed: a gzip bomb is refused too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 100_000]).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 2048);
    let gz_auth = [auth[0], ("content-encoding", "gzip")];
    assert_eq!(
        fx.post("/audit", &gz_auth, gz).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let small = || event_list(&["x"]).into_bytes();
    assert_eq!(
        fx.post("/audit", &[], small()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        fx.post(
            "/audit",
            &[("authorization", "Bearer nope-nope-nope-nope")],
            small()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        fx.post("/audit/dev", &auth, small()).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(fx.finish().is_empty(), "nothing refused may be stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_and_shutdown_refuses_with_retry_after() {
    let fx = fixture(None, 1 << 20);
    assert_eq!(fx.get("/readyz").await.0, StatusCode::OK);
    assert_eq!(fx.get("/healthz").await.0, StatusCode::OK);
    fx.state.pipeline.shutdown().unwrap();
    let (status, text) = fx.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("shutting down"), "{text}");
    let resp = router(fx.state.clone())
        .oneshot(
            HttpRequest::post("/audit")
                .body(Body::from(event_list(&["z"])))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
}
