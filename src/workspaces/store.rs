//! Reading workspaces and builds into Coder's JSON with a fixed number of queries (not one per row):
//! workspaces, their builds, the builds' jobs, resources, agents and apps are each loaded in one batch.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::types::*;
use crate::users::PREBUILDS_USER_ID;

/// How long after its last heartbeat an agent counts as disconnected.
pub const AGENT_INACTIVE_TIMEOUT: chrono::Duration = chrono::Duration::seconds(30);

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WorkspaceRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub owner_id: Uuid,
    pub organization_id: Uuid,
    pub template_id: Uuid,
    pub deleted: bool,
    pub name: String,
    pub autostart_schedule: Option<String>,
    pub ttl_ms: Option<i64>,
    pub last_used_at: DateTime<Utc>,
    pub dormant_at: Option<DateTime<Utc>>,
    pub deleting_at: Option<DateTime<Utc>>,
    pub automatic_updates: String,
    pub favorite: bool,
    pub next_start_at: Option<DateTime<Utc>>,
    pub owner_name: String,
    pub owner_avatar_url: String,
    pub organization_name: String,
    pub template_name: String,
    pub template_display_name: String,
    pub template_icon: String,
    pub allow_user_cancel_workspace_jobs: bool,
    pub active_version_id: Uuid,
    pub require_active_version: bool,
    pub latest_build_id: Uuid,
}

/// The columns of [`WorkspaceRow`] but `latest_build_id`, over `w` (workspaces), `u` (owner),
/// `o` (organization) and `t` (template); a macro so statements can `concat!` it.
macro_rules! workspace_columns {
    () => {
        "w.id, w.created_at, w.updated_at, w.owner_id, w.organization_id,
        w.template_id, w.deleted, w.name, w.autostart_schedule, w.ttl_ms, w.last_used_at, w.dormant_at,
        w.deleting_at, w.automatic_updates, w.favorite, w.next_start_at,
        u.username AS owner_name, u.avatar_url AS owner_avatar_url, o.name AS organization_name,
        t.name AS template_name, t.display_name AS template_display_name, t.icon AS template_icon,
        t.allow_user_cancel_workspace_jobs, t.active_version_id, t.require_active_version"
    };
}
pub(crate) use workspace_columns;

const WORKSPACE_SELECT: &str = concat!(
    "SELECT ",
    workspace_columns!(),
    ", lb.id AS latest_build_id
    FROM workspaces w
    JOIN users u ON u.id = w.owner_id
    JOIN organizations o ON o.id = w.organization_id
    JOIN templates t ON t.id = w.template_id
    JOIN LATERAL (SELECT b.id FROM workspace_builds b WHERE b.workspace_id = w.id
                  ORDER BY b.build_number DESC LIMIT 1) lb ON true"
);

pub async fn workspace_row(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<WorkspaceRow>, sqlx::Error> {
    sqlx::query_as(&format!("{WORKSPACE_SELECT} WHERE w.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn workspace_row_by_owner_and_name(
    conn: &mut PgConnection,
    owner: Uuid,
    name: &str,
    include_deleted: bool,
) -> Result<Option<WorkspaceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{WORKSPACE_SELECT} WHERE w.owner_id = $1 AND lower(w.name) = lower($2) AND ($3 OR NOT w.deleted)
         ORDER BY w.deleted, w.created_at DESC LIMIT 1"
    ))
    .bind(owner)
    .bind(name)
    .bind(include_deleted)
    .fetch_optional(conn)
    .await
}

/// Workspace rows for a search: `sql_filter` is a WHERE fragment over `w`, `u`, `t`, `lb`-joined builds and
/// jobs, bound by `bind`. Returns the page and the total count.
pub async fn workspace_rows(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<WorkspaceRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{WORKSPACE_SELECT} WHERE w.id = ANY($1) ORDER BY array_position($1, w.id)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BuildRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub workspace_id: Uuid,
    pub template_version_id: Uuid,
    pub build_number: i32,
    pub transition: String,
    pub initiator_id: Uuid,
    pub job_id: Uuid,
    pub deadline: Option<DateTime<Utc>>,
    pub max_deadline: Option<DateTime<Utc>>,
    pub reason: String,
    pub daily_cost: i32,
    pub template_version_preset_id: Option<Uuid>,
    pub workspace_name: String,
    pub owner_id: Uuid,
    pub owner_name: String,
    pub owner_avatar_url: String,
    pub template_version_name: String,
    pub initiator_name: String,
}

const BUILD_SELECT: &str = "SELECT b.id, b.created_at, b.updated_at, b.workspace_id, b.template_version_id,
        b.build_number, b.transition, b.initiator_id, b.job_id, b.deadline, b.max_deadline, b.reason,
        b.daily_cost, b.template_version_preset_id, w.name AS workspace_name, w.owner_id,
        u.username AS owner_name, u.avatar_url AS owner_avatar_url, tv.name AS template_version_name,
        iu.username AS initiator_name
    FROM workspace_builds b
    JOIN workspaces w ON w.id = b.workspace_id
    JOIN users u ON u.id = w.owner_id
    JOIN template_versions tv ON tv.id = b.template_version_id
    JOIN users iu ON iu.id = b.initiator_id";

pub async fn build_rows(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<BuildRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{BUILD_SELECT} WHERE b.id = ANY($1) ORDER BY array_position($1, b.id)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}

pub async fn build_ids_of_workspace(
    conn: &mut PgConnection,
    workspace: Uuid,
    limit: Option<i64>,
    offset: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM workspace_builds WHERE workspace_id = $1 ORDER BY build_number DESC LIMIT $2 OFFSET $3",
    )
    .bind(workspace)
    .bind(limit)
    .bind(offset)
    .fetch_all(conn)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct ResourceRow {
    id: Uuid,
    created_at: DateTime<Utc>,
    job_id: Uuid,
    transition: String,
    r#type: String,
    name: String,
    hide: bool,
    icon: String,
    daily_cost: i32,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    name: String,
    resource_id: Uuid,
    first_connected_at: Option<DateTime<Utc>>,
    last_connected_at: Option<DateTime<Utc>>,
    disconnected_at: Option<DateTime<Utc>>,
    architecture: String,
    operating_system: String,
    environment_variables: sqlx::types::Json<BTreeMap<String, String>>,
    directory: String,
    expanded_directory: String,
    version: String,
    api_version: String,
    connection_timeout_seconds: i32,
    troubleshooting_url: String,
    lifecycle_state: String,
    started_at: Option<DateTime<Utc>>,
    ready_at: Option<DateTime<Utc>>,
    startup_script_behavior: String,
    subsystems: Vec<String>,
    display_apps: Vec<String>,
    logs_length: i32,
    logs_overflowed: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct AppRow {
    id: Uuid,
    agent_id: Uuid,
    slug: String,
    display_name: String,
    icon: String,
    command: Option<String>,
    url: Option<String>,
    external: bool,
    subdomain: bool,
    sharing_level: String,
    hidden: bool,
}

/// Resources (with agents and apps) of the given jobs, keyed by job.
pub async fn resources_of_jobs(
    conn: &mut PgConnection,
    job_ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<HashMap<Uuid, Vec<WorkspaceResource>>, sqlx::Error> {
    let resources: Vec<ResourceRow> = sqlx::query_as(
        "SELECT id, created_at, job_id, transition, type, name, hide, icon, daily_cost
         FROM workspace_resources WHERE job_id = ANY($1) ORDER BY type, name, id",
    )
    .bind(job_ids)
    .fetch_all(&mut *conn)
    .await?;
    if resources.is_empty() {
        // Pending builds have no resources yet: skip the dependent queries.
        return Ok(HashMap::new());
    }
    let resource_ids: Vec<Uuid> = resources.iter().map(|r| r.id).collect();
    let agents: Vec<AgentRow> = sqlx::query_as(
        "SELECT id, created_at, updated_at, name, resource_id, first_connected_at, last_connected_at,
                disconnected_at, architecture, operating_system, environment_variables, directory,
                expanded_directory, version, api_version, connection_timeout_seconds, troubleshooting_url,
                lifecycle_state, started_at, ready_at, startup_script_behavior, subsystems, display_apps,
                logs_length, logs_overflowed
         FROM workspace_agents WHERE resource_id = ANY($1) ORDER BY display_order, name",
    )
    .bind(&resource_ids)
    .fetch_all(&mut *conn)
    .await?;
    let agent_ids: Vec<Uuid> = agents.iter().map(|a| a.id).collect();
    let apps: Vec<AppRow> = if agent_ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
        "SELECT id, agent_id, slug, display_name, icon, command, url, external, subdomain, sharing_level, hidden
         FROM workspace_apps WHERE agent_id = ANY($1) ORDER BY display_order, slug",
        )
        .bind(&agent_ids)
        .fetch_all(&mut *conn)
        .await?
    };
    let mut apps_by_agent: HashMap<Uuid, Vec<WorkspaceApp>> = HashMap::new();
    for a in apps {
        apps_by_agent
            .entry(a.agent_id)
            .or_default()
            .push(WorkspaceApp {
                id: a.id,
                url: a.url.unwrap_or_default(),
                external: a.external,
                slug: a.slug,
                display_name: a.display_name,
                command: a.command.unwrap_or_default(),
                icon: a.icon,
                subdomain: a.subdomain,
                subdomain_name: String::new(),
                sharing_level: a.sharing_level,
                healthcheck: AppHealthcheck {
                    url: String::new(),
                    interval: 0,
                    threshold: 0,
                },
                health: "disabled".into(),
                hidden: a.hidden,
                open_in: "slim-window".into(),
                statuses: Vec::new(),
            });
    }
    let mut agents_by_resource: HashMap<Uuid, Vec<WorkspaceAgent>> = HashMap::new();
    for a in agents {
        let status = agent_status(
            now,
            a.created_at,
            a.first_connected_at,
            a.last_connected_at,
            a.disconnected_at,
            a.connection_timeout_seconds,
            AGENT_INACTIVE_TIMEOUT,
        );
        let healthy = status == "connected";
        agents_by_resource
            .entry(a.resource_id)
            .or_default()
            .push(WorkspaceAgent {
                id: a.id,
                created_at: a.created_at,
                updated_at: a.updated_at,
                first_connected_at: a.first_connected_at,
                last_connected_at: a.last_connected_at,
                disconnected_at: a.disconnected_at,
                started_at: a.started_at,
                ready_at: a.ready_at,
                status: status.to_string(),
                lifecycle_state: a.lifecycle_state,
                name: a.name,
                resource_id: a.resource_id,
                architecture: a.architecture,
                environment_variables: a.environment_variables.0,
                operating_system: a.operating_system,
                logs_length: a.logs_length,
                logs_overflowed: a.logs_overflowed,
                directory: a.directory,
                expanded_directory: a.expanded_directory,
                version: a.version,
                api_version: a.api_version,
                apps: apps_by_agent.remove(&a.id).unwrap_or_default(),
                connection_timeout_seconds: a.connection_timeout_seconds,
                troubleshooting_url: a.troubleshooting_url,
                subsystems: a.subsystems,
                health: AgentHealth {
                    healthy,
                    reason: if healthy {
                        String::new()
                    } else {
                        format!("agent is {status}")
                    },
                },
                display_apps: a.display_apps,
                log_sources: Vec::new(),
                scripts: Vec::new(),
                startup_script_behavior: a.startup_script_behavior,
            });
    }
    let metadata: Vec<(Uuid, String, Option<String>, bool)> = sqlx::query_as(
        "SELECT workspace_resource_id, key, value, sensitive FROM workspace_resource_metadata
         WHERE workspace_resource_id = ANY($1) ORDER BY id",
    )
    .bind(&resource_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut metadata_by_resource: HashMap<Uuid, Vec<ResourceMetadata>> = HashMap::new();
    for (resource, key, value, sensitive) in metadata {
        metadata_by_resource
            .entry(resource)
            .or_default()
            .push(ResourceMetadata {
                key,
                value: value.unwrap_or_default(),
                sensitive,
            });
    }
    let mut out: HashMap<Uuid, Vec<WorkspaceResource>> = HashMap::new();
    for r in resources {
        out.entry(r.job_id).or_default().push(WorkspaceResource {
            agents: agents_by_resource.remove(&r.id).unwrap_or_default(),
            id: r.id,
            created_at: r.created_at,
            job_id: r.job_id,
            workspace_transition: r.transition,
            r#type: r.r#type,
            name: r.name,
            hide: r.hide,
            icon: r.icon,
            metadata: metadata_by_resource.remove(&r.id).unwrap_or_default(),
            daily_cost: r.daily_cost,
        });
    }
    Ok(out)
}

/// Opens a read-only snapshot for reads that take several statements: under READ COMMITTED a build that
/// completes between them would show its new status with its old cost or resources.
pub async fn snapshot(
    conn: &mut PgConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
    use sqlx::Connection;
    conn.begin_with(crate::db::BEGIN_READ_SNAPSHOT).await
}

/// Builds' JSON, in the order of `ids`.
pub async fn load_builds(
    conn: &mut PgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<WorkspaceBuild>, sqlx::Error> {
    let rows = build_rows(conn, ids).await?;
    let job_ids: Vec<Uuid> = rows.iter().map(|b| b.job_id).collect();
    let mut jobs = crate::provisioner::jobs::load_json(conn, &job_ids).await?;
    let mut resources = resources_of_jobs(conn, &job_ids, now).await?;
    let mut out = Vec::with_capacity(rows.len());
    for b in rows {
        let Some(job) = jobs.remove(&b.job_id) else {
            continue;
        };
        let resources = resources.remove(&b.job_id).unwrap_or_default();
        out.push(build_json(b, job, resources));
    }
    Ok(out)
}

/// A build's JSON from its row, its job and its resources.
pub fn build_json(
    b: BuildRow,
    job: crate::provisioner::ProvisionerJob,
    resources: Vec<WorkspaceResource>,
) -> WorkspaceBuild {
    let status = build_status(&job.status, &b.transition).to_string();
    WorkspaceBuild {
        id: b.id,
        created_at: b.created_at,
        updated_at: b.updated_at,
        workspace_id: b.workspace_id,
        workspace_name: b.workspace_name,
        workspace_owner_id: b.owner_id,
        workspace_owner_name: b.owner_name,
        workspace_owner_avatar_url: b.owner_avatar_url,
        template_version_id: b.template_version_id,
        template_version_name: b.template_version_name,
        build_number: b.build_number,
        transition: b.transition,
        initiator_id: b.initiator_id,
        initiator_name: b.initiator_name,
        job,
        reason: b.reason,
        resources,
        deadline: b.deadline,
        max_deadline: b.max_deadline,
        status,
        daily_cost: b.daily_cost,
        template_version_preset_id: b.template_version_preset_id,
    }
}

/// Workspaces' JSON from their rows, with their latest builds.
pub async fn assemble(
    conn: &mut PgConnection,
    rows: Vec<WorkspaceRow>,
    now: DateTime<Utc>,
) -> Result<Vec<Workspace>, sqlx::Error> {
    let build_ids: Vec<Uuid> = rows.iter().map(|w| w.latest_build_id).collect();
    let builds = load_builds(conn, &build_ids, now).await?;
    let mut by_id: HashMap<Uuid, WorkspaceBuild> = builds.into_iter().map(|b| (b.id, b)).collect();
    let mut out = Vec::with_capacity(rows.len());
    for w in rows {
        let Some(latest) = by_id.remove(&w.latest_build_id) else {
            continue;
        };
        out.push(workspace_json(w, latest));
    }
    Ok(out)
}

/// A workspace's JSON from its row and its latest build.
pub fn workspace_json(w: WorkspaceRow, latest: WorkspaceBuild) -> Workspace {
    let failing: Vec<Uuid> = latest
        .resources
        .iter()
        .flat_map(|r| r.agents.iter())
        .filter(|a| !a.health.healthy)
        .map(|a| a.id)
        .collect();
    Workspace {
        id: w.id,
        created_at: w.created_at,
        updated_at: w.updated_at,
        owner_id: w.owner_id,
        owner_name: w.owner_name,
        owner_avatar_url: w.owner_avatar_url,
        organization_id: w.organization_id,
        organization_name: w.organization_name,
        template_id: w.template_id,
        template_name: w.template_name,
        template_display_name: w.template_display_name,
        template_icon: w.template_icon,
        template_allow_user_cancel_workspace_jobs: w.allow_user_cancel_workspace_jobs,
        template_active_version_id: w.active_version_id,
        template_require_active_version: w.require_active_version,
        outdated: latest.template_version_id != w.active_version_id,
        latest_build: latest,
        latest_app_status: None,
        name: w.name,
        autostart_schedule: w.autostart_schedule,
        ttl_ms: w.ttl_ms,
        last_used_at: w.last_used_at,
        deleting_at: w.deleting_at,
        dormant_at: w.dormant_at,
        health: WorkspaceHealth {
            healthy: failing.is_empty(),
            failing_agents: failing,
        },
        automatic_updates: w.automatic_updates,
        allow_renames: false,
        favorite: w.favorite,
        next_start_at: w.next_start_at,
        is_prebuild: w.owner_id == PREBUILDS_USER_ID,
    }
}
