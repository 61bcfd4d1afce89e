//! Log sinks (`--log-human`, `--log-json`), level (`--verbose`) and logger-name filter (`--log-filter`).
//! Logger names are `tracing` targets with Coder's names (`coderd`, `coderd.prebuilds`, ...).

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::cli::server::ServerArgs;

type Sink = Box<dyn Write + Send>;

fn open_sink(path: &str) -> Option<Arc<Mutex<Sink>>> {
    let sink: Sink = match path {
        "" => return None,
        "/dev/stderr" => Box::new(std::io::stderr()),
        "/dev/stdout" => Box::new(std::io::stdout()),
        file => match OpenOptions::new().create(true).append(true).open(file) {
            Ok(f) => Box::new(f),
            Err(err) => {
                eprintln!("cannot open log file {file}: {err}");
                return None;
            }
        },
    };
    Some(Arc::new(Mutex::new(sink)))
}

#[derive(Clone)]
struct SharedWriter(Arc<Mutex<Sink>>);

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// Keeps nothing alive today; returned so callers hold logging for the process lifetime.
pub struct LogGuard;

pub fn init(args: &ServerArgs) -> LogGuard {
    let level = if args.verbose {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let name_filter = match args.log_filter.as_str() {
        "" => None,
        pattern => regex::Regex::new(pattern).ok(),
    };
    let keep = move |meta: &tracing::Metadata<'_>| {
        // Our own loggers only (dependencies are noisy); optionally narrowed by --log-filter.
        let target = meta.target();
        let ours = target.starts_with("coderd") || target.starts_with("coder");
        ours && name_filter.as_ref().is_none_or(|re| re.is_match(target))
    };
    let human = open_sink(&args.log_human).map(|sink| {
        let writer = SharedWriter(sink);
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_target(true)
            .with_filter(level)
            .with_filter(filter_fn(keep.clone()))
    });
    let json = open_sink(&args.log_json).map(|sink| {
        let writer = SharedWriter(sink);
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(move || writer.clone())
            .with_filter(level)
            .with_filter(filter_fn(keep))
    });
    let db_metrics = (args.prometheus_enable && args.prometheus_collect_db_metrics)
        .then(crate::metrics::db_queries::layer);
    let _ = tracing_subscriber::registry()
        .with(human)
        .with(json)
        .with(db_metrics)
        .try_init();
    LogGuard
}
