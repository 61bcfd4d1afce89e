//! `coderd_db_query_latencies_seconds{query}` (with `--prometheus-collect-db-metrics`): sqlx reports
//! every statement it runs as a `tracing` event (target `sqlx::query`, with the statement's first
//! four words and its elapsed time); a layer turns those events into observations. Coder labels by
//! query method name; ours is the statement's first four words, which is bounded by the code's
//! queries (values are always bound parameters, never part of the text).

use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

pub fn histogram() -> &'static HistogramVec {
    static H: OnceLock<HistogramVec> = OnceLock::new();
    H.get_or_init(|| {
        HistogramVec::new(
            HistogramOpts::new(
                "coderd_db_query_latencies_seconds",
                "Latency distribution of queries in seconds.",
            )
            .buckets(super::LATENCY_BUCKETS.to_vec()),
            &["query"],
        )
        .unwrap_or_else(|err| panic!("metric definition: {err}"))
    })
}

#[derive(Default)]
struct QueryFields {
    summary: Option<String>,
    elapsed: Option<f64>,
}

impl Visit for QueryFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.summary = Some(value.to_string());
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed = Some(value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" && self.summary.is_none() {
            self.summary = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

/// The tracing layer; install it with a filter on target `sqlx::query`.
pub struct QueryLatencyLayer;

impl<S: tracing::Subscriber> Layer<S> for QueryLatencyLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut fields = QueryFields::default();
        event.record(&mut fields);
        if let (Some(summary), Some(elapsed)) = (fields.summary, fields.elapsed) {
            // Keep labels short and stable: the first four words, trailing punctuation trimmed.
            let label: String = summary
                .trim_end_matches(['…', ' ', ',', '('])
                .chars()
                .take(80)
                .collect();
            histogram().with_label_values(&[&label]).observe(elapsed);
        }
    }
}

/// The layer with its filter, ready for `registry().with(...)`.
pub fn layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    QueryLatencyLayer.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
        meta.target() == "sqlx::query"
    }))
}
