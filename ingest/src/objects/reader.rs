//! A blocking `Read` over an object's byte stream, for the chunker's reader thread.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;

use crate::lake::store::block_on;

/// Pulls the object's body piece by piece on the lake I/O runtime: memory holds one piece
/// (the HTTP client's frame), never the object.
pub struct StreamReader {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    current: Bytes,
}

impl StreamReader {
    pub fn new(stream: BoxStream<'static, object_store::Result<Bytes>>) -> Self {
        StreamReader {
            stream,
            current: Bytes::new(),
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Notes whether the stream starts with gzip's magic bytes (the object is then read whole:
/// its end cannot hold half a record).
pub struct Sniff<R> {
    inner: R,
    first: bool,
    gzip: Arc<AtomicBool>,
}

impl<R> Sniff<R> {
    pub fn new(inner: R, gzip: Arc<AtomicBool>) -> Self {
        Sniff {
            inner,
            first: true,
            gzip,
        }
    }
}

impl<R: Read> Read for Sniff<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        if self.first && n > 0 {
            self.first = false;
            self.gzip.store(out[0] == 0x1f, Ordering::Relaxed);
        }
        Ok(n)
    }
}
