//! The OpenAPI document (`coder::openapi`): the committed `docs/api/openapi.json` is the generated one, the
//! server serves it, a real validator accepts it, and it describes every route the router serves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

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
