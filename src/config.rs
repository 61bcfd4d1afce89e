//! Typed server configuration, built from the CLI flags (or directly by tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::users::password::HashParams;

pub const EXPERIMENT_WORKSPACE_PREBUILDS: &str = "workspace-prebuilds";
pub const EXPERIMENT_WORKSPACE_BUILD_UPDATES: &str = "workspace-build-updates";

/// Experiments `*` expands to.
pub const KNOWN_EXPERIMENTS: &[&str] = &[
    EXPERIMENT_WORKSPACE_PREBUILDS,
    EXPERIMENT_WORKSPACE_BUILD_UPDATES,
];

/// The labels agent statistics may be aggregated by (Coder's default set).
pub const AGENT_STATS_LABELS: &[&str] =
    &["agent_name", "template_name", "username", "workspace_name"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Experiments(Vec<String>);

impl Experiments {
    /// Parses the comma list; `*` enables every known experiment, unknown names are kept (as Coder does).
    pub fn parse(items: &[String]) -> Self {
        let mut out: Vec<String> = Vec::new();
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let names: Vec<String> = if item == "*" {
                KNOWN_EXPERIMENTS.iter().map(|s| s.to_string()).collect()
            } else {
                vec![item.to_string()]
            };
            for name in names {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        Self(out)
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.0.iter().any(|e| e == name)
    }

    pub fn list(&self) -> &[String] {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http_address: SocketAddr,
    pub access_url: String,
    pub postgres_url: Option<String>,
    pub postgres_conn_max_open: u32,
    pub cache_dir: PathBuf,
    pub experiments: Experiments,
    pub provisioner_daemons: u32,
    pub provisioner_daemon_poll_interval: Duration,
    pub provisioner_force_cancel_interval: Duration,
    /// How often every replica looks for running jobs whose daemon stopped heartbeating.
    pub provisioner_stale_check_interval: Duration,
    /// A running job without a heartbeat for this long is failed ("hung").
    pub provisioner_stale_timeout: Duration,
    /// Test hook: jobs pause before committing their result (0 = off).
    pub test_job_commit_delay: Duration,
    /// Test hook: claims pause before committing (0 = off).
    pub test_claim_commit_delay: Duration,
    pub prometheus_enable: bool,
    pub prometheus_address: SocketAddr,
    pub prometheus_collect_agent_stats: bool,
    /// Labels agent statistics are aggregated by (subset of agent_name, template_name, username,
    /// workspace_name).
    pub prometheus_aggregate_agent_stats_by: Vec<String>,
    pub prometheus_collect_db_metrics: bool,
    pub prebuilds_reconciliation_interval: Duration,
    pub prebuilds_backoff_interval: Duration,
    pub prebuilds_backoff_lookback: Duration,
    pub prebuilds_failure_hard_limit: u32,
    pub allow_short_prebuild_ttl: bool,
    pub session_duration: Duration,
    pub max_token_lifetime: Duration,
    pub password_hashing: HashParams,
    /// The `coder` binary the local runtime starts as `coder agent` (the running binary by default).
    pub agent_binary: PathBuf,
}

impl ServerConfig {
    /// Defaults as `coder server` has them with no flags; tests start from this.
    pub fn for_tests(cache_dir: PathBuf) -> Self {
        Self {
            http_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_url: "http://127.0.0.1".into(),
            postgres_url: None,
            postgres_conn_max_open: 10,
            cache_dir,
            experiments: Experiments::default(),
            provisioner_daemons: 3,
            provisioner_daemon_poll_interval: Duration::from_secs(1),
            provisioner_force_cancel_interval: Duration::from_secs(600),
            provisioner_stale_check_interval: Duration::from_secs(10),
            provisioner_stale_timeout: Duration::from_secs(60),
            test_job_commit_delay: Duration::ZERO,
            test_claim_commit_delay: Duration::ZERO,
            prometheus_enable: false,
            prometheus_address: SocketAddr::from(([127, 0, 0, 1], 2112)),
            prometheus_collect_agent_stats: false,
            prometheus_aggregate_agent_stats_by: AGENT_STATS_LABELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            prometheus_collect_db_metrics: false,
            prebuilds_reconciliation_interval: Duration::from_secs(60),
            prebuilds_backoff_interval: Duration::from_secs(60),
            prebuilds_backoff_lookback: Duration::from_secs(3600),
            prebuilds_failure_hard_limit: 3,
            allow_short_prebuild_ttl: false,
            session_duration: Duration::from_secs(24 * 3600),
            max_token_lifetime: Duration::from_secs(876_600 * 3600),
            password_hashing: HashParams::fast_for_tests(),
            agent_binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("coder")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_expands_and_duplicates_collapse() {
        let e = Experiments::parse(&["*".into(), "workspace-prebuilds".into(), " ".into()]);
        assert_eq!(e.list(), KNOWN_EXPERIMENTS);
        assert!(e.enabled(EXPERIMENT_WORKSPACE_PREBUILDS));
        assert!(!Experiments::default().enabled(EXPERIMENT_WORKSPACE_PREBUILDS));
    }
}
