//! `coder create [NAME]`: creates a workspace from a template by name, optionally with a preset and
//! parameter values, as Coder's `cli/create.go` does non-interactively.
//!
//! Resolution: the organization (`--org`, else the caller's default one), the template by name in it, its
//! active version (or `--template-version` by name), then the preset by name from the version's presets
//! (`--preset none` for none; without `--preset`, the version's default preset if it has one).

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use super::client::{segment, status_of, ApiClient, ClientOpts};

/// The `--preset` value that selects no preset (Coder's `PresetNone`).
pub const PRESET_NONE: &str = "none";

#[derive(Debug, Args, Clone)]
#[command(about = "Create a workspace", next_line_help = true)]
pub struct CreateArgs {
    /// Name of the workspace, optionally as `owner/name`.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,

    /// Name of the template to create the workspace from.
    #[arg(short = 't', long, env = "CODER_TEMPLATE_NAME")]
    pub template: Option<String>,

    /// Name of the template version to use (default: the template's active version).
    #[arg(long, env = "CODER_TEMPLATE_VERSION")]
    pub template_version: Option<String>,

    /// Name of the preset to apply; `none` for no preset (default: the version's default preset, if
    /// any).
    #[arg(long, env = "CODER_PRESET_NAME")]
    pub preset: Option<String>,

    /// A rich parameter value as `name=value` (repeatable; the environment variable holds one).
    #[arg(
        long = "parameter",
        env = "CODER_RICH_PARAMETER",
        value_name = "NAME=VALUE"
    )]
    pub parameters: Vec<String>,

    /// Organization (name or ID) (default: your default organization).
    #[arg(short = 'O', long, env = "CODER_ORGANIZATION")]
    pub org: Option<String>,

    /// Owner of the workspace (username, ID or `me`).
    #[arg(long, default_value = "me")]
    pub owner: String,

    /// Accepted for compatibility with Coder; there are no prompts.
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Print the created workspace as JSON, as the API answered it.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub client: ClientOpts,
}

/// One entry of `GET /templateversions/{id}/presets` (Go field names, as Coder's SDK serialises them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub id: String,
    pub name: String,
    pub default: bool,
    pub parameters: BTreeMap<String, String>,
}

/// Reads the presets answer (`null` when the version has none).
pub fn parse_presets(v: &Value) -> Vec<Preset> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    v.as_array()
        .map(|items| {
            items
                .iter()
                .map(|p| Preset {
                    id: text(&p["ID"]),
                    name: text(&p["Name"]),
                    default: p["Default"].as_bool().unwrap_or(false),
                    parameters: p["Parameters"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .map(|kv| (text(&kv["Name"]), text(&kv["Value"])))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Picks the preset: `none` → none; a name → that preset (or an error naming the available ones);
/// no flag → the default preset, if there is one.
pub fn choose_preset(presets: &[Preset], wanted: Option<&str>) -> anyhow::Result<Option<Preset>> {
    match wanted.filter(|w| !w.is_empty()) {
        Some(PRESET_NONE) => Ok(None),
        Some(name) => match presets.iter().find(|p| p.name == name) {
            Some(p) => Ok(Some(p.clone())),
            None if presets.is_empty() => {
                anyhow::bail!("preset {name:?} not found: the template version has no presets")
            }
            None => {
                let names: Vec<&str> = presets.iter().map(|p| p.name.as_str()).collect();
                anyhow::bail!(
                    "preset {name:?} not found; available presets: {}",
                    names.join(", ")
                )
            }
        },
        None => Ok(presets.iter().find(|p| p.default).cloned()),
    }
}

/// Parses `name=value` pairs (the value may contain `=`); later ones win.
pub fn parse_parameters(raw: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in raw {
        let (name, value) = item
            .split_once('=')
            .filter(|(n, _)| !n.trim().is_empty())
            .with_context(|| format!("--parameter {item:?}: expected name=value"))?;
        let name = name.trim().to_string();
        out.retain(|(n, _)| *n != name);
        out.push((name, value.to_string()));
    }
    Ok(out)
}

/// `owner/name` → (owner, name); a bare name keeps `default_owner`.
fn split_name(name: &str, default_owner: &str) -> anyhow::Result<(String, String)> {
    match name.split_once('/') {
        Some((owner, ws)) if !owner.is_empty() && !ws.is_empty() && !ws.contains('/') => {
            Ok((owner.to_string(), ws.to_string()))
        }
        Some(_) => anyhow::bail!("invalid workspace name {name:?}: expected NAME or OWNER/NAME"),
        None => Ok((default_owner.to_string(), name.to_string())),
    }
}

/// The organization from `--org`, else the caller's default (or only) organization: (id, name).
async fn organization(client: &ApiClient, org: Option<&str>) -> anyhow::Result<(String, String)> {
    let pick = |o: &Value| {
        (
            o["id"].as_str().unwrap_or_default().to_string(),
            o["name"].as_str().unwrap_or_default().to_string(),
        )
    };
    if let Some(org) = org.filter(|o| !o.is_empty()) {
        let o = client
            .get(&format!("/organizations/{}", segment(org)))
            .await
            .with_context(|| format!("organization {org:?}"))?;
        return Ok(pick(&o));
    }
    let orgs = client.get("/users/me/organizations").await?;
    let orgs = orgs.as_array().cloned().unwrap_or_default();
    if let Some(o) = orgs.iter().find(|o| o["is_default"] == true) {
        return Ok(pick(o));
    }
    match orgs.as_slice() {
        [only] => Ok(pick(only)),
        [] => anyhow::bail!("you are not a member of any organization"),
        _ => anyhow::bail!("you belong to several organizations; choose one with --org"),
    }
}

pub async fn run(args: CreateArgs) -> anyhow::Result<()> {
    let raw_name = args
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .context("a workspace name is required: coder create --template T NAME")?;
    let template_name = args
        .template
        .clone()
        .filter(|t| !t.is_empty())
        .context("--template is required (there is no interactive template picker)")?;
    let (owner, name) = split_name(&raw_name, &args.owner)?;
    let requested = parse_parameters(&args.parameters)?;
    let client = args.client.authenticated()?;

    let (org_id, org_name) = organization(&client, args.org.as_deref()).await?;
    let template = client
        .get(&format!(
            "/organizations/{org_id}/templates/{}",
            segment(&template_name)
        ))
        .await
        .map_err(|e| match status_of(&e) {
            Some(404) => e.context(format!(
                "template {template_name:?} not found in organization {org_name:?}"
            )),
            _ => e.context(format!("template {template_name:?}")),
        })?;
    let version_id = match args.template_version.as_deref().filter(|v| !v.is_empty()) {
        Some(version) => {
            let template_id = template["id"].as_str().unwrap_or_default();
            let v = client
                .get(&format!(
                    "/templates/{template_id}/versions/{}",
                    segment(version)
                ))
                .await
                .with_context(|| format!("version {version:?} of template {template_name:?}"))?;
            v["id"].as_str().unwrap_or_default().to_string()
        }
        None => template["active_version_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };

    let presets = parse_presets(
        &client
            .get(&format!("/templateversions/{version_id}/presets"))
            .await
            .context("list the version's presets")?,
    );
    let preset = choose_preset(&presets, args.preset.as_deref())?;
    if let Some(p) = &preset {
        if args.preset.is_none() {
            eprintln!("Using the template's default preset {:?}.", p.name);
        }
        for (param, _) in &requested {
            if let Some(fixed) = p.parameters.get(param) {
                eprintln!(
                    "warning: preset {:?} sets parameter {param:?} to {fixed:?}; the --parameter value is ignored",
                    p.name
                );
            }
        }
    }

    let mut body = json!({
        "template_version_id": version_id,
        "name": name,
        "rich_parameter_values": requested
            .iter()
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect::<Vec<_>>(),
    });
    if let Some(p) = &preset {
        body["template_version_preset_id"] = json!(p.id);
    }
    let workspace = client
        .post(
            &format!(
                "/organizations/{org_id}/members/{}/workspaces",
                segment(&owner)
            ),
            &body,
        )
        .await
        .context("create workspace")?;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&workspace)?);
        return Ok(());
    }
    let field = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let preset_text = preset
        .as_ref()
        .map(|p| format!(", preset {}", p.name))
        .unwrap_or_default();
    println!(
        "Workspace {:?} created for {} (template {template_name}{preset_text}) — status {}",
        field(&workspace["name"]),
        field(&workspace["owner_name"]),
        field(&workspace["latest_build"]["status"]),
    );
    println!("ID: {}", field(&workspace["id"]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presets() -> Vec<Preset> {
        parse_presets(&json!([
            {"ID": "a", "Name": "small", "Default": false, "Parameters": [{"Name": "size", "Value": "1"}]},
            {"ID": "b", "Name": "big", "Default": true, "Parameters": null},
        ]))
    }

    #[test]
    fn presets_parse_from_go_field_names_and_null() {
        let p = presets();
        assert_eq!(p[0].parameters.get("size").map(String::as_str), Some("1"));
        assert!(p[1].default && p[1].parameters.is_empty());
        assert!(parse_presets(&Value::Null).is_empty());
    }

    #[test]
    fn preset_choice_follows_coder() {
        let p = presets();
        assert_eq!(choose_preset(&p, None).unwrap().unwrap().id, "b");
        assert_eq!(choose_preset(&p, Some("small")).unwrap().unwrap().id, "a");
        assert_eq!(choose_preset(&p, Some("none")).unwrap(), None);
        let err = choose_preset(&p, Some("huge")).unwrap_err().to_string();
        assert!(err.contains("small, big"), "{err}");
        assert_eq!(choose_preset(&[], None).unwrap(), None);
        assert!(choose_preset(&[], Some("x")).is_err());
    }

    #[test]
    fn parameters_and_names_parse() {
        let got = parse_parameters(&["a=1".into(), "b=x=y".into(), "a=2".into()]).unwrap();
        assert_eq!(
            got,
            vec![("b".into(), "x=y".into()), ("a".into(), "2".into())]
        );
        assert!(parse_parameters(&["novalue".into()]).is_err());
        assert!(parse_parameters(&["=v".into()]).is_err());
        assert_eq!(
            split_name("dev", "me").unwrap(),
            ("me".into(), "dev".into())
        );
        assert_eq!(
            split_name("bob/dev", "me").unwrap(),
            ("bob".into(), "dev".into())
        );
        assert!(split_name("a/b/c", "me").is_err());
    }
}
