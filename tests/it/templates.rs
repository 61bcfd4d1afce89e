//! Template versions, their import job, presets, and templates.

use std::collections::HashSet;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::templates::{
    create_version, example_dir, import_example, tar_of_dir, tar_of_main_tf, upload, wait_import,
};
use crate::harness::TestApp;

#[tokio::test]
async fn local_shell_imports_and_becomes_a_template() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let file = upload(&owner, tar_of_dir(&example_dir("local-shell"))).await;
    let created = create_version(&owner, file, None).await;
    assert_eq!(created["job"]["status"], "pending");
    assert_eq!(created["job"]["type"], "template_version_import");
    assert_eq!(created["template_id"], Uuid::nil().to_string());
    let name = created["name"].as_str().unwrap();
    assert!(name.contains('_'), "generated adjective_name style: {name}");
    let id = created["id"].as_str().unwrap().to_string();

    let version = wait_import(&owner, &id).await;
    assert_eq!(version["job"]["status"], "succeeded", "{version}");
    assert!(
        version["readme"].as_str().unwrap().contains("local"),
        "README is stored"
    );

    // Parameters, exactly as declared in main.tf.
    let params: Value = owner
        .get(&format!("/api/v2/templateversions/{id}/rich-parameters"))
        .await
        .json();
    assert_eq!(
        params,
        json!([
            {"name": "greeting", "display_name": "Greeting",
             "description": "What the startup script writes to ~/greeting.txt.",
             "description_plaintext": "What the startup script writes to ~/greeting.txt.",
             "type": "string", "mutable": true, "default_value": "hello", "icon": "", "options": [],
             "required": false, "ephemeral": false},
            {"name": "size", "display_name": "Size", "description": "A number the startup script records (1-8).",
             "description_plaintext": "A number the startup script records (1-8).",
             "type": "number", "mutable": false, "default_value": "1", "icon": "", "options": [],
             "validation_min": 1, "validation_max": 8, "required": false, "ephemeral": false},
        ])
    );

    // Presets in Coder's PascalCase shape, plus this server's prebuild extensions.
    let presets: Value = owner
        .get(&format!("/api/v2/templateversions/{id}/presets"))
        .await
        .json();
    let presets = presets.as_array().unwrap();
    assert_eq!(presets.len(), 2);
    let prebuilt = &presets[0];
    assert_eq!(prebuilt["Name"], "prebuilt");
    assert_eq!(prebuilt["Default"], true);
    assert_eq!(prebuilt["DesiredPrebuildInstances"], 2);
    assert_eq!(
        prebuilt["Parameters"],
        json!([{"Name": "greeting", "Value": "hello"}, {"Name": "size", "Value": "2"}])
    );
    assert_eq!(prebuilt["PrebuildTTLSeconds"], 86400);
    assert_eq!(prebuilt["PrebuildSchedulingTimezone"], "UTC");
    assert_eq!(
        prebuilt["PrebuildSchedules"],
        json!([{"Cron": "* 8-18 * * 1-5", "Instances": 3}])
    );
    assert!(prebuilt["ID"].as_str().unwrap().parse::<Uuid>().is_ok());
    let small = &presets[1];
    assert_eq!(small["Name"], "small");
    assert_eq!(small["Default"], false);
    assert_eq!(small["DesiredPrebuildInstances"], Value::Null);
    assert_eq!(
        small["Parameters"],
        json!([{"Name": "greeting", "Value": "hi"}, {"Name": "size", "Value": "1"}])
    );
    assert_eq!(small["Description"], "A small workspace, built on demand.");

    let logs: Value = owner
        .get(&format!("/api/v2/templateversions/{id}/logs"))
        .await
        .json();
    assert!(logs.as_array().unwrap().len() >= 2, "{logs}");

    // The resources the version creates, with its agent, as the import evaluated them.
    let resources: Value = owner
        .get(&format!("/api/v2/templateversions/{id}/resources"))
        .await
        .json();
    let home = resources
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "null_resource" && r["name"] == "home")
        .unwrap_or_else(|| panic!("{resources}"));
    assert_eq!(home["workspace_transition"], "start");
    assert_eq!(home["agents"][0]["name"], "main");

    // Template from the version.
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "local-shell", "template_version_id": id, "display_name": "Local shell"}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let template: Value = resp.json();
    assert_eq!(template["active_version_id"], id.as_str());
    assert_eq!(template["organization_name"], "coder");
    assert_eq!(template["provisioner"], "echo");
    assert_eq!(template["created_by_name"], "admin");
    assert_eq!(template["activity_bump_ms"], 3_600_000);
    assert_eq!(
        template["autostart_requirement"]["days_of_week"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    let tid = template["id"].as_str().unwrap().to_string();
    for path in [
        format!("/api/v2/templates/{tid}"),
        "/api/v2/organizations/default/templates/local-shell".to_string(),
    ] {
        let t: Value = owner.get(&path).await.json();
        assert_eq!(t["id"], tid.as_str(), "{path}");
    }
    let v1: Value = owner
        .get(&format!("/api/v2/templateversions/{id}"))
        .await
        .json();
    assert_eq!(v1["template_id"], tid.as_str());

    // A second version of the template, promoted to active.
    let v2 = create_version(&owner, file, Some(tid.parse().unwrap())).await;
    let v2id = v2["id"].as_str().unwrap().to_string();
    assert_eq!(
        wait_import(&owner, &v2id).await["job"]["status"],
        "succeeded"
    );
    let resp = owner
        .patch(
            &format!("/api/v2/templates/{tid}/versions"),
            &json!({"id": v2id}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let t: Value = owner.get(&format!("/api/v2/templates/{tid}")).await.json();
    assert_eq!(t["active_version_id"], v2id.as_str());
    let versions: Value = owner
        .get(&format!("/api/v2/templates/{tid}/versions"))
        .await
        .json();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    let by_name = owner
        .get(&format!(
            "/api/v2/templates/{tid}/versions/{}",
            v2["name"].as_str().unwrap()
        ))
        .await;
    assert_eq!(by_name.status, 200);

    // Members can read templates but not change them.
    let (alice, _) = app.user(&owner, "alice", &[]).await;
    assert_eq!(
        alice.get(&format!("/api/v2/templates/{tid}")).await.status,
        200
    );
    let resp = alice
        .patch(
            &format!("/api/v2/templates/{tid}/versions"),
            &json!({"id": id}),
        )
        .await;
    assert_eq!(resp.status, 403);
    let resp = alice
        .post(
            "/api/v2/organizations/default/templateversions",
            &json!({"storage_method": "file", "file_id": file, "provisioner": "terraform"}),
        )
        .await;
    assert_eq!(resp.status, 403);
}

/// Each broken example fails its import with the message in its `# expect:` line, and nothing of it
/// (parameters, presets) is stored.
#[tokio::test]
async fn broken_examples_fail_with_their_message() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("broken-"))
        .collect();
    names.sort();
    assert!(names.len() >= 14, "one broken example per rule: {names:?}");
    for name in names {
        let main = std::fs::read_to_string(root.join(&name).join("main.tf")).unwrap();
        let expect = main
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name} has no # expect: line"))
            .to_string();
        let v = import_example(&owner, &name).await;
        assert_eq!(v["job"]["status"], "failed", "{name}: {v}");
        let error = v["job"]["error"].as_str().unwrap();
        assert!(
            error.contains(&expect),
            "{name}: {error:?} should contain {expect:?}"
        );
        assert!(
            error.contains("main.tf"),
            "{name}: the error names the file: {error}"
        );
        let id: Uuid = v["id"].as_str().unwrap().parse().unwrap();
        let stored: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM template_version_parameters WHERE template_version_id = $1)
                  + (SELECT count(*) FROM template_version_presets WHERE template_version_id = $1)",
        )
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap();
        assert_eq!(stored, 0, "{name}: nothing half-stored");
        let logs: Value = owner
            .get(&format!("/api/v2/templateversions/{id}/logs"))
            .await
            .json();
        assert!(
            logs.as_array()
                .unwrap()
                .iter()
                .any(|l| l["log_level"] == "error"),
            "{name}: the error is in the logs"
        );
    }
}

#[tokio::test]
async fn fifty_concurrent_imports_each_run_once() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let file = upload(&owner, tar_of_dir(&example_dir("local-shell"))).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = owner.clone();
        tasks.push(tokio::spawn(
            async move { create_version(&c, file, None).await },
        ));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap()["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        assert_eq!(wait_import(&owner, id).await["job"]["status"], "succeeded");
    }
    // Exactly one run per job: one "Setting up" log line each, parameters stored once.
    let runs: Vec<(Uuid, i64, i64, Option<Uuid>)> = sqlx::query_as(
        "SELECT j.id,
                (SELECT count(*) FROM provisioner_job_logs l WHERE l.job_id = j.id AND l.stage = 'Setting up'),
                (SELECT count(*) FROM template_version_parameters p JOIN template_versions v
                   ON v.id = p.template_version_id WHERE v.job_id = j.id),
                j.worker_id
         FROM provisioner_jobs j",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(runs.len(), 50);
    let mut workers = HashSet::new();
    for (job, setups, params, worker) in runs {
        assert_eq!(setups, 1, "job {job} ran {setups} times");
        assert_eq!(params, 2, "job {job}");
        workers.insert(worker.unwrap());
    }
    assert!(workers.len() <= 3, "three daemons: {workers:?}");
}

#[tokio::test]
async fn a_one_megabyte_template_imports() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let base = std::fs::read_to_string(example_dir("local-shell").join("main.tf")).unwrap();
    let mut content = base.clone();
    let mut i = 0;
    while content.len() < 1 << 20 {
        content.push_str(&format!(
            "\n# padding resource {i}\nresource \"null_resource\" \"pad{i}\" {{\n  triggers = {{\n    n = \"{i}\"\n    owner = data.coder_workspace_owner.me.name\n  }}\n}}\n"
        ));
        i += 1;
    }
    let file = upload(&owner, tar_of_main_tf(&content)).await;
    let v = create_version(&owner, file, None).await;
    let done = wait_import(&owner, v["id"].as_str().unwrap()).await;
    assert_eq!(done["job"]["status"], "succeeded", "{done}");
}

#[tokio::test]
async fn presets_are_null_without_presets() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let file = upload(
        &owner,
        tar_of_main_tf("data \"coder_parameter\" \"x\" {\n  name = \"x\"\n  type = \"string\"\n  default = \"a\"\n}\n"),
    )
    .await;
    let v = create_version(&owner, file, None).await;
    let id = v["id"].as_str().unwrap();
    assert_eq!(wait_import(&owner, id).await["job"]["status"], "succeeded");
    let resp = owner
        .get(&format!("/api/v2/templateversions/{id}/presets"))
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "null\n");
}

#[tokio::test]
async fn template_bad_input() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let file = upload(&owner, tar_of_dir(&example_dir("local-shell"))).await;

    // Unknown provisioner, unknown file, missing storage method.
    let resp = owner
        .post(
            "/api/v2/organizations/default/templateversions",
            &json!({"storage_method": "file", "file_id": file, "provisioner": "pulumi"}),
        )
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().validations[0].field, "provisioner");
    let resp = owner
        .post(
            "/api/v2/organizations/default/templateversions",
            &json!({"storage_method": "file", "file_id": Uuid::new_v4(), "provisioner": "terraform"}),
        )
        .await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error().message, "File not found.");
    let resp = owner
        .post(
            "/api/v2/organizations/default/templateversions",
            &json!({"file_id": file, "provisioner": "terraform"}),
        )
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().validations[0].field, "storage_method");
    // Malformed and unknown version ids.
    assert_eq!(
        owner
            .get("/api/v2/templateversions/not-a-uuid")
            .await
            .status,
        400
    );
    let resp = owner
        .get(&format!("/api/v2/templateversions/{}", Uuid::new_v4()))
        .await;
    assert_eq!(resp.status, 404);
    resp.error();

    // A template needs a succeeded version; a failed one can't be used or activated.
    let broken = import_example(&owner, "broken-duplicate-preset").await;
    assert_eq!(broken["job"]["status"], "failed");
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "nope", "template_version_id": broken["id"]}),
        )
        .await;
    assert_eq!(resp.status, 400, "{}", resp.text());
    resp.error();

    let good = import_example(&owner, "local-shell").await;
    let t: Value = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "one", "template_version_id": good["id"]}),
        )
        .await
        .json();
    let tid: Uuid = t["id"].as_str().unwrap().parse().unwrap();
    // Name taken.
    let other = import_example(&owner, "local-shell").await;
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "one", "template_version_id": other["id"]}),
        )
        .await;
    assert_eq!(resp.status, 409);
    assert_eq!(resp.error().validations[0].field, "name");
    // Invalid name.
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "not valid!", "template_version_id": other["id"]}),
        )
        .await;
    assert_eq!(resp.status, 400);
    // Version already attached to a template.
    let resp = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "two", "template_version_id": good["id"]}),
        )
        .await;
    assert_eq!(resp.status, 400);
    // Activating a version of another template, and a failed version of this one.
    let resp = owner
        .patch(
            &format!("/api/v2/templates/{tid}/versions"),
            &json!({"id": other["id"]}),
        )
        .await;
    assert_eq!(resp.status, 400);
    resp.error();
    let failed_file = upload(
        &owner,
        tar_of_dir(&example_dir("broken-two-default-presets")),
    )
    .await;
    let failed = create_version(&owner, failed_file, Some(tid)).await;
    let failed = wait_import(&owner, failed["id"].as_str().unwrap()).await;
    assert_eq!(failed["job"]["status"], "failed");
    let resp = owner
        .patch(
            &format!("/api/v2/templates/{tid}/versions"),
            &json!({"id": failed["id"]}),
        )
        .await;
    assert_eq!(resp.status, 400);
    resp.error();
    // Duplicate version name within the template.
    let named = owner
        .post(
            "/api/v2/organizations/default/templateversions",
            &json!({"storage_method": "file", "file_id": file, "provisioner": "terraform",
                    "template_id": tid, "name": "v1"}),
        )
        .await;
    assert_eq!(named.status, 201);
    let dup = owner
        .post(
            "/api/v2/organizations/default/templateversions",
            &json!({"storage_method": "file", "file_id": file, "provisioner": "terraform",
                    "template_id": tid, "name": "v1"}),
        )
        .await;
    assert_eq!(dup.status, 409);
    assert_eq!(
        dup.error().message,
        "A template version with name \"v1\" already exists for this template."
    );
}

#[tokio::test]
async fn version_lifecycle_patch_archive_cancel() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let v1 = import_example(&owner, "local-shell").await;
    let t: Value = owner
        .post(
            "/api/v2/organizations/default/templates",
            &json!({"name": "lc", "template_version_id": v1["id"]}),
        )
        .await
        .json();
    let tid: Uuid = t["id"].as_str().unwrap().parse().unwrap();
    let file = upload(&owner, tar_of_dir(&example_dir("local-shell"))).await;
    let v2 = create_version(&owner, file, Some(tid)).await;
    let v2id = v2["id"].as_str().unwrap().to_string();
    wait_import(&owner, &v2id).await;

    // Rename and re-message; a duplicate name is a 409.
    let resp = owner
        .patch(
            &format!("/api/v2/templateversions/{v2id}"),
            &json!({"name": "second", "message": "better"}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: Value = resp.json();
    assert_eq!(
        (v["name"].as_str(), v["message"].as_str()),
        (Some("second"), Some("better"))
    );
    let v1id = v1["id"].as_str().unwrap();
    let resp = owner
        .patch(
            &format!("/api/v2/templateversions/{v1id}"),
            &json!({"name": "second"}),
        )
        .await;
    assert_eq!(resp.status, 409);

    // The active version can't be archived; another one can, and then it is hidden from the list.
    let resp = owner
        .post(
            &format!("/api/v2/templateversions/{v1id}/archive"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 400);
    let resp = owner
        .post(
            &format!("/api/v2/templateversions/{v2id}/archive"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let listed: Value = owner
        .get(&format!("/api/v2/templates/{tid}/versions"))
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let listed: Value = owner
        .get(&format!(
            "/api/v2/templates/{tid}/versions?include_archived=true"
        ))
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let resp = owner
        .patch(
            &format!("/api/v2/templates/{tid}/versions"),
            &json!({"id": v2id}),
        )
        .await;
    assert_eq!(resp.status, 400, "an archived version can't be activated");
    let resp = owner
        .post(
            &format!("/api/v2/templateversions/{v2id}/unarchive"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 200);

    // Canceling a completed import is refused.
    let resp = owner
        .patch(
            &format!("/api/v2/templateversions/{v2id}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error().message, "Job has already completed!");
}

#[tokio::test]
async fn pending_import_can_be_canceled() {
    // No daemons: the job stays pending until canceled.
    let app = TestApp::with_config(|c| c.provisioner_daemons = 0).await;
    let owner = app.owner().await;
    let file = upload(&owner, tar_of_dir(&example_dir("local-shell"))).await;
    let v = create_version(&owner, file, None).await;
    assert_eq!(v["job"]["queue_position"], 1);
    assert_eq!(v["job"]["queue_size"], 1);
    let id = v["id"].as_str().unwrap();
    let resp = owner
        .patch(&format!("/api/v2/templateversions/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: Value = owner
        .get(&format!("/api/v2/templateversions/{id}"))
        .await
        .json();
    assert_eq!(v["job"]["status"], "canceled");
    let resp = owner
        .patch(&format!("/api/v2/templateversions/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(resp.status, 400);
}

#[tokio::test]
async fn template_patch_search_and_delete() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let mut ids = Vec::new();
    for name in ["alpha", "beta"] {
        let v = import_example(&owner, "local-shell").await;
        let t: Value = owner
            .post(
                "/api/v2/organizations/default/templates",
                &json!({"name": name, "template_version_id": v["id"]}),
            )
            .await
            .json();
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    let alpha = &ids[0];
    let resp = owner
        .patch(
            &format!("/api/v2/templates/{alpha}"),
            &json!({"display_name": "Alpha", "description": "first", "deprecation_message": "use beta"}),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let t: Value = resp.json();
    assert_eq!(t["display_name"], "Alpha");
    assert_eq!(t["deprecated"], true);
    assert_eq!(t["deprecation_message"], "use beta");
    // Nothing changed: 304.
    let resp = owner
        .patch(
            &format!("/api/v2/templates/{alpha}"),
            &json!({"display_name": "Alpha"}),
        )
        .await;
    assert_eq!(resp.status, 304);
    // Invalid input.
    let resp = owner
        .patch(
            &format!("/api/v2/templates/{alpha}"),
            &json!({"default_ttl_ms": -1}),
        )
        .await;
    assert_eq!(resp.status, 400);

    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(owner.get("/api/v2/templates").await.json()),
        vec!["alpha", "beta"]
    );
    assert_eq!(
        names(owner.get("/api/v2/templates?q=bet").await.json()),
        vec!["beta"]
    );
    assert_eq!(
        names(
            owner
                .get("/api/v2/templates?q=deprecated:true")
                .await
                .json()
        ),
        vec!["alpha"]
    );
    assert_eq!(
        names(
            owner
                .get("/api/v2/templates?q=exact_name:alpha")
                .await
                .json()
        ),
        vec!["alpha"]
    );
    assert_eq!(
        owner.get("/api/v2/templates?q=colour:red").await.status,
        400
    );

    // A template with a live workspace can't be deleted; without one it can.
    let beta: Uuid = ids[1].parse().unwrap();
    let owner_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE username = 'admin'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO workspaces (id, owner_id, organization_id, template_id, name)
         SELECT gen_random_uuid(), $1, organization_id, id, 'ws' FROM templates WHERE id = $2",
    )
    .bind(owner_id)
    .bind(beta)
    .execute(app.pool())
    .await
    .unwrap();
    let resp = owner.delete(&format!("/api/v2/templates/{beta}")).await;
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.error().message,
        "All workspaces must be deleted before a template can be removed."
    );
    let resp = owner.delete(&format!("/api/v2/templates/{alpha}")).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        owner
            .get(&format!("/api/v2/templates/{alpha}"))
            .await
            .status,
        404
    );
    assert_eq!(
        names(owner.get("/api/v2/templates").await.json()),
        vec!["beta"]
    );
}

#[tokio::test]
async fn logs_follow_over_websocket() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let app = TestApp::new().await;
    let owner = app.owner().await;
    let v = import_example(&owner, "broken-duplicate-preset").await;
    let id = v["id"].as_str().unwrap();
    let url = format!("ws://{}/api/v2/templateversions/{id}/logs?follow", app.addr);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Coder-Session-Token",
        owner.token.clone().unwrap().parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    let mut streamed = Vec::new();
    while let Some(msg) = ws.next().await {
        match msg.unwrap() {
            tokio_tungstenite::tungstenite::Message::Text(t) => {
                streamed.push(serde_json::from_str::<Value>(&t).unwrap())
            }
            tokio_tungstenite::tungstenite::Message::Close(frame) => {
                assert_eq!(u16::from(frame.unwrap().code), 1000);
                break;
            }
            _ => {}
        }
    }
    let listed: Value = owner
        .get(&format!("/api/v2/templateversions/{id}/logs"))
        .await
        .json();
    assert_eq!(Value::Array(streamed), listed);
}
