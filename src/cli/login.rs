//! `coder login [URL]` and `coder logout`, modelled on Coder's `cli/login.go` and `cli/logout.go`.
//!
//! Login checks the deployment (`GET /buildinfo`), then authenticates with a token (verified with
//! `GET /users/me`) or with an email and password (`POST /users/login`). On a deployment with no users yet
//! (`GET /users/first` answers 404) it creates the first user (`POST /users/first`) and logs in as it. The
//! URL and the session token are stored in the config directory.

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use super::client::{normalize_url, prompt, status_of, ApiClient, ClientOpts};

#[derive(Debug, Args, Clone)]
#[command(about = "Authenticate with a Coder deployment", next_line_help = true)]
pub struct LoginArgs {
    /// URL of the deployment (default: --url/$CODER_URL, else the stored one). `https://` is added when
    /// it has no scheme.
    #[arg(value_name = "URL")]
    pub url_arg: Option<String>,

    /// Email to log in with.
    #[arg(long, env = "CODER_EMAIL")]
    pub email: Option<String>,

    /// Password to log in with.
    #[arg(long, env = "CODER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Username of the first user, when the deployment has none yet.
    #[arg(long, env = "CODER_FIRST_USER_USERNAME")]
    pub first_user_username: Option<String>,

    /// Email of the first user, when the deployment has none yet (default: --email).
    #[arg(long, env = "CODER_FIRST_USER_EMAIL")]
    pub first_user_email: Option<String>,

    /// Password of the first user, when the deployment has none yet (default: --password).
    #[arg(long, env = "CODER_FIRST_USER_PASSWORD", hide_env_values = true)]
    pub first_user_password: Option<String>,

    /// Full name of the first user (optional).
    #[arg(long, env = "CODER_FIRST_USER_FULL_NAME")]
    pub first_user_full_name: Option<String>,

    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Debug, Args, Clone)]
#[command(about = "Unauthenticate your local session", next_line_help = true)]
pub struct LogoutArgs {
    /// Accepted for compatibility with Coder; there is no confirmation prompt.
    #[arg(short = 'y', long)]
    pub yes: bool,

    #[command(flatten)]
    pub client: ClientOpts,
}

fn given(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

pub async fn run(args: LoginArgs) -> anyhow::Result<()> {
    let config = args.client.config()?;
    let raw_url = match given(&args.url_arg).or_else(|| given(&args.client.url)) {
        Some(url) => url,
        None => config
            .read_url()?
            .context("no deployment URL: run `coder login <url>`")?,
    };
    let url = normalize_url(&raw_url);
    let anon = ApiClient::new(&url, None)?;
    anon.get("/buildinfo")
        .await
        .with_context(|| format!("failed to check the Coder deployment at {url}"))?;

    let (session, me) = match given(&args.client.token) {
        Some(token) => {
            let client = anon.with_token(&token);
            let me = client
                .get("/users/me")
                .await
                .context("the session token is not valid")?;
            (token, me)
        }
        None => {
            let has_first_user = match anon.get("/users/first").await {
                Ok(_) => true,
                Err(e) if status_of(&e) == Some(404) => false,
                Err(e) => return Err(e.context("check for the first user")),
            };
            let (email, password) = if has_first_user {
                credentials(&args)?
            } else {
                create_first_user(&anon, &args).await?
            };
            let login: Value = anon
                .post(
                    "/users/login",
                    &json!({"email": email, "password": password}),
                )
                .await
                .context("log in")?;
            let token = login["session_token"]
                .as_str()
                .context("the login answer carries no session_token")?
                .to_string();
            let me = anon.with_token(&token).get("/users/me").await?;
            (token, me)
        }
    };

    config.write_url(&url)?;
    config.write_session(&session)?;
    let username = me["username"].as_str().unwrap_or_default();
    println!("Welcome to Coder, {username}! You're authenticated.");
    Ok(())
}

/// Email and password from the flags/env, else from the terminal.
fn credentials(args: &LoginArgs) -> anyhow::Result<(String, String)> {
    let email = match given(&args.email) {
        Some(e) => e,
        None => prompt("Email", false).context("pass --email or set CODER_EMAIL")?,
    };
    let password = match given(&args.password) {
        Some(p) => p,
        None => prompt("Password", true).context("pass --password or set CODER_PASSWORD")?,
    };
    Ok((email, password))
}

/// Creates the first user of an empty deployment and returns its credentials.
async fn create_first_user(anon: &ApiClient, args: &LoginArgs) -> anyhow::Result<(String, String)> {
    eprintln!("This deployment has no users yet; creating the first (owner) user.");
    let username = match given(&args.first_user_username) {
        Some(u) => u,
        None => prompt("Username", false).context("pass --first-user-username")?,
    };
    let email = match given(&args.first_user_email).or_else(|| given(&args.email)) {
        Some(e) => e,
        None => prompt("Email", false).context("pass --first-user-email")?,
    };
    let password = match given(&args.first_user_password).or_else(|| given(&args.password)) {
        Some(p) => p,
        None => prompt("Password", true).context("pass --first-user-password")?,
    };
    let mut body = json!({"username": username, "email": email, "password": password});
    if let Some(name) = given(&args.first_user_full_name) {
        body["name"] = json!(name);
    }
    anon.post("/users/first", &body)
        .await
        .context("create the first user")?;
    Ok((email, password))
}

pub async fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let config = args.client.config()?;
    let Some(session) = config.read_session()? else {
        anyhow::bail!("You are not logged in.");
    };
    // Expire the stored session on the server too when we can; the local file goes either way.
    let url = given(&args.client.url)
        .map(|u| normalize_url(&u))
        .or(config.read_url()?);
    if let Some(url) = url {
        let client = ApiClient::new(&url, Some(session))?;
        if let Err(err) = client
            .send(reqwest::Method::POST, "/users/logout", None::<&()>)
            .await
        {
            eprintln!("warning: the server did not end the session: {err:#}");
        }
    }
    config.remove_session()?;
    println!("You are no longer logged in. You can log in using 'coder login <url>'.");
    Ok(())
}
