//! HTTP handlers for `/files`: upload (validated, deduplicated per creator) and download.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::archive::{self, ArchiveError, Limits};
use super::store::{self, NewFile};
use super::{
    go_quote, CONTENT_TYPE_TAR, CONTENT_TYPE_ZIP, CONTENT_TYPE_ZIP_WINDOWS, MAX_UPLOAD_BYTES,
};
use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult};
use crate::api::json::{created, ok, read_body, too_large_error};
use crate::app::AppState;
use crate::rbac::{Action, Object, Resource};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/files", post(upload_file))
        .route("/files/{fileID}", get(get_file))
}

/// Coder's `codersdk.UploadResponse`: the key is `hash` but the value is the file's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadResponse {
    pub hash: Uuid,
}

/// Every archive rule is a 400. Too much unpacked data included: the body itself was within the 100 MiB
/// transport limit (whose 413 tells a client to send fewer bytes); it is the content that breaks a rule,
/// as an unsafe path does.
fn archive_error(err: ArchiveError) -> ApiError {
    match err {
        ArchiveError::Malformed(detail) => {
            ApiError::bad_request("File is not a valid tar archive.").detail(detail)
        }
        ArchiveError::TooManyEntries { limit } => {
            ApiError::bad_request("The archive has too many entries.")
                .detail(format!("An archive may contain at most {limit} entries."))
        }
        ArchiveError::TooLarge { limit } => {
            ApiError::bad_request("The archive is too large when unpacked.").detail(format!(
                "The entries of an archive may hold at most {limit} bytes in total."
            ))
        }
        ArchiveError::UnsafeEntry { entry, reason } => ApiError::bad_request(format!(
            "Archive entry {} is not allowed: {reason}.",
            go_quote(&entry)
        ))
        .detail(
            "Entries must have relative paths without \"..\", must not lie beneath a symbolic link, \
             and links must point inside the archive.",
        ),
    }
}

/// `POST /files`: the raw body is a tar archive.
#[utoipa::path(
    post,
    path = "/api/v2/files",
    tag = "Files",
    summary = "Upload a file (a tar archive)",
    request_body(content = crate::openapi::TarArchive, content_type = "application/x-tar", description = "A tar archive (at most 100 MiB; relative paths only, links inside the archive)"),
    responses(
        (status = 200, description = "The same bytes were already uploaded by the caller: their id", body = UploadResponse),
        (status = 201, description = "The new file's id", body = UploadResponse),
        (status = 400, description = "Unsupported content type, or not a valid or safe tar archive"),
        (status = 413, description = "The body is larger than 100 MiB"),
    )
)]
async fn upload_file(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    // Go's `Header.Get`: the first value, compared exactly (no parameters, no case folding).
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    match content_type.as_str() {
        CONTENT_TYPE_TAR => {}
        CONTENT_TYPE_ZIP | CONTENT_TYPE_ZIP_WINDOWS => {
            return Err(unsupported_content_type(&content_type)
                .detail("Zip archives are not supported yet; upload a tar archive."));
        }
        _ => return Err(unsupported_content_type(&content_type)),
    }

    // A declared length over the limit is refused before anything is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_UPLOAD_BYTES as u64) {
        return Err(too_large_error(MAX_UPLOAD_BYTES));
    }
    let data = read_body(body, MAX_UPLOAD_BYTES).await.map_err(|err| {
        if err.status == StatusCode::BAD_REQUEST {
            err.body_message("Failed to read file from request.")
        } else {
            err
        }
    })?;

    let owner = auth.user_id();
    if !auth
        .subject
        .can(Action::Create, Object::new(Resource::File).owned_by(owner))
    {
        return Err(ApiError::forbidden());
    }

    // Parsing and hashing up to 100 MiB is CPU work: keep it off the async workers.
    let bytes = data.clone();
    let hash = tokio::task::spawn_blocking(move || {
        archive::validate(&bytes, &Limits::default())?;
        Ok::<_, ArchiveError>(hex::encode(Sha256::digest(&bytes)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(archive_error)?;

    if let Some(id) = store::id_by_hash(&state.pool, &hash, owner).await? {
        return Ok(ok(UploadResponse { hash: id }));
    }
    let new = NewFile {
        id: Uuid::new_v4(),
        hash: &hash,
        created_by: owner,
        created_at: state.clock.now(),
        mimetype: CONTENT_TYPE_TAR,
        data: &data,
    };
    if let Some(id) = store::insert_file(&state.pool, &new).await? {
        return Ok(created(UploadResponse { hash: id }));
    }
    // A concurrent upload of the same bytes by the same user won the insert.
    match store::id_by_hash(&state.pool, &hash, owner).await? {
        Some(id) => Ok(ok(UploadResponse { hash: id })),
        None => Err(ApiError::internal(format!(
            "file {hash} conflicted on insert but is not stored"
        ))),
    }
}

fn unsupported_content_type(content_type: &str) -> ApiError {
    ApiError::bad_request(format!(
        "Unsupported content type header {}.",
        go_quote(content_type)
    ))
}

/// `GET /files/{fileID}`: the stored bytes, with the stored content type.
#[utoipa::path(
    get,
    path = "/api/v2/files/{fileID}",
    tag = "Files",
    summary = "Download a file",
    params(
        crate::openapi::FilePath,
        crate::openapi::FileFormatQuery,
    ),
    responses(
        (status = 200, description = "The stored bytes", body = crate::openapi::TarArchive, content_type = "application/x-tar"),
        (status = 400, description = "Invalid file id, or a conversion format that is not supported"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_file(
    State(state): State<AppState>,
    auth: Auth,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let id = path
        .ok()
        .and_then(|Path(raw)| Uuid::parse_str(&raw).ok())
        .ok_or_else(|| ApiError::bad_request("File id must be a valid UUID."))?;
    let file = store::get_file(&state.pool, id)
        .await?
        .filter(|f| {
            auth.subject.can(
                Action::Read,
                Object::new(Resource::File).owned_by(f.created_by),
            )
        })
        // Files the caller may not read are answered as missing, so their existence does not leak.
        .ok_or_else(ApiError::not_found)?;

    // Go's `URL.Query().Get("format")`: the first value.
    let format = query
        .as_deref()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "format")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    match format.as_str() {
        "" => {}
        "zip" => {
            return Err(ApiError::bad_request(
                "Converting files to .zip format is not supported by this server.",
            ))
        }
        _ => return Err(ApiError::bad_request("Unsupported conversion format.")),
    }

    let content_type = HeaderValue::from_str(&file.mimetype)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        file.data,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_response_uses_coders_key() {
        let id = Uuid::nil();
        let json = serde_json::to_value(UploadResponse { hash: id }).unwrap();
        assert_eq!(json, serde_json::json!({ "hash": id.to_string() }));
    }

    #[test]
    fn archive_errors_are_bad_requests_naming_the_entry() {
        let err = archive_error(ArchiveError::UnsafeEntry {
            entry: "../evil".into(),
            reason: archive::Unsafe::ParentComponent,
        });
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.body.message,
            "Archive entry \"../evil\" is not allowed: its path contains \"..\"."
        );
        let err = archive_error(ArchiveError::TooLarge { limit: 10 });
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
