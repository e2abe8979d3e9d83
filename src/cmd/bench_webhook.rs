//! `auditlake bench-webhook`: concurrent senders POST EventLists (items without kind/apiVersion,
//! as kube-apiserver's batch backend sends them) to a running `auditlake serve` and report
//! sustained events/s and time-to-2xx percentiles. Every event gets a fresh auditID, so the
//! server's dedup never hides work.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::EXIT_OK;
use crate::cli::BenchWebhookArgs;
use crate::generate::{GenOptions, generate};

/// An EventList body with the byte offsets of each item's 36-character auditID.
struct Template {
    body: Vec<u8>,
    id_offsets: Vec<usize>,
}

fn template(batch: usize) -> anyhow::Result<Template> {
    let mut log = Vec::new();
    generate(
        &GenOptions {
            events: batch as u64,
            seed: 7,
            start_micros: chrono::Utc::now().timestamp_micros() - 60_000_000,
            requests_per_second: 400.0,
            scenarios: false,
            controllers: false,
        },
        &mut log,
    )?;
    let mut body =
        br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":["#.to_vec();
    let mut id_offsets = Vec::new();
    for (i, line) in log
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(batch)
        .enumerate()
    {
        if i > 0 {
            body.push(b',');
        }
        let start = body.len();
        body.extend_from_slice(line);
        let key = br#""auditID":""#;
        let at = memfind(line, key).context("generated event without auditID")?;
        id_offsets.push(start + at + key.len());
    }
    body.extend_from_slice(b"]}");
    Ok(Template { body, id_offsets })
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Writes a unique UUID-shaped id (sender, request, item) over each auditID.
fn stamp(t: &Template, body: &mut [u8], run: u32, sender: u32, request: u64) {
    for (item, &off) in t.id_offsets.iter().enumerate() {
        let id = format!(
            "{run:08x}-{sender:04x}-{:04x}-{:04x}-{request:012x}",
            (item >> 16) & 0xffff,
            item & 0xffff
        );
        body[off..off + 36].copy_from_slice(id.as_bytes());
    }
}

fn client(args: &BenchWebhookArgs) -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a bundled crypto provider: use ring, like the server.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.senders);
    if let Some(ca) = &args.ca {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for c in rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
        {
            roots.add(c?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        b = b.tls_backend_preconfigured(config);
    }
    Ok(b.build()?)
}

pub fn run(args: BenchWebhookArgs) -> anyhow::Result<u8> {
    anyhow::ensure!(
        args.senders > 0 && args.batch > 0,
        "--senders and --batch must be positive"
    );
    let t = Arc::new(template(args.batch)?);
    let client = client(&args)?;
    let runtime = crate::cmd::runtime()?;
    let run_id = (chrono::Utc::now().timestamp() & 0xffff_ffff) as u32;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let events = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut latencies: Vec<f64> = runtime.block_on(async {
        let mut tasks = Vec::new();
        for sender in 0..args.senders as u32 {
            let (t, client, url) = (t.clone(), client.clone(), args.url.clone());
            let (events, refused, token) = (events.clone(), refused.clone(), args.token.clone());
            // Paced senders: each sends its share of --rate, one batch per interval.
            let interval = args.rate.map(|r| {
                Duration::from_secs_f64(args.senders as f64 * args.batch as f64 / r.max(1.0))
            });
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut body = t.body.clone();
                let mut request = 0u64;
                let mut next = Instant::now();
                while Instant::now() < deadline {
                    if let Some(every) = interval {
                        tokio::time::sleep_until(next.into()).await;
                        next += every;
                    }
                    stamp(&t, &mut body, run_id, sender, request);
                    request += 1;
                    let mut req = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone());
                    if let Some(tok) = &token {
                        req = req.bearer_auth(tok);
                    }
                    let sent = Instant::now();
                    match req.send().await {
                        Ok(r) if r.status().is_success() => {
                            lat.push(sent.elapsed().as_secs_f64());
                            events.fetch_add(t.id_offsets.len() as u64, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            let wait = r
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                                .unwrap_or(1);
                            tokio::time::sleep(Duration::from_millis(wait.min(5) * 200)).await;
                        }
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap_or_default());
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() as f64 - 1.0) * p).round() as usize] * 1000.0
    };
    let ev = events.load(Ordering::Relaxed);
    let body_mb = t.body.len() as f64 / (1 << 20) as f64;
    let result = serde_json::json!({
        "senders": args.senders,
        "batch": args.batch,
        "seconds": elapsed,
        "requests_ok": latencies.len(),
        "requests_refused": refused.load(Ordering::Relaxed),
        "events": ev,
        "events_per_sec": ev as f64 / elapsed,
        "mb_per_sec": latencies.len() as f64 * body_mb / elapsed,
        "body_kb": t.body.len() / 1024,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    });
    if args.json {
        println!("{result}");
    } else {
        println!(
            "{} senders × {}-event batches for {:.1} s: {:.0} events/s ({:.1} MB/s), {} requests ok, {} refused; time to 2xx p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            args.senders,
            args.batch,
            elapsed,
            ev as f64 / elapsed,
            latencies.len() as f64 * body_mb / elapsed,
            latencies.len(),
            refused.load(Ordering::Relaxed),
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(EXIT_OK)
}
