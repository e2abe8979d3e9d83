//! One module per subcommand.

pub mod bench_webhook;
pub mod compact;
pub mod detect;
pub mod generate;
pub mod ingest;
pub mod query;
pub mod rules;
pub mod serve;

/// The tokio runtime for commands that query (DataFusion is async).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
