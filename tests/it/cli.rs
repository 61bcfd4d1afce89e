//! The client commands of the real binary (`coder login`, `logout`, `create`) against a test server.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::harness::templates::import_example;
use crate::harness::{Client, TestApp, ADMIN_EMAIL, ADMIN_USERNAME, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_coder");

/// A scratch HOME with a config directory inside it; the binary sees only these (no inherited
/// `CODER_*` variables).
struct Shell {
    home: tempfile::TempDir,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Output {
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    fn failed(&self) -> &Self {
        assert_ne!(self.code, 0, "expected failure; stdout: {}", self.stdout);
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

impl Shell {
    fn new() -> Self {
        Self {
            home: tempfile::Builder::new()
                .prefix("coder-cli-")
                .tempdir()
                .unwrap(),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("config")
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.config_dir().join(file)).unwrap()
    }

    async fn run(&self, args: &[&str]) -> Output {
        self.run_with(args, &[]).await
    }

    async fn run_with(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("CODER_CONFIG_DIR", self.config_dir())
            .stdin(std::process::Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
            .await
            .expect("the command did not finish")
            .expect("run coder");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    /// Logs in as the harness owner.
    async fn login_owner(&self, app: &TestApp) {
        self.run(&[
            "login",
            &app.base_url,
            "--email",
            ADMIN_EMAIL,
            "--password",
            PASSWORD,
        ])
        .await
        .ok();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn login_with_password_stores_a_working_session() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let sh = Shell::new();

    let out = sh
        .run(&[
            "login",
            &app.base_url,
            "--email",
            ADMIN_EMAIL,
            "--password",
            PASSWORD,
        ])
        .await;
    out.ok();
    assert!(
        out.stdout.contains(&format!(
            "Welcome to Coder, {ADMIN_USERNAME}! You're authenticated."
        )),
        "{}",
        out.stdout
    );
    assert_eq!(sh.read("url"), app.base_url);
    assert_eq!(mode(&sh.config_dir().join("session")), 0o600);
    let token = sh.read("session");
    let me = owner.with_token(&token).get("/api/v2/users/me").await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json::<Value>()["username"], ADMIN_USERNAME);

    // A wrong password fails with the server's message and leaves the stored session alone.
    let out = sh
        .run(&[
            "login",
            &app.base_url,
            "--email",
            ADMIN_EMAIL,
            "--password",
            "not-the-password",
        ])
        .await;
    out.failed();
    assert!(
        out.stderr.contains("Incorrect email or password"),
        "{}",
        out.stderr
    );
    assert_eq!(sh.read("session"), token);

    // Logout removes the session file and expires the session on the server.
    sh.run(&["logout", "-y"]).await.ok();
    assert!(!sh.config_dir().join("session").exists());
    assert_eq!(
        owner
            .with_token(&token)
            .get("/api/v2/users/me")
            .await
            .status,
        401
    );
    sh.run(&["logout"]).await.failed();
}

#[tokio::test]
async fn login_with_a_token_and_env_overrides() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let sh = Shell::new();

    let out = sh
        .run(&["login", &app.base_url, "--token", owner.token()])
        .await;
    out.ok();
    assert!(
        out.stdout.contains("Welcome to Coder, admin!"),
        "{}",
        out.stdout
    );
    assert_eq!(sh.read("session"), owner.token());

    // The URL may also come from CODER_URL, the token from CODER_SESSION_TOKEN.
    let other = Shell::new();
    other
        .run_with(
            &["login"],
            &[
                ("CODER_URL", &app.base_url),
                ("CODER_SESSION_TOKEN", owner.token()),
            ],
        )
        .await
        .ok();
    assert_eq!(other.read("url"), app.base_url);

    // A bad token is rejected before anything is stored.
    let bad = Shell::new();
    let out = bad
        .run(&["login", &app.base_url, "--token", "nope-nope"])
        .await;
    out.failed();
    assert!(!bad.config_dir().join("session").exists());

    // Not a Coder deployment at all.
    let out = bad
        .run(&["login", "http://127.0.0.1:1", "--token", "x"])
        .await;
    out.failed();
    assert!(
        out.stderr.contains("failed to check the Coder deployment"),
        "{}",
        out.stderr
    );

    // Client commands without a session say how to log in.
    let out = bad.run(&["create", "-t", "x", "ws"]).await;
    out.failed();
    assert!(
        out.stderr.contains("You are not logged in"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn login_creates_the_first_user_on_an_empty_deployment() {
    let app = TestApp::new().await;
    let sh = Shell::new();

    // Without the first-user flags (and no terminal), it says what is missing.
    let out = sh.run(&["login", &app.base_url]).await;
    out.failed();
    assert!(
        out.stderr.contains("--first-user-username"),
        "{}",
        out.stderr
    );

    let out = sh
        .run_with(
            &["login", &app.base_url, "--first-user-username", "boss"],
            &[
                ("CODER_FIRST_USER_EMAIL", "boss@coder.test"),
                ("CODER_FIRST_USER_PASSWORD", PASSWORD),
            ],
        )
        .await;
    out.ok();
    assert!(
        out.stdout.contains("Welcome to Coder, boss!"),
        "{}",
        out.stdout
    );
    let me = app
        .client()
        .with_token(&sh.read("session"))
        .get("/api/v2/users/me")
        .await;
    assert_eq!(me.status, 200);
    let me: Value = me.json();
    assert_eq!(me["email"], "boss@coder.test");
    assert_eq!(me["roles"][0]["name"], "owner", "{me}");
    // The password works for a plain login afterwards.
    app.client().login("boss@coder.test", PASSWORD).await;
}

/// The `local-shell` example (echo provisioner) as template `name`: presets `small` and `prebuilt`
/// (the default), parameters `greeting` and `size`.
async fn local_shell_template(owner: &Client, name: &str) -> Value {
    let v = import_example(owner, "local-shell").await;
    assert_eq!(v["job"]["status"], "succeeded", "{v}");
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": name, "template_version_id": v["id"]}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    v
}

async fn preset_id(owner: &Client, version: &Value, name: &str) -> String {
    let presets: Value = owner
        .get(&format!(
            "/api/v2/templateversions/{}/presets",
            version["id"].as_str().unwrap()
        ))
        .await
        .json();
    presets
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["Name"] == name)
        .unwrap_or_else(|| panic!("preset {name} in {presets}"))["ID"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn build_parameters(owner: &Client, ws: &Value) -> Vec<(String, String)> {
    let build = ws["latest_build"]["id"].as_str().unwrap();
    let params: Value = owner
        .get(&format!("/api/v2/workspacebuilds/{build}/parameters"))
        .await
        .json();
    params
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn create_with_a_preset_prints_the_workspace_json() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let version = local_shell_template(&owner, "shell").await;
    let small = preset_id(&owner, &version, "small").await;
    let sh = Shell::new();
    sh.login_owner(&app).await;

    let out = sh
        .run(&[
            "create",
            "--template",
            "shell",
            "--preset",
            "small",
            "dev",
            "--json",
        ])
        .await;
    out.ok();
    let ws = out.json();
    assert_eq!(ws["name"], "dev");
    assert_eq!(ws["owner_name"], ADMIN_USERNAME);
    assert_eq!(ws["template_name"], "shell");
    assert_eq!(
        ws["latest_build"]["template_version_preset_id"],
        small.as_str()
    );
    let params = build_parameters(&owner, &ws).await;
    assert!(
        params.contains(&("greeting".into(), "hi".into())),
        "{params:?}"
    );

    // An unknown preset fails and names the ones there are.
    let out = sh
        .run(&[
            "create", "-t", "shell", "--preset", "huge", "dev2", "--json",
        ])
        .await;
    out.failed();
    assert!(
        out.stderr.contains("huge") && out.stderr.contains("prebuilt, small"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // A duplicate name is the server's 409, shown with its message.
    let out = sh
        .run(&["create", "-t", "shell", "--preset", "small", "dev"])
        .await;
    out.failed();
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);

    // An unknown template says so.
    let out = sh.run(&["create", "-t", "nope", "dev3"]).await;
    out.failed();
    assert!(
        out.stderr.contains("template \"nope\" not found"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn create_with_parameters_default_preset_and_owner() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let version = local_shell_template(&owner, "shell").await;
    let prebuilt = preset_id(&owner, &version, "prebuilt").await;
    let (_, _) = app.user(&owner, "alice", &[]).await;
    let sh = Shell::new();
    sh.login_owner(&app).await;

    // `--preset none` with a parameter: the build carries the value, and no preset.
    let out = sh
        .run(&[
            "create",
            "-t",
            "shell",
            "--preset",
            "none",
            "--parameter",
            "greeting=yo",
            "plain",
            "--json",
        ])
        .await;
    out.ok();
    let ws = out.json();
    assert!(
        ws["latest_build"]["template_version_preset_id"].is_null(),
        "{ws}"
    );
    let params = build_parameters(&owner, &ws).await;
    assert!(
        params.contains(&("greeting".into(), "yo".into())),
        "{params:?}"
    );

    // Without --preset the version's default preset applies; human output names it.
    let out = sh
        .run_with(
            &["create", "-y", "alice/defaulted"],
            &[("CODER_TEMPLATE_NAME", "shell")],
        )
        .await;
    out.ok();
    assert!(
        out.stdout
            .contains("Workspace \"defaulted\" created for alice")
            && out.stdout.contains("preset prebuilt"),
        "{}",
        out.stdout
    );
    let id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("ID: "))
        .unwrap_or_else(|| panic!("no ID line in {}", out.stdout))
        .trim()
        .to_string();
    let ws: Value = owner.get(&format!("/api/v2/workspaces/{id}")).await.json();
    assert_eq!(ws["owner_name"], "alice");
    assert_eq!(
        ws["latest_build"]["template_version_preset_id"],
        prebuilt.as_str()
    );

    // A parameter the server rejects comes back with its message.
    let out = sh
        .run(&[
            "create",
            "-t",
            "shell",
            "--preset",
            "none",
            "--parameter",
            "size=99",
            "bad",
        ])
        .await;
    out.failed();
    assert!(out.stderr.contains("size"), "{}", out.stderr);
}
