//! A small typed HTTP client for tests (later issues reuse it): JSON helpers, raw requests, login.

use coder::api::error::MessageResponse;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("decode {} body {:?}: {e}", self.status, self.text()))
    }

    /// The Coder error envelope; panics if the body is not one (so shape is asserted too).
    pub fn error(&self) -> MessageResponse {
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            ct.starts_with("application/json"),
            "error response must be JSON, got {ct:?}: {}",
            self.text()
        );
        let v: MessageResponse = self.json();
        assert!(!v.message.is_empty(), "error message must not be empty");
        v
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(4)
                .build()
                .unwrap(),
            base: base.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    /// The session token (panics for an anonymous client).
    pub fn token(&self) -> &str {
        self.token.as_deref().expect("logged-in client")
    }

    pub fn with_token(&self, token: &str) -> Self {
        let mut c = self.clone();
        c.token = Some(token.to_string());
        c
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = &self.token {
            req = req.header("Coder-Session-Token", token);
        }
        for (k, v) in headers {
            req = req.header(*k, HeaderValue::from_str(v).unwrap());
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await.expect("request failed");
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.expect("read body"),
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, None, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request(Method::DELETE, path, None, &[]).await
    }

    async fn send_json<T: Serialize>(&self, method: Method, path: &str, body: &T) -> Resp {
        let bytes = serde_json::to_vec(body).unwrap();
        self.request(
            method,
            path,
            Some(bytes),
            &[("content-type", "application/json")],
        )
        .await
    }

    pub async fn post<T: Serialize>(&self, path: &str, body: &T) -> Resp {
        self.send_json(Method::POST, path, body).await
    }

    pub async fn put<T: Serialize>(&self, path: &str, body: &T) -> Resp {
        self.send_json(Method::PUT, path, body).await
    }

    pub async fn patch<T: Serialize>(&self, path: &str, body: &T) -> Resp {
        self.send_json(Method::PATCH, path, body).await
    }

    /// Logs in with a password and returns a client carrying the session token.
    pub async fn login(&self, email: &str, password: &str) -> Client {
        let resp = self
            .post(
                "/api/v2/users/login",
                &serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(resp.status, 201, "login: {}", resp.text());
        let token = resp.json::<serde_json::Value>()["session_token"]
            .as_str()
            .unwrap()
            .to_string();
        self.with_token(&token)
    }
}
