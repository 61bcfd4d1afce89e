//! Cross-replica events over PostgreSQL LISTEN/NOTIFY. Each replica runs one listener connection and fans
//! notifications out to in-process subscribers through a broadcast channel; events published on any
//! replica (by triggers, see `migrations/0002_change_notifications.sql`) reach subscribers on all of them.
//! The listener reconnects after a database outage; subscribers that lag or miss events during an outage
//! re-read current state, since every event only says *what* changed.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;

/// Payload: a workspace id. Any change visible in the workspace's JSON.
pub const WORKSPACE_UPDATES: &str = "workspace_updates";
/// Payload: JSON describing a build's status change (workspace, build, number, transition, job status).
pub const WORKSPACE_BUILD_UPDATES: &str = "workspace_build_updates";

const CHANNELS: &[&str] = &[WORKSPACE_UPDATES, WORKSPACE_BUILD_UPDATES];
/// Handled here rather than broadcast: the API key cache's invalidations.
const AUTH_CHANNEL: &str = crate::api::auth_cache::CHANNEL;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message {
        channel: String,
        payload: String,
    },
    /// The listener reconnected: events may have been missed, so subscribers should resynchronise.
    Resync,
}

#[derive(Debug, Clone)]
pub struct Pubsub {
    tx: broadcast::Sender<Event>,
}

impl Default for Pubsub {
    fn default() -> Self {
        Self::new()
    }
}

impl Pubsub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

/// Runs the replica's listener until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut first = true;
    loop {
        let result = async {
            let mut listener = PgListener::connect_with(&state.pool).await?;
            listener
                .listen_all(CHANNELS.iter().copied().chain([AUTH_CHANNEL]))
                .await?;
            state.auth_cache.set_listening(true);
            if !first {
                let _ = state.pubsub.tx.send(Event::Resync);
            }
            first = false;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok::<(), sqlx::Error>(()),
                    n = listener.try_recv() => match n? {
                        Some(n) if n.channel() == AUTH_CHANNEL => {
                            state.auth_cache.on_notification(n.payload());
                        }
                        Some(n) => {
                            let _ = state.pubsub.tx.send(Event::Message {
                                channel: n.channel().to_string(),
                                payload: n.payload().to_string(),
                            });
                        }
                        // The connection dropped. Reconnect with a fresh listener: subscribers get
                        // a resync once it listens again, and the key cache is off until then.
                        None => return Err(sqlx::Error::Protocol("listener connection lost".into())),
                    },
                }
            }
        }
        .await;
        state.auth_cache.set_listening(false);
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(err) = result {
            tracing::warn!(target: "coderd.pubsub", error = %err, "listener lost its connection; reconnecting");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
