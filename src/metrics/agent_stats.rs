//! `coderd_agentstats_*` (with `--prometheus-collect-agent-stats`): the latest statistics each agent
//! reported to this replica (`POST /workspaceagents/me/report-stats`), summed over the label set of
//! `--prometheus-aggregate-agent-stats-by`. Agents that stop reporting drop out after two minutes.
//! Like Coder's, these are per-replica series: each replica reports the agents connected to it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts, Registry};
use serde::Deserialize;
use uuid::Uuid;

use crate::config::AGENT_STATS_LABELS;

const EXPIRY: Duration = Duration::from_secs(120);

/// Coder's `agentsdk.Stats` (the fields these series use; everything else is ignored).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Stats {
    pub connection_count: i64,
    pub connection_median_latency_ms: f64,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub session_count_vscode: i64,
    pub session_count_jetbrains: i64,
    pub session_count_reconnecting_pty: i64,
    pub session_count_ssh: i64,
}

/// Who reported: the values of every aggregatable label.
#[derive(Debug, Clone)]
pub struct AgentLabels {
    pub agent_name: String,
    pub template_name: String,
    pub username: String,
    pub workspace_name: String,
}

impl AgentLabels {
    fn get(&self, name: &str) -> &str {
        match name {
            "agent_name" => &self.agent_name,
            "template_name" => &self.template_name,
            "username" => &self.username,
            _ => &self.workspace_name,
        }
    }
}

pub struct AgentStats {
    enabled: bool,
    labels: Vec<&'static str>,
    latest: Mutex<HashMap<Uuid, (AgentLabels, Stats, Instant)>>,
}

impl AgentStats {
    pub fn new(enabled: bool, aggregate_by: &[String]) -> Self {
        // Unknown names are ignored, as the flag documents the allowed set; order is fixed.
        let labels = AGENT_STATS_LABELS
            .iter()
            .copied()
            .filter(|l| aggregate_by.iter().any(|a| a == l))
            .collect();
        Self {
            enabled,
            labels,
            latest: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn record(&self, agent: Uuid, labels: AgentLabels, stats: Stats) {
        if !self.enabled {
            return;
        }
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.insert(agent, (labels, stats, Instant::now()));
    }

    /// The aggregated families (empty when disabled).
    pub fn gather(&self) -> Vec<MetricFamily> {
        if !self.enabled {
            return Vec::new();
        }
        let mut sums: BTreeMap<Vec<String>, (Stats, usize)> = BTreeMap::new();
        {
            let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
            latest.retain(|_, (_, _, at)| at.elapsed() < EXPIRY);
            for (labels, s, _) in latest.values() {
                let key: Vec<String> = self
                    .labels
                    .iter()
                    .map(|l| labels.get(l).to_string())
                    .collect();
                let (sum, n) = sums.entry(key).or_default();
                sum.connection_count += s.connection_count;
                sum.connection_median_latency_ms += s.connection_median_latency_ms;
                sum.rx_bytes += s.rx_bytes;
                sum.tx_bytes += s.tx_bytes;
                sum.session_count_vscode += s.session_count_vscode;
                sum.session_count_jetbrains += s.session_count_jetbrains;
                sum.session_count_reconnecting_pty += s.session_count_reconnecting_pty;
                sum.session_count_ssh += s.session_count_ssh;
                *n += 1;
            }
        }
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = GaugeVec::new(Opts::new(name, help), &self.labels).ok()?;
            registry.register(Box::new(g.clone())).ok()?;
            Some(g)
        };
        type Pick = fn(&Stats, usize) -> f64;
        let series: [(&str, &str, Pick); 8] = [
            (
                "coderd_agentstats_connection_count",
                "The number of established connections by agent",
                |s, _| s.connection_count as f64,
            ),
            (
                "coderd_agentstats_connection_median_latency_seconds",
                "The median agent connection latency",
                |s, n| s.connection_median_latency_ms / 1000.0 / n.max(1) as f64,
            ),
            ("coderd_agentstats_rx_bytes", "Agent Rx bytes", |s, _| {
                s.rx_bytes as f64
            }),
            ("coderd_agentstats_tx_bytes", "Agent Tx bytes", |s, _| {
                s.tx_bytes as f64
            }),
            (
                "coderd_agentstats_session_count_jetbrains",
                "The number of session established by JetBrains",
                |s, _| s.session_count_jetbrains as f64,
            ),
            (
                "coderd_agentstats_session_count_reconnecting_pty",
                "The number of session established by reconnecting PTY",
                |s, _| s.session_count_reconnecting_pty as f64,
            ),
            (
                "coderd_agentstats_session_count_ssh",
                "The number of session established by SSH",
                |s, _| s.session_count_ssh as f64,
            ),
            (
                "coderd_agentstats_session_count_vscode",
                "The number of session established by VSCode",
                |s, _| s.session_count_vscode as f64,
            ),
        ];
        for (name, help, pick) in series {
            let Some(g) = gauge(name, help) else { continue };
            for (key, (sum, n)) in &sums {
                let values: Vec<&str> = key.iter().map(String::as_str).collect();
                g.with_label_values(&values).set(pick(sum, *n));
            }
        }
        registry.gather()
    }
}
