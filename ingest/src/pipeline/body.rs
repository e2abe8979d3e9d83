//! Request bodies: decoding one as it is framed (one JSON document, or NDJSON lines). The
//! framing is a field of the body's WAL record, so replay decodes exactly as the request did.

use std::sync::Arc;

use crate::decode::{DecodeOptions, Decoded, Decoder, SourcePosition};
pub use crate::wal::BodyFraming;

/// Decodes a request body with the pipeline's options for `cluster`. The webhook calls this
/// before submitting, and WAL replay calls it again on the stored body: one decoding, one result.
pub fn decode_body(
    opts: &DecodeOptions,
    cluster: &Arc<str>,
    source: &Arc<str>,
    received_at: i64,
    body: &[u8],
    framing: BodyFraming,
) -> Decoded {
    let mut opts = opts.clone();
    opts.cluster = cluster.clone();
    // One budget for the whole request: the body as received (after Content-Encoding) plus
    // everything gzip/base64 layers inside it expand to stays within `max_inflate`, however
    // many lines carry a bomb. Replay computes the same budget from the same body.
    let budget = opts.max_inflate.saturating_sub(body.len() as u64);
    let mut decoder = Decoder::new(opts);
    decoder.set_ingested_at(received_at);
    decoder.set_inflate_budget(budget);
    let framing = match framing {
        BodyFraming::Lines if memchr::memchr(b'\n', body.trim_ascii_end()).is_some() => {
            BodyFraming::Lines
        }
        _ => BodyFraming::Document,
    };
    match framing {
        BodyFraming::Document => decoder.decode(
            body,
            &SourcePosition {
                source: source.clone(),
                ..SourcePosition::default()
            },
        ),
        BodyFraming::Lines => {
            let mut offset = 0usize;
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                decoder.decode(
                    line,
                    &SourcePosition {
                        source: source.clone(),
                        line: Some(i as u64 + 1),
                        byte_offset: Some(offset as u64),
                        item: None,
                    },
                );
                offset += line.len() + 1;
            }
        }
    }
    decoder.take()
}
