//! The test binary's one global `tracing` subscriber: counts sqlx statements inside a
//! `count_statements` span (the per-tick statement test) and feeds the DB query latency metric, as
//! `coder server --prometheus-collect-db-metrics` does.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub static STATEMENTS: AtomicU64 = AtomicU64::new(0);
pub const COUNT_SPAN: &str = "count_statements";

struct StatementCounter;

impl<S> Layer<S> for StatementCounter
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        if let Some(scope) = ctx.event_scope(event) {
            if scope.from_root().any(|span| span.name() == COUNT_SPAN) {
                STATEMENTS.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() == "sqlx::query" || meta.name() == COUNT_SPAN
        });
        let _ = tracing_subscriber::registry()
            .with(StatementCounter.with_filter(filter))
            .with(coder::metrics::db_queries::layer())
            .try_init();
    });
}
