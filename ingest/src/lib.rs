//! auditlake ingestion: decode Kubernetes audit events and write them to a partitioned,
//! deduplicated Parquet lake with atomic, durable commits.

pub mod columns;
pub mod compact;
pub mod decode;
pub mod derive;
pub mod error;
pub mod files;
pub mod lake;
pub mod mask;
pub mod objects;
pub mod pipeline;
pub mod quarantine;
pub mod redact;
pub mod time;
pub mod wal;
pub mod writer;

pub use compact::{CompactOptions, CompactReport, compact_lake};
pub use decode::{
    DecodeOptions, Decoded, DecodedBatch, Decoder, PartitionKey, Reject, SourcePosition,
};
pub use error::{Fault, IngestError};
pub use files::{IngestOptions, IngestReport, Input, Progress, ingest};
pub use lake::{Lake, validate_cluster_name};
pub use pipeline::{
    Ack, BodyFraming, Durable, FlushFailed, NoObserver, NotDurable, Pipeline, PipelineObserver,
    PipelineOptions, ReplayReport, Submission, SubmitError, decode_body,
};
pub use quarantine::QuarantineWriter;
pub use writer::{CommittedFile, LakeWriter, WriteStats, WriterOptions};
