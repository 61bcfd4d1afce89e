//! Prometheus metrics with Coder's names. In-process series (API requests, provisioner jobs, claim and
//! creation histograms, process stats) live in one registry; series that must agree across replicas
//! and survive restarts (prebuild counters and gauges, job queue, agents) are computed from the
//! database by [`db_backed`], cached for a few seconds. `/metrics` is served on its own listener
//! (`--prometheus-address`) only when `--prometheus-enable` is set; see `docs/metrics.md`.

pub mod agent_stats;
pub mod db_backed;
pub mod db_queries;
pub mod http;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::config::ServerConfig;

/// Latency buckets for HTTP requests and DB queries (seconds), as Coder's.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.010, 0.025, 0.050, 0.100, 0.500, 1.0, 5.0, 10.0, 30.0,
];
/// Durations of builds and creations (seconds).
const BUILD_BUCKETS: &[f64] = &[1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0];
/// Claims are quick; Coder's buckets.
const CLAIM_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0,
];

/// Every in-process series.
pub struct Metrics {
    pub registry: Registry,
    pub api_requests: IntCounterVec,
    pub api_latency: HistogramVec,
    pub api_concurrent: IntGauge,
    pub provisioner_jobs_current: IntGaugeVec,
    pub provisioner_job_timings: HistogramVec,
    pub prebuild_claim_duration: HistogramVec,
    pub workspace_creation_duration: HistogramVec,
    pub reconcile_duration: Histogram,
    pub agent_stats: agent_stats::AgentStats,
    pub db_cache: db_backed::Cache,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static; a failure here is a programming error caught by every test.
    r.unwrap_or_else(|err| panic!("metric definition: {err}"))
}

impl Metrics {
    pub fn new(config: &ServerConfig) -> Self {
        let registry = Registry::new();
        let api_requests = must(IntCounterVec::new(
            Opts::new(
                "coderd_api_requests_processed_total",
                "The total number of processed API requests",
            ),
            &["code", "method", "path"],
        ));
        let api_latency = must(HistogramVec::new(
            HistogramOpts::new(
                "coderd_api_request_latencies_seconds",
                "Latency distribution of requests in seconds.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "path"],
        ));
        let api_concurrent = must(IntGauge::new(
            "coderd_api_concurrent_requests",
            "The number of concurrent API requests.",
        ));
        let provisioner_jobs_current = must(IntGaugeVec::new(
            Opts::new(
                "coderd_provisionerd_jobs_current",
                "The number of currently running provisioner jobs on this replica.",
            ),
            &["provisioner"],
        ));
        let provisioner_job_timings = must(HistogramVec::new(
            HistogramOpts::new(
                "coderd_provisionerd_job_timings_seconds",
                "The provisioner job time duration in seconds.",
            )
            .buckets(BUILD_BUCKETS.to_vec()),
            &["provisioner", "status"],
        ));
        let prebuild_claim_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "coderd_prebuilt_workspace_claim_duration_seconds",
                "Time to claim a prebuilt workspace by organization, template, and preset.",
            )
            .buckets(CLAIM_BUCKETS.to_vec()),
            &["organization_name", "template_name", "preset_name"],
        ));
        let workspace_creation_duration = must(HistogramVec::new(
            HistogramOpts::new(
                "coderd_workspace_creation_duration_seconds",
                "Time to create a workspace by organization, template, preset, and type (regular or prebuild).",
            )
            .buckets(BUILD_BUCKETS.to_vec()),
            &["organization_name", "template_name", "preset_name", "type"],
        ));
        let reconcile_duration = must(Histogram::with_opts(
            HistogramOpts::new(
                "coderd_prebuilds_reconciliation_duration_seconds",
                "Duration of each prebuilds reconciliation cycle.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        ));
        let build_info = must(IntGaugeVec::new(
            Opts::new("coderd_build_info", "The server's version; always 1."),
            &["version"],
        ));
        build_info.with_label_values(&[crate::app::VERSION]).set(1);
        for c in [
            Box::new(api_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(api_latency.clone()),
            Box::new(api_concurrent.clone()),
            Box::new(provisioner_jobs_current.clone()),
            Box::new(provisioner_job_timings.clone()),
            Box::new(prebuild_claim_duration.clone()),
            Box::new(workspace_creation_duration.clone()),
            Box::new(reconcile_duration.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            must(registry.register(c));
        }
        if config.prometheus_collect_db_metrics {
            must(registry.register(Box::new(db_queries::histogram().clone())));
        }
        Self {
            registry,
            api_requests,
            api_latency,
            api_concurrent,
            provisioner_jobs_current,
            provisioner_job_timings,
            prebuild_claim_duration,
            workspace_creation_duration,
            reconcile_duration,
            agent_stats: agent_stats::AgentStats::new(
                config.prometheus_collect_agent_stats,
                &config.prometheus_aggregate_agent_stats_by,
            ),
            db_cache: db_backed::Cache::default(),
        }
    }
}
