//! Packaging: the Dockerfile and the Helm chart (`helm/coder`). `scripts/check-deploy` lints the
//! Dockerfile (hadolint), renders the chart with each values variant (helm) and validates the
//! manifests against the Kubernetes schemas (kubernetes-validate); these tests run it, then check
//! what the manifests and the Dockerfile must say for this server: ports, probes, database Secret,
//! Prometheus, user, entrypoint. The image's HEALTHCHECK command is run against a real server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::harness::TestApp;

const BIN: &str = env!("CARGO_BIN_EXE_coder");
const CACHE_DIR: &str = "/home/coder/.cache/coder";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Rendered manifests per variant (`default`, `full`, `nodeport`), from one run of the script.
fn rendered() -> &'static HashMap<String, Vec<Value>> {
    static RENDERED: OnceLock<Result<HashMap<String, Vec<Value>>, String>> = OnceLock::new();
    let result = RENDERED.get_or_init(|| {
        let out = tempfile::Builder::new()
            .prefix("coder-check-deploy-")
            .tempdir()
            .unwrap();
        let run = std::process::Command::new(repo().join("scripts/check-deploy"))
            .current_dir(repo())
            .env("CHECK_DEPLOY_OUT", out.path())
            .output()
            .map_err(|e| format!("running scripts/check-deploy: {e}"))?;
        if !run.status.success() {
            return Err(format!(
                "scripts/check-deploy failed ({})\nstdout: {}\nstderr: {}",
                run.status,
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            ));
        }
        let mut variants = HashMap::new();
        for variant in ["default", "full", "nodeport"] {
            let path = out.path().join(format!("{variant}.json"));
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let docs: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            variants.insert(variant.to_string(), docs);
        }
        Ok(variants)
    });
    match result {
        Ok(variants) => variants,
        Err(e) => panic!("{e}"),
    }
}

fn docs(variant: &str) -> &'static [Value] {
    &rendered()[variant]
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    let mut found = docs.iter().filter(|d| d["kind"] == kind);
    let first = found.next();
    assert!(found.next().is_none(), "more than one {kind}");
    first
}

fn get<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    find(docs, kind).unwrap_or_else(|| panic!("no {kind} in {docs:#?}"))
}

fn container(docs: &[Value]) -> &Value {
    let containers = get(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["name"], "coder");
    &containers[0]
}

fn env(container: &Value) -> Vec<&Value> {
    container["env"].as_array().expect("env").iter().collect()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    let matching: Vec<&Value> = env(container)
        .into_iter()
        .filter(|e| e["name"] == name)
        .collect();
    assert!(matching.len() <= 1, "{name} set {} times", matching.len());
    matching.first().copied()
}

fn env_str<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    env_value(container, name).map(|e| {
        e["value"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no literal value"))
    })
}

fn port(container: &Value, name: &str) -> Option<i64> {
    container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| {
            assert_eq!(p["protocol"], "TCP");
            p["containerPort"].as_i64().unwrap()
        })
}

/// Invariants every variant keeps.
fn check_common(variant: &str) {
    let docs = docs(variant);
    let deployment = get(docs, "Deployment");
    let pod = &deployment["spec"]["template"];
    let c = container(docs);

    // Entrypoint as in the image.
    assert_eq!(c["command"], json!(["/opt/coder"]), "{variant}");
    assert_eq!(c["args"], json!(["server"]), "{variant}");

    // Listening: http on 8080, and the server is told so.
    assert_eq!(port(c, "http"), Some(8080), "{variant}");
    assert_eq!(
        env_str(c, "CODER_HTTP_ADDRESS"),
        Some("0.0.0.0:8080"),
        "{variant}"
    );
    assert_eq!(
        env_str(c, "CODER_PROMETHEUS_ADDRESS"),
        Some("0.0.0.0:2112"),
        "{variant}"
    );

    // Probes on /healthz through the named port.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            c[probe]["httpGet"],
            json!({"path": "/healthz", "port": "http", "scheme": "HTTP"}),
            "{variant} {probe}"
        );
    }

    // Non-root, the image's uid/gid.
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{variant}");
    assert_eq!(sc["runAsUser"], 1000, "{variant}");
    assert_eq!(sc["runAsGroup"], 1000, "{variant}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{variant}");

    // The cache directory the server is told about is the mounted volume.
    assert_eq!(env_str(c, "CODER_CACHE_DIRECTORY"), Some(CACHE_DIR));
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    let cache = mounts
        .iter()
        .find(|m| m["mountPath"] == CACHE_DIR)
        .expect("cache mount");
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    assert!(volumes.iter().any(|v| v["name"] == cache["name"]));

    // Selectors: the Deployment's selects its pods, the Service's is the same, the anti-affinity
    // term matches the pods' labels, spread over nodes.
    let labels = pod["metadata"]["labels"].as_object().expect("pod labels");
    let selector = deployment["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    for (k, v) in selector {
        assert_eq!(labels.get(k), Some(v), "{variant}: selector {k}");
    }
    let preferred = pod["spec"]["affinity"]["podAntiAffinity"]
        ["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .expect("preferred pod anti-affinity");
    let term = &preferred[0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    for expr in term["labelSelector"]["matchExpressions"]
        .as_array()
        .unwrap()
    {
        assert_eq!(expr["operator"], "In");
        let key = expr["key"].as_str().unwrap();
        assert!(
            expr["values"]
                .as_array()
                .unwrap()
                .contains(labels.get(key).expect("label of the term")),
            "{variant}: anti-affinity {key} does not match the pods"
        );
    }

    // Service: port 80 to the container port named http (8080).
    let service = get(docs, "Service");
    assert_eq!(
        service["spec"]["selector"].as_object(),
        Some(selector),
        "{variant}"
    );
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"], 80);
    let target = ports[0]["targetPort"].as_str().expect("named targetPort");
    assert_eq!(port(c, target), Some(8080));

    // The pods run as the ServiceAccount the chart creates.
    let sa = get(docs, "ServiceAccount");
    assert_eq!(pod["spec"]["serviceAccountName"], sa["metadata"]["name"]);

    // Every CODER_* variable set is one `coder server` reads.
    let help = std::process::Command::new(BIN)
        .args(["server", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for e in env(c) {
        let name = e["name"].as_str().unwrap();
        if name.starts_with("CODER_") {
            assert!(
                help.contains(&format!("[env: {name}="))
                    || help.contains(&format!("[env: {name}]")),
                "{variant}: {name} is not a `coder server` variable"
            );
        }
    }
}

#[test]
fn chart_default_values() {
    check_common("default");
    let docs = docs("default");
    let deployment = get(docs, "Deployment");
    let c = container(docs);

    assert_eq!(deployment["spec"]["replicas"], 1);
    assert!(find(docs, "Ingress").is_none());
    assert!(find(docs, "Role").is_none());
    assert_eq!(get(docs, "Service")["spec"]["type"], "LoadBalancer");

    // The image is the crate's version; the chart's appVersion follows Cargo.toml.
    assert_eq!(
        c["image"],
        format!("coder-rs:{}", env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion differs from Cargo.toml's version"
    );

    // The database URL from Coder's documented Secret, never a literal.
    assert_eq!(
        env_value(c, "CODER_PG_CONNECTION_URL").unwrap()["valueFrom"],
        json!({"secretKeyRef": {"name": "coder-db-url", "key": "url"}})
    );
    assert_eq!(
        env_str(c, "CODER_ACCESS_URL"),
        Some("http://coder.coder.svc.cluster.local")
    );

    // Metrics off: no port, no flag, no scrape annotation.
    assert_eq!(port(c, "prometheus-http"), None);
    assert!(env_value(c, "CODER_PROMETHEUS_ENABLE").is_none());
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert!(annotations.get("prometheus.io/scrape").is_none());

    // Nothing here talks to the Kubernetes API.
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
}

#[test]
fn chart_ha_ingress_prometheus() {
    check_common("full");
    let docs = docs("full");
    let deployment = get(docs, "Deployment");
    let c = container(docs);

    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(c["image"], "registry.example.com/coder-rs:0.1.0");
    assert_eq!(
        env_value(c, "CODER_PG_CONNECTION_URL").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "coder-db-url", "key": "url"})
    );
    assert_eq!(
        env_str(c, "CODER_ACCESS_URL"),
        Some("https://coder.example.com")
    );

    // Prometheus: flag, fixed address, container port and scrape annotations on the pods.
    assert_eq!(env_str(c, "CODER_PROMETHEUS_ENABLE"), Some("true"));
    assert_eq!(port(c, "prometheus-http"), Some(2112));
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "2112");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(annotations["example.com/team"], "platform");

    // The user's variables come last, in their order.
    let names: Vec<&str> = env(c).iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(
        names[names.len() - 3..],
        [
            "CODER_EXPERIMENTS",
            "CODER_PROVISIONER_DAEMONS",
            "CODER_LOGGING_JSON"
        ]
    );
    assert_eq!(env_str(c, "CODER_EXPERIMENTS"), Some("workspace-prebuilds"));

    // Ingress to the Service's http port, TLS from the given Secret.
    let service = get(docs, "Service");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    let ingress = get(docs, "Ingress");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "coder.example.com");
    let backend = &rule["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], service["metadata"]["name"]);
    assert_eq!(backend["port"]["name"], service["spec"]["ports"][0]["name"]);
    assert_eq!(
        ingress["spec"]["tls"],
        json!([{"hosts": ["coder.example.com"], "secretName": "coder-tls"}])
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        "3600"
    );
}

#[test]
fn chart_nodeport_builtin_database_workspace_role() {
    check_common("nodeport");
    let docs = docs("nodeport");
    let deployment = get(docs, "Deployment");
    let c = container(docs);

    // No Secret: the built-in PostgreSQL, on the persistent cache volume.
    assert!(env_value(c, "CODER_PG_CONNECTION_URL").is_none());
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let cache = volumes.iter().find(|v| v["name"] == "cache").unwrap();
    assert_eq!(cache["persistentVolumeClaim"]["claimName"], "coder-cache");

    // CODER_PROMETHEUS_ENABLE from coder.env opens the port, and is not set twice.
    assert_eq!(env_str(c, "CODER_PROMETHEUS_ENABLE"), Some("true"));
    assert_eq!(port(c, "prometheus-http"), Some(2112));

    let ports = &get(docs, "Service")["spec"]["ports"][0];
    assert_eq!(get(docs, "Service")["spec"]["type"], "NodePort");
    assert_eq!(ports["nodePort"], 30080);

    // The workspace Role, bound to the pods' ServiceAccount, whose token is then mounted.
    let role = get(docs, "Role");
    let binding = get(docs, "RoleBinding");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(
        binding["subjects"][0]["name"],
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
    );
    let rules = role["rules"].as_array().unwrap();
    assert!(rules
        .iter()
        .any(|r| r["resources"] == json!(["pods", "persistentvolumeclaims"])));
    assert!(rules
        .iter()
        .any(|r| r["resources"] == json!(["deployments"])));
    assert!(rules.iter().any(|r| r["resources"] == json!(["services"])));
    assert_eq!(
        deployment["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
}

/// The Dockerfile's instructions, continuation lines joined and comments dropped.
fn dockerfile() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

fn instruction<'a>(instructions: &'a [String], keyword: &str) -> Vec<&'a str> {
    instructions
        .iter()
        .filter_map(|i| i.strip_prefix(&format!("{keyword} ")))
        .collect()
}

#[test]
fn dockerfile_builds_and_runs_the_server() {
    let ins = dockerfile();
    let from = instruction(&ins, "FROM");
    assert_eq!(from, ["rust:1-bookworm AS builder", "debian:bookworm-slim"]);

    let run = instruction(&ins, "RUN").join("\n");
    assert!(run.contains("cargo build --locked --release --bin coder"));
    assert!(run.contains("apt-get install -y --no-install-recommends"));
    for package in ["postgresql", "ca-certificates"] {
        assert!(
            run.split_whitespace().any(|w| w == package),
            "{package} not installed"
        );
    }
    assert!(run.contains("rm -rf /var/lib/apt/lists/*"));
    assert!(run.contains("useradd --uid 1000 --gid 1000"));
    assert!(run.contains("groupadd --gid 1000 coder"));

    assert_eq!(
        instruction(&ins, "COPY")
            .into_iter()
            .filter(|c| c.starts_with("--from=builder"))
            .collect::<Vec<_>>(),
        ["--from=builder /usr/local/bin/coder /opt/coder"]
    );
    assert_eq!(instruction(&ins, "USER"), ["1000:1000"]);
    assert_eq!(instruction(&ins, "EXPOSE"), ["8080 2112"]);
    assert_eq!(
        instruction(&ins, "ENTRYPOINT"),
        [r#"["/opt/coder", "server"]"#]
    );

    let env = instruction(&ins, "ENV").join(" ");
    for setting in [
        "CODER_HTTP_ADDRESS=0.0.0.0:8080",
        "CODER_PROMETHEUS_ADDRESS=0.0.0.0:2112",
        &format!("CODER_CACHE_DIRECTORY={CACHE_DIR}"),
    ] {
        assert!(
            env.split_whitespace().any(|w| w == setting),
            "ENV lacks {setting}"
        );
    }

    let healthcheck = instruction(&ins, "HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1);
    assert!(healthcheck[0].contains("/healthz"));

    // The build context keeps what the build needs and drops the rest.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target", ".git"] {
        assert!(ignored.contains(&must), ".dockerignore lacks {must}");
    }
    for needed in ["src", "migrations", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !ignored.iter().any(|p| p.trim_matches('/') == needed),
            ".dockerignore drops {needed}"
        );
    }
}

/// The HEALTHCHECK command (exec form), as Docker would run it.
fn healthcheck_command() -> Vec<String> {
    let ins = dockerfile();
    let hc = instruction(&ins, "HEALTHCHECK")[0];
    let json_start = hc.find("CMD [").expect("exec-form CMD") + "CMD ".len();
    serde_json::from_str(&hc[json_start..]).expect("CMD is a JSON array")
}

async fn run_healthcheck(http_address: &str) -> std::process::Output {
    let cmd = healthcheck_command();
    assert!(Path::new(&cmd[0]).exists(), "{} missing", cmd[0]);
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("CODER_HTTP_ADDRESS", http_address)
            .output(),
    )
    .await
    .expect("healthcheck within its timeout")
    .unwrap()
}

#[tokio::test]
async fn dockerfile_healthcheck_probes_healthz() {
    let app = TestApp::new().await;
    // The image listens on 0.0.0.0; the check connects to loopback on the same port.
    let healthy = run_healthcheck(&format!("0.0.0.0:{}", app.addr.port())).await;
    assert!(
        healthy.status.success(),
        "healthcheck failed on a healthy server: {}",
        String::from_utf8_lossy(&healthy.stderr)
    );

    // Nothing listening: unhealthy.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = run_healthcheck(&format!("0.0.0.0:{port}")).await;
    assert!(!down.status.success());
}
