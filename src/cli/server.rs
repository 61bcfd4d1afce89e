//! `coder server`: flags (each with its `CODER_*` variable and Coder's default) and start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::{Experiments, ServerConfig};
use crate::duration::GoDuration;

/// Go's `strconv.ParseBool`, which Coder's flags and env vars use.
pub fn parse_go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" | "" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}")),
    }
}

#[derive(Debug, Args, Clone)]
#[command(about = "Start a Coder server", next_line_help = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub command: Option<ServerCommand>,

    /// HTTP bind address of the server.
    #[arg(long, env = "CODER_HTTP_ADDRESS", default_value = "127.0.0.1:3000")]
    pub http_address: SocketAddr,

    /// The URL that users and agents use to reach this server. Defaults to the listen address.
    #[arg(long, env = "CODER_ACCESS_URL")]
    pub access_url: Option<String>,

    /// URL of a PostgreSQL database. If empty, a built-in PostgreSQL is started from the system's binaries.
    #[arg(long, env = "CODER_PG_CONNECTION_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,

    /// Maximum number of open connections to the database.
    #[arg(long, env = "CODER_PG_CONN_MAX_OPEN", default_value_t = 10)]
    pub postgres_conn_max_open: u32,

    /// Directory for the built-in database and the workspaces of the local runtime.
    #[arg(
        long,
        env = "CODER_CACHE_DIRECTORY",
        default_value = "~/.cache/coder",
        global = true
    )]
    pub cache_dir: String,

    /// Comma-separated experiments to enable (`workspace-prebuilds`, `workspace-build-updates`, or `*`).
    #[arg(long, env = "CODER_EXPERIMENTS", value_delimiter = ',')]
    pub experiments: Vec<String>,

    /// Number of provisioner daemons to run inside the server; 0 runs none.
    #[arg(long, env = "CODER_PROVISIONER_DAEMONS", default_value_t = 3)]
    pub provisioner_daemons: u32,

    /// How often daemons poll for jobs when no notification arrives.
    #[arg(
        long,
        env = "CODER_PROVISIONER_DAEMON_POLL_INTERVAL",
        default_value = "1s"
    )]
    pub provisioner_daemon_poll_interval: GoDuration,

    /// A job not finished this long after cancelation is failed.
    #[arg(
        long,
        env = "CODER_PROVISIONER_FORCE_CANCEL_INTERVAL",
        default_value = "10m"
    )]
    pub provisioner_force_cancel_interval: GoDuration,

    /// How long a running job may go without a heartbeat before any replica fails it (hidden: tests).
    #[arg(
        long,
        env = "CODER_PROVISIONER_STALE_TIMEOUT",
        default_value = "60s",
        hide = true
    )]
    pub provisioner_stale_timeout: GoDuration,

    /// How often each replica looks for stale jobs (hidden: tests).
    #[arg(
        long,
        env = "CODER_PROVISIONER_STALE_CHECK_INTERVAL",
        default_value = "10s",
        hide = true
    )]
    pub provisioner_stale_check_interval: GoDuration,

    /// Test hook: build and import jobs wait this long before committing their result (a build after
    /// starting its runtime), so crash tests can kill the server mid-job (hidden).
    #[arg(
        long,
        env = "CODER_TEST_JOB_COMMIT_DELAY",
        default_value = "0s",
        hide = true
    )]
    pub test_job_commit_delay: GoDuration,

    /// Test hook: a create that claims a prebuild waits this long before committing (hidden).
    #[arg(
        long,
        env = "CODER_TEST_CLAIM_COMMIT_DELAY",
        default_value = "0s",
        hide = true
    )]
    pub test_claim_commit_delay: GoDuration,

    /// Serve Prometheus metrics on the Prometheus address.
    #[arg(long, env = "CODER_PROMETHEUS_ENABLE", default_value = "false", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true")]
    pub prometheus_enable: bool,

    /// Address of the Prometheus metrics endpoint.
    #[arg(
        long,
        env = "CODER_PROMETHEUS_ADDRESS",
        default_value = "127.0.0.1:2112"
    )]
    pub prometheus_address: SocketAddr,

    /// Collect agent statistics as metrics.
    #[arg(long, env = "CODER_PROMETHEUS_COLLECT_AGENT_STATS", default_value = "false", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true")]
    pub prometheus_collect_agent_stats: bool,

    /// Labels by which agent statistics are aggregated.
    #[arg(
        long,
        env = "CODER_PROMETHEUS_AGGREGATE_AGENT_STATS_BY",
        value_delimiter = ',',
        default_value = "agent_name,template_name,username,workspace_name"
    )]
    pub prometheus_aggregate_agent_stats_by: Vec<String>,

    /// Collect database query latencies as metrics.
    #[arg(long, env = "CODER_PROMETHEUS_COLLECT_DB_METRICS", default_value = "false", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true")]
    pub prometheus_collect_db_metrics: bool,

    /// How often the prebuild reconciler runs.
    #[arg(
        long,
        env = "CODER_WORKSPACE_PREBUILDS_RECONCILIATION_INTERVAL",
        default_value = "1m"
    )]
    pub workspace_prebuilds_reconciliation_interval: GoDuration,

    /// Backoff step after failed prebuild builds.
    #[arg(
        long,
        env = "CODER_WORKSPACE_PREBUILDS_RECONCILIATION_BACKOFF_INTERVAL",
        default_value = "1m"
    )]
    pub workspace_prebuilds_reconciliation_backoff_interval: GoDuration,

    /// Window in which failed prebuild builds count towards backoff.
    #[arg(
        long,
        env = "CODER_WORKSPACE_PREBUILDS_RECONCILIATION_BACKOFF_LOOKBACK_PERIOD",
        default_value = "1h"
    )]
    pub workspace_prebuilds_reconciliation_backoff_lookback_period: GoDuration,

    /// Consecutive failed prebuild builds after which a preset is hard-limited; 0 disables.
    #[arg(
        long,
        env = "CODER_WORKSPACE_PREBUILDS_FAILURE_HARD_LIMIT",
        default_value_t = 3
    )]
    pub workspace_prebuilds_failure_hard_limit: u32,

    /// Accept prebuild expiration ttls below 3600 seconds (tests and demos).
    #[arg(long, env = "CODER_DANGEROUS_ALLOW_SHORT_PREBUILD_TTL", default_value = "false", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true")]
    pub dangerous_allow_short_prebuild_ttl: bool,

    /// Lifetime of a browser/CLI session (API key).
    #[arg(long, env = "CODER_SESSION_DURATION", default_value = "24h")]
    pub session_duration: GoDuration,

    /// Longest lifetime a created token may have.
    #[arg(long, env = "CODER_MAX_TOKEN_LIFETIME", default_value = "876600h")]
    pub max_token_lifetime: GoDuration,

    /// Output debug-level logs.
    #[arg(short, long, env = "CODER_VERBOSE", default_value = "false", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true")]
    pub verbose: bool,

    /// Where human-readable logs go.
    #[arg(long, env = "CODER_LOGGING_HUMAN", default_value = "/dev/stderr")]
    pub log_human: String,

    /// Where JSON logs go (e.g. /dev/stderr); empty disables.
    #[arg(long, env = "CODER_LOGGING_JSON", default_value = "")]
    pub log_json: String,

    /// Regular expression of logger names to keep (e.g. `coderd.prebuilds`).
    #[arg(long, env = "CODER_LOG_FILTER", default_value = "")]
    pub log_filter: String,
}

#[derive(Debug, Subcommand, Clone)]
pub enum ServerCommand {
    /// Output the connection URL of the built-in PostgreSQL deployment.
    PostgresBuiltinUrl {
        /// Output the raw connection URL instead of a psql command.
        #[arg(long, env = "CODER_RAW_URL", default_value = "false", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true")]
        raw_url: bool,
    },
    /// Run the built-in PostgreSQL deployment only.
    PostgresBuiltinServe {
        /// Output the raw connection URL instead of a psql command.
        #[arg(long, env = "CODER_RAW_URL", default_value = "false", value_parser = parse_go_bool, num_args = 0..=1, default_missing_value = "true")]
        raw_url: bool,
    },
    /// Create a new admin user (owner) in the default organization, without the server running.
    CreateAdminUser {
        #[arg(long, env = "CODER_USERNAME")]
        username: String,
        #[arg(long, env = "CODER_EMAIL")]
        email: String,
        #[arg(long, env = "CODER_PASSWORD", hide_env_values = true)]
        password: String,
    },
}

impl ServerArgs {
    pub fn cache_dir(&self) -> PathBuf {
        expand_home(&self.cache_dir)
    }

    pub fn to_config(&self) -> ServerConfig {
        let access_url = self
            .access_url
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let mut addr = self.http_address;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            });
        ServerConfig {
            http_address: self.http_address,
            access_url: access_url.trim_end_matches('/').to_string(),
            postgres_url: self.postgres_url.clone().filter(|s| !s.is_empty()),
            postgres_conn_max_open: self.postgres_conn_max_open.max(1),
            cache_dir: self.cache_dir(),
            experiments: Experiments::parse(&self.experiments),
            provisioner_daemons: self.provisioner_daemons,
            provisioner_daemon_poll_interval: self.provisioner_daemon_poll_interval.0,
            provisioner_force_cancel_interval: self.provisioner_force_cancel_interval.0,
            provisioner_stale_check_interval: self.provisioner_stale_check_interval.0,
            provisioner_stale_timeout: self.provisioner_stale_timeout.0,
            test_job_commit_delay: self.test_job_commit_delay.0,
            test_claim_commit_delay: self.test_claim_commit_delay.0,
            prometheus_enable: self.prometheus_enable,
            prometheus_address: self.prometheus_address,
            prometheus_collect_agent_stats: self.prometheus_collect_agent_stats,
            prometheus_aggregate_agent_stats_by: self
                .prometheus_aggregate_agent_stats_by
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            prometheus_collect_db_metrics: self.prometheus_collect_db_metrics,
            prebuilds_reconciliation_interval: self.workspace_prebuilds_reconciliation_interval.0,
            prebuilds_backoff_interval: self.workspace_prebuilds_reconciliation_backoff_interval.0,
            prebuilds_backoff_lookback: self
                .workspace_prebuilds_reconciliation_backoff_lookback_period
                .0,
            prebuilds_failure_hard_limit: self.workspace_prebuilds_failure_hard_limit,
            allow_short_prebuild_ttl: self.dangerous_allow_short_prebuild_ttl,
            session_duration: self.session_duration.0,
            max_token_lifetime: self.max_token_lifetime.0,
            password_hashing: crate::users::password::HashParams::production(),
            agent_binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("coder")),
        }
    }
}

/// Expands a leading `~/` the way Coder's defaults are written.
pub fn expand_home(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(path)
}
