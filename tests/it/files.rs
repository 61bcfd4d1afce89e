//! `/api/v2/files`: upload, dedup, download, and rejection of unsafe archives.

use std::time::{Duration, Instant};

use coder::api::error::NOT_FOUND_MESSAGE;
use coder::files::api::UploadResponse;
use coder::files::MAX_UPLOAD_BYTES;
use reqwest::Method;
use tar::{EntryType, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::harness::client::Resp;
use crate::harness::{Client, TestApp};

const TAR: &str = "application/x-tar";

/// A tar of the local-shell example template, built the way `coder templates push` would.
fn template_tar() -> Vec<u8> {
    let main_tf = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/templates/local-shell/main.tf"),
    )
    .expect("read example template");
    assert!(!main_tf.is_empty());
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(main_tf.len() as u64);
    builder
        .append_data(&mut header, "main.tf", main_tf.as_slice())
        .unwrap();
    builder.into_inner().unwrap()
}

/// A one-entry tar written byte by byte, so paths the `tar` builder refuses can be expressed.
fn raw_tar(kind: EntryType, name: &str, link_target: &str) -> Vec<u8> {
    let mut header = Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.as_old_mut().linkname[..link_target.len()].copy_from_slice(link_target.as_bytes());
    header.set_mode(0o644);
    let data: &[u8] = if kind == EntryType::Regular {
        b"x"
    } else {
        b""
    };
    header.set_size(data.len() as u64);
    header.set_entry_type(kind);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

async fn upload(client: &Client, body: Vec<u8>, content_type: &str) -> Resp {
    client
        .request(
            Method::POST,
            "/api/v2/files",
            Some(body),
            &[("content-type", content_type)],
        )
        .await
}

async fn file_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM files")
        .fetch_one(app.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn upload_dedups_per_creator_and_downloads() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let (alice, alice_id) = app.user(&owner, "alice", &[]).await;
    let (admin, _) = app.user(&owner, "tadmin", &["template-admin"]).await;
    let tar = template_tar();

    let resp = upload(&owner, tar.clone(), TAR).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert!(resp
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: serde_json::Value = resp.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let owner_file = resp.json::<UploadResponse>().hash;

    // The same bytes again: the same file, 200.
    let resp = upload(&owner, tar.clone(), TAR).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json::<UploadResponse>().hash, owner_file);

    // Another user uploading the same bytes gets a file of its own.
    let resp = upload(&alice, tar.clone(), TAR).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let alice_file = resp.json::<UploadResponse>().hash;
    assert_ne!(alice_file, owner_file);
    assert_eq!(file_count(&app).await, 2);

    let (hash, created_by): (String, Uuid) =
        sqlx::query_as("SELECT hash, created_by FROM files WHERE id = $1")
            .bind(alice_file)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(created_by, alice_id);
    assert_eq!(hash.len(), 64);
    assert!(hash
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    // Download: identical bytes and the stored content type.
    let resp = owner.get(&format!("/api/v2/files/{owner_file}")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.headers.get("content-type").unwrap(), TAR);
    assert_eq!(resp.body.as_ref(), tar.as_slice());

    // A member reads its own files, not others'; the answer for others' is the generic 404.
    let resp = alice.get(&format!("/api/v2/files/{alice_file}")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.as_ref(), tar.as_slice());
    let resp = alice.get(&format!("/api/v2/files/{owner_file}")).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error().message, NOT_FOUND_MESSAGE);

    // Owners and template admins read everyone's.
    assert_eq!(
        owner
            .get(&format!("/api/v2/files/{alice_file}"))
            .await
            .status,
        200
    );
    let resp = admin.get(&format!("/api/v2/files/{alice_file}")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.as_ref(), tar.as_slice());
}

#[tokio::test]
async fn concurrent_uploads_of_the_same_bytes_share_one_file() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let tar = template_tar();
    let uploads = (0..8).map(|_| {
        let owner = owner.clone();
        let tar = tar.clone();
        tokio::spawn(async move { upload(&owner, tar, TAR).await })
    });
    let mut ids = Vec::new();
    let mut created = 0;
    for task in uploads.collect::<Vec<_>>() {
        let resp = task.await.unwrap();
        assert!(
            resp.status == 200 || resp.status == 201,
            "{}: {}",
            resp.status,
            resp.text()
        );
        created += usize::from(resp.status == 201);
        ids.push(resp.json::<UploadResponse>().hash);
    }
    assert_eq!(created, 1);
    assert!(ids.iter().all(|id| *id == ids[0]));
    assert_eq!(file_count(&app).await, 1);
}

#[tokio::test]
async fn upload_requires_the_tar_content_type() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let tar = template_tar();
    for content_type in [
        "application/json",
        "application/x-tar; charset=binary",
        "Application/X-Tar",
        "application/zip",
        "application/x-zip-compressed",
    ] {
        let resp = upload(&owner, tar.clone(), content_type).await;
        assert_eq!(resp.status, 400, "{content_type}");
        assert_eq!(
            resp.error().message,
            format!("Unsupported content type header \"{content_type}\"."),
        );
    }
    // No header at all.
    let resp = owner
        .request(Method::POST, "/api/v2/files", Some(tar), &[])
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.error().message,
        "Unsupported content type header \"\"."
    );
    assert_eq!(file_count(&app).await, 0);
}

#[tokio::test]
async fn upload_rejects_invalid_and_unsafe_archives() {
    let app = TestApp::new().await;
    let owner = app.owner().await;

    let resp = upload(&owner, b"this is certainly not a tar archive".to_vec(), TAR).await;
    assert_eq!(resp.status, 400);
    let err = resp.error();
    assert_eq!(err.message, "File is not a valid tar archive.");
    assert!(!err.detail.is_empty());

    let resp = upload(&owner, vec![0x42; 4096], TAR).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().message, "File is not a valid tar archive.");

    let cases = [
        (
            raw_tar(EntryType::Regular, "../evil", ""),
            "Archive entry \"../evil\" is not allowed: its path contains \"..\".",
        ),
        (
            raw_tar(EntryType::Regular, "ok/../../evil", ""),
            "Archive entry \"ok/../../evil\" is not allowed: its path contains \"..\".",
        ),
        (
            raw_tar(EntryType::Regular, "/etc/x", ""),
            "Archive entry \"/etc/x\" is not allowed: its path is absolute.",
        ),
        (
            raw_tar(EntryType::Symlink, "sneaky", "../../etc/passwd"),
            "Archive entry \"sneaky\" is not allowed: its link target \"../../etc/passwd\" points outside the archive.",
        ),
        (
            raw_tar(EntryType::Symlink, "abs", "/etc/passwd"),
            "Archive entry \"abs\" is not allowed: it links to the absolute path \"/etc/passwd\".",
        ),
        (
            raw_tar(EntryType::Link, "hard", "/etc/shadow"),
            "Archive entry \"hard\" is not allowed: it links to the absolute path \"/etc/shadow\".",
        ),
    ];
    for (tar, message) in cases {
        let resp = upload(&owner, tar, TAR).await;
        assert_eq!(resp.status, 400, "{message}: {}", resp.text());
        assert_eq!(resp.error().message, message);
    }
    assert_eq!(file_count(&app).await, 0);

    // A link that stays inside, and an empty archive, are fine.
    let resp = upload(
        &owner,
        raw_tar(EntryType::Symlink, "a/l", "../main.tf"),
        TAR,
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let resp = upload(&owner, vec![0; 1024], TAR).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
}

#[tokio::test]
async fn get_file_errors_and_authentication() {
    let app = TestApp::new().await;
    let owner = app.owner().await;

    let resp = owner.get("/api/v2/files/not-a-uuid").await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().message, "File id must be a valid UUID.");

    let resp = owner
        .get(&format!("/api/v2/files/{}", Uuid::new_v4()))
        .await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error().message, NOT_FOUND_MESSAGE);

    let id = upload(&owner, template_tar(), TAR)
        .await
        .json::<UploadResponse>()
        .hash;
    let resp = owner
        .get(&format!("/api/v2/files/{id}?format=tarball"))
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().message, "Unsupported conversion format.");

    let anon = app.client();
    let resp = anon.get(&format!("/api/v2/files/{id}")).await;
    assert_eq!(resp.status, 401);
    resp.error();
    let resp = upload(&anon, template_tar(), TAR).await;
    assert_eq!(resp.status, 401);
    resp.error();
    assert_eq!(file_count(&app).await, 1);
}

/// Sends a raw HTTP/1.1 request (headers, then `body` written concurrently, ignoring write errors once
/// the server has answered) and returns the status and the response body.
async fn raw_request(app: &TestApp, head: String, body: Option<Vec<u8>>) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let sender = tokio::spawn(async move {
        if let Some(body) = body {
            let _ = writer.write_all(&body).await;
        }
        // Keep the write half open until the response has been read.
        writer
    });
    let mut response = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
            if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if length.is_some_and(|len| response.len() >= end + 4 + len) {
                    break;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no response within 30 s");
    sender.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn oversized_uploads_are_413() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let token = owner.token.clone().unwrap();
    assert_eq!(MAX_UPLOAD_BYTES, 100 << 20);
    let head = |framing: String| {
        format!(
            "POST /api/v2/files HTTP/1.1\r\nHost: {}\r\nCoder-Session-Token: {token}\r\n\
             Content-Type: application/x-tar\r\n{framing}\r\n",
            app.addr
        )
    };

    // A declared length over the limit is refused before any of the body is sent.
    let started = Instant::now();
    let (status, body) = raw_request(
        &app,
        head(format!("Content-Length: {}\r\n", MAX_UPLOAD_BYTES + 1)),
        None,
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("Request body is too large."), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A chunked body (no declared length) is cut off once it passes the limit.
    let chunk = vec![0u8; 1 << 20];
    let mut encoded = Vec::with_capacity(102 * (chunk.len() + 16));
    for _ in 0..101 {
        encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        encoded.extend_from_slice(&chunk);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    let started = Instant::now();
    let (status, body) = raw_request(
        &app,
        head("Transfer-Encoding: chunked\r\n".into()),
        Some(encoded),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("Request body is too large."), "{body}");
    eprintln!("chunked 101 MiB upload answered in {:?}", started.elapsed());
    assert_eq!(file_count(&app).await, 0);
}
