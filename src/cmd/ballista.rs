//! `auditlake ballista scheduler|executor`: the nodes of an Apache Ballista cluster that runs
//! `--engine ballista://…` queries. Both open the lake from their own config and environment
//! (credentials never travel inside plans); what they share with the client — functions,
//! the codec of the lake's tables, the read-only guard — is `auditlake_query::distributed`.

use std::sync::Arc;

use anyhow::{Context, bail};
use auditlake_query::Engine;
use auditlake_query::distributed::{LakeCodec, LakeStores, cluster_state};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;

use crate::EXIT_OK;
use crate::cli::{BallistaCommand, BallistaExecutorArgs, BallistaSchedulerArgs, TaskScheduling};
use crate::config::{Config, exposed};

fn policy(scheduling: TaskScheduling) -> ballista_core::config::TaskSchedulingPolicy {
    match scheduling {
        TaskScheduling::Push => ballista_core::config::TaskSchedulingPolicy::PushStaged,
        TaskScheduling::Pull => ballista_core::config::TaskSchedulingPolicy::PullStaged,
    }
}

pub fn run(config: &Config, command: BallistaCommand) -> anyhow::Result<u8> {
    match command {
        BallistaCommand::Scheduler(args) => scheduler(config, args),
        BallistaCommand::Executor(args) => executor(config, args),
    }
}

/// The lake's store registry: the lake's bucket from this process's `[lake.storage]` and
/// environment.
fn stores(config: &Config, lake: &auditlake_ingest::Lake) -> Arc<LakeStores> {
    Arc::new(LakeStores::new(
        lake.url().clone(),
        exposed(&config.lake.storage),
    ))
}

fn scheduler(config: &Config, args: BallistaSchedulerArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    if !lake.is_remote() && !lake.root().is_dir() {
        bail!("no lake at {}", lake.display());
    }
    auditlake_ingest::lake::store::register_remote_schemes();
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(stores(config, &lake))
        // Every query sees the files committed since the last one (see open_lake_at).
        .with_object_list_cache_limit(0)
        .build_arc()?;
    let codec = LakeCodec::serving(lake.url().clone(), lake.events().options().clone());
    let sched = SchedulerConfig {
        bind_host: args.listen.ip().to_string(),
        bind_port: args.listen.port(),
        external_host: args
            .external_host
            .clone()
            .unwrap_or_else(|| args.listen.ip().to_string()),
        scheduling_policy: policy(args.scheduling),
        executor_timeout_seconds: args.executor_timeout,
        expire_dead_executor_interval_seconds: args.expire_interval,
        override_session_builder: Some(Arc::new(move |config: SessionConfig| {
            cluster_state(config, runtime.clone())
        })),
        override_logical_codec: Some(Arc::new(codec)),
        ..SchedulerConfig::default()
    };
    let rt = super::runtime()?;
    rt.block_on(async {
        let cluster = BallistaCluster::new_from_config(&sched)
            .await
            .context("Ballista scheduler")?;
        eprintln!(
            "ballista scheduler for {} listening on {}",
            lake.display(),
            args.listen
        );
        start_server(cluster, args.listen, Arc::new(sched))
            .await
            .context("Ballista scheduler")
    })?;
    Ok(EXIT_OK)
}

fn executor(config: &Config, args: BallistaExecutorArgs) -> anyhow::Result<u8> {
    let lake = config.lake(args.lake.lake.as_deref())?;
    let Engine::Ballista { host, port } = Engine::parse(&args.scheduler).context("--scheduler")?
    else {
        bail!(
            "--scheduler {}: expected ballista://HOST:PORT",
            args.scheduler
        );
    };
    let work_dir = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("--work-dir {}", d.display()))?;
            d.clone()
        }
        None => std::env::temp_dir().join(format!("auditlake-ballista-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("work directory {}", work_dir.display()))?;
    let work_dir_str = work_dir
        .to_str()
        .with_context(|| format!("work directory {} is not UTF-8", work_dir.display()))?
        .to_owned();
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(stores(config, &lake))
        .with_temp_file_path(work_dir.clone())
        .build_arc()?;
    // Tasks decode their functions by name from this registry: the scheduler's session's.
    let registry =
        BallistaFunctionRegistry::from(&cluster_state(SessionConfig::default(), runtime.clone())?);
    let external_host = args
        .external_host
        .clone()
        .or_else(|| (!args.listen.ip().is_unspecified()).then(|| args.listen.ip().to_string()));
    let opt = ExecutorProcessConfig {
        bind_host: args.listen.ip().to_string(),
        external_host,
        port: args.listen.port(),
        grpc_port: args.grpc_port,
        scheduler_host: host,
        scheduler_port: port,
        // The scheduler may still be starting (a Deployment's pods start in any order).
        scheduler_connect_timeout_seconds: 30,
        vcores: args.vcores.map_or_else(
            || std::thread::available_parallelism().map_or(2, |n| n.get()),
            |n| n as usize,
        ),
        work_dir: Some(work_dir_str),
        task_scheduling_policy: policy(args.scheduling),
        executor_heartbeat_interval_seconds: args.heartbeat_interval,
        override_function_registry: Some(Arc::new(registry)),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| Ok(runtime.clone()))),
        ..ExecutorProcessConfig::default()
    };
    let rt = super::runtime()?;
    eprintln!(
        "ballista executor for {} on {}, scheduler {}",
        lake.display(),
        args.listen,
        args.scheduler
    );
    rt.block_on(start_executor_process(Arc::new(opt)))
        .context("Ballista executor")?;
    Ok(EXIT_OK)
}
