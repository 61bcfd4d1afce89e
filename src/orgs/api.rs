//! HTTP handlers for organizations and their members.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::{store, Organization, OrganizationMemberWithUserData};
use crate::api::auth::Auth;
use crate::api::error::{ApiError, ApiResult};
use crate::api::json::ok;
use crate::app::AppState;
use crate::rbac::{Action, Object, Resource};
use crate::users::api::resolve_user;
use crate::users::SlimRole;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations", get(list_organizations))
        .route("/organizations/{organization}", get(get_organization))
        .route("/organizations/{organization}/members", get(list_members))
        .route("/users/{user}/organizations", get(user_organizations))
        .route(
            "/users/{user}/organizations/{organization}",
            get(user_organization),
        )
}

/// Resolves `{organization}` (UUID, name or `default`) and checks `action` on it; unknown and
/// unreadable organizations are the same 404.
pub async fn resolve_org(
    state: &AppState,
    auth: &Auth,
    reference: &str,
    action: Action,
) -> ApiResult<Organization> {
    let org = store::resolve(&state.pool, reference)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let object = Object::new(Resource::Organization).in_org(org.id);
    if auth.subject.can(action, object) {
        Ok(org)
    } else if auth.subject.can(Action::Read, object) {
        Err(ApiError::forbidden())
    } else {
        Err(ApiError::not_found())
    }
}

#[utoipa::path(
    get,
    path = "/api/v2/organizations",
    tag = "Organizations",
    summary = "List organizations",
    responses(
        (status = 200, description = "The organizations the caller may see", body = Vec<Organization>),
    )
)]
async fn list_organizations(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let orgs = if auth
        .subject
        .can_site_wide(Action::Read, Resource::Organization)
    {
        store::list_all(&state.pool).await?
    } else {
        store::list_for_user(&state.pool, auth.user_id()).await?
    };
    Ok(ok(orgs))
}

#[utoipa::path(
    get,
    path = "/api/v2/organizations/{organization}",
    tag = "Organizations",
    summary = "Get an organization",
    params(
        crate::openapi::OrganizationPath,
    ),
    responses(
        (status = 200, description = "The organization", body = Organization),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_organization(
    State(state): State<AppState>,
    auth: Auth,
    Path(organization): Path<String>,
) -> ApiResult<Response> {
    Ok(ok(
        resolve_org(&state, &auth, &organization, Action::Read).await?
    ))
}

#[utoipa::path(
    get,
    path = "/api/v2/organizations/{organization}/members",
    tag = "Organizations",
    summary = "List an organization's members",
    params(
        crate::openapi::OrganizationPath,
    ),
    responses(
        (status = 200, description = "The members", body = Vec<OrganizationMemberWithUserData>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn list_members(
    State(state): State<AppState>,
    auth: Auth,
    Path(organization): Path<String>,
) -> ApiResult<Response> {
    let org = resolve_org(&state, &auth, &organization, Action::Read).await?;
    if !auth.subject.can(
        Action::Read,
        Object::new(Resource::OrganizationMember).in_org(org.id),
    ) {
        return Err(ApiError::not_found());
    }
    let members = store::members(&state.pool, org.id).await?;
    let out: Vec<OrganizationMemberWithUserData> = members
        .into_iter()
        .map(|m| OrganizationMemberWithUserData {
            global_roles: m.rbac_roles.iter().map(|r| SlimRole::site(r)).collect(),
            roles: m
                .roles
                .iter()
                .map(|r| SlimRole::org(r, m.organization_id))
                .collect(),
            username: m.username,
            name: m.name,
            avatar_url: m.avatar_url,
            email: m.email,
            user_id: m.user_id,
            organization_id: m.organization_id,
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
        .collect();
    Ok(ok(out))
}

#[utoipa::path(
    get,
    path = "/api/v2/users/{user}/organizations",
    tag = "Organizations",
    summary = "A user's organizations",
    params(
        crate::openapi::UserPath,
    ),
    responses(
        (status = 200, description = "The organizations the user belongs to", body = Vec<Organization>),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn user_organizations(
    State(state): State<AppState>,
    auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let user = resolve_user(&state, &auth, &user, Action::Read).await?;
    let orgs = store::list_for_user(&state.pool, user.id).await?;
    Ok(ok(orgs))
}

#[utoipa::path(
    get,
    path = "/api/v2/users/{user}/organizations/{organization}",
    tag = "Organizations",
    summary = "One of a user's organizations",
    params(
        crate::openapi::UserPath,
        crate::openapi::OrganizationPath,
    ),
    responses(
        (status = 200, description = "The organization", body = Organization),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn user_organization(
    State(state): State<AppState>,
    auth: Auth,
    Path((user, organization)): Path<(String, String)>,
) -> ApiResult<Response> {
    let user = resolve_user(&state, &auth, &user, Action::Read).await?;
    let orgs = store::list_for_user(&state.pool, user.id).await?;
    let org = orgs
        .into_iter()
        .find(|o| {
            o.id.to_string() == organization
                || o.name.eq_ignore_ascii_case(&organization)
                || (organization == "default" && o.is_default)
        })
        .ok_or_else(ApiError::not_found)?;
    Ok(ok(org))
}
