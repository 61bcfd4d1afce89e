//! Template versions: JSON types mirroring Coder's, rows, and their SQL.

use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::provisioner::{jobs, ProvisionerJob};
use crate::users::MinimalUser;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub id: Uuid,
    pub template_id: Option<Uuid>,
    pub organization_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub name: String,
    pub message: String,
    pub readme: String,
    pub job_id: Uuid,
    pub created_by: Uuid,
    pub archived: bool,
    pub created_by_username: String,
    pub created_by_avatar_url: String,
    pub created_by_name: String,
}

const SELECT: &str =
    "SELECT v.id, v.template_id, v.organization_id, v.created_at, v.updated_at, v.name, v.message,
        v.readme, v.job_id, v.created_by, v.archived, u.username AS created_by_username,
        u.avatar_url AS created_by_avatar_url, u.name AS created_by_name
    FROM template_versions v JOIN users u ON u.id = v.created_by";

pub async fn get(conn: impl PgExecutor<'_>, id: Uuid) -> Result<Option<VersionRow>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT} WHERE v.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn by_template_and_name(
    conn: impl PgExecutor<'_>,
    template_id: Uuid,
    name: &str,
) -> Result<Option<VersionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE v.template_id = $1 AND v.name = $2"
    ))
    .bind(template_id)
    .bind(name)
    .fetch_optional(conn)
    .await
}

pub async fn list_for_template(
    conn: impl PgExecutor<'_>,
    template_id: Uuid,
    include_archived: bool,
) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE v.template_id = $1 AND ($2 OR NOT v.archived) ORDER BY v.created_at, v.id"
    ))
    .bind(template_id)
    .bind(include_archived)
    .fetch_all(conn)
    .await
}

/// Coder's `codersdk.TemplateVersion`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TemplateVersion {
    pub id: Uuid,
    /// Always emitted; the nil UUID for a version not attached to a template (as Coder does).
    pub template_id: Uuid,
    pub organization_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub name: String,
    pub message: String,
    pub job: ProvisionerJob,
    pub readme: String,
    pub created_by: MinimalUser,
    pub archived: bool,
}

/// Builds the JSON of a version, loading its job and queue position. Version and job are read in one
/// snapshot: the import stores its results (readme, parameters) in the transaction that completes the
/// job, so a reader must never see the job completed but the version as it was before.
pub async fn to_json(pool: &sqlx::PgPool, row: VersionRow) -> Result<TemplateVersion, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let row = get(&mut *tx, row.id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let job = jobs::get(&mut *tx, row.job_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let (pos, size) = jobs::queue_position(&mut *tx, &job).await?;
    tx.commit().await?;
    Ok(with_job(row, &job, pos, size))
}

/// The JSON of a version with an already loaded job.
pub fn with_job(
    row: VersionRow,
    job: &crate::provisioner::JobRow,
    pos: i64,
    size: i64,
) -> TemplateVersion {
    with_job_json(row, ProvisionerJob::from_row(job, pos, size))
}

/// The JSON of a version whose job's JSON is already built.
pub fn with_job_json(row: VersionRow, job: ProvisionerJob) -> TemplateVersion {
    TemplateVersion {
        id: row.id,
        template_id: row.template_id.unwrap_or(Uuid::nil()),
        organization_id: row.organization_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
        name: row.name,
        message: row.message,
        job,
        readme: row.readme,
        created_by: MinimalUser {
            id: row.created_by,
            username: row.created_by_username,
            avatar_url: row.created_by_avatar_url,
            name: row.created_by_name,
        },
        archived: row.archived,
    }
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "brave",
    "busy",
    "charming",
    "clever",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "frosty",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hopeful",
    "infallible",
    "inspiring",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

const SURNAMES: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bell",
    "bhabha",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "brown",
    "cannon",
    "carson",
    "cerf",
    "chandrasekhar",
    "chatterjee",
    "clarke",
    "curie",
    "darwin",
    "diffie",
    "dijkstra",
    "dirac",
    "easley",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hertz",
    "hodgkin",
    "hopper",
    "hypatia",
    "jennings",
    "johnson",
    "kalam",
    "kepler",
    "khorana",
    "knuth",
    "lamarr",
    "lamport",
    "leakey",
    "lederberg",
    "lovelace",
    "lumiere",
    "mahavira",
    "mayer",
    "mccarthy",
    "mcclintock",
    "meitner",
    "mendel",
    "mirzakhani",
    "morse",
    "napier",
    "newton",
    "nobel",
    "noether",
    "pascal",
    "pasteur",
    "perlman",
    "pike",
    "poincare",
    "raman",
    "ritchie",
    "rosalind",
    "sammet",
    "shannon",
    "shockley",
    "sinoussi",
    "stonebraker",
    "swartz",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "visvesvaraya",
    "wescoff",
    "wiles",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "yalow",
];

/// The versions of a template, with their jobs, in one snapshot and a fixed number of queries.
pub async fn list_json(
    pool: &sqlx::PgPool,
    template_id: Uuid,
    include_archived: bool,
) -> Result<Vec<TemplateVersion>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows = list_for_template(&mut *tx, template_id, include_archived).await?;
    let job_ids: Vec<Uuid> = rows.iter().map(|r| r.job_id).collect();
    let mut jobs = jobs::load_json(&mut tx, &job_ids).await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let job = jobs.remove(&row.job_id)?;
            Some(with_job_json(row, job))
        })
        .collect())
}

/// A random `adjective_surname<digit>` name, the style of Coder's generated version names.
pub fn random_name() -> String {
    let mut rng = rand::thread_rng();
    format!(
        "{}_{}{}",
        ADJECTIVES.choose(&mut rng).copied().unwrap_or("happy"),
        SURNAMES.choose(&mut rng).copied().unwrap_or("turing"),
        rng.gen_range(0..10)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_names_are_valid_version_names() {
        for _ in 0..200 {
            let name = super::random_name();
            assert_eq!(
                crate::api::validate::version_name_error(&name),
                None,
                "{name}"
            );
        }
    }
}
