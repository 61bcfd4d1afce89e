//! `docs/grafana/coder-prebuilds.json` queries only series that `docs/metrics.md` lists (which
//! `metrics.rs` checks against what `/metrics` serves), with their documented labels, and every
//! panel reads the templated Prometheus data source.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde_json::Value;

const DS: &str = "${DS_PROMETHEUS}";
/// Histogram families are served as these series.
const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];
/// Metric names are recognised by prefix: every documented family has one of these, and no PromQL
/// function, keyword or label does.
const PREFIXES: &[&str] = &["coderd_", "go_sql_", "process_"];
/// Target labels Prometheus attaches to every scraped series (per replica).
const TARGET_LABELS: &[&str] = &["instance", "job"];

struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// Rows "| `name` | type | labels | meaning |" of docs/metrics.md.
fn documented() -> BTreeMap<String, Family> {
    let mut out = BTreeMap::new();
    for line in read("docs/metrics.md").lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 5 && cells[1].starts_with('`') {
            let labels = cells[3]
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            out.insert(
                cells[1].trim_matches('`').to_string(),
                Family {
                    kind: cells[2].to_string(),
                    labels,
                },
            );
        }
    }
    assert!(out.len() > 20, "docs/metrics.md table not found");
    out
}

/// Every panel, nested ones (collapsed rows) included.
fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

/// `expr` with its string literals blanked (`""`), so names and labels inside values (`$template_name`)
/// are not read as PromQL.
fn strip_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    out.push(c);
                    quote = None;
                }
            }
            None => {
                if c == '"' || c == '\'' || c == '`' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// The documented family a series name belongs to, and whether it was a histogram suffix.
fn family<'a>(
    docs: &'a BTreeMap<String, Family>,
    series: &str,
) -> Result<(&'a str, &'a Family), String> {
    if let Some((name, f)) = docs.get_key_value(series) {
        if f.kind == "histogram" {
            return Err(format!(
                "{series} is a histogram family: query {series}_bucket, _sum or _count"
            ));
        }
        return Ok((name, f));
    }
    for suffix in HISTOGRAM_SUFFIXES {
        if let Some(base) = series.strip_suffix(suffix) {
            if let Some((name, f)) = docs.get_key_value(base) {
                if f.kind != "histogram" {
                    return Err(format!("{series}: {base} is a {}, not a histogram", f.kind));
                }
                return Ok((name, f));
            }
        }
    }
    Err(format!("{series} is not in docs/metrics.md"))
}

/// Checks one PromQL expression; returns the problems found.
fn check_expr(docs: &BTreeMap<String, Family>, expr: &str) -> Vec<String> {
    let ident = Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    let grouping = Regex::new(r"\b(?:by|without)\s*\(([^)]*)\)").unwrap();
    let matcher = Regex::new(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)").unwrap();
    let code = strip_strings(expr);
    let mut problems = Vec::new();
    let mut families: Vec<&Family> = Vec::new();
    let mut buckets = false;

    for m in ident.find_iter(&code) {
        let name = m.as_str();
        // Skip pieces of numbers (`1e-9`) and of longer words.
        let before = code[..m.start()].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        if !PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let f = match family(docs, name) {
            Ok((_, f)) => f,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        buckets |= name.ends_with("_bucket") && f.kind == "histogram";
        families.push(f);
        // The selector right after the name: `name{label="v", ...}`.
        let rest = code[m.end()..].trim_start();
        if let Some(body) = rest.strip_prefix('{') {
            let body = &body[..body.find('}').unwrap_or(body.len())];
            for c in matcher.captures_iter(body) {
                let label = &c[1];
                if !f.labels.contains(label) {
                    problems.push(format!(
                        "{name}{{{label}=...}}: {label} is not a documented label"
                    ));
                }
            }
        }
    }
    if families.is_empty() {
        problems.push("queries no documented series".to_string());
    }
    // `by (...)` / `without (...)`: each label must be on every family the expression reads.
    for c in grouping.captures_iter(&code) {
        for label in c[1].split(',').map(str::trim).filter(|l| !l.is_empty()) {
            if TARGET_LABELS.contains(&label) || (label == "le" && buckets) {
                continue;
            }
            if !families.iter().all(|f| f.labels.contains(label)) {
                problems.push(format!(
                    "grouping by {label}, which a series here does not have"
                ));
            }
        }
    }
    problems
}

#[test]
fn dashboard_queries_only_documented_series_and_labels() {
    let docs = documented();
    let dash: Value = serde_json::from_str(&read("docs/grafana/coder-prebuilds.json"))
        .expect("dashboard is JSON");
    assert_eq!(dash["schemaVersion"], 39);

    let mut problems = Vec::new();
    let mut exprs = 0;

    // The data source is a template variable of type prometheus.
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["name"] == "DS_PROMETHEUS"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no DS_PROMETHEUS data source variable"
    );
    let label_values =
        Regex::new(r"^label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$").unwrap();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap_or("?");
        assert_eq!(v["datasource"]["uid"], DS, "variable {name}: data source");
        let query = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name}: no query"));
        exprs += 1;
        let Some(c) = label_values.captures(query) else {
            problems.push(format!(
                "variable {name}: expected label_values(series, label): {query}"
            ));
            continue;
        };
        for p in check_expr(&docs, &c[1]) {
            problems.push(format!("variable {name} ({query}): {p}"));
        }
        let series = c[1].split('{').next().unwrap_or("").trim();
        if let Ok((_, f)) = family(&docs, series) {
            if !f.labels.contains(&c[2]) {
                problems.push(format!("variable {name}: {series} has no label {}", &c[2]));
            }
        }
    }
    for wanted in ["template_name", "preset_name"] {
        assert!(
            vars.iter().any(|v| v["name"] == wanted),
            "no {wanted} variable"
        );
    }

    let all = panels(&dash);
    assert!(
        all.iter().filter(|p| p["type"] != "row").count() >= 12,
        "fewer than 12 panels"
    );
    for p in &all {
        let title = p["title"].as_str().unwrap_or("?");
        assert_eq!(p["datasource"]["uid"], DS, "panel {title:?}: data source");
        assert_eq!(p["datasource"]["type"], "prometheus", "panel {title:?}");
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            let datasource = &t["datasource"];
            assert!(
                datasource.is_null() || datasource["uid"] == DS,
                "panel {title:?}: target data source {datasource}"
            );
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: target without expr"));
            exprs += 1;
            for problem in check_expr(&docs, expr) {
                problems.push(format!("panel {title:?} ({expr}): {problem}"));
            }
        }
    }
    assert!(exprs > 20, "only {exprs} queries found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_rejects_what_it_should() {
    let docs = documented();
    let bad = |e: &str| !check_expr(&docs, e).is_empty();
    let good = |e: &str| check_expr(&docs, e).is_empty();
    assert!(good(
        r#"histogram_quantile(0.95, sum by (le, path) (rate(coderd_api_request_latencies_seconds_bucket[5m])))"#
    ));
    assert!(good(
        r#"sum(rate(coderd_api_requests_processed_total{code=~"5.."}[5m])) / sum(rate(coderd_api_requests_processed_total[5m]))"#
    ));
    assert!(good("coderd_agentstats_connection_count"));
    // Unknown series, histogram family used bare, suffix on a gauge.
    assert!(bad("rate(coderd_prebuilt_workspaces_created[5m])"));
    assert!(bad("coderd_api_request_latencies_seconds"));
    assert!(bad("coderd_prebuilt_workspaces_desired_count"));
    // Labels the series does not have: in a selector, in a grouping, `le` without buckets.
    assert!(bad(r#"coderd_prebuilt_workspaces_desired{code="200"}"#));
    assert!(bad(
        "sum by (template_name) (coderd_api_concurrent_requests)"
    ));
    assert!(bad("sum by (le) (coderd_prebuilt_workspaces_desired)"));
    // A label inside a string value is not a label.
    assert!(good(
        r#"coderd_prebuilt_workspaces_desired{template_name=~"code=x|$preset_name"}"#
    ));
}
