//! What the client commands (`coder login`, `logout`, `create`) share: the global options, the config
//! directory with its `url` and `session` files (as Coder's `cli/config`), and a small JSON-over-HTTP
//! client that turns Coder's error envelope (`{"message","detail","validations"}`) into a readable error.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

/// Coder's hint when a client command has no session.
pub const NOT_LOGGED_IN: &str = "You are not logged in. Try logging in using 'coder login <url>'.";

/// Options every client command takes (Coder's global `--url`, `--token`, `--global-config`).
#[derive(Debug, Args, Clone, Default)]
pub struct ClientOpts {
    /// URL of a deployment (overrides the stored one).
    #[arg(long, env = "CODER_URL", value_name = "URL")]
    pub url: Option<String>,

    /// A session token (overrides the stored one).
    #[arg(long, env = "CODER_SESSION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Path to the client configuration directory [default: $XDG_CONFIG_HOME/coderv2 or
    /// ~/.config/coderv2].
    #[arg(long, env = "CODER_CONFIG_DIR", value_name = "DIR")]
    pub global_config: Option<PathBuf>,
}

impl ClientOpts {
    pub fn config(&self) -> anyhow::Result<ConfigDir> {
        match &self.global_config {
            Some(dir) => Ok(ConfigDir(dir.clone())),
            None => ConfigDir::default_location(),
        }
    }

    /// A client for the deployment in the flags/env, else the stored one, with a session.
    pub fn authenticated(&self) -> anyhow::Result<ApiClient> {
        let config = self.config()?;
        let url = match self.url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => normalize_url(url),
            None => config.read_url()?.context(NOT_LOGGED_IN)?,
        };
        let token = match self.token.as_deref().filter(|t| !t.is_empty()) {
            Some(token) => token.to_string(),
            None => config.read_session()?.context(NOT_LOGGED_IN)?,
        };
        ApiClient::new(&url, Some(token))
    }
}

/// Adds `https://` when the URL has no scheme (as Coder's `login` does) and drops trailing slashes.
pub fn normalize_url(raw: &str) -> String {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    with_scheme.trim_end_matches('/').to_string()
}

/// The client configuration directory (`~/.config/coderv2` by default).
#[derive(Debug, Clone)]
pub struct ConfigDir(pub PathBuf);

impl ConfigDir {
    pub fn default_location() -> anyhow::Result<Self> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(xdg) => PathBuf::from(xdg),
            None => {
                let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).context(
                    "cannot find the config directory: $HOME is not set (use --global-config)",
                )?;
                PathBuf::from(home).join(".config")
            }
        };
        Ok(Self(base.join("coderv2")))
    }

    pub fn url_path(&self) -> PathBuf {
        self.0.join("url")
    }

    pub fn session_path(&self) -> PathBuf {
        self.0.join("session")
    }

    pub fn read_url(&self) -> anyhow::Result<Option<String>> {
        read_optional(&self.url_path())
    }

    pub fn read_session(&self) -> anyhow::Result<Option<String>> {
        read_optional(&self.session_path())
    }

    pub fn write_url(&self, url: &str) -> anyhow::Result<()> {
        self.write(&self.url_path(), url, 0o600)
    }

    pub fn write_session(&self, token: &str) -> anyhow::Result<()> {
        self.write(&self.session_path(), token, 0o600)
    }

    /// Removes the session file; `false` if there was none.
    pub fn remove_session(&self) -> anyhow::Result<bool> {
        match std::fs::remove_file(self.session_path()) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("remove {}", self.session_path().display())),
        }
    }

    fn write(&self, path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .with_context(|| format!("create config directory {}", self.0.display()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(path)
            .with_context(|| format!("write {}", path.display()))?;
        // An existing file keeps its mode on open; tighten it.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(content.as_bytes())
            .with_context(|| format!("write {}", path.display()))
    }
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// A non-2xx answer, with Coder's error envelope when the body was one.
#[derive(Debug)]
pub struct ApiError {
    pub method: Method,
    pub path: String,
    pub status: reqwest::StatusCode,
    pub message: String,
    pub detail: String,
    pub validations: Vec<(String, String)>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if !self.detail.is_empty() {
            write!(f, "\n{}", self.detail)?;
        }
        for (field, detail) in &self.validations {
            write!(f, "\n  {field}: {detail}")?;
        }
        write!(
            f,
            "\n({} {}: {})",
            self.method,
            self.path,
            self.status.as_u16()
        )
    }
}

impl std::error::Error for ApiError {}

/// A JSON client for one deployment, carrying a session token when it has one.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// `GET /api/v2{path}`.
    pub async fn get(&self, path: &str) -> Result<Value, anyhow::Error> {
        self.send(Method::GET, path, None::<&()>).await
    }

    /// `POST /api/v2{path}` with a JSON body.
    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<Value, anyhow::Error> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Sends a request; a non-2xx answer becomes an [`ApiError`] (downcastable from the result).
    pub async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v2{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            req = req.header("Coder-Session-Token", token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{method} {url}: read body"))?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .with_context(|| format!("{method} {url}: decode the response"));
        }
        let envelope: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let mut message = text(&envelope["message"]);
        if message.is_empty() {
            message = format!(
                "unexpected status {status}: {}",
                String::from_utf8_lossy(&bytes).trim()
            );
        }
        let validations = envelope["validations"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|v| (text(&v["field"]), text(&v["detail"])))
                    .collect()
            })
            .unwrap_or_default();
        Err(ApiError {
            method,
            path: format!("/api/v2{path}"),
            status,
            message,
            detail: text(&envelope["detail"]),
            validations,
        }
        .into())
    }
}

/// The HTTP status of an [`ApiError`] inside `err`, if that is what it is.
pub fn status_of(err: &anyhow::Error) -> Option<u16> {
    err.downcast_ref::<ApiError>().map(|e| e.status.as_u16())
}

/// Escapes a value for use as one path segment (names are URL-safe in Coder, but be careful anyway).
pub fn segment(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Prints `label` on stderr and reads one line from stdin (without echo for secrets on a terminal).
pub fn prompt(label: &str, secret: bool) -> anyhow::Result<String> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{label}: ")?;
    stderr.flush()?;
    let stdin = std::io::stdin();
    let _echo = if secret && stdin.is_terminal() {
        EchoOff::new()
    } else {
        None
    };
    let mut line = String::new();
    let n = stdin.lock().read_line(&mut line)?;
    if secret && stdin.is_terminal() {
        writeln!(stderr)?;
    }
    anyhow::ensure!(n > 0, "no input for {label:?} (stdin is closed)");
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Turns terminal echo off on stdin until dropped.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> Option<Self> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zero-initialised, then kernel-filled, termios.
        unsafe {
            let mut term: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut term) != 0 {
                return None;
            }
            let saved = term;
            term.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &term) != 0 {
                return None;
            }
            Some(Self(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `new`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_scheme_and_lose_trailing_slashes() {
        assert_eq!(
            normalize_url("coder.example.com"),
            "https://coder.example.com"
        );
        assert_eq!(
            normalize_url("http://127.0.0.1:3000/"),
            "http://127.0.0.1:3000"
        );
        assert_eq!(normalize_url(" https://x.test// "), "https://x.test");
    }

    #[test]
    fn config_files_round_trip_with_a_private_session() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir(dir.path().join("nested/coderv2"));
        assert_eq!(config.read_session().unwrap(), None);
        config.write_url("http://a.test").unwrap();
        config.write_session("tok").unwrap();
        assert_eq!(config.read_url().unwrap().as_deref(), Some("http://a.test"));
        assert_eq!(config.read_session().unwrap().as_deref(), Some("tok"));
        let mode = std::fs::metadata(config.session_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(config.remove_session().unwrap());
        assert!(!config.remove_session().unwrap());
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("my template/x"), "my%20template%2Fx");
        assert_eq!(segment("dev-1"), "dev-1");
    }
}
