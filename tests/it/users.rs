use chrono::Duration;
use coder::users::{User, PREBUILDS_USER_ID};
use serde_json::json;

use crate::harness::{TestApp, ADMIN_EMAIL, ADMIN_USERNAME, PASSWORD};

#[tokio::test]
async fn first_user_login_and_me() {
    let app = TestApp::new().await;
    let anon = app.client();
    let resp = anon.get("/api/v2/users/first").await;
    assert_eq!(resp.status, 404);
    assert!(resp.headers.contains_key("x-coder-build-version"));
    assert_eq!(
        resp.error().message,
        "The initial user has not been created!"
    );

    let owner = app.owner().await;
    assert_eq!(anon.get("/api/v2/users/first").await.status, 200);

    let me: User = owner.get("/api/v2/users/me").await.json();
    assert_eq!(me.username, ADMIN_USERNAME);
    assert_eq!(me.email, ADMIN_EMAIL);
    assert_eq!(me.status, "active");
    assert_eq!(me.login_type, "password");
    assert_eq!(me.roles.len(), 1);
    assert_eq!(me.roles[0].name, "owner");
    assert_eq!(me.organization_ids.len(), 1);

    // The default organization exists, named coder, and the prebuilds user is a member of it.
    let org: serde_json::Value = owner.get("/api/v2/organizations/default").await.json();
    assert_eq!(org["name"], "coder");
    assert_eq!(org["is_default"], true);
    assert_eq!(
        org["id"].as_str().unwrap(),
        me.organization_ids[0].to_string()
    );
    let member: Option<(uuid::Uuid,)> = sqlx::query_as(
        "SELECT m.user_id FROM organization_members m JOIN group_members g
           ON g.user_id = m.user_id AND g.group_id = m.organization_id
         WHERE m.user_id = $1 AND m.organization_id = $2",
    )
    .bind(PREBUILDS_USER_ID)
    .bind(me.organization_ids[0])
    .fetch_optional(app.pool())
    .await
    .unwrap();
    assert!(
        member.is_some(),
        "prebuilds user must be in the default org and Everyone"
    );

    // A second first user is refused.
    let resp = anon
        .post(
            "/api/v2/users/first",
            &json!({"email": "x@coder.test", "username": "x", "password": PASSWORD}),
        )
        .await;
    assert_eq!(resp.status, 409);
    assert_eq!(
        resp.error().message,
        "The initial user has already been created."
    );
}

#[tokio::test]
async fn concurrent_first_user_creates_exactly_one() {
    let app = TestApp::new().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = app.client();
        tasks.push(tokio::spawn(async move {
            c.post(
                "/api/v2/users/first",
                &json!({"email": format!("u{i}@coder.test"), "username": format!("u{i}"), "password": PASSWORD}),
            )
            .await
            .status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(orgs, 1);
}

#[tokio::test]
async fn token_sources_cookie_query_header() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let token = owner.token.clone().unwrap();
    let anon = app.client();
    let via_cookie = anon
        .request(
            reqwest::Method::GET,
            "/api/v2/users/me",
            None,
            &[("cookie", &format!("coder_session_token={token}"))],
        )
        .await;
    assert_eq!(via_cookie.status, 200);
    let via_query = anon
        .get(&format!("/api/v2/users/me?coder_session_token={token}"))
        .await;
    assert_eq!(via_query.status, 200);
    // The cookie wins over the header, as in Coder: a bad cookie fails even with a good header.
    let bad_cookie = owner
        .request(
            reqwest::Method::GET,
            "/api/v2/users/me",
            None,
            &[(
                "cookie",
                "coder_session_token=aaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbb",
            )],
        )
        .await;
    assert_eq!(bad_cookie.status, 401);
}

#[tokio::test]
async fn login_sets_cookie_and_logout_revokes_key() {
    let app = TestApp::new().await;
    app.owner().await;
    let anon = app.client();
    let resp = anon
        .post(
            "/api/v2/users/login",
            &json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
        )
        .await;
    assert_eq!(resp.status, 201);
    let cookie = resp.headers["set-cookie"].to_str().unwrap().to_string();
    let token = resp.json::<serde_json::Value>()["session_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with(&format!("coder_session_token={token}")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly"));
    // Key format: 10-char id, dash, 22-char secret; only the hash of the secret is stored.
    let (id, secret) = token.split_once('-').unwrap();
    assert_eq!((id.len(), secret.len()), (10, 22));
    let stored: Vec<u8> = sqlx::query_scalar("SELECT hashed_secret FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_ne!(stored, secret.as_bytes());
    assert_eq!(stored.len(), 32);

    let client = anon.with_token(&token);
    assert_eq!(client.get("/api/v2/users/me").await.status, 200);
    let resp = client.post("/api/v2/users/logout", &json!({})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json::<serde_json::Value>()["message"], "Logged out!");
    let resp = client.get("/api/v2/users/me").await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.error().detail, "API key is invalid.");
}

#[tokio::test]
async fn wrong_password_and_unknown_email_are_the_same_401() {
    let app = TestApp::new().await;
    app.owner().await;
    let anon = app.client();
    for body in [
        json!({"email": ADMIN_EMAIL, "password": "WrongPassword!123"}),
        json!({"email": "nobody@coder.test", "password": PASSWORD}),
    ] {
        let resp = anon.post("/api/v2/users/login", &body).await;
        assert_eq!(resp.status, 401);
        assert_eq!(resp.error().message, "Incorrect email or password.");
    }
}

#[tokio::test]
async fn expired_key_is_refused_and_used_keys_are_refreshed() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let token = owner.token.clone().unwrap();
    let id = token.split('-').next().unwrap().to_string();
    let expiry = |app: &TestApp| {
        let pool = app.pool().clone();
        let id = id.clone();
        async move {
            sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
                "SELECT expires_at FROM api_keys WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = expiry(&app).await;
    // Used after two hours: the expiry slides forward by the time that passed.
    app.clock.advance(Duration::hours(2));
    assert_eq!(owner.get("/api/v2/users/me").await.status, 200);
    let after = expiry(&app).await;
    assert!(
        after - before >= Duration::minutes(119),
        "{before} -> {after}"
    );
    // Unused past its expiry: refused with Coder's detail.
    app.clock.advance(Duration::hours(25));
    let resp = owner.get("/api/v2/users/me").await;
    assert_eq!(resp.status, 401);
    let err = resp.error();
    assert!(
        err.detail.starts_with("API key expired at"),
        "{}",
        err.detail
    );
    assert_eq!(
        err.message,
        "You are signed out or your session has expired. Please sign in again to continue."
    );
}

#[tokio::test]
async fn prebuilds_user_cannot_log_in_and_is_hidden() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let resp = app
        .client()
        .post(
            "/api/v2/users/login",
            &json!({"email": "prebuilds@system", "password": PASSWORD}),
        )
        .await;
    assert_eq!(resp.status, 403);
    assert!(resp.error().message.contains("login type \"none\""));

    let list: serde_json::Value = owner.get("/api/v2/users").await.json();
    let names: Vec<&str> = list["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![ADMIN_USERNAME]);
    assert_eq!(list["count"], 1);
    // Named explicitly, it is found.
    let list: serde_json::Value = owner.get("/api/v2/users?q=prebuilds").await.json();
    assert_eq!(list["users"][0]["id"], PREBUILDS_USER_ID.to_string());
    let user: User = owner.get("/api/v2/users/prebuilds").await.json();
    assert_eq!(user.login_type, "none");

    // The database refuses to modify system users.
    let err = sqlx::query("UPDATE users SET name = 'x' WHERE id = $1")
        .bind(PREBUILDS_USER_ID)
        .execute(app.pool())
        .await;
    assert!(err.is_err());
}

#[tokio::test]
async fn member_cannot_create_users_or_read_others() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let (alice, alice_id) = app.user(&owner, "alice", &[]).await;
    let (_bob, bob_id) = app.user(&owner, "bob", &[]).await;

    let resp = alice
        .post(
            "/api/v2/users",
            &json!({"email": "c@coder.test", "username": "carol", "password": PASSWORD,
                    "organization_ids": [uuid::Uuid::nil()]}),
        )
        .await;
    assert_eq!(resp.status, 403);
    resp.error();

    // Alice sees herself only; the owner sees everyone.
    let list: serde_json::Value = alice.get("/api/v2/users").await.json();
    assert_eq!(list["count"], 1);
    assert_eq!(list["users"][0]["id"], alice_id.to_string());
    assert_eq!(
        alice.get(&format!("/api/v2/users/{bob_id}")).await.status,
        404
    );
    assert_eq!(alice.get("/api/v2/users/bob").await.status, 404);
    assert_eq!(alice.get("/api/v2/users/alice").await.status, 200);
    assert_eq!(owner.get("/api/v2/users/bob").await.status, 200);
    let list: serde_json::Value = owner.get("/api/v2/users").await.json();
    assert_eq!(list["count"], 3);
    // Alice can't make herself an owner, nor change roles at all.
    let resp = alice
        .put(
            &format!("/api/v2/users/{bob_id}/roles"),
            &json!({"roles": ["owner"]}),
        )
        .await;
    assert_eq!(resp.status, 404);
}

#[tokio::test]
async fn user_admin_creates_users_but_cannot_grant_owner() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let (ua, _) = app.user(&owner, "useradmin", &["user-admin"]).await;
    let resp = ua
        .post(
            "/api/v2/users",
            &json!({"email": "dave@coder.test", "username": "dave", "password": PASSWORD,
                    "organization_ids": [uuid::Uuid::nil()]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let dave: User = resp.json();
    assert_eq!(dave.status, "dormant");
    let resp = ua
        .put(
            &format!("/api/v2/users/{}/roles", dave.id),
            &json!({"roles": ["owner"]}),
        )
        .await;
    assert_eq!(resp.status, 403);
    let resp = ua
        .put(
            &format!("/api/v2/users/{}/roles", dave.id),
            &json!({"roles": ["template-admin"]}),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json::<User>().roles[0].name, "template-admin");
    // Duplicate username or email: 409 "User already exists."
    let resp = ua
        .post(
            "/api/v2/users",
            &json!({"email": "DAVE@coder.test", "username": "dave2", "password": PASSWORD,
                    "organization_ids": [uuid::Uuid::nil()]}),
        )
        .await;
    assert_eq!(resp.status, 409);
    assert_eq!(resp.error().message, "User already exists.");
}

#[tokio::test]
async fn suspended_user_is_locked_out() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let (alice, alice_id) = app.user(&owner, "alice", &[]).await;
    let resp = owner
        .put(
            &format!("/api/v2/users/{alice_id}/status/suspend"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json::<User>().status, "suspended");
    let resp = alice.get("/api/v2/users/me").await;
    assert_eq!(resp.status, 401);
    assert!(resp.error().detail.contains("suspended"));
    let resp = app
        .client()
        .post(
            "/api/v2/users/login",
            &json!({"email": "alice@coder.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(resp.status, 401);
}

#[tokio::test]
async fn list_users_search_and_pagination() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    for name in ["amy", "ben", "cat", "dan"] {
        app.user(&owner, name, &[]).await;
    }
    let page: serde_json::Value = owner.get("/api/v2/users?limit=2&offset=1").await.json();
    let names: Vec<&str> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["amy", "ben"]);
    assert_eq!(page["count"], 5);
    let found: serde_json::Value = owner.get("/api/v2/users?q=ca").await.json();
    assert_eq!(found["count"], 1);
    assert_eq!(found["users"][0]["username"], "cat");
    let owners: serde_json::Value = owner.get("/api/v2/users?q=role:owner").await.json();
    assert_eq!(owners["count"], 1);
    let active: serde_json::Value = owner
        .get("/api/v2/users?q=status:active%20search:dan")
        .await
        .json();
    assert_eq!(active["count"], 1);
    let resp = owner.get("/api/v2/users?q=status:bogus").await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().validations[0].field, "status");
}

/// Keys are cached per replica for a few seconds, so `/users/me` costs no query; every change that
/// affects authentication must still take effect at once on this replica and within moments
/// (LISTEN/NOTIFY, far below the cache's 5 s lifetime) on the others.
#[tokio::test]
async fn cached_keys_follow_suspension_roles_and_logout_on_every_replica() {
    use coder::api::auth_cache::TTL;
    use std::time::{Duration as StdDuration, Instant};

    let a = TestApp::new().await;
    let b = a.replica(|_| {}).await;
    let owner = a.owner().await;
    let (alice, alice_id) = a.user(&owner, "alice", &[]).await;
    let key_id = alice.token().split('-').next().unwrap().to_string();
    let on_b = b.client().with_token(alice.token());

    // Waits until `b`'s listener is connected, so its cache is in use.
    let start = Instant::now();
    loop {
        assert_eq!(alice.get("/api/v2/users/me").await.status, 200);
        assert_eq!(on_b.get("/api/v2/users/me").await.status, 200);
        if a.state.auth_cache.get(&key_id).is_some() && b.state.auth_cache.get(&key_id).is_some() {
            break;
        }
        assert!(
            start.elapsed() < StdDuration::from_secs(10),
            "keys never cached"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }

    // A role granted on `a` shows on `b` (the cached user had none).
    let resp = owner
        .put(
            &format!("/api/v2/users/{alice_id}/roles"),
            &json!({"roles": ["user-admin"]}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        a.state.auth_cache.get(&key_id).is_none(),
        "evicted at once where it changed"
    );
    eventually(TTL / 5, "role seen on b", || async {
        let me: serde_json::Value = on_b.get("/api/v2/users/me").await.json();
        me["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "user-admin")
    })
    .await;

    // Suspension on `a`: refused at once there, within moments on `b`.
    let resp = owner
        .put(
            &format!("/api/v2/users/{alice_id}/status/suspend"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(alice.get("/api/v2/users/me").await.status, 401);
    eventually(TTL / 5, "suspended user refused by b", || async {
        on_b.get("/api/v2/users/me").await.status == 401
    })
    .await;
    let resp = owner
        .put(
            &format!("/api/v2/users/{alice_id}/status/activate"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 200);

    // Logout on `b`: the key is gone on `a` too.
    assert_eq!(on_b.get("/api/v2/users/me").await.status, 200);
    assert_eq!(alice.get("/api/v2/users/me").await.status, 200);
    assert_eq!(
        on_b.post("/api/v2/users/logout", &json!({})).await.status,
        200
    );
    assert_eq!(on_b.get("/api/v2/users/me").await.status, 401);
    eventually(TTL / 5, "logged-out key refused by a", || async {
        alice.get("/api/v2/users/me").await.status == 401
    })
    .await;
}

/// Polls `check` every 5 ms until it holds; fails if it does not within `within`.
async fn eventually<F, Fut>(within: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
