//! HTTP handlers for users, login and logout.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{keys, password, store, User, UserRow, PREBUILDS_USER_ID};
use crate::api::auth::{Auth, SESSION_COOKIE};
use crate::api::error::{ApiError, ApiResult, MessageResponse, Validation};
use crate::api::json::{created, ok, Json, Validate};
use crate::api::query::{Pagination, QueryMap, SearchQuery};
use crate::api::validate;
use crate::app::AppState;
use crate::db::{self, locks};
use crate::orgs;
use crate::rbac::{self, Action, Object, Resource};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/users/first", get(has_first_user).post(create_first_user))
        .route("/users/login", post(login))
        .route("/users/logout", post(logout))
        .route("/users/authmethods", get(auth_methods))
        .route("/users", get(list_users).post(create_user))
        .route("/users/{user}", get(get_user))
        .route("/users/{user}/roles", get(get_roles).put(put_roles))
        .route("/users/{user}/status/suspend", put(suspend_user))
        .route("/users/{user}/status/activate", put(activate_user))
}

// ---- request types -------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CreateFirstUserRequest {
    #[schema(required = true, min_length = 1)]
    pub email: String,
    #[schema(
        required = true,
        min_length = 1,
        max_length = 32,
        pattern = "^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$"
    )]
    pub username: String,
    pub name: String,
    #[schema(required = true, min_length = 1)]
    pub password: String,
    pub trial: bool,
}

impl Validate for CreateFirstUserRequest {
    fn validate(&self) -> Vec<Validation> {
        let mut v = Vec::new();
        validate::check_email("email", &self.email, &mut v);
        validate::check_username("username", &self.username, &mut v);
        if validate::real_name_error(&self.name).is_some() {
            v.push(validate::tag_failed("name", "user_real_name", &self.name));
        }
        if self.password.is_empty() {
            v.push(Validation::required("password"));
        }
        v
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreateFirstUserResponse {
    pub user_id: Uuid,
    pub organization_id: Uuid,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct LoginWithPasswordRequest {
    #[schema(required = true, min_length = 1)]
    pub email: String,
    #[schema(required = true, min_length = 1)]
    pub password: String,
}

impl Validate for LoginWithPasswordRequest {
    fn validate(&self) -> Vec<Validation> {
        let mut v = Vec::new();
        validate::check_email("email", &self.email, &mut v);
        if self.password.is_empty() {
            v.push(Validation::required("password"));
        }
        v
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginWithPasswordResponse {
    pub session_token: String,
}

/// `CreateUserRequestWithOrgs`, also accepting the older single `organization_id`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CreateUserRequest {
    #[schema(required = true, min_length = 1)]
    pub email: String,
    #[schema(
        required = true,
        min_length = 1,
        max_length = 32,
        pattern = "^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$"
    )]
    pub username: String,
    pub name: String,
    pub password: String,
    #[schema(value_type = crate::openapi::CreateUserLoginType)]
    pub login_type: String,
    #[schema(value_type = Option<crate::openapi::CreateUserStatus>)]
    pub user_status: Option<String>,
    pub organization_ids: Vec<Uuid>,
    pub organization_id: Option<Uuid>,
    pub disable_login: bool,
}

impl Validate for CreateUserRequest {
    fn validate(&self) -> Vec<Validation> {
        let mut v = Vec::new();
        validate::check_email("email", &self.email, &mut v);
        validate::check_username("username", &self.username, &mut v);
        if validate::real_name_error(&self.name).is_some() {
            v.push(validate::tag_failed("name", "user_real_name", &self.name));
        }
        if !matches!(
            self.login_type.as_str(),
            "" | "password" | "github" | "oidc" | "none"
        ) {
            v.push(validate::tag_failed(
                "login_type",
                "oneof",
                &self.login_type,
            ));
        }
        if let Some(status) = &self.user_status {
            if !matches!(status.as_str(), "active" | "dormant") {
                v.push(validate::tag_failed("user_status", "oneof", status));
            }
        }
        v
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct UpdateRoles {
    pub roles: Vec<String>,
}

impl Validate for UpdateRoles {}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserRoles {
    pub roles: Vec<String>,
    pub organization_roles: std::collections::HashMap<Uuid, Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GetUsersResponse {
    pub users: Vec<User>,
    pub count: i64,
}

// ---- helpers -------------------------------------------------------------------------------------

async fn hash_password(state: &AppState, plain: String) -> ApiResult<String> {
    let params = state.config.password_hashing;
    tokio::task::spawn_blocking(move || password::hash(&plain, params))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

async fn verify_password(plain: String, hash: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || password::verify(&plain, &hash))
        .await
        .map_err(ApiError::internal)
}

fn check_strength(plain: &str) -> ApiResult<()> {
    password::validate_strength(plain).map_err(|detail| {
        ApiError::bad_request("Password not strong enough!").validation("password", detail)
    })
}

fn user_conflict(err: sqlx::Error) -> ApiError {
    match db::unique_violation(&err) {
        Some(_) => ApiError::conflict("User already exists."),
        None => err.into(),
    }
}

pub async fn to_user_json(state: &AppState, row: UserRow) -> ApiResult<User> {
    let mut orgs = store::organization_ids(&state.pool, &[row.id]).await?;
    let ids = orgs.remove(&row.id).unwrap_or_default();
    Ok(User::from_row(row, ids))
}

/// Resolves `{user}` (`me`, a UUID or a username) and checks that the caller may `action` it.
/// Unknown users and users the caller may not read are the same 404.
pub async fn resolve_user(
    state: &AppState,
    auth: &Auth,
    reference: &str,
    action: Action,
) -> ApiResult<UserRow> {
    let row = if reference == "me" {
        Some(auth.user.clone())
    } else if let Ok(id) = Uuid::parse_str(reference) {
        store::by_id(&state.pool, id).await?
    } else {
        store::by_username(&state.pool, reference).await?
    };
    let row = row.ok_or_else(ApiError::not_found)?;
    let object = Object::new(Resource::User).owned_by(row.id);
    if auth.subject.can(action, object) {
        return Ok(row);
    }
    // Organization-scoped admins may act on users of their organizations.
    let scoped = auth.subject.orgs_with(action, Resource::User);
    if !scoped.is_empty() {
        let orgs = store::organization_ids(&state.pool, &[row.id]).await?;
        if orgs
            .get(&row.id)
            .is_some_and(|list| list.iter().any(|o| scoped.contains(o)))
        {
            return Ok(row);
        }
    }
    if action != Action::Read && auth.subject.can(Action::Read, object) {
        return Err(ApiError::forbidden());
    }
    Err(ApiError::not_found())
}

fn session_cookie(token: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("coder_session_token=; Path=/; Max-Age=0"))
}

fn parse_time(
    key: &str,
    value: Option<String>,
    errors: &mut Vec<Validation>,
) -> Option<DateTime<Utc>> {
    let value = value?;
    match DateTime::parse_from_rfc3339(&value.to_uppercase()) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(Validation::new(
                key,
                format!("Query param {key:?} must be a valid date format (2006-01-02T15:04:05.999999999Z07:00): {value:?}"),
            ));
            None
        }
    }
}

// ---- handlers ------------------------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/api/v2/users/first",
    tag = "Users",
    summary = "Whether the first user exists",
    security(()),
    responses(
        (status = 200, description = "The first user has been created", body = MessageResponse),
        (status = 404, description = "The first user has not been created yet"),
    )
)]
async fn has_first_user(State(state): State<AppState>) -> ApiResult<Response> {
    if store::any_human(&state.pool).await? {
        Ok(ok(MessageResponse::new(
            "The initial user has already been created!",
        )))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "The initial user has not been created!",
        ))
    }
}

#[utoipa::path(
    post,
    path = "/api/v2/users/first",
    tag = "Users",
    summary = "Create the first user (an owner)",
    request_body = CreateFirstUserRequest,
    security(()),
    responses(
        (status = 201, description = "The first user and the default organization", body = CreateFirstUserResponse),
        (status = 400, description = "Invalid request, or the password is not strong enough"),
        (status = 409, description = "The first user already exists"),
    )
)]
async fn create_first_user(
    State(state): State<AppState>,
    Json(req): Json<CreateFirstUserRequest>,
) -> ApiResult<Response> {
    if store::any_human(&state.pool).await? {
        return Err(ApiError::conflict(
            "The initial user has already been created.",
        ));
    }
    check_strength(&req.password)?;
    let hashed = hash_password(&state, req.password.clone()).await?;
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    // Two racing requests: the second waits here, then sees the first user and gets the 409.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(locks::FIRST_USER)
        .execute(&mut *tx)
        .await?;
    if store::any_human(&mut *tx).await? {
        return Err(ApiError::conflict(
            "The initial user has already been created.",
        ));
    }
    let org = orgs::store::ensure_default(&mut tx, now).await?;
    let roles = vec![rbac::ROLE_OWNER.to_string()];
    let user = store::insert(
        &mut *tx,
        &store::NewUser {
            id: Uuid::new_v4(),
            email: &req.email,
            username: &req.username,
            name: &req.name,
            hashed_password: &hashed,
            status: "active",
            login_type: "password",
            rbac_roles: &roles,
            now,
        },
    )
    .await
    .map_err(user_conflict)?;
    orgs::store::add_member(&mut tx, org.id, user.id, &[], now).await?;
    // The prebuilds system user belongs to the default organization from the moment it exists.
    orgs::store::add_member(&mut tx, org.id, PREBUILDS_USER_ID, &[], now).await?;
    tx.commit().await?;
    tracing::info!(target: "coderd", user = %user.username, org = %org.name, "first user created");
    Ok(created(CreateFirstUserResponse {
        user_id: user.id,
        organization_id: org.id,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v2/users/login",
    tag = "Users",
    summary = "Log in with email and password",
    request_body = LoginWithPasswordRequest,
    security(()),
    responses(
        (status = 201, description = "A new session token (also set as the `coder_session_token` cookie)", body = LoginWithPasswordResponse, headers(("Set-Cookie" = String, description = "`coder_session_token=...; Path=/; HttpOnly; SameSite=Lax`"))),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
        (status = 401, description = "Incorrect email or password, or the account is suspended"),
        (status = 403, description = "The user does not log in with a password"),
    )
)]
async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginWithPasswordRequest>,
) -> ApiResult<Response> {
    let incorrect = || ApiError::unauthorized("").body_message("Incorrect email or password.");
    let Some(user) = store::by_email(&state.pool, &req.email).await? else {
        // Same work as a real check, so response time does not reveal which emails exist.
        verify_password(req.password, state.dummy_hash.clone()).await?;
        return Err(incorrect());
    };
    if user.login_type != "password" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Incorrect login type, attempting to use \"password\" but user is of login type {:?}",
                user.login_type
            ),
        ));
    }
    if !verify_password(req.password, user.hashed_password.clone()).await? {
        return Err(incorrect());
    }
    let now = state.clock.now();
    match user.status.as_str() {
        "suspended" => {
            return Err(ApiError::unauthorized("").body_message(
                "Your account is suspended. Contact an admin to reactivate your account.",
            ))
        }
        "dormant" => {
            store::set_status(&state.pool, user.id, "active", now).await?;
            state.auth_cache.evict_user(user.id);
        }
        _ => {}
    }
    let lifetime = chrono::Duration::from_std(state.config.session_duration)
        .unwrap_or(chrono::Duration::hours(24));
    let token = keys::create(
        &state.pool,
        &keys::NewKey {
            user_id: user.id,
            login_type: "password".into(),
            lifetime,
            token_name: String::new(),
        },
        now,
    )
    .await?;
    store::touch_last_seen(&state.pool, user.id, now).await?;
    state.auth_cache.evict_user(user.id);
    let mut resp = created(LoginWithPasswordResponse {
        session_token: token.clone(),
    });
    resp.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&token, lifetime.num_seconds()),
    );
    Ok(resp)
}

#[utoipa::path(
    post,
    path = "/api/v2/users/logout",
    tag = "Users",
    summary = "Log out (delete the session token)",
    responses(
        (status = 200, description = "The session token is deleted and the cookie cleared", body = MessageResponse),
    )
)]
async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<Response> {
    keys::delete(&state.pool, &auth.key_id).await?;
    state.auth_cache.evict_key(&auth.key_id);
    let mut resp = ok(MessageResponse::new("Logged out!"));
    resp.headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(resp)
}

#[derive(Serialize, utoipa::ToSchema)]
struct AuthMethod {
    enabled: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct GithubAuthMethod {
    enabled: bool,
    default_provider_configured: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[allow(non_snake_case)]
struct OidcAuthMethod {
    enabled: bool,
    signInText: String,
    iconUrl: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AuthMethods {
    password: AuthMethod,
    github: GithubAuthMethod,
    oidc: OidcAuthMethod,
}

#[utoipa::path(
    get,
    path = "/api/v2/users/authmethods",
    tag = "Users",
    summary = "Login methods",
    security(()),
    responses(
        (status = 200, description = "The login methods this deployment offers", body = AuthMethods),
    )
)]
async fn auth_methods() -> Response {
    ok(AuthMethods {
        password: AuthMethod { enabled: true },
        github: GithubAuthMethod {
            enabled: false,
            default_provider_configured: false,
        },
        oidc: OidcAuthMethod {
            enabled: false,
            signInText: String::new(),
            iconUrl: String::new(),
        },
    })
}

#[utoipa::path(
    get,
    path = "/api/v2/users/{user}",
    tag = "Users",
    summary = "Get a user",
    params(
        crate::openapi::UserPath,
    ),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    if user == "me" {
        // The hot path: everything is already loaded by authentication, no further query.
        let mut orgs: Vec<Uuid> = auth.subject.org_roles.keys().copied().collect();
        orgs.sort();
        return Ok(ok(User::from_row(auth.user.clone(), orgs)));
    }
    let row = resolve_user(&state, &auth, &user, Action::Read).await?;
    Ok(ok(to_user_json(&state, row).await?))
}

#[utoipa::path(
    post,
    path = "/api/v2/users",
    tag = "Users",
    summary = "Create a user",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "The new user", body = User),
        (status = 400, description = "Invalid request body (the envelope names the field)"),
        (status = 403, description = "The caller may not create users"),
        (status = 404, description = "An organization does not exist"),
        (status = 409, description = "The username or email is already in use"),
    )
)]
async fn create_user(
    State(state): State<AppState>,
    auth: Auth,
    Json(req): Json<CreateUserRequest>,
) -> ApiResult<Response> {
    if !auth
        .subject
        .can(Action::Create, Object::new(Resource::User))
    {
        return Err(ApiError::forbidden());
    }
    let mut org_ids = req.organization_ids.clone();
    if org_ids.is_empty() {
        if let Some(id) = req.organization_id {
            org_ids.push(id);
        }
    }
    if org_ids.is_empty() {
        return Err(ApiError::validation_failed(vec![Validation::new(
            "organization_ids",
            "Missing values, this cannot be empty",
        )]));
    }
    let mut orgs_resolved = Vec::new();
    for id in &org_ids {
        let org = if id.is_nil() {
            orgs::store::default_org(&state.pool).await?
        } else {
            orgs::store::resolve(&state.pool, &id.to_string()).await?
        };
        let org = org.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Organization does not exist with the provided id \"{id}\"."),
            )
        })?;
        if !orgs_resolved
            .iter()
            .any(|o: &orgs::Organization| o.id == org.id)
        {
            orgs_resolved.push(org);
        }
    }
    let login_type = if req.login_type.is_empty() {
        "password"
    } else {
        req.login_type.as_str()
    };
    let hashed = match login_type {
        "password" => {
            if req.password.is_empty() {
                return Err(ApiError::validation_failed(vec![Validation::required(
                    "password",
                )]));
            }
            check_strength(&req.password)?;
            hash_password(&state, req.password.clone()).await?
        }
        other => {
            if !req.password.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "Password cannot be set for non-password ({other:?}) authentication."
                )));
            }
            String::new()
        }
    };
    let status = req.user_status.as_deref().unwrap_or("dormant");
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    let user = store::insert(
        &mut *tx,
        &store::NewUser {
            id: Uuid::new_v4(),
            email: &req.email,
            username: &req.username,
            name: &req.name,
            hashed_password: &hashed,
            status,
            login_type,
            rbac_roles: &[],
            now,
        },
    )
    .await
    .map_err(user_conflict)?;
    for org in &orgs_resolved {
        orgs::store::add_member(&mut tx, org.id, user.id, &[], now).await?;
    }
    tx.commit().await?;
    Ok(created(User::from_row(
        user,
        orgs_resolved.iter().map(|o| o.id).collect(),
    )))
}

#[utoipa::path(
    get,
    path = "/api/v2/users",
    tag = "Users",
    summary = "List users",
    params(
        ("q" = Option<String>, Query, description = "Search query: bare terms and `search:`, `status:` (active, dormant, suspended), `role:`, `login_type:`, `created_after:`, `created_before:`, `last_seen_after:`, `last_seen_before:` (RFC 3339)"),
        crate::openapi::PageQuery,
        crate::openapi::AfterIdQuery,
    ),
    responses(
        (status = 200, description = "The users the caller may see (one page) and the total count", body = GetUsersResponse),
        (status = 400, description = "Invalid search query or pagination"),
    )
)]
async fn list_users(
    State(state): State<AppState>,
    auth: Auth,
    Query(params): Query<QueryMap>,
) -> ApiResult<Response> {
    let page = Pagination::from_query(&params)?;
    let invalid =
        |v: Vec<Validation>| ApiError::bad_request("Invalid user search query.").validations(v);
    let q =
        SearchQuery::parse(params.get("q").map(String::as_str).unwrap_or("")).map_err(invalid)?;
    let mut errors = q.check_keys(&[
        "search",
        "status",
        "role",
        "login_type",
        "last_seen_after",
        "last_seen_before",
        "created_after",
        "created_before",
    ]);
    let mut search: Vec<String> = q.bare();
    if let Some(s) = q.single("search", &mut errors) {
        search.push(s);
    }
    let statuses = q.list("status");
    for s in &statuses {
        if !matches!(s.as_str(), "active" | "dormant" | "suspended") {
            errors.push(Validation::new(
                "status",
                format!("Query param \"status\" has invalid value: {s:?} is not a valid value"),
            ));
        }
    }
    let mut filter = store::UserFilter {
        search: search.join(" "),
        statuses,
        roles: q.list("role"),
        login_types: q.list("login_type"),
        see_all: auth.subject.can_site_wide(Action::Read, Resource::User),
        caller: auth.user_id(),
        visible_orgs: auth.subject.orgs_with(Action::Read, Resource::User),
        ..Default::default()
    };
    filter.created_after = parse_time(
        "created_after",
        q.single("created_after", &mut errors),
        &mut errors,
    );
    filter.created_before = parse_time(
        "created_before",
        q.single("created_before", &mut errors),
        &mut errors,
    );
    filter.last_seen_after = parse_time(
        "last_seen_after",
        q.single("last_seen_after", &mut errors),
        &mut errors,
    );
    filter.last_seen_before = parse_time(
        "last_seen_before",
        q.single("last_seen_before", &mut errors),
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let after_username = match page.after_id {
        Some(id) => Some(
            store::by_id(&state.pool, id)
                .await?
                .ok_or_else(|| {
                    ApiError::bad_request("Query parameters have invalid values.")
                        .validation("after_id", format!("User {id} does not exist"))
                })?
                .username,
        ),
        None => None,
    };
    let mut conn = state.pool.acquire().await?;
    let (rows, count) = store::list(
        &mut conn,
        &filter,
        page.sql_limit(),
        page.offset,
        after_username,
    )
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut orgs = store::organization_ids(&mut *conn, &ids).await?;
    let users = rows
        .into_iter()
        .map(|r| {
            let ids = orgs.remove(&r.id).unwrap_or_default();
            User::from_row(r, ids)
        })
        .collect();
    Ok(ok(GetUsersResponse { users, count }))
}

#[utoipa::path(
    get,
    path = "/api/v2/users/{user}/roles",
    tag = "Users",
    summary = "A user's site and organization roles",
    params(
        crate::openapi::UserPath,
    ),
    responses(
        (status = 200, description = "The user's roles", body = UserRoles),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn get_roles(
    State(state): State<AppState>,
    auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let row = resolve_user(&state, &auth, &user, Action::Read).await?;
    let memberships: Vec<(Uuid, Vec<String>)> = sqlx::query_as(
        "SELECT organization_id, roles FROM organization_members WHERE user_id = $1",
    )
    .bind(row.id)
    .fetch_all(&state.pool)
    .await?;
    Ok(ok(UserRoles {
        roles: row.rbac_roles,
        organization_roles: memberships.into_iter().collect(),
    }))
}

#[utoipa::path(
    put,
    path = "/api/v2/users/{user}/roles",
    tag = "Users",
    summary = "Set a user's site roles",
    params(
        crate::openapi::UserPath,
    ),
    request_body = UpdateRoles,
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 400, description = "Unknown role, or the caller's own roles"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn put_roles(
    State(state): State<AppState>,
    auth: Auth,
    Path(user): Path<String>,
    Json(req): Json<UpdateRoles>,
) -> ApiResult<Response> {
    let row = resolve_user(&state, &auth, &user, Action::Update).await?;
    if !auth
        .subject
        .can(Action::Update, Object::new(Resource::User))
    {
        return Err(ApiError::forbidden());
    }
    if row.id == auth.user_id() {
        return Err(ApiError::bad_request("You cannot change your own roles."));
    }
    let mut roles: Vec<String> = Vec::new();
    for role in req.roles.iter().filter(|r| r.as_str() != rbac::ROLE_MEMBER) {
        if !rbac::SITE_ROLES.contains(&role.as_str()) {
            return Err(ApiError::bad_request(format!("Invalid role {role:?}."))
                .validation("roles", format!("{role:?} is not a site role")));
        }
        if !roles.contains(role) {
            roles.push(role.clone());
        }
    }
    // Only owners may grant or revoke the owner role.
    let touches_owner = roles.iter().any(|r| r == rbac::ROLE_OWNER)
        != row.rbac_roles.iter().any(|r| r == rbac::ROLE_OWNER);
    if touches_owner && !auth.subject.is_owner() {
        return Err(ApiError::forbidden());
    }
    let updated = store::set_roles(&state.pool, row.id, &roles, state.clock.now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    state.auth_cache.evict_user(row.id);
    Ok(ok(to_user_json(&state, updated).await?))
}

async fn set_status(
    state: AppState,
    auth: Auth,
    user: String,
    status: &str,
) -> ApiResult<Response> {
    let row = resolve_user(&state, &auth, &user, Action::Update).await?;
    if !auth
        .subject
        .can(Action::Update, Object::new(Resource::User))
    {
        return Err(ApiError::forbidden());
    }
    if row.id == auth.user_id() && status == "suspended" {
        return Err(ApiError::bad_request("You cannot suspend yourself."));
    }
    if row.rbac_roles.iter().any(|r| r == rbac::ROLE_OWNER) && !auth.subject.is_owner() {
        return Err(ApiError::forbidden());
    }
    let updated = store::set_status(&state.pool, row.id, status, state.clock.now())
        .await?
        .ok_or_else(ApiError::not_found)?;
    state.auth_cache.evict_user(row.id);
    Ok(ok(to_user_json(&state, updated).await?))
}

#[utoipa::path(
    put,
    path = "/api/v2/users/{user}/status/suspend",
    tag = "Users",
    summary = "Suspend a user",
    params(
        crate::openapi::UserPath,
    ),
    responses(
        (status = 200, description = "The suspended user", body = User),
        (status = 400, description = "The caller cannot suspend itself"),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn suspend_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    set_status(state, auth, user, "suspended").await
}

#[utoipa::path(
    put,
    path = "/api/v2/users/{user}/status/activate",
    tag = "Users",
    summary = "Activate a user",
    params(
        crate::openapi::UserPath,
    ),
    responses(
        (status = 200, description = "The activated user", body = User),
        (status = 403, description = "The caller may read but not change this"),
        (status = 404, description = "Not found, or not visible to the caller"),
    )
)]
async fn activate_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    set_status(state, auth, user, "active").await
}
