//! Every kind of bad input gets Coder's error envelope and the documented status, never a 500.

use reqwest::Method;
use serde_json::json;

use crate::harness::{TestApp, ADMIN_EMAIL, PASSWORD};

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Vec<u8>>,
    auth: bool,
    status: u16,
    message: &'static str,
    /// A validation entry must name this field ("" = no validation expected).
    field: &'static str,
}

// One table row per call; positional arguments keep the table readable.
#[allow(clippy::too_many_arguments)]
fn case(
    name: &'static str,
    method: Method,
    path: &'static str,
    body: Option<&str>,
    auth: bool,
    status: u16,
    message: &'static str,
    field: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        body: body.map(|b| b.as_bytes().to_vec()),
        auth,
        status,
        message,
        field,
    }
}

#[tokio::test]
async fn bad_input_table() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let anon = app.client();
    let big = format!("{{\"email\": \"{}\"}}", "a".repeat(5 << 20));
    let cases = vec![
        case("malformed json", Method::POST, "/api/v2/users/login", Some("{\"email\": "), false, 400, "Request body must be valid JSON.", ""),
        case("empty body", Method::POST, "/api/v2/users/login", Some(""), false, 400, "Request body must be valid JSON.", ""),
        case("array instead of object", Method::POST, "/api/v2/users/login", Some("[1,2]"), false, 400, "Request body must be valid JSON.", ""),
        case("wrong type", Method::POST, "/api/v2/users/login", Some(r#"{"email": 5, "password": "x"}"#), false, 400, "Request body must be valid JSON.", "email"),
        case("missing required", Method::POST, "/api/v2/users/login", Some(r#"{"email": "a@coder.test"}"#), false, 400, "Validation failed.", "password"),
        case("invalid email", Method::POST, "/api/v2/users/login", Some(r#"{"email": "not-an-email", "password": "x"}"#), false, 400, "Validation failed.", "email"),
        case("invalid username", Method::POST, "/api/v2/users", Some(r#"{"email": "z@coder.test", "username": "bad name!", "password": "SomeSecurePassword!", "organization_ids": ["00000000-0000-0000-0000-000000000000"]}"#), true, 400, "Validation failed.", "username"),
        case("username too long", Method::POST, "/api/v2/users", Some(r#"{"email": "z@coder.test", "username": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "password": "SomeSecurePassword!", "organization_ids": ["00000000-0000-0000-0000-000000000000"]}"#), true, 400, "Validation failed.", "username"),
        case("wrong uuid in body", Method::POST, "/api/v2/users", Some(r#"{"email": "z@coder.test", "username": "zed", "password": "SomeSecurePassword!", "organization_ids": ["nope"]}"#), true, 400, "Request body must be valid JSON.", "organization_ids[0]"),
        case("missing organization_ids", Method::POST, "/api/v2/users", Some(r#"{"email": "z@coder.test", "username": "zed", "password": "SomeSecurePassword!"}"#), true, 400, "Validation failed.", "organization_ids"),
        case("unknown organization", Method::POST, "/api/v2/users", Some(r#"{"email": "z@coder.test", "username": "zed", "password": "SomeSecurePassword!", "organization_ids": ["7d3b1b1e-7a55-4b6c-9c55-0a1b2c3d4e5f"]}"#), true, 404, "Organization does not exist with the provided id \"7d3b1b1e-7a55-4b6c-9c55-0a1b2c3d4e5f\".", ""),
        case("weak password", Method::POST, "/api/v2/users", Some(r#"{"email": "z@coder.test", "username": "zed", "password": "password", "organization_ids": ["00000000-0000-0000-0000-000000000000"]}"#), true, 400, "Password not strong enough!", "password"),
        case("oversized body", Method::POST, "/api/v2/users/login", Some(big.as_str()), false, 413, "Request body is too large.", ""),
        case("missing auth", Method::GET, "/api/v2/users/me", None, false, 401, "You are signed out or your session has expired. Please sign in again to continue.", ""),
        case("unknown user", Method::GET, "/api/v2/users/nobody-here", None, true, 404, "Resource not found or you do not have access to this resource", ""),
        case("unknown user uuid", Method::GET, "/api/v2/users/7d3b1b1e-7a55-4b6c-9c55-0a1b2c3d4e5f", None, true, 404, "Resource not found or you do not have access to this resource", ""),
        case("malformed user reference", Method::GET, "/api/v2/users/not%20a%20uuid", None, true, 404, "Resource not found or you do not have access to this resource", ""),
        case("unknown organization path", Method::GET, "/api/v2/organizations/7d3b1b1e-7a55-4b6c-9c55-0a1b2c3d4e5f", None, true, 404, "Resource not found or you do not have access to this resource", ""),
        case("unknown route", Method::GET, "/api/v2/no-such-thing", None, true, 404, "Route not found.", ""),
        case("method not allowed", Method::DELETE, "/api/v2/users/first", None, false, 405, "Method not allowed.", ""),
        case("bad limit", Method::GET, "/api/v2/users?limit=abc", None, true, 400, "Query parameters have invalid values.", "limit"),
        case("negative offset", Method::GET, "/api/v2/users?offset=-3", None, true, 400, "Query parameters have invalid values.", "offset"),
        case("bad after_id", Method::GET, "/api/v2/users?after_id=xyz", None, true, 400, "Query parameters have invalid values.", "after_id"),
        case("bad search key", Method::GET, "/api/v2/users?q=colour:blue", None, true, 400, "Invalid user search query.", "colour"),
        case("bad search element", Method::GET, "/api/v2/users?q=a:b:c", None, true, 400, "Invalid user search query.", "q"),
        case("bad role", Method::PUT, "/api/v2/users/prebuilds/roles", Some(r#"{"roles": ["emperor"]}"#), true, 400, "Invalid role \"emperor\".", "roles"),
    ];
    for c in cases {
        let client = if c.auth { owner.clone() } else { anon.clone() };
        let resp = client
            .request(
                c.method.clone(),
                c.path,
                c.body.clone(),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(resp.status, c.status, "{}: {}", c.name, resp.text());
        let err = resp.error();
        assert_eq!(err.message, c.message, "{}", c.name);
        if !c.field.is_empty() {
            assert!(
                err.validations.iter().any(|v| v.field == c.field),
                "{}: expected a validation for {:?}, got {:?}",
                c.name,
                c.field,
                err.validations
            );
        }
        assert!(
            resp.headers.contains_key("x-coder-build-version"),
            "{}",
            c.name
        );
    }
}

#[tokio::test]
async fn bad_tokens_are_401_with_coder_details() {
    let app = TestApp::new().await;
    app.owner().await;
    let anon = app.client();
    for (token, detail) in [
        (
            "garbage",
            "Invalid API key format: incorrect number of parts: 1",
        ),
        (
            "short-abcdefghijklmnopqrstuv",
            "Invalid API key format: invalid API key ID length",
        ),
        (
            "abcdefghij-short",
            "Invalid API key format: invalid API key secret length",
        ),
        ("abcdefghij-abcdefghijklmnopqrstuv", "API key is invalid."),
    ] {
        let resp = anon.with_token(token).get("/api/v2/users/me").await;
        assert_eq!(resp.status, 401, "{token}");
        assert_eq!(resp.error().detail, detail, "{token}");
    }
}

#[tokio::test]
async fn go_decoder_leniency() {
    let app = TestApp::new().await;
    app.owner().await;
    let anon = app.client();
    // Unknown fields are ignored and null means unset.
    let resp = anon
        .post(
            "/api/v2/users/login",
            &json!({"email": ADMIN_EMAIL, "password": PASSWORD, "totp": null, "remember_me": true}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let client = anon.with_token(
        resp.json::<serde_json::Value>()["session_token"]
            .as_str()
            .unwrap(),
    );
    // Trailing slashes are accepted.
    assert_eq!(client.get("/api/v2/users/me/").await.status, 200);
    assert_eq!(client.get("/api/v2/organizations/").await.status, 200);
    // Output is Go's: HTML-escaped JSON with a trailing newline and the right content type.
    let resp = client.get("/api/v2/").await;
    assert_eq!(resp.status, 200);
    assert!(resp.text().ends_with("}\n"));
    assert_eq!(
        resp.headers["content-type"],
        "application/json; charset=utf-8"
    );
}

#[tokio::test]
async fn panics_are_contained() {
    let app = TestApp::new().await;
    let anon = app.client();
    let resp = anon.get("/api/v2/test/panic").await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.error().message, "An internal server error occurred.");
    // The server is still up.
    assert_eq!(anon.get("/healthz").await.text(), "OK");
}

#[tokio::test]
async fn database_outage_is_503_not_500() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    app.pool().close().await;
    let resp = owner.get("/api/v2/users/me").await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    resp.error();
}
