//! Session-token authentication: the [`Auth`] extractor resolves the caller and its RBAC subject.
//!
//! Tokens are read in Coder's order: the `coder_session_token` cookie, the `coder_session_token` query
//! parameter, then the `Coder-Session-Token` header. One query loads key, user and memberships, unless
//! the key is in the replica's short-lived cache (`auth_cache`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use uuid::Uuid;

use super::auth_cache::CachedKey;
use super::error::ApiError;
use crate::app::AppState;
use crate::rbac::Subject;
use crate::users::{keys, store, UserRow};

pub const SESSION_COOKIE: &str = "coder_session_token";
pub const SESSION_HEADER: &str = "Coder-Session-Token";

#[derive(Debug, Clone)]
pub struct Auth {
    pub user: UserRow,
    pub key_id: String,
    pub subject: Subject,
}

impl Auth {
    pub fn user_id(&self) -> Uuid {
        self.user.id
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The presented session token, if any, in Coder's precedence order.
pub fn token_from_request(parts: &Parts) -> Option<String> {
    if let Some(v) = cookie_value(&parts.headers, SESSION_COOKIE) {
        return Some(v);
    }
    if let Some(query) = parts.uri.query() {
        if let Some((_, v)) = form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k == SESSION_COOKIE && !v.is_empty())
        {
            return Some(v.into_owned());
        }
    }
    parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    hashed_secret: Vec<u8>,
    last_used: chrono::DateTime<chrono::Utc>,
    expires_at: chrono::DateTime<chrono::Utc>,
    lifetime_seconds: i64,
    #[sqlx(flatten)]
    user: UserRow,
    memberships: sqlx::types::Json<Vec<(Uuid, Vec<String>)>>,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(auth) = parts.extensions.get::<Auth>() {
            return Ok(auth.clone());
        }
        let token = token_from_request(parts).ok_or_else(|| {
            ApiError::unauthorized(format!(
                "Cookie \"{SESSION_COOKIE}\" or query parameter must be provided."
            ))
        })?;
        let auth = authenticate(state, &token).await?;
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

pub async fn authenticate(state: &AppState, token: &str) -> Result<Auth, ApiError> {
    let (id, secret) = keys::split_token(token).map_err(ApiError::unauthorized)?;
    let invalid_secret = || ApiError::unauthorized("API key secret is invalid.");
    let key = match state.auth_cache.get(id) {
        Some(key) if keys::secret_matches(secret, &key.hashed_secret) => key,
        Some(_) => return Err(invalid_secret()),
        None => {
            let generation = state.auth_cache.generation();
            let key = load_key(state, id)
                .await?
                .ok_or_else(|| ApiError::unauthorized("API key is invalid."))?;
            // Only a key with the right secret is worth keeping.
            if !keys::secret_matches(secret, &key.hashed_secret) {
                return Err(invalid_secret());
            }
            state.auth_cache.put(id, key.clone(), generation);
            Arc::new(key)
        }
    };
    let now = state.clock.now();
    if key.expires_at <= now {
        return Err(ApiError::unauthorized(format!(
            "API key expired at {:?}.",
            key.expires_at.to_rfc3339()
        )));
    }
    let mut user = key.user.clone();
    match user.status.as_str() {
        "active" => {}
        "dormant" => {
            // Coder reactivates dormant users on their next successful authentication.
            if let Some(updated) = store::set_status(&state.pool, user.id, "active", now).await? {
                user = updated;
            }
            state.auth_cache.evict_user(user.id);
        }
        other => {
            return Err(ApiError::unauthorized(format!(
            "User is not active (status = {other:?}). Contact an admin to reactivate your account."
        )))
        }
    }
    if let Some((last_used, expires_at)) =
        keys::refresh(now, key.last_used, key.expires_at, key.lifetime_seconds)
    {
        sqlx::query(
            "UPDATE api_keys SET last_used = $2, expires_at = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(last_used)
        .bind(expires_at)
        .bind(now)
        .execute(&state.pool)
        .await?;
        store::touch_last_seen(&state.pool, user.id, now).await?;
        state.auth_cache.evict_user(user.id);
    }
    let org_roles: HashMap<Uuid, Vec<String>> = key.memberships.iter().cloned().collect();
    let subject = Subject {
        user_id: user.id,
        site_roles: user.rbac_roles.clone(),
        org_roles,
    };
    Ok(Auth {
        user,
        key_id: id.to_string(),
        subject,
    })
}

/// One query for the key, its user and the user's memberships.
async fn load_key(state: &AppState, id: &str) -> Result<Option<CachedKey>, sqlx::Error> {
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT k.hashed_secret, k.last_used, k.expires_at, k.lifetime_seconds,
                u.id, u.email, u.username, u.name, u.hashed_password, u.created_at, u.updated_at,
                u.last_seen_at, u.status, u.rbac_roles, u.login_type, u.avatar_url, u.theme_preference,
                u.deleted, u.is_system,
                COALESCE((SELECT json_agg(json_build_array(m.organization_id, m.roles))
                          FROM organization_members m WHERE m.user_id = u.id), '[]'::json) AS memberships
         FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE k.id = $1 AND NOT u.deleted",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|r| CachedKey {
        hashed_secret: r.hashed_secret,
        last_used: r.last_used,
        expires_at: r.expires_at,
        lifetime_seconds: r.lifetime_seconds,
        user: r.user,
        memberships: r.memberships.0,
    }))
}
