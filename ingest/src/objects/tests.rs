use std::io::Write as _;

use object_store::memory::InMemory;
use object_store::{ObjectStoreExt as _, PutPayload};

use super::*;
use crate::pipeline::{NoObserver, PipelineOptions};

fn event(id: &str, verb: &str) -> String {
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": id, "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/pods",
        "verb": verb, "user": {"username": "alice"},
        "objectRef": {"resource": "pods", "namespace": "default"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": "2026-12-03T10:00:00.000000Z",
        "stageTimestamp": "2026-12-03T10:00:00.100000Z"
    })
    .to_string()
}

/// One AKS diagnostic record (one line of a storage export) holding `ev`.
fn aks_line(ev: &str) -> String {
    serde_json::json!({
        "time": "2026-12-03T10:00:00Z",
        "resourceId": "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-WEU-1",
        "category": "kube-audit", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
        "properties": {"log": ev, "stream": "stdout", "pod": "kube-apiserver-1"}
    })
    .to_string()
}

struct Fixture {
    _dir: tempfile::TempDir,
    lake: Lake,
    store: Arc<InMemory>,
    pipeline: Pipeline,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(dir.path().join("lake"));
        let mut popts = PipelineOptions::new(&lake);
        popts.compact = None;
        let (pipeline, _) = Pipeline::open(&lake, popts, Arc::new(NoObserver)).unwrap();
        Fixture {
            _dir: dir,
            lake,
            store: Arc::new(InMemory::new()),
            pipeline,
        }
    }

    fn put(&self, key: &str, bytes: Vec<u8>) {
        block_on(
            self.store
                .put(&StorePath::from(key), PutPayload::from(bytes)),
        )
        .unwrap();
    }

    fn source(&self) -> ObjectSource {
        let mut decode = DecodeOptions::new("default");
        decode.envelope_cluster = true;
        let opts = ObjectSourceOptions::new("s3://exports/", decode).unwrap();
        ObjectSource::with_store(&self.lake, opts, self.store.clone()).unwrap()
    }

    fn poll(&self) -> PollReport {
        self.source()
            .poll(&self.pipeline, &AtomicBool::new(false), &|_| {})
            .unwrap()
    }

    fn rows(&self) -> u64 {
        self.lake
            .events()
            .all_files()
            .unwrap()
            .iter()
            .map(|f| f.rows.unwrap_or(0))
            .sum()
    }
}

const AKS_KEY: &str = "insights-logs-kube-audit/resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-WEU-1/y=2026/m=12/d=03/h=10/m=00/PT1H.json";

#[test]
fn an_append_blob_is_read_from_where_the_last_poll_stopped() {
    let f = Fixture::new();
    let mut blob = format!(
        "{}\n{}\n",
        aks_line(&event("a1", "get")),
        aks_line(&event("a2", "list"))
    );
    f.put(AKS_KEY, blob.clone().into_bytes());
    let first = f.poll();
    assert_eq!(
        (first.objects_read, first.events, first.quarantined),
        (1, 2, 0)
    );
    assert_eq!(f.rows(), 2);

    // Nothing new: nothing read.
    let idle = f.poll();
    assert_eq!(
        (idle.objects_listed, idle.objects_read, idle.bytes_read),
        (1, 0, 0)
    );

    // The blob grows (a new etag, as Azure gives every append): only the new line is read.
    let before = blob.len() as u64;
    blob += &format!("{}\n", aks_line(&event("a3", "delete")));
    f.put(AKS_KEY, blob.clone().into_bytes());
    let grown = f.poll();
    assert_eq!((grown.objects_read, grown.events), (1, 1));
    assert_eq!(
        grown.bytes_read,
        blob.len() as u64 - before,
        "read only the appended bytes"
    );
    assert!(grown.rewritten.is_empty());
    assert_eq!(f.rows(), 3);

    // The object expires from the bucket: its checkpoint entry goes too.
    let other = "insights-logs-kube-audit/resourceId=/X/MANAGEDCLUSTERS/AKS-WEU-1/y=2026/m=12/d=03/h=11/m=00/PT1H.json";
    f.put(
        other,
        format!("{}\n", aks_line(&event("b1", "get"))).into_bytes(),
    );
    assert_eq!(f.poll().events, 1);
    block_on(f.store.delete(&StorePath::from(other))).unwrap();
    let pruned = f.poll();
    assert_eq!((pruned.forgotten, pruned.objects_read), (1, 0));
    assert!(!f.source().checkpoint().objects.contains_key(other));

    // The cluster came from the record (and its path agrees).
    let cp = f.source();
    let mark = &cp.checkpoint().objects[AKS_KEY];
    assert_eq!(mark.offset, blob.len() as u64);
    assert_eq!(cluster_from_path(AKS_KEY).as_deref(), Some("aks-weu-1"));
}

#[test]
fn half_a_record_at_the_end_waits_for_the_rest() {
    let f = Fixture::new();
    let line = aks_line(&event("h2", "get"));
    let (head, rest) = line.split_at(line.len() / 2);
    let blob = format!("{}\n{head}", aks_line(&event("h1", "get")));
    f.put(AKS_KEY, blob.clone().into_bytes());
    let first = f.poll();
    assert_eq!(
        (first.events, first.quarantined),
        (1, 0),
        "the cut record is not quarantined"
    );
    assert_eq!(first.held_back, head.len() as u64);
    f.put(AKS_KEY, format!("{blob}{rest}\n").into_bytes());
    let second = f.poll();
    assert_eq!((second.events, second.quarantined), (1, 0));
    assert!(second.rewritten.is_empty(), "{:?}", second.rewritten);
    assert_eq!(f.rows(), 2);
}

#[test]
fn a_rewritten_object_is_reported_and_read_again_without_duplicates() {
    let f = Fixture::new();
    let key = "eks/2026/12/03/10/firehose-1";
    f.put(
        key,
        format!("{}\n{}\n", event("r1", "get"), event("r2", "get")).into_bytes(),
    );
    assert_eq!(f.poll().events, 2);
    // Same length, other bytes: a rewrite, not an append.
    f.put(
        key,
        format!("{}\n{}\n", event("r1", "get"), event("r3", "get")).into_bytes(),
    );
    let again = f.poll();
    assert_eq!(again.rewritten.len(), 1, "{again:?}");
    assert!(
        again.rewritten[0].contains("same size"),
        "{:?}",
        again.rewritten
    );
    assert_eq!(again.events, 2, "read again from the start");
    assert_eq!(f.rows(), 3, "r1 once, r2 and r3");
    // The rewrite is on the record in quarantine, naming the object.
    let q = std::fs::read_dir(f.lake.quarantine_dir())
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(
        q.contains("object rewritten") && q.contains("s3://exports/eks/2026"),
        "{q}"
    );
}

#[test]
fn firehose_gzip_members_of_concatenated_subscription_payloads_land() {
    let f = Fixture::new();
    let payload = |ids: &[&str]| {
        serde_json::json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012",
            "logGroup": "/aws/eks/prod-eu/cluster", "logStream": "kube-apiserver-audit-abc",
            "subscriptionFilters": ["to-firehose"],
            "logEvents": ids.iter().enumerate().map(|(i, id)| serde_json::json!(
                {"id": i.to_string(), "timestamp": 1, "message": event(id, "get")})).collect::<Vec<_>>()
        })
        .to_string()
    };
    // Two gzip members back to back, each a payload with no newline after it; a poison
    // record between two good ones in a third.
    let mut object = Vec::new();
    for body in [
        payload(&["f1", "f2"]),
        payload(&["f3"]),
        format!("{}{{\"broken\"}}{}", payload(&["f4"]), payload(&["f5"])),
    ] {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(body.as_bytes()).unwrap();
        object.extend(gz.finish().unwrap());
    }
    f.put(
        "firehose/2026/12/03/10/delivery-1-2026-12-03-10-00-00-abc.gz",
        object,
    );
    let report = f.poll();
    assert_eq!(report.events, 5, "{report:?}");
    assert_eq!(report.quarantined, 1);
    assert_eq!(f.rows(), 5);
    // The cluster came from the log group.
    let files = f.lake.events().all_files().unwrap();
    assert!(
        files
            .iter()
            .all(|t| t.partition_value("cluster") == "prod-eu")
    );
}

#[test]
fn concatenated_values_longer_than_a_chunk_are_cut_between_values() {
    let f = Fixture::new();
    let object: String = (0..400).map(|i| event(&format!("c{i}"), "get")).collect();
    assert!(!object.contains('\n'));
    f.put(
        "firehose/extracted/2026/12/03/10/part-0",
        object.into_bytes(),
    );
    let mut decode = DecodeOptions::new("cl");
    decode.envelope_cluster = false;
    let mut opts = ObjectSourceOptions::new("s3://exports/", decode).unwrap();
    // 400 events of ~450 bytes through 16 KiB chunks: cut between values, never mid-event.
    opts.chunk_bytes = 16 << 10;
    opts.max_line_bytes = 64 << 10;
    let mut source = ObjectSource::with_store(&f.lake, opts, f.store.clone()).unwrap();
    let report = source
        .poll(&f.pipeline, &AtomicBool::new(false), &|_| {})
        .unwrap();
    assert_eq!((report.events, report.quarantined), (400, 0), "{report:?}");
}

#[test]
fn ends_of_plain_objects() {
    assert_eq!(incomplete_tail(b"{\"a\":1}\n{\"b\":2}"), None);
    assert_eq!(incomplete_tail(b"{\"a\":1}\n{\"b\":"), Some(8));
    assert_eq!(incomplete_tail(b"{\"a\":1}{\"b\":2}  {\"c\""), Some(16));
    assert_eq!(incomplete_tail(b"{\"a\":1}\n"), None);
    // Garbage no further bytes could complete is not held back (it is quarantined).
    assert_eq!(incomplete_tail(b"{\"a\":1}\nnot json"), None);
    assert_eq!(
        cluster_from_path("x/managedClusters/Prod-1/y=2026"),
        Some("prod-1".into())
    );
    assert_eq!(cluster_from_path("eks/2026/12/03"), None);
    let e = |s: &str| Some(s.to_owned());
    assert!(same_etag(&e("0x8DE"), &e("\"0x8DE\"")));
    assert!(same_etag(&e("W/\"abc\""), &e("abc")));
    assert!(!same_etag(&e("abc"), &e("abd")));
    assert!(!same_etag(&e("abc"), &None));
}

#[test]
fn options_never_print_storage_secrets() {
    let mut opts = ObjectSourceOptions::new("s3://exports/", DecodeOptions::new("c")).unwrap();
    opts.storage
        .insert("aws_secret_access_key".into(), "hunter2-marker".into());
    let shown = format!("{opts:?}");
    assert!(shown.contains("aws_secret_access_key"), "{shown}");
    assert!(!shown.contains("hunter2-marker"), "{shown}");
}
