//! Helpers to upload example templates and wait for their import jobs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use super::Client;

pub fn example_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/templates")
        .join(name)
}

/// A tar of the files of `dir` (flat), as `coder templates push` would upload.
pub fn tar_of_dir(dir: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        builder.append_path_with_name(&path, name).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A tar holding one `main.tf` with the given content.
pub fn tar_of_main_tf(content: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "main.tf", content.as_bytes())
        .unwrap();
    builder.into_inner().unwrap()
}

pub async fn upload(client: &Client, tar: Vec<u8>) -> Uuid {
    let resp = client
        .request(
            Method::POST,
            "/api/v2/files",
            Some(tar),
            &[("content-type", "application/x-tar")],
        )
        .await;
    assert!(
        resp.status == 201 || resp.status == 200,
        "upload: {}",
        resp.text()
    );
    resp.json::<Value>()["hash"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Creates a template version from a file and returns its JSON.
/// Creates a template version from a file (echo provisioner: builds start no processes) and returns it.
pub async fn create_version(client: &Client, file_id: Uuid, template_id: Option<Uuid>) -> Value {
    create_version_with(client, file_id, template_id, "echo").await
}

/// Creates a template version with the given provisioner (`terraform` runs on the local runtime).
pub async fn create_version_with(
    client: &Client,
    file_id: Uuid,
    template_id: Option<Uuid>,
    provisioner: &str,
) -> Value {
    let mut body =
        json!({"storage_method": "file", "file_id": file_id, "provisioner": provisioner});
    if let Some(t) = template_id {
        body["template_id"] = json!(t);
    }
    let resp = client
        .post("/api/v2/organizations/default/templateversions", &body)
        .await;
    assert_eq!(resp.status, 201, "create version: {}", resp.text());
    resp.json()
}

/// Polls a version until its import job is no longer pending or running.
pub async fn wait_import(client: &Client, version_id: &str) -> Value {
    let start = Instant::now();
    loop {
        let v: Value = client
            .get(&format!("/api/v2/templateversions/{version_id}"))
            .await
            .json();
        let status = v["job"]["status"].as_str().unwrap_or_default().to_string();
        if !matches!(status.as_str(), "pending" | "running") {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "import did not finish: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uploads an example directory, imports it, and returns the finished version JSON.
pub async fn import_example(client: &Client, name: &str) -> Value {
    let file = upload(client, tar_of_dir(&example_dir(name))).await;
    let v = create_version(client, file, None).await;
    wait_import(client, v["id"].as_str().unwrap()).await
}
