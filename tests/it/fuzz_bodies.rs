//! Random request bodies to every JSON endpoint of the OpenAPI document never get a 5xx: random
//! bytes (invalid UTF-8 included), truncated JSON, JSON of every shape, and each documented field
//! given values of the wrong type. Seeded, so a failure reproduces.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use crate::harness::TestApp;

fn document() -> Value {
    let raw = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/api/openapi.json"
    ))
    .expect("docs/api/openapi.json");
    serde_json::from_str(&raw).unwrap()
}

/// Every (method, path template, schema of the JSON body) the document declares.
fn json_operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !matches!(method.as_str(), "post" | "put" | "patch") {
                continue;
            }
            let content = &op["requestBody"]["content"];
            if let Some(schema) = content.get("application/json").map(|c| c["schema"].clone()) {
                out.push((method.to_uppercase(), path.clone(), schema));
            }
        }
    }
    out
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn random_scalar(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..9) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>()),
        3 => json!(rng.gen::<f64>() * 1e300),
        4 => json!(""),
        5 => json!("x".repeat(rng.gen_range(0..300))),
        6 => json!("\u{0}\u{ffff}💥'\"--"),
        7 => json!(uuid::Uuid::new_v4().to_string()),
        _ => json!(-1),
    }
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    if depth == 0 {
        return random_scalar(rng);
    }
    match rng.gen_range(0..4) {
        0 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        1 => {
            let mut m = Map::new();
            for i in 0..rng.gen_range(0..4) {
                m.insert(format!("k{i}"), random_json(rng, depth - 1));
            }
            Value::Object(m)
        }
        _ => random_scalar(rng),
    }
}

/// The documented object with one field (or every field) swapped for a value of another shape.
fn wrong_types(rng: &mut StdRng, doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    let mut m = Map::new();
    if let Some(props) = schema["properties"].as_object() {
        for name in props.keys() {
            if rng.gen_bool(0.7) {
                m.insert(name.clone(), random_json(rng, 2));
            }
        }
    }
    Value::Object(m)
}

fn body(rng: &mut StdRng, doc: &Value, schema: &Value) -> Vec<u8> {
    match rng.gen_range(0..5) {
        0 => (0..rng.gen_range(0..200))
            .map(|_| rng.gen::<u8>())
            .collect(),
        1 => {
            let text = serde_json::to_vec(&wrong_types(rng, doc, schema)).unwrap();
            let cut = rng.gen_range(0..=text.len());
            text[..cut].to_vec()
        }
        2 => serde_json::to_vec(&random_json(rng, 3)).unwrap(),
        _ => serde_json::to_vec(&wrong_types(rng, doc, schema)).unwrap(),
    }
}

#[tokio::test]
async fn random_bodies_to_every_json_endpoint_never_5xx() {
    let doc = document();
    let ops = json_operations(&doc);
    assert!(
        ops.len() >= 20,
        "only {} JSON operations in the document",
        ops.len()
    );
    let app = TestApp::new().await;
    let owner = app.owner().await;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut sent = 0;
    for (method, path, schema) in &ops {
        for _ in 0..25 {
            // Path parameters: a mix of real-looking and random values.
            let concrete: String = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        match rng.gen_range(0..3) {
                            0 => "me".to_string(),
                            1 => "default".to_string(),
                            _ => uuid::Uuid::new_v4().to_string(),
                        }
                    } else {
                        seg.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let bytes = body(&mut rng, &doc, schema);
            let resp = owner
                .request(
                    method.parse().unwrap(),
                    &concrete,
                    Some(bytes.clone()),
                    &[("content-type", "application/json")],
                )
                .await;
            sent += 1;
            assert!(
                resp.status < 500,
                "{method} {concrete} answered {} for body {:?}: {}",
                resp.status,
                String::from_utf8_lossy(&bytes),
                resp.text()
            );
        }
    }
    assert!(sent > 500);
}
