//! The OpenAPI document (`coder::openapi`): the committed `docs/api/openapi.json` is the generated one, the
//! server serves it, a real validator accepts it, and it describes every route the router serves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use uuid::Uuid;

use crate::harness::TestApp;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api/openapi.json");
const HTTP_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[test]
fn committed_document_is_the_generated_one() {
    let generated = coder::openapi::document_json();
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (c, g))| c != g)
            .map(|(i, (c, g))| format!("line {}:\n  committed: {c}\n  generated: {g}", i + 1))
            .unwrap_or_else(|| {
                format!(
                    "lengths differ: {} committed lines, {} generated",
                    committed.lines().count(),
                    generated.lines().count()
                )
            });
        panic!(
            "docs/api/openapi.json is not the document the code generates; run scripts/gen-openapi and \
             commit the result.\nFirst difference at {first_difference}"
        );
    }
}

#[tokio::test]
async fn the_server_serves_the_document() {
    let app = TestApp::new().await;
    let resp = app.client().get("/api/v2/openapi.json").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let content_type = resp
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let served: Value = resp.json();
    assert_eq!(served, coder::openapi::document());
    assert_eq!(served["openapi"], "3.1.0");
}

#[test]
fn a_validator_accepts_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, coder::openapi::document_json()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&path)
        .output()
        .expect(
            "python3 with openapi-spec-validator (scripts/lib/ensure-openapi-tools.sh installs it)",
        );
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document (is it installed? scripts/lib/ensure-openapi-tools.sh):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn operations_are_complete() {
    let doc = coder::openapi::document();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = format!("{} {path}", method.to_uppercase());
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(
                ids.insert(id.to_string()),
                "{name}: duplicate operationId {id:?}"
            );
            assert!(op["summary"].is_string(), "{name}: no summary");
            assert!(op["tags"].is_array(), "{name}: no tag");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2') || s == "101")
                    || path.ends_with("/rpc"),
                "{name}: no success response"
            );
            for range in ["4XX", "5XX"] {
                assert!(responses.contains_key(range), "{name}: no {range} response");
            }
            // Path parameters are declared exactly as the path names them.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let named: BTreeSet<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            assert_eq!(declared, named, "{name}: path parameters");
        }
    }
}

/// Every `(METHOD, path)` the main router serves, read from the `.route(...)` calls in `src/`: domain
/// routers are merged under `/api/v2`, `workspaces::watch::experimental_routes` is nested under
/// `/api/experimental`, `app.rs` routes at the root; `/metrics` (its own listener) is not part of the API.
fn served_routes() -> BTreeSet<(String, String)> {
    let route_re = regex::Regex::new(r#"\.route\(\s*"([^"]*)""#).unwrap();
    let method_re =
        regex::Regex::new(r"(?:^|[^A-Za-z0-9_])(get|post|put|patch|delete)\s*\(").unwrap();
    let src = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    let mut out = BTreeSet::new();
    for file in rust_files(&src) {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let prefix = match rel.as_str() {
            "metrics/http.rs" => continue,
            "app.rs" => "",
            "workspaces/watch.rs" => "/api/experimental",
            _ => "/api/v2",
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for m in route_re.captures_iter(&text) {
            let route = &m[1];
            // The arguments of this `.route(` call: up to its closing parenthesis.
            let start = m.get(0).unwrap().start() + ".route".len();
            let args = balanced(&text[start..]);
            let methods: BTreeSet<String> = method_re
                .captures_iter(args)
                .map(|c| c[1].to_string())
                .collect();
            assert!(
                !methods.is_empty(),
                "{rel}: no method found for route {route:?}"
            );
            let path = if route == "/" && !prefix.is_empty() {
                format!("{prefix}/")
            } else {
                format!("{prefix}{route}")
            };
            for method in methods {
                out.insert((method, path.clone()));
            }
        }
    }
    out
}

/// `s` starts with `(`: the text up to the matching `)`.
fn balanced(s: &str) -> &str {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[..=i];
                }
            }
            _ => {}
        }
    }
    s
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn every_served_route_is_documented_and_nothing_else() {
    let served = served_routes();
    assert!(
        served.len() > 50,
        "the route scan found too few routes: {served:?}"
    );
    let doc = coder::openapi::document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| HTTP_METHODS.contains(&m.as_str()))
                .map(|m| (m.clone(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let fmt = |set: Vec<&(String, String)>| {
        set.iter()
            .map(|(m, p)| format!("  {} {p}", m.to_uppercase()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let missing: Vec<_> = served.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "the OpenAPI document and the router disagree (annotate the handler with #[utoipa::path], list it \
         in src/openapi.rs, run scripts/gen-openapi).\nServed but not documented:\n{}\nDocumented but not \
         served:\n{}",
        fmt(missing),
        fmt(stale)
    );
}

/// One exchange with the server, checked against the document by [`validate_exchanges`].
struct Exchange {
    method: &'static str,
    /// The documented path (`/api/v2/workspaces/{workspace}`).
    path: &'static str,
    status: u16,
    content_type: String,
    body: Value,
}

struct Recorder {
    exchanges: Vec<Exchange>,
}

impl Recorder {
    /// Sends `method concrete` (with a JSON body when given) as `client` and records the answer under the
    /// documented `path`.
    async fn call(
        &mut self,
        client: &crate::harness::Client,
        method: &'static str,
        path: &'static str,
        concrete: &str,
        body: Option<Value>,
    ) -> Value {
        let http_method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = client
            .request(
                http_method,
                concrete,
                body.map(|b| serde_json::to_vec(&b).unwrap()),
                &[("content-type", "application/json")],
            )
            .await;
        let content_type = resp
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let json = if resp.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&resp.body).unwrap_or(Value::String(resp.text()))
        };
        self.exchanges.push(Exchange {
            method,
            path,
            status: resp.status,
            content_type,
            body: json.clone(),
        });
        json
    }
}

/// Validates every recorded answer against the document with Python's `jsonschema` (Draft 2020-12, the
/// dialect of OpenAPI 3.1; installed with openapi-spec-validator): the status is documented (exactly or by
/// range), the content type is the documented one, and the body matches the documented schema.
fn validate_exchanges(exchanges: &[Exchange]) {
    let cases: Vec<Value> = exchanges
        .iter()
        .map(|e| {
            serde_json::json!({
                "method": e.method, "path": e.path, "status": e.status,
                "content_type": e.content_type, "body": e.body,
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("openapi.json");
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&doc_path, coder::openapi::document_json()).unwrap();
    std::fs::write(&cases_path, serde_json::to_vec(&cases).unwrap()).unwrap();
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
doc = json.load(open(sys.argv[1]))
cases = json.load(open(sys.argv[2]))
problems = []
for c in cases:
    name = "%s %s -> %s" % (c["method"].upper(), c["path"], c["status"])
    op = doc["paths"].get(c["path"], {}).get(c["method"])
    if op is None:
        problems.append(name + ": operation not documented"); continue
    status = str(c["status"])
    responses = op["responses"]
    resp = responses.get(status) or responses.get(status[0] + "XX") or responses.get("default")
    if resp is None:
        problems.append(name + ": status not documented"); continue
    if "$ref" in resp:
        resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
    content = resp.get("content")
    if not content:
        if c["body"] is not None:
            problems.append(name + ": documented without a body, got %r" % (c["body"],))
        continue
    media = c["content_type"].split(";")[0].strip()
    if media not in content:
        problems.append(name + ": content type %r, documented %s" % (media, list(content))); continue
    schema = dict(content[media].get("schema", {}))
    schema["components"] = doc["components"]
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for err in validator.iter_errors(c["body"]):
        problems.append("%s: %s at %s" % (name, err.message[:300], "/".join(map(str, err.absolute_path))))
print("%d exchanges checked" % len(cases))
if problems:
    print("\n".join(problems))
    sys.exit(1)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&doc_path)
        .arg(&cases_path)
        .output()
        .expect("python3 with jsonschema (scripts/lib/ensure-openapi-tools.sh installs it)");
    assert!(
        out.status.success(),
        "answers that do not conform to the OpenAPI document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Real answers (a template imported, a workspace built on the echo runtime, its agent reporting, and
/// a sample of errors) conform to the document.
#[tokio::test]
async fn real_answers_conform_to_the_document() {
    use crate::harness::templates::{create_version, example_dir, tar_of_dir, upload, wait_import};
    use serde_json::json;

    let app = TestApp::new().await;
    let anonymous = app.client();
    let owner = app.owner().await;
    let mut r = Recorder {
        exchanges: Vec::new(),
    };

    r.call(&anonymous, "get", "/api/v2/", "/api/v2/", None)
        .await;
    r.call(
        &anonymous,
        "get",
        "/api/v2/buildinfo",
        "/api/v2/buildinfo",
        None,
    )
    .await;
    r.call(
        &anonymous,
        "get",
        "/api/v2/users/first",
        "/api/v2/users/first",
        None,
    )
    .await;
    r.call(
        &anonymous,
        "get",
        "/api/v2/users/authmethods",
        "/api/v2/users/authmethods",
        None,
    )
    .await;
    r.call(&anonymous, "get", "/api/v2/users", "/api/v2/users", None)
        .await;
    r.call(
        &owner,
        "get",
        "/api/v2/experiments",
        "/api/v2/experiments",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/experiments/available",
        "/api/v2/experiments/available",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/users",
        "/api/v2/users?limit=5",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/users",
        "/api/v2/users?q=bogus:1",
        None,
    )
    .await;
    let alice = r
        .call(
            &owner,
            "post",
            "/api/v2/users",
            "/api/v2/users",
            Some(json!({"email": "alice@coder.test", "username": "alice",
                        "password": crate::harness::PASSWORD, "organization_ids": [Uuid::nil()]})),
        )
        .await;
    let alice_id = alice["id"].as_str().unwrap().to_string();
    r.call(
        &owner,
        "post",
        "/api/v2/users",
        "/api/v2/users",
        Some(json!({"email": 5})),
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/users/{user}",
        "/api/v2/users/me",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/users/{user}",
        "/api/v2/users/nobody",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/users/{user}/roles",
        "/api/v2/users/me/roles",
        None,
    )
    .await;
    let roles_path = format!("/api/v2/users/{alice_id}/roles");
    r.call(
        &owner,
        "put",
        "/api/v2/users/{user}/roles",
        &roles_path,
        Some(json!({"roles": ["template-admin"]})),
    )
    .await;
    let suspend = format!("/api/v2/users/{alice_id}/status/suspend");
    r.call(
        &owner,
        "put",
        "/api/v2/users/{user}/status/suspend",
        &suspend,
        None,
    )
    .await;
    let activate = format!("/api/v2/users/{alice_id}/status/activate");
    r.call(
        &owner,
        "put",
        "/api/v2/users/{user}/status/activate",
        &activate,
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/organizations",
        "/api/v2/organizations",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/organizations/{organization}",
        "/api/v2/organizations/default",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/organizations/{organization}/members",
        "/api/v2/organizations/default/members",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/users/{user}/organizations",
        "/api/v2/users/me/organizations",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/users/{user}/organizations/{organization}",
        "/api/v2/users/me/organizations/default",
        None,
    )
    .await;

    // A template from the local-shell example (echo provisioner), with presets and parameters.
    let file = upload(&owner, tar_of_dir(&example_dir("local-shell"))).await;
    let file_path = format!("/api/v2/files/{file}");
    r.call(&owner, "get", "/api/v2/files/{fileID}", &file_path, None)
        .await;
    let version = create_version(&owner, file, None).await;
    let v = version["id"].as_str().unwrap().to_string();
    let version = wait_import(&owner, &v).await;
    assert_eq!(version["job"]["status"], "succeeded", "{version}");
    let tv = |suffix: &str| format!("/api/v2/templateversions/{v}{suffix}");
    r.call(
        &owner,
        "get",
        "/api/v2/templateversions/{templateversion}",
        &tv(""),
        None,
    )
    .await;
    for (path, suffix) in [
        (
            "/api/v2/templateversions/{templateversion}/rich-parameters",
            "/rich-parameters",
        ),
        (
            "/api/v2/templateversions/{templateversion}/variables",
            "/variables",
        ),
        (
            "/api/v2/templateversions/{templateversion}/presets",
            "/presets",
        ),
        (
            "/api/v2/templateversions/{templateversion}/resources",
            "/resources",
        ),
        ("/api/v2/templateversions/{templateversion}/logs", "/logs"),
    ] {
        r.call(&owner, "get", path, &tv(suffix), None).await;
    }
    r.call(
        &owner,
        "get",
        "/api/v2/templateversions/{templateversion}/logs",
        &tv("/logs?follow=true"),
        None,
    )
    .await;
    r.call(
        &owner,
        "patch",
        "/api/v2/templateversions/{templateversion}/cancel",
        &tv("/cancel"),
        None,
    )
    .await;
    let template = r
        .call(
            &owner,
            "post",
            "/api/v2/organizations/{organization}/templates",
            "/api/v2/organizations/default/templates",
            Some(json!({"name": "shell", "template_version_id": v})),
        )
        .await;
    let t = template["id"].as_str().unwrap().to_string();
    let tp = |suffix: &str| format!("/api/v2/templates/{t}{suffix}");
    r.call(
        &owner,
        "get",
        "/api/v2/templates",
        "/api/v2/templates?q=shell",
        None,
    )
    .await;
    r.call(&owner, "get", "/api/v2/templates/{template}", &tp(""), None)
        .await;
    r.call(
        &owner,
        "get",
        "/api/v2/templates/{template}",
        "/api/v2/templates/not-a-uuid",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/organizations/{organization}/templates",
        "/api/v2/organizations/default/templates",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/organizations/{organization}/templates/{templatename}",
        "/api/v2/organizations/default/templates/shell",
        None,
    )
    .await;
    r.call(
        &owner,
        "patch",
        "/api/v2/templates/{template}",
        &tp(""),
        Some(json!({"description": "A shell"})),
    )
    .await;
    r.call(
        &owner,
        "patch",
        "/api/v2/templates/{template}",
        &tp(""),
        Some(json!({"description": "A shell"})),
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/templates/{template}/versions",
        &tp("/versions"),
        None,
    )
    .await;
    r.call(
        &owner,
        "patch",
        "/api/v2/templates/{template}/versions",
        &tp("/versions"),
        Some(json!({"id": v})),
    )
    .await;
    let version_name = version["name"].as_str().unwrap().to_string();
    r.call(
        &owner,
        "get",
        "/api/v2/templates/{template}/versions/{templateversionname}",
        &tp(&format!("/versions/{version_name}")),
        None,
    )
    .await;
    r.call(
        &owner,
        "patch",
        "/api/v2/templateversions/{templateversion}",
        &tv(""),
        Some(json!({"message": "first"})),
    )
    .await;
    r.call(
        &owner,
        "post",
        "/api/v2/templateversions/{templateversion}/archive",
        &tv("/archive"),
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/templates/{template}/prebuilds",
        &tp("/prebuilds"),
        None,
    )
    .await;
    r.call(
        &owner,
        "post",
        "/api/v2/templates/{template}/prebuilds/invalidate",
        &tp("/prebuilds/invalidate"),
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/prebuilds/settings",
        "/api/v2/prebuilds/settings",
        None,
    )
    .await;
    r.call(
        &owner,
        "put",
        "/api/v2/prebuilds/settings",
        "/api/v2/prebuilds/settings",
        Some(json!({"reconciliation_paused": false})),
    )
    .await;

    // A workspace, built on the echo runtime.
    let workspace = r
        .call(
            &owner,
            "post",
            "/api/v2/users/{user}/workspaces",
            "/api/v2/users/me/workspaces",
            Some(json!({"template_id": t, "name": "dev",
                        "rich_parameter_values": [{"name": "greeting", "value": "yo"}]})),
        )
        .await;
    let w = workspace["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let built = loop {
        let ws: Value = owner.get(&format!("/api/v2/workspaces/{w}")).await.json();
        if ws["latest_build"]["status"] == "running" {
            break ws;
        }
        assert!(std::time::Instant::now() < deadline, "build stuck: {ws}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let b = built["latest_build"]["id"].as_str().unwrap().to_string();
    let wp = |suffix: &str| format!("/api/v2/workspaces/{w}{suffix}");
    let bp = |suffix: &str| format!("/api/v2/workspacebuilds/{b}{suffix}");
    r.call(
        &owner,
        "get",
        "/api/v2/workspaces",
        "/api/v2/workspaces?q=owner:me",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/workspaces/{workspace}",
        &wp(""),
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/users/{user}/workspace/{workspacename}",
        "/api/v2/users/me/workspace/dev",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/workspaces/{workspace}/builds",
        &wp("/builds"),
        None,
    )
    .await;
    for (path, suffix) in [
        ("/api/v2/workspacebuilds/{workspacebuild}", ""),
        (
            "/api/v2/workspacebuilds/{workspacebuild}/resources",
            "/resources",
        ),
        (
            "/api/v2/workspacebuilds/{workspacebuild}/parameters",
            "/parameters",
        ),
        ("/api/v2/workspacebuilds/{workspacebuild}/logs", "/logs"),
    ] {
        r.call(&owner, "get", path, &bp(suffix), None).await;
    }
    r.call(
        &owner,
        "patch",
        "/api/v2/workspacebuilds/{workspacebuild}/cancel",
        &bp("/cancel"),
        None,
    )
    .await;
    r.call(
        &owner,
        "put",
        "/api/v2/workspaces/{workspace}/ttl",
        &wp("/ttl"),
        Some(json!({"ttl_ms": 3_600_000})),
    )
    .await;
    r.call(
        &owner,
        "put",
        "/api/v2/workspaces/{workspace}/autostart",
        &wp("/autostart"),
        Some(json!({"schedule": "CRON_TZ=Europe/Berlin 30 9 * * 1-5"})),
    )
    .await;
    r.call(
        &owner,
        "patch",
        "/api/v2/workspaces/{workspace}",
        &wp(""),
        Some(json!({"name": "dev2"})),
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/organizations/{organization}/members/{user}/workspace-quota",
        "/api/v2/organizations/default/members/me/workspace-quota",
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/notifications/inbox",
        "/api/v2/notifications/inbox?read_status=unread",
        None,
    )
    .await;

    // The agent's API, with the agent's token.
    let agent_id = built["latest_build"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|res| res["agents"].as_array().cloned().unwrap_or_default())
        .map(|a| a["id"].as_str().unwrap().to_string())
        .next()
        .expect("an agent");
    let token: Uuid = sqlx::query_scalar("SELECT auth_token FROM workspace_agents WHERE id = $1")
        .bind(Uuid::parse_str(&agent_id).unwrap())
        .fetch_one(app.pool())
        .await
        .unwrap();
    let agent = app.client().with_token(&token.to_string());
    let me = |suffix: &str| format!("/api/v2/workspaceagents/me{suffix}");
    r.call(
        &agent,
        "get",
        "/api/v2/workspaceagents/me/manifest",
        &me("/manifest"),
        None,
    )
    .await;
    r.call(
        &agent,
        "post",
        "/api/v2/workspaceagents/me/startup",
        &me("/startup"),
        Some(json!({"version": "v2.20.0", "expanded_directory": "/home/coder"})),
    )
    .await;
    r.call(
        &agent,
        "post",
        "/api/v2/workspaceagents/me/report-lifecycle",
        &me("/report-lifecycle"),
        Some(json!({"state": "ready"})),
    )
    .await;
    r.call(
        &agent,
        "post",
        "/api/v2/workspaceagents/me/metadata",
        &me("/metadata"),
        Some(json!({"metadata": [{"key": "greeting", "value": "yo"}]})),
    )
    .await;
    r.call(
        &agent,
        "post",
        "/api/v2/workspaceagents/me/report-stats",
        &me("/report-stats"),
        Some(json!({"connection_count": 1})),
    )
    .await;
    let source = r
        .call(
            &agent,
            "post",
            "/api/v2/workspaceagents/me/log-source",
            &me("/log-source"),
            Some(json!({"display_name": "Setup"})),
        )
        .await;
    r.call(
        &agent,
        "patch",
        "/api/v2/workspaceagents/me/logs",
        &me("/logs"),
        Some(
            json!({"log_source_id": source["id"], "logs": [{"output": "hello", "level": "info"}]}),
        ),
    )
    .await;
    r.call(
        &agent,
        "get",
        "/api/v2/workspaceagents/me/rpc",
        &me("/rpc"),
        None,
    )
    .await;
    r.call(
        &anonymous,
        "get",
        "/api/v2/workspaceagents/me/manifest",
        &me("/manifest"),
        None,
    )
    .await;
    let ap = |suffix: &str| format!("/api/v2/workspaceagents/{agent_id}{suffix}");
    r.call(
        &owner,
        "get",
        "/api/v2/workspaceagents/{workspaceagent}",
        &ap(""),
        None,
    )
    .await;
    r.call(
        &owner,
        "get",
        "/api/v2/workspaceagents/{workspaceagent}/logs",
        &ap("/logs"),
        None,
    )
    .await;

    // Stop, then delete: the builds and the template delete.
    r.call(
        &owner,
        "post",
        "/api/v2/workspaces/{workspace}/builds",
        &wp("/builds"),
        Some(json!({"transition": "stop"})),
    )
    .await;
    r.call(
        &owner,
        "post",
        "/api/v2/workspaces/{workspace}/builds",
        &wp("/builds"),
        Some(json!({"transition": "stop"})),
    )
    .await;
    r.call(
        &owner,
        "delete",
        "/api/v2/templates/{template}",
        &tp(""),
        None,
    )
    .await;
    r.call(
        &owner,
        "post",
        "/api/v2/users/first",
        "/api/v2/users/first",
        Some(
            json!({"email": "x@coder.test", "username": "x", "password": crate::harness::PASSWORD}),
        ),
    )
    .await;
    r.call(
        &anonymous,
        "post",
        "/api/v2/users/login",
        "/api/v2/users/login",
        Some(json!({"email": "alice@coder.test", "password": "wrong"})),
    )
    .await;
    r.call(
        &owner,
        "post",
        "/api/v2/users/logout",
        "/api/v2/users/logout",
        None,
    )
    .await;

    let statuses: BTreeSet<u16> = r.exchanges.iter().map(|e| e.status).collect();
    for expected in [200, 201, 204, 304, 400, 401, 404, 409] {
        assert!(
            statuses.contains(&expected),
            "the scenario should produce a {expected}: {statuses:?}"
        );
    }
    validate_exchanges(&r.exchanges);
}
