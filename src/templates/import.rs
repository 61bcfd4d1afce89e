//! The template-version import job: unpack the version's tar, parse and validate its Terraform with the
//! HCL module, and store parameters, variables and presets together with the job's completion in one
//! transaction, so a failed or superseded import leaves nothing half-stored.

use std::io::Read;

use uuid::Uuid;

use super::hcl::{self, ImportOptions, SourceFile, TemplateModel};
use crate::app::AppState;
use crate::provisioner::jobs::{self, LogLine};
use crate::provisioner::{JobInput, JobRow};

/// Largest single `.tf` or README file we read from an archive.
const MAX_SOURCE_FILE: u64 = 16 << 20;

/// The `.tf` files and README of a template archive (root level, as Terraform reads them).
pub fn unpack(archive: &[u8]) -> Result<(Vec<SourceFile>, String), String> {
    let mut files = Vec::new();
    let mut readme = String::new();
    let mut tar = tar::Archive::new(archive);
    let entries = tar.entries().map_err(|e| format!("read archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("read archive: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| format!("read archive: {e}"))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let wanted = (path.ends_with(".tf") && !path.contains('/'))
            || path.eq_ignore_ascii_case("README.md");
        if !wanted {
            continue;
        }
        if entry.size() > MAX_SOURCE_FILE {
            return Err(format!(
                "{path}: file is larger than {MAX_SOURCE_FILE} bytes"
            ));
        }
        let mut content = String::new();
        entry
            .read_to_string(&mut content)
            .map_err(|e| format!("{path}: not valid UTF-8 text: {e}"))?;
        if path.eq_ignore_ascii_case("README.md") {
            readme = content;
        } else {
            files.push(SourceFile {
                name: path,
                content,
            });
        }
    }
    Ok((files, readme))
}

/// Runs one import job to completion. Errors returned are internal (database); template problems
/// complete the job as failed with a message naming file, block and problem.
pub async fn run(state: &AppState, worker: Uuid, job: &JobRow) -> Result<(), sqlx::Error> {
    let input: JobInput = serde_json::from_value(job.input.0.clone()).unwrap_or_default();
    let now = || state.clock.now();
    let Some(version_id) = input.template_version_id else {
        jobs::complete(
            &state.pool,
            job.id,
            worker,
            Some("job input names no template version"),
            now(),
        )
        .await?;
        return Ok(());
    };
    let data: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM files WHERE id = $1")
        .bind(job.file_id)
        .fetch_optional(&state.pool)
        .await?;
    let log = |level: &'static str, stage: &'static str, output: String| async move {
        jobs::append_logs(
            &state.pool,
            job.id,
            "provisioner",
            &[LogLine {
                level,
                stage,
                output: &output,
            }],
            state.clock.now(),
        )
        .await
    };
    log("info", "Setting up", "Parsing template sources".into()).await?;
    let parsed = match data {
        None => Err("the template's file no longer exists".to_string()),
        Some(bytes) => unpack(&bytes).and_then(|(files, readme)| {
            if files.is_empty() {
                return Err("the archive contains no .tf files at its root".to_string());
            }
            let opts = ImportOptions {
                allow_short_prebuild_ttl: state.config.allow_short_prebuild_ttl,
            };
            hcl::parse_template(&files, &opts)
                .map(|model| (model, readme))
                .map_err(|errs| errs.to_string())
        }),
    };
    let (model, readme) = match parsed {
        Ok(ok) => ok,
        Err(message) => {
            for line in message.lines() {
                log("error", "Parsing template parameters", line.to_string()).await?;
            }
            jobs::complete(&state.pool, job.id, worker, Some(&message), now()).await?;
            tracing::info!(target: "coderd.provisionerd", job = %job.id, version = %version_id, error = %message, "template import failed");
            return Ok(());
        }
    };
    let summary = format!(
        "Found {} parameters, {} presets, {} agents, {} resources",
        model.parameters.len(),
        model.presets.len(),
        model.agents.len(),
        model.resources.len()
    );
    log("info", "Parsing template parameters", summary).await?;
    let mut tx = state.pool.begin().await?;
    store_model(&mut tx, version_id, &model, &readme).await?;
    if let Err(problem) =
        crate::provisioner::build::write_import_resources(&mut tx, job.id, &model, now()).await?
    {
        log(
            "warn",
            "Detecting persistent resources",
            format!("resource preview unavailable: {problem}"),
        )
        .await?;
    }
    if !state.config.test_job_commit_delay.is_zero() {
        tokio::time::sleep(state.config.test_job_commit_delay).await;
    }
    if jobs::complete(&mut *tx, job.id, worker, None, now()).await? {
        tx.commit().await?;
        tracing::info!(target: "coderd.provisionerd", job = %job.id, version = %version_id, "template import succeeded");
    } else {
        // The job was failed (stale) or canceled meanwhile: keep nothing.
        tx.rollback().await?;
        if jobs::finish_canceled(&state.pool, job.id, worker, now()).await? {
            tracing::info!(target: "coderd.provisionerd", job = %job.id, version = %version_id, "template import canceled");
        }
    }
    Ok(())
}

async fn store_model(
    tx: &mut sqlx::PgConnection,
    version_id: Uuid,
    model: &TemplateModel,
    readme: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE template_versions SET readme = $2 WHERE id = $1")
        .bind(version_id)
        .bind(readme)
        .execute(&mut *tx)
        .await?;
    for p in &model.parameters {
        let options = serde_json::Value::Array(
            p.options
                .iter()
                .map(|o| {
                    serde_json::json!({"name": o.name, "description": o.description, "value": o.value, "icon": o.icon})
                })
                .collect(),
        );
        let v = p.validation.clone().unwrap_or_default();
        sqlx::query(
            "INSERT INTO template_version_parameters
               (template_version_id, name, display_name, description, type, mutable, default_value, icon, options,
                validation_regex, validation_min, validation_max, validation_error, validation_monotonic,
                required, ephemeral, display_order)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(version_id)
        .bind(&p.name)
        .bind(&p.display_name)
        .bind(&p.description)
        .bind(p.param_type.as_str())
        .bind(p.mutable)
        .bind(&p.default_value)
        .bind(&p.icon)
        .bind(sqlx::types::Json(options))
        .bind(v.regex.unwrap_or_default())
        .bind(v.min)
        .bind(v.max)
        .bind(&v.error)
        .bind(v.monotonic.unwrap_or_default())
        .bind(p.required)
        .bind(p.ephemeral)
        .bind(p.order)
        .execute(&mut *tx)
        .await?;
    }
    for var in &model.variables {
        sqlx::query(
            "INSERT INTO template_version_variables
               (template_version_id, name, description, type, value, default_value, required, sensitive)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
        )
        .bind(version_id)
        .bind(&var.name)
        .bind(&var.description)
        .bind(&var.var_type)
        .bind(&var.default_value)
        .bind(var.required)
        .bind(var.sensitive)
        .execute(&mut *tx)
        .await?;
    }
    for preset in &model.presets {
        let preset_id = Uuid::new_v4();
        let prebuilds = preset.prebuilds.as_ref();
        sqlx::query(
            "INSERT INTO template_version_presets
               (id, template_version_id, name, description, icon, is_default, desired_instances,
                invalidate_after_secs, scheduling_timezone)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(preset_id)
        .bind(version_id)
        .bind(&preset.name)
        .bind(&preset.description)
        .bind(&preset.icon)
        .bind(preset.default)
        .bind(prebuilds.map(|p| p.instances))
        .bind(prebuilds.and_then(|p| p.ttl_seconds))
        .bind(
            prebuilds
                .and_then(|p| p.scheduling.as_ref())
                .map(|s| s.timezone.clone())
                .unwrap_or_default(),
        )
        .execute(&mut *tx)
        .await?;
        for (name, value) in &preset.parameters {
            sqlx::query(
                "INSERT INTO template_version_preset_parameters (id, template_version_preset_id, name, value)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(Uuid::new_v4())
            .bind(preset_id)
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(scheduling) = prebuilds.and_then(|p| p.scheduling.as_ref()) {
            for (position, (cron, instances)) in scheduling.schedules.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO template_version_preset_prebuild_schedules
                       (id, preset_id, cron_expression, desired_instances, position)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(Uuid::new_v4())
                .bind(preset_id)
                .bind(cron)
                .bind(instances)
                .bind(position as i32)
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    Ok(())
}
