//! The HTTP layer shared by every domain: error envelope, JSON codec, authentication, query parsing,
//! input rules, and the `/api/v2` route assembly. Domain handlers live in their own modules.

pub mod auth;
pub mod auth_cache;
pub mod error;
pub mod json;
pub mod query;
pub mod validate;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::app::{AppState, VERSION};
use auth::Auth;
use error::{ApiError, MessageResponse};
use json::ok;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(root))
        .route("/buildinfo", get(buildinfo))
        .route("/experiments", get(experiments))
        .route("/experiments/available", get(experiments_available))
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .merge(crate::users::api::routes())
        .merge(crate::files::api::routes())
        .merge(crate::orgs::api::routes())
        .merge(crate::templates::api::routes())
        .merge(crate::workspaces::api::routes())
        .merge(crate::workspaces::quota::routes())
        .merge(crate::agents::api::routes())
        .merge(crate::prebuilds::api::routes())
        .merge(crate::notifications::api::routes())
        .fallback(route_not_found)
}

pub async fn route_not_found() -> Response {
    ApiError::route_not_found().into_response()
}

pub async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed.").into_response()
}

#[utoipa::path(
    get,
    path = "/api/v2/",
    tag = "General",
    summary = "API root",
    security(()),
    responses(
        (status = 200, description = "The API is served", body = MessageResponse),
    )
)]
async fn root() -> Response {
    ok(MessageResponse::new("👋"))
}

/// Coder's `codersdk.BuildInfoResponse`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BuildInfoResponse {
    pub external_url: String,
    pub version: String,
    pub dashboard_url: String,
    pub telemetry: bool,
    pub workspace_proxy: bool,
    pub agent_api_version: String,
    pub provisioner_api_version: String,
    pub upgrade_message: String,
    pub deployment_id: String,
}

#[utoipa::path(
    get,
    path = "/api/v2/buildinfo",
    tag = "General",
    summary = "Build information",
    security(()),
    responses(
        (status = 200, description = "Version and URLs of this deployment", body = BuildInfoResponse),
    )
)]
async fn buildinfo(State(state): State<AppState>) -> Response {
    ok(BuildInfoResponse {
        external_url: state.config.access_url.clone(),
        version: VERSION.to_string(),
        dashboard_url: state.config.access_url.clone(),
        telemetry: false,
        workspace_proxy: false,
        agent_api_version: "2.0".into(),
        provisioner_api_version: "1.0".into(),
        upgrade_message: String::new(),
        deployment_id: state.deployment_id.clone(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v2/experiments",
    tag = "General",
    summary = "Enabled experiments",
    responses(
        (status = 200, description = "The experiments enabled on this deployment", body = Vec<String>),
    )
)]
async fn experiments(State(state): State<AppState>, _auth: Auth) -> Response {
    ok(state.config.experiments.list())
}

#[derive(Serialize, utoipa::ToSchema)]
struct AvailableExperiments {
    safe: Vec<&'static str>,
}

#[utoipa::path(
    get,
    path = "/api/v2/experiments/available",
    tag = "General",
    summary = "Known experiments",
    responses(
        (status = 200, description = "The experiments this server knows", body = AvailableExperiments),
    )
)]
async fn experiments_available(_auth: Auth) -> Response {
    ok(AvailableExperiments {
        safe: crate::config::KNOWN_EXPERIMENTS.to_vec(),
    })
}
