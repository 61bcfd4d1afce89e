use serde_json::json;

use crate::harness::TestApp;

#[tokio::test]
async fn organizations_and_members() {
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let (alice, alice_id) = app.user(&owner, "alice", &[]).await;

    let orgs: serde_json::Value = alice.get("/api/v2/organizations").await.json();
    assert_eq!(orgs.as_array().unwrap().len(), 1);
    let org = &orgs[0];
    for key in [
        "id",
        "name",
        "display_name",
        "description",
        "icon",
        "created_at",
        "updated_at",
        "is_default",
    ] {
        assert!(org.get(key).is_some(), "missing {key}");
    }
    let id = org["id"].as_str().unwrap().to_string();
    for reference in [id.as_str(), "coder", "default", "CODER"] {
        let resp = alice
            .get(&format!("/api/v2/organizations/{reference}"))
            .await;
        assert_eq!(resp.status, 200, "{reference}");
    }
    let mine: serde_json::Value = alice.get("/api/v2/users/me/organizations").await.json();
    assert_eq!(mine[0]["id"], id);
    assert_eq!(
        alice
            .get("/api/v2/users/me/organizations/default")
            .await
            .status,
        200
    );

    let members: serde_json::Value = alice
        .get("/api/v2/organizations/default/members")
        .await
        .json();
    let names: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["admin", "alice"]);
    let admin = &members[0];
    assert_eq!(admin["global_roles"][0]["name"], "owner");
    assert!(admin["roles"].as_array().unwrap().is_empty());
    assert_eq!(members[1]["user_id"], alice_id.to_string());

    // Experiments require auth and list what is enabled.
    assert_eq!(app.client().get("/api/v2/experiments").await.status, 401);
    let exp: serde_json::Value = alice.get("/api/v2/experiments").await.json();
    assert_eq!(exp, json!([]));
}

#[tokio::test]
async fn buildinfo_is_stable_and_experiments_expand() {
    let app = TestApp::with_config(|c| {
        c.experiments = coder::config::Experiments::parse(&["*".to_string()]);
    })
    .await;
    let owner = app.owner().await;
    let a: serde_json::Value = app.client().get("/api/v2/buildinfo").await.json();
    let b: serde_json::Value = app.client().get("/api/v2/buildinfo").await.json();
    assert_eq!(a["deployment_id"], b["deployment_id"]);
    assert_eq!(a["workspace_proxy"], false);
    assert!(a["version"].as_str().unwrap().starts_with('v'));
    assert_eq!(a["dashboard_url"], app.base_url);
    let exp: serde_json::Value = owner.get("/api/v2/experiments").await.json();
    assert_eq!(
        exp,
        json!(["workspace-prebuilds", "workspace-build-updates"])
    );
}
