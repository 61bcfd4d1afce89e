//! `coder server` start-up and shutdown: database (external or built-in), migrations, HTTP listener.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::{self, AppState};
use crate::cli::server::{ServerArgs, ServerCommand};
use crate::clock::SystemClock;
use crate::db::{self, embedded::BuiltinPostgres};
use crate::{orgs, rbac, users};

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    match args.command.clone() {
        None => serve(args).await,
        Some(ServerCommand::PostgresBuiltinUrl { raw_url }) => {
            let mut pg = BuiltinPostgres::new(&args.cache_dir())?;
            print_url(&pg.load_url()?, raw_url);
            Ok(())
        }
        Some(ServerCommand::PostgresBuiltinServe { raw_url }) => {
            let pg = start_builtin(&args).await?;
            print_url(&pg.url(), raw_url);
            shutdown_signal().await;
            stop_builtin(pg).await;
            Ok(())
        }
        Some(ServerCommand::CreateAdminUser {
            username,
            email,
            password,
        }) => {
            with_database(&args, |pool| async move {
                create_admin_user(&pool, &username, &email, &password).await
            })
            .await
        }
    }
}

fn print_url(url: &str, raw: bool) {
    if raw {
        println!("{url}");
    } else {
        println!("psql \"{url}\"");
    }
}

async fn start_builtin(args: &ServerArgs) -> anyhow::Result<BuiltinPostgres> {
    let mut pg = BuiltinPostgres::new(&args.cache_dir())?;
    tracing::info!(target: "coderd", cache_dir = %args.cache_dir().display(), "using built-in PostgreSQL");
    let pg = tokio::task::spawn_blocking(move || pg.start().map(|_| pg))
        .await
        .context("start built-in PostgreSQL")??;
    Ok(pg)
}

async fn stop_builtin(pg: BuiltinPostgres) {
    match tokio::task::spawn_blocking(move || pg.stop()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(target: "coderd", error = %err, "stop built-in PostgreSQL"),
        Err(err) => tracing::error!(target: "coderd", error = %err, "stop built-in PostgreSQL"),
    }
}

/// Runs `f` with a migrated pool on the configured database, starting and stopping the built-in one
/// around it when no URL is given.
async fn with_database<F, Fut>(args: &ServerArgs, f: F) -> anyhow::Result<()>
where
    F: FnOnce(sqlx::PgPool) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = args.to_config();
    let (url, builtin) = match &config.postgres_url {
        Some(url) => (url.clone(), None),
        None => {
            let pg = start_builtin(args).await?;
            (pg.url(), Some(pg))
        }
    };
    let result = async {
        let pool = db::connect(&url, config.postgres_conn_max_open)
            .await
            .context("connect to PostgreSQL")?;
        db::migrate(&pool).await.context("migrate database")?;
        f(pool).await
    }
    .await;
    if let Some(pg) = builtin {
        stop_builtin(pg).await;
    }
    result
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.to_config();
    with_database(&args, |pool| async move {
        let listener = tokio::net::TcpListener::bind(config.http_address)
            .await
            .with_context(|| format!("listen on {}", config.http_address))?;
        let local = listener.local_addr()?;
        let state = AppState::new(pool, config.clone(), Arc::new(SystemClock)).await?;
        tracing::info!(target: "coderd", "Started HTTP listener at http://{local}");
        tracing::info!(target: "coderd", "View the Web UI: {}", config.access_url);
        let background = CancellationToken::new();
        let tasks = app::start_background(&state, background.clone());
        if config.prometheus_enable {
            crate::metrics::http::serve(state.clone(), background.clone())
                .await
                .with_context(|| format!("listen on {}", config.prometheus_address))?;
        }
        // Requests in flight get a grace period; streams that never end on their own (watch,
        // agent reinit) are cut when it is over, so shutdown is bounded.
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown_signal().await;
            tracing::info!(target: "coderd", "shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(());
        };
        tokio::select! {
            served = app::serve(listener, app::router(state), signal) => served?,
            _ = async {
                if stopping_rx.await.is_ok() {
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::info!(target: "coderd", "grace period over: closing the remaining connections");
            }
        }
        tracing::info!(target: "coderd", "HTTP server stopped");
        // Daemons finish their current job step; a job cut short is failed by the stale detector.
        background.cancel();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            futures::future::join_all(tasks),
        )
        .await;
        Ok(())
    })
    .await
}

/// How long in-flight requests may run after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!(target: "coderd", "shutting down");
}

async fn create_admin_user(
    pool: &sqlx::PgPool,
    username: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    if let Some(err) = crate::api::validate::name_error(username) {
        anyhow::bail!("username {username:?} {err}");
    }
    if !crate::api::validate::email_valid(email) {
        anyhow::bail!("email {email:?} is not valid");
    }
    users::password::validate_strength(password).map_err(anyhow::Error::msg)?;
    let hashed = users::password::hash(password, users::password::HashParams::production())?;
    let now = chrono::Utc::now();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(db::locks::FIRST_USER)
        .execute(&mut *tx)
        .await?;
    let org = orgs::store::ensure_default(&mut tx, now).await?;
    let roles = vec![rbac::ROLE_OWNER.to_string()];
    let user = users::store::insert(
        &mut *tx,
        &users::store::NewUser {
            id: Uuid::new_v4(),
            email,
            username,
            name: "",
            hashed_password: &hashed,
            status: "active",
            login_type: "password",
            rbac_roles: &roles,
            now,
        },
    )
    .await
    .context("create user (does the username or email exist already?)")?;
    orgs::store::add_member(&mut tx, org.id, user.id, &[], now).await?;
    orgs::store::add_member(&mut tx, org.id, users::PREBUILDS_USER_ID, &[], now).await?;
    tx.commit().await?;
    println!(
        "User {username} created with the owner role in organization {}.",
        org.name
    );
    Ok(())
}
