//! The flags of `auditlake ballista scheduler|executor`: the nodes of a Ballista cluster
//! (see `src/cmd/ballista`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::LakeArg;

#[derive(Debug, Subcommand)]
pub enum BallistaCommand {
    /// The scheduler: accepts queries (`--engine ballista://HOST:PORT`), plans them into stages
    /// and hands their tasks to the executors.
    Scheduler(BallistaSchedulerArgs),
    /// An executor: registers with the scheduler, runs tasks, serves their results and
    /// shuffle data (Arrow Flight). Reads the lake with its own storage settings.
    Executor(BallistaExecutorArgs),
}

#[derive(Debug, Args)]
pub struct BallistaSchedulerArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// Address of the scheduler's gRPC service (clients and executors)
    #[arg(long, default_value = "127.0.0.1:50050", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,

    /// Host name under which clients and executors reach this scheduler [default: the --listen
    /// address]
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,

    /// Seconds without a heartbeat after which an executor counts as lost: its tasks and the
    /// shuffle data it held are computed again on the others
    #[arg(long, default_value_t = 180, value_name = "SECS")]
    pub executor_timeout: u64,

    /// Seconds between two checks for lost executors
    #[arg(long, default_value_t = 15, value_name = "SECS")]
    pub expire_interval: u64,

    /// How tasks reach executors: `pull` (executors poll for them every 50 ms when idle) or `push`
    /// (the scheduler launches them: lower latency, but with Ballista 55 a query can hang when
    /// an executor dies after finishing a map stage); executors must be started with the same
    #[arg(long, value_enum, default_value_t = TaskScheduling::Pull)]
    pub scheduling: TaskScheduling,

    #[command(flatten)]
    pub metrics: MetricsListenArg,
}

/// `--metrics-listen`: where a Ballista node serves `/metrics`.
#[derive(Debug, Args)]
pub struct MetricsListenArg {
    /// Serve Prometheus metrics at http://ADDR/metrics (a port of its own, so it can be opened to
    /// Prometheus alone) [default: none]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskScheduling {
    Push,
    Pull,
}

#[derive(Debug, Args)]
pub struct BallistaExecutorArgs {
    #[command(flatten)]
    pub lake: LakeArg,

    /// The scheduler, `ballista://HOST:PORT`
    #[arg(long, value_name = "URL")]
    pub scheduler: String,

    /// Address of the executor's Arrow Flight service (results and shuffle data)
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,

    /// Port of the gRPC service the scheduler pushes tasks to (on the --listen host; `--scheduling
    /// push` only)
    #[arg(long, default_value_t = 50052, value_name = "PORT")]
    pub grpc_port: u16,

    /// Host name under which the scheduler, clients and other executors reach this executor
    /// [default: the --listen address]
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,

    /// Directory for shuffle files and spills [default: a new temporary directory]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Tasks run at once [default: the machine's cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub vcores: Option<u32>,

    /// How tasks reach this executor: as the scheduler's --scheduling
    #[arg(long, value_enum, default_value_t = TaskScheduling::Pull)]
    pub scheduling: TaskScheduling,

    /// Seconds between heartbeats to the scheduler (keep well below its --executor-timeout)
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_interval: u64,

    #[command(flatten)]
    pub metrics: MetricsListenArg,
}
