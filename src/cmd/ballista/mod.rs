//! `auditlake ballista scheduler|executor`: the nodes of an Apache Ballista cluster that runs
//! `--engine ballista://…` queries. Both open the lake from their own config and environment
//! (credentials never travel inside plans); what they share with the client — functions,
//! the codec of the lake's tables, the read-only guard — is `auditlake_query::distributed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use auditlake_query::Engine;
use auditlake_query::distributed::{LakeCodec, LakeStores, cluster_state};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::{BallistaCodec, BallistaPhysicalExtensionCodec};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_grpc_service;
use ballista_scheduler::scheduler_server::SchedulerServer;
use ballista_scheduler::state::SchedulerState;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::EXIT_OK;
use crate::cli::{BallistaCommand, BallistaExecutorArgs, BallistaSchedulerArgs, TaskScheduling};
use crate::config::{Config, exposed};

mod metrics;

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
    let codec = Arc::new(LakeCodec::serving(
        lake.url().clone(),
        lake.events().options().clone(),
    ));
    // The task slots of the registered executors, kept current by `track_slots`.
    let slots = Arc::new(AtomicUsize::new(0));
    let builder_slots = slots.clone();
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
            cluster_state(
                with_cluster_partitions(config, builder_slots.load(Ordering::Relaxed)),
                runtime.clone(),
            )
        })),
        override_logical_codec: Some(codec.clone()),
        ..SchedulerConfig::default()
    };
    sched.validate().context("Ballista scheduler")?;
    let sched = Arc::new(sched);
    let rt = super::runtime()?;
    rt.block_on(async {
        let cluster = BallistaCluster::new_from_config(&sched)
            .await
            .context("Ballista scheduler")?;
        // Ballista's `start_server`, with auditlake's metrics collector instead of its default
        // (which, with Ballista's prometheus feature off, records nothing).
        let metrics = Arc::new(metrics::SchedulerMetrics::new());
        let mut server = SchedulerServer::<LogicalPlanNode, PhysicalPlanNode>::new(
            sched.scheduler_endpoint(),
            cluster,
            BallistaCodec::new(codec, Arc::new(BallistaPhysicalExtensionCodec::default())),
            sched.clone(),
            metrics.clone(),
        );
        server.init().await.context("Ballista scheduler")?;
        tokio::spawn(track_slots(server.state.clone(), slots));
        if let Some(listen) = args.metrics.metrics_listen {
            let state = server.state.clone();
            let render: metrics::Render = Arc::new(move || {
                let (metrics, state) = (metrics.clone(), state.clone());
                Box::pin(async move { metrics.render(&state.executor_manager).await })
            });
            tokio::spawn(report_metrics_failure(metrics::serve(listen, render)));
        }
        eprintln!(
            "ballista scheduler (auditlake {}) for {} listening on {}",
            auditlake_query::distributed::build_fingerprint(),
            lake.display(),
            args.listen
        );
        start_grpc_service(args.listen, server)
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
        // The scheduler has a job's shuffle files removed 5 min after it finishes; this sweep
        // removes what a job the scheduler forgot (restarted, failed over) left behind, so a
        // work directory cannot fill up over weeks. A day outlasts any running job.
        job_data_clean_up_interval_seconds: 3600,
        job_data_ttl_seconds: 86_400,
        override_function_registry: Some(Arc::new(registry)),
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| Ok(runtime.clone()))),
        ..ExecutorProcessConfig::default()
    };
    let rt = super::runtime()?;
    eprintln!(
        "ballista executor (auditlake {}) for {} on {}, scheduler {}",
        auditlake_query::distributed::build_fingerprint(),
        lake.display(),
        args.listen,
        args.scheduler
    );
    rt.block_on(async {
        if let Some(listen) = args.metrics.metrics_listen {
            let metrics = Arc::new(metrics::ExecutorMetrics::new(work_dir));
            let render: metrics::Render = Arc::new(move || {
                let metrics = metrics.clone();
                Box::pin(async move {
                    // Walks the work directory: off the async workers.
                    tokio::task::spawn_blocking(move || metrics.render())
                        .await
                        .unwrap_or_default()
                })
            });
            tokio::spawn(report_metrics_failure(metrics::serve(listen, render)));
        }
        start_executor_process(Arc::new(opt)).await
    })
    .context("Ballista executor")?;
    Ok(EXIT_OK)
}

/// A job's session config with at least one partition per task slot of the cluster. The client
/// sends its own `target_partitions` (its cores): a 2-core laptop would otherwise split every
/// scan into 2 partitions however many executors there are.
fn with_cluster_partitions(config: SessionConfig, slots: usize) -> SessionConfig {
    if slots > config.target_partitions() {
        config.with_target_partitions(slots)
    } else {
        config
    }
}

/// Keeps `slots` at the sum of the registered executors' `--vcores`, checked every 2 s (a
/// job planned in between uses the previous count: fewer or more partitions, same rows).
async fn track_slots(
    state: Arc<SchedulerState<LogicalPlanNode, PhysicalPlanNode>>,
    slots: Arc<AtomicUsize>,
) {
    loop {
        if let Ok(executors) = state.executor_manager.get_executors_state().await {
            let total = executors
                .iter()
                .map(|(meta, _, _)| meta.specification.vcores as usize)
                .sum();
            slots.store(total, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A metrics port that cannot be bound stops the process: a node Prometheus cannot see must not
/// look healthy.
async fn report_metrics_failure(serve: impl std::future::Future<Output = anyhow::Result<()>>) {
    if let Err(e) = serve.await {
        eprintln!("error: {}", auditlake_ingest::error::chain(e.as_ref()));
        std::process::exit(crate::EXIT_ERROR.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job gets one partition per slot of the cluster, never fewer than the client asked for.
    #[test]
    fn jobs_are_split_across_every_task_slot() {
        let client = SessionConfig::new().with_target_partitions(2);
        assert_eq!(
            with_cluster_partitions(client.clone(), 6).target_partitions(),
            6
        );
        assert_eq!(
            with_cluster_partitions(client.clone(), 1).target_partitions(),
            2
        );
        // No executor registered yet: the client's value.
        assert_eq!(with_cluster_partitions(client, 0).target_partitions(), 2);
    }
}
