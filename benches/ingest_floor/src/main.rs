//! `ingest-floor LOG`: the least CPU any decoder can spend on JSON for LOG (one event per line),
//! measured with the fastest parsers available to Rust, each only scanning (no columns built).
//! Prints one JSON object: the file's bytes and lines, the read time, and per parser the best
//! single-thread CPU time of three passes.

use std::time::{Duration, Instant};

fn best_of_three(mut pass: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut checksum = 0;
    for _ in 0..3 {
        let started = Instant::now();
        checksum = pass();
        best = best.min(started.elapsed());
    }
    (best, checksum)
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: ingest-floor LOG.jsonl");
    // Reading: 8 MiB at a time into one reused buffer, as a streaming ingest reads.
    let (read, _) = best_of_three(|| {
        use std::io::Read;
        let mut file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut buf = vec![0u8; 8 << 20];
        let mut total = 0;
        loop {
            match file.read(&mut buf).expect("read") {
                0 => break total,
                n => total += n,
            }
        }
    });
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();

    // serde_json skipping every value: the scan serde-based decoders (ours) cannot go below.
    let (serde_json, n1) = best_of_three(|| {
        lines
            .iter()
            .map(|l| {
                serde_json::from_slice::<serde::de::IgnoredAny>(l).expect("valid JSON");
                1
            })
            .sum()
    });
    // simd-json's tape: structural indexing with SIMD. It parses in place, so each line is
    // copied into a scratch buffer first, as any in-place parser must.
    let mut scratch = Vec::new();
    let mut buffers = simd_json::Buffers::default();
    let (simd_json, n2) = best_of_three(|| {
        lines
            .iter()
            .map(|l| {
                scratch.clear();
                scratch.extend_from_slice(l);
                simd_json::to_tape_with_buffers(&mut scratch, &mut buffers)
                    .expect("valid JSON")
                    .0
                    .len()
            })
            .sum()
    });
    // sonic-rs: SIMD parser building its own compact document.
    let (sonic_rs, n3) = best_of_three(|| {
        lines
            .iter()
            .map(|l| {
                let v: sonic_rs::Value = sonic_rs::from_slice(l).expect("valid JSON");
                sonic_rs::JsonValueTrait::is_object(&v) as usize
            })
            .sum()
    });
    assert_eq!(n1, lines.len());
    assert_eq!(n3, lines.len());
    assert!(n2 > n1, "simd-json produced a tape");
    println!(
        "{{\"bytes\": {}, \"lines\": {}, \"read_s\": {:.3}, \"serde_json_skip_s\": {:.3}, \"simd_json_tape_s\": {:.3}, \"sonic_rs_value_s\": {:.3}}}",
        data.len(),
        lines.len(),
        read.as_secs_f64(),
        serde_json.as_secs_f64(),
        simd_json.as_secs_f64(),
        sonic_rs.as_secs_f64()
    );
}
