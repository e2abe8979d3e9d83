//! Tests of the SQL functions (moved out of `udf.rs`).

use super::*;

#[test]
fn image_repository_drops_tag_and_digest_not_port() {
    assert_eq!(image_repository("nginx"), "nginx");
    assert_eq!(image_repository("nginx:1.7.9"), "nginx");
    assert_eq!(
        image_repository("registry:5000/team/app:1.2"),
        "registry:5000/team/app"
    );
    assert_eq!(
        image_repository("registry:5000/team/app"),
        "registry:5000/team/app"
    );
    assert_eq!(
        image_repository("registry.k8s.io/kube-proxy:v1.31.2@sha256:abc"),
        "registry.k8s.io/kube-proxy"
    );
}

fn contains(cidr: &str, ip: &str) -> bool {
    CidrSet::parse([cidr]).unwrap().contains_str(ip)
}

#[test]
fn cidrs_and_public_ranges() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(contains("10.0.0.0/8", "10.1.2.3"));
    assert!(!contains("10.0.0.0/8", "11.1.2.3"));
    assert!(contains("185.220.101.47", "185.220.101.47"));
    assert!(!contains("185.220.101.47", "185.220.101.48"));
    assert!(contains("2001:db8::/32", "2001:db8::1"));
    assert!(!contains("2001:db8::/32", "2001:db9::1"));
    assert!(contains("0.0.0.0/0", "8.8.8.8"));
    assert!(contains("::/0", "2001:db8::1"));
    // Host bits in the network are ignored, as `ip route` does.
    assert!(contains("10.1.2.3/8", "10.200.0.1"));
    // IPv4-mapped IPv6 is IPv4, on either side.
    assert!(contains("10.0.0.0/8", "::ffff:10.1.2.3"));
    assert!(!contains("10.0.0.0/8", "::ffff:11.1.2.3"));
    assert!(contains("::ffff:10.0.0.0/104", "10.9.9.9"));
    assert!(!contains("10.0.0.0/8", "not an ip"));
    for bad in ["garbage", "10.0.0.0/33", "2001:db8::/129", "10.0.0/8", ""] {
        assert_eq!(
            CidrSet::parse(["10.0.0.0/8", bad]),
            Err(BadCidr(bad.to_owned())),
            "{bad}"
        );
    }
    assert!(is_public(ip("8.8.8.8")));
    assert!(is_public(ip("203.0.113.77")));
    for private in [
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
    ] {
        assert!(!is_public(ip(private)), "{private}");
    }
}

#[test]
fn merged_ranges_answer_like_the_entries() {
    let entries = [
        "10.0.0.0/9",
        "10.128.0.0/9",
        "10.1.0.0/16",
        "192.168.1.7",
        "192.168.1.8",
        "255.255.255.255",
        "2001:db8::/48",
        "2001:db8:0:1::/64",
    ];
    let set = CidrSet::parse(entries).unwrap();
    // 10/9 + 10.128/9 + 10.1/16 are one range; .7 and .8 touch; the rest stand alone.
    assert_eq!(set.v4.len(), 3, "{set:?}");
    assert_eq!(set.v6.len(), 1, "{set:?}");
    for ip in [
        "10.0.0.0",
        "10.255.255.255",
        "11.0.0.0",
        "9.255.255.255",
        "192.168.1.6",
        "192.168.1.7",
        "192.168.1.8",
        "192.168.1.9",
        "255.255.255.254",
        "255.255.255.255",
        "0.0.0.0",
        "2001:db8::",
        "2001:db8:0:ffff::1",
        "2001:db8:1::",
        "::ffff:192.168.1.8",
    ] {
        let one_by_one = entries.iter().any(|e| contains(e, ip));
        assert_eq!(set.contains_str(ip), one_by_one, "{ip}");
    }
    assert!(CidrSet::parse([]).unwrap().is_empty());
}

async fn sql_bools(sql: &str) -> Result<Vec<Option<bool>>> {
    let ctx = SessionContext::new();
    register(&ctx);
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches
        .iter()
        .flat_map(|b| b.column(0).as_boolean().iter().collect::<Vec<_>>())
        .collect())
}

#[tokio::test]
async fn ip_in_cidrs_in_sql() {
    let got = sql_bools(
        "SELECT ip_in_cidrs(ip, make_array('10.0.0.0/8', '2001:db8::/32')) FROM \
             (VALUES ('10.1.2.3'), ('::ffff:10.1.2.3'), ('2001:db8::5'), ('8.8.8.8'), ('junk'), (NULL)) AS t(ip)",
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        [
            Some(true),
            Some(true),
            Some(true),
            Some(false),
            Some(false),
            None
        ]
    );
    // A list per row (not a constant) is parsed row by row.
    let got = sql_bools(
        "SELECT ip_in_cidrs(ip, nets) FROM (VALUES ('10.1.2.3', make_array('10.0.0.0/8')), \
             ('10.1.2.3', make_array('192.168.0.0/16'))) AS t(ip, nets)",
    )
    .await
    .unwrap();
    assert_eq!(got, [Some(true), Some(false)]);
    // A bad literal is an error that names it, not a silent "no match".
    for sql in [
        "SELECT ip_in_cidrs('10.1.2.3', make_array('10.0.0.0/8', '10.0.0.0/33'))",
        "SELECT ip_in_cidrs(ip, nets) FROM (VALUES ('10.1.2.3', make_array('10.0.0.0/33'))) AS t(ip, nets)",
    ] {
        let err = sql_bools(sql).await.unwrap_err().to_string();
        assert!(
            err.contains("ip_in_cidrs: \"10.0.0.0/33\" is not an IP address or CIDR"),
            "{err}"
        );
    }
}

/// `ip_in_cidrs` over 1M rows against a constant list (the shape of the rules'
/// `tor_exit_nodes` / `cloud_ranges` parameters). A measurement, not a check of speed:
/// `cargo test -p auditlake-query --release bench_ip_in_cidrs -- --ignored --nocapture`
/// (BENCH_CIDRS sets the list length, default 100).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore]
async fn bench_ip_in_cidrs_1m_rows() {
    use datafusion::arrow::array::RecordBatch;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    let rows = 1_000_000usize;
    let n_cidrs: usize = std::env::var("BENCH_CIDRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    // Deterministic addresses: 3 in 4 IPv4 (spread over 0-255.x), 1 in 4 IPv6.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ips: Vec<String> = (0..rows)
        .map(|i| {
            let r = next();
            if i % 4 == 3 {
                format!("2001:db8:{:x}::{:x}", r as u16, (r >> 16) as u16)
            } else {
                std::net::Ipv4Addr::from(r as u32).to_string()
            }
        })
        .collect();
    let cidrs: Vec<String> = (0..n_cidrs)
        .map(|i| {
            let r = next();
            if i % 10 == 9 {
                format!("2001:db8:{:x}::/48", r as u16)
            } else {
                format!(
                    "{}/{}",
                    std::net::Ipv4Addr::from(r as u32 & 0xffff_ff00),
                    16 + i % 9
                )
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![Field::new("ip", DataType::Utf8, false)]));
    let batches: Vec<RecordBatch> = ips
        .chunks(8192)
        .map(|c| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from_iter_values(c))],
            )
            .unwrap()
        })
        .collect();
    let ctx = SessionContext::new();
    register(&ctx);
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
    )
    .unwrap();
    let list = cidrs
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT count(*) FROM t WHERE ip_in_cidrs(ip, make_array({list}))");
    let mut best = f64::MAX;
    let mut matched = 0;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        best = best.min(started.elapsed().as_secs_f64());
        matched = out[0]
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
            .value(0);
    }
    assert!(matched > 0, "the list matches some rows");
    println!(
        "ip_in_cidrs: {rows} rows x {n_cidrs} CIDRs: best of 3 {best:.3} s = {:.0} rows/s ({matched} matched)",
        rows as f64 / best
    );
}
