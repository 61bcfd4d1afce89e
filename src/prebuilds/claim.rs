//! The claim build's hand-over: agents kept running, resource replacements detected and reported.
//! The claim itself is part of workspace creation (`src/workspaces/create.rs`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::templates::hcl::{EvaluatedAgent, EvaluatedResource};

// ---- the claim build ---------------------------------------------------------------------------

/// An agent of the prebuild's last build, handed over to the claim build.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PreviousAgent {
    pub id: Uuid,
    pub name: String,
    pub auth_token: Uuid,
}

/// The prebuild's last build as the claim build sees it.
#[derive(Debug, Clone)]
pub struct ClaimContext {
    pub previous_job_id: Uuid,
    pub preset_id: Option<Uuid>,
    pub agents: Vec<PreviousAgent>,
}

/// The build before `build_id` and its agents.
pub async fn claim_context(
    conn: &mut PgConnection,
    build_id: Uuid,
) -> Result<Option<ClaimContext>, sqlx::Error> {
    let previous: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT p.job_id, cur.template_version_preset_id
         FROM workspace_builds cur
         JOIN workspace_builds p ON p.workspace_id = cur.workspace_id AND p.build_number < cur.build_number
         WHERE cur.id = $1 ORDER BY p.build_number DESC LIMIT 1",
    )
    .bind(build_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((previous_job_id, preset_id)) = previous else {
        return Ok(None);
    };
    let agents = sqlx::query_as(
        "SELECT a.id, a.name, a.auth_token FROM workspace_agents a
         JOIN workspace_resources r ON r.id = a.resource_id WHERE r.job_id = $1",
    )
    .bind(previous_job_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(ClaimContext {
        previous_job_id,
        preset_id,
        agents,
    }))
}

/// Gives the claim build's agents the running agents' state (lifecycle, connection, version) and
/// moves their logs over, so the claimed workspace reads `ready` without a fresh startup.
pub async fn carry_over_agents(
    tx: &mut PgConnection,
    new_job: Uuid,
    previous_job: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH pairs AS (
            SELECT n.id AS new_id, o.id AS old_id, o.lifecycle_state, o.first_connected_at, o.last_connected_at,
                   o.disconnected_at, o.started_at, o.ready_at, o.version, o.api_version, o.expanded_directory,
                   o.subsystems, o.logs_length, o.logs_overflowed
            FROM workspace_agents n JOIN workspace_resources nr ON nr.id = n.resource_id AND nr.job_id = $1
            JOIN workspace_agents o ON o.name = n.name
            JOIN workspace_resources orr ON orr.id = o.resource_id AND orr.job_id = $2),
         moved_sources AS (
            UPDATE workspace_agent_log_sources s SET workspace_agent_id = pairs.new_id
            FROM pairs WHERE s.workspace_agent_id = pairs.old_id),
         moved_logs AS (
            UPDATE workspace_agent_logs l SET agent_id = pairs.new_id
            FROM pairs WHERE l.agent_id = pairs.old_id)
         UPDATE workspace_agents n
         SET lifecycle_state = p.lifecycle_state, first_connected_at = p.first_connected_at,
             last_connected_at = p.last_connected_at, disconnected_at = p.disconnected_at,
             started_at = p.started_at, ready_at = p.ready_at, version = p.version, api_version = p.api_version,
             expanded_directory = p.expanded_directory, subsystems = p.subsystems,
             logs_length = p.logs_length, logs_overflowed = p.logs_overflowed
         FROM pairs p WHERE n.id = p.new_id",
    )
    .bind(new_job)
    .bind(previous_job)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A resource of the prebuild as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredResource {
    pub r#type: String,
    pub name: String,
    pub attributes: sqlx::types::Json<BTreeMap<String, serde_json::Value>>,
}

pub async fn stored_resources(
    conn: &mut PgConnection,
    job: Uuid,
) -> Result<Vec<StoredResource>, sqlx::Error> {
    sqlx::query_as(
        "SELECT type, name, attributes FROM workspace_resources WHERE job_id = $1 ORDER BY created_at, id",
    )
    .bind(job)
    .fetch_all(conn)
    .await
}

/// One resource the claim build would replace, and the attributes that force it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Replacement {
    pub resource: String,
    pub attributes: Vec<String>,
}

/// Compares the claim build's evaluated resources with the prebuild's, instance by instance
/// (same type and name, in order). Changed attributes outside `lifecycle { ignore_changes }` make a
/// replacement; resources new or gone in the claim build do not (they are creates or destroys).
#[must_use]
pub fn replacements(new: &[EvaluatedResource], previous: &[StoredResource]) -> Vec<Replacement> {
    let mut previous_by_key: BTreeMap<(&str, &str), Vec<&StoredResource>> = BTreeMap::new();
    for p in previous {
        previous_by_key
            .entry((p.r#type.as_str(), p.name.as_str()))
            .or_default()
            .push(p);
    }
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for r in new.iter().filter(|r| r.resource_type != "coder_metadata") {
        let key = (r.resource_type.as_str(), r.name.as_str());
        let counter = seen.entry(key).or_insert(0);
        let index = *counter;
        *counter += 1;
        let Some(old) = previous_by_key.get(&key).and_then(|v| v.get(index)) else {
            continue;
        };
        let old = EvaluatedResource {
            attributes: old.attributes.0.clone(),
            ..r.clone()
        };
        let changed = r.changed_attributes(&old);
        if !changed.is_empty() {
            out.push(Replacement {
                resource: r.address.clone(),
                attributes: changed,
            });
        }
    }
    out
}

/// An agent of the prebuild as stored, with the attributes a claim may change.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredAgent {
    pub name: String,
    pub operating_system: String,
    pub architecture: String,
    pub directory: String,
    pub startup_script: String,
    pub environment_variables: sqlx::types::Json<BTreeMap<String, String>>,
}

pub async fn stored_agents(
    conn: &mut PgConnection,
    job: Uuid,
) -> Result<Vec<StoredAgent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.name, a.operating_system, a.architecture, a.directory, a.startup_script,
                a.environment_variables
         FROM workspace_agents a JOIN workspace_resources r ON r.id = a.resource_id WHERE r.job_id = $1",
    )
    .bind(job)
    .fetch_all(conn)
    .await
}

/// The same comparison for `coder_agent` resources (every agent attribute forces a new agent in
/// Coder's provider): `startup_script`, `env`, `dir`, `os`, `arch`, outside the agent's
/// `lifecycle { ignore_changes }`.
#[must_use]
pub fn agent_replacements(new: &[EvaluatedAgent], previous: &[StoredAgent]) -> Vec<Replacement> {
    let mut out = Vec::new();
    for agent in new {
        let Some(old) = previous.iter().find(|p| p.name == agent.name) else {
            continue;
        };
        if agent.ignore_changes.iter().any(|i| i == "all") {
            continue;
        }
        let pairs = [
            (
                "startup_script",
                agent.startup_script.as_deref().unwrap_or("") != old.startup_script,
            ),
            ("env", agent.env != old.environment_variables.0),
            ("dir", agent.dir.as_deref().unwrap_or("") != old.directory),
            ("os", agent.os != old.operating_system),
            ("arch", agent.arch != old.architecture),
        ];
        let changed: Vec<String> = pairs
            .iter()
            .filter(|(name, differs)| *differs && !agent.ignore_changes.iter().any(|i| i == name))
            .map(|(name, _)| (*name).to_string())
            .collect();
        if !changed.is_empty() {
            out.push(Replacement {
                resource: format!("coder_agent.{}", agent.name),
                attributes: changed,
            });
        }
    }
    out
}

/// Coder's notification template id for "prebuilt workspace resource replaced".
pub const RESOURCE_REPLACED_TEMPLATE: &str = "89d9745a-816e-4695-a17f-3d0a229e2b8d";

/// Stores the replacements of one claim build and a notification for every template admin of the
/// workspace's organization (site owners and template admins, organization admins and template
/// admins).
pub async fn record_replacements(
    tx: &mut PgConnection,
    build_id: Uuid,
    workspace_id: Uuid,
    preset_id: Uuid,
    claimed_by: Uuid,
    replacements: &[Replacement],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let list = serde_json::to_value(replacements).unwrap_or_default();
    sqlx::query(
        "INSERT INTO prebuild_resource_replacements (id, created_at, workspace_id, build_id, preset_id, claimed_by,
                                                     replacements)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::new_v4())
    .bind(now)
    .bind(workspace_id)
    .bind(build_id)
    .bind(preset_id)
    .bind(claimed_by)
    .bind(&list)
    .execute(&mut *tx)
    .await?;
    let described: Vec<String> = replacements
        .iter()
        .map(|r| format!("{} ({})", r.resource, r.attributes.join(", ")))
        .collect();
    sqlx::query(
        "WITH ctx AS (
            SELECT w.id, w.name AS workspace, w.organization_id, u.username AS claimant, t.name AS template,
                   tv.name AS version, p.name AS preset
            FROM workspaces w JOIN users u ON u.id = $3 JOIN templates t ON t.id = w.template_id
            JOIN template_version_presets p ON p.id = $4 JOIN template_versions tv ON tv.id = p.template_version_id
            WHERE w.id = $2),
         admins AS (
            SELECT u.id FROM users u
            WHERE NOT u.deleted AND NOT u.is_system AND u.rbac_roles && ARRAY['owner', 'template-admin']
            UNION
            SELECT m.user_id FROM organization_members m JOIN ctx ON ctx.organization_id = m.organization_id
            JOIN users u ON u.id = m.user_id AND NOT u.deleted AND NOT u.is_system
            WHERE m.roles && ARRAY['organization-admin', 'organization-template-admin'])
         INSERT INTO notification_messages (id, created_at, user_id, template, title, body, payload)
         SELECT gen_random_uuid(), $1, admins.id, $5,
                'Prebuilt workspace resource replaced',
                format('A prebuilt workspace of template %s (version %s, preset %s) was claimed by %s as %s, and the claim build changed resources that the prebuild had created: %s. Add these attributes to lifecycle { ignore_changes } if they need not force a replacement.',
                       ctx.template, ctx.version, ctx.preset, ctx.claimant, ctx.workspace, $6),
                jsonb_build_object('workspace_id', ctx.id, 'workspace', ctx.workspace, 'template', ctx.template,
                                   'template_version', ctx.version, 'preset', ctx.preset, 'claimant', ctx.claimant,
                                   'replacements', $7::jsonb)
         FROM admins, ctx",
    )
    .bind(now)
    .bind(workspace_id)
    .bind(claimed_by)
    .bind(preset_id)
    .bind(RESOURCE_REPLACED_TEMPLATE)
    .bind(described.join("; "))
    .bind(&list)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluated(
        t: &str,
        name: &str,
        attrs: serde_json::Value,
        ignore: &[&str],
    ) -> EvaluatedResource {
        EvaluatedResource {
            resource_type: t.into(),
            name: name.into(),
            address: format!("{t}.{name}"),
            key: None,
            count: 1,
            attributes: serde_json::from_value(attrs).unwrap(),
            ignore_changes: ignore.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn stored(t: &str, name: &str, attrs: serde_json::Value) -> StoredResource {
        StoredResource {
            r#type: t.into(),
            name: name.into(),
            attributes: sqlx::types::Json(serde_json::from_value(attrs).unwrap()),
        }
    }

    #[test]
    fn changed_attributes_outside_ignore_changes_are_replacements() {
        let prev = vec![
            stored(
                "null_resource",
                "home",
                serde_json::json!({"triggers": {"owner": "prebuilds"}}),
            ),
            stored("docker_volume", "v", serde_json::json!({"name": "x"})),
        ];
        let new = vec![
            evaluated(
                "null_resource",
                "home",
                serde_json::json!({"triggers": {"owner": "alice"}}),
                &[],
            ),
            evaluated("docker_volume", "v", serde_json::json!({"name": "x"}), &[]),
            evaluated("docker_image", "new", serde_json::json!({"name": "y"}), &[]),
        ];
        assert_eq!(
            replacements(&new, &prev),
            vec![Replacement {
                resource: "null_resource.home".into(),
                attributes: vec!["triggers".into()]
            }]
        );
        let ignored = vec![evaluated(
            "null_resource",
            "home",
            serde_json::json!({"triggers": {"owner": "alice"}}),
            &["triggers"],
        )];
        assert!(replacements(&ignored, &prev).is_empty());
        let all = vec![evaluated(
            "null_resource",
            "home",
            serde_json::json!({"triggers": {"owner": "alice"}}),
            &["all"],
        )];
        assert!(replacements(&all, &prev).is_empty());
    }

    #[test]
    fn counted_instances_pair_in_order() {
        let prev = vec![
            stored("null_resource", "n", serde_json::json!({"i": 0})),
            stored("null_resource", "n", serde_json::json!({"i": 1})),
        ];
        let mut a = evaluated("null_resource", "n", serde_json::json!({"i": 0}), &[]);
        a.address = "null_resource.n[0]".into();
        let mut b = evaluated("null_resource", "n", serde_json::json!({"i": 2}), &[]);
        b.address = "null_resource.n[1]".into();
        let out = replacements(&[a, b], &prev);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].resource, "null_resource.n[1]");
    }
}
