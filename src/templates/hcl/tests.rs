//! Tests over the example templates (`examples/templates`) and hand-written snippets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/templates")
}

/// The `.tf` files (and others, to show they are ignored) of one example directory.
fn load(dir: &Path) -> Vec<SourceFile> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.push(SourceFile::new(
                path.file_name().unwrap().to_str().unwrap(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    files
}

fn parse_example(name: &str) -> TemplateModel {
    let files = load(&examples_dir().join(name));
    match parse_template(&files, &ImportOptions::default()) {
        Ok(model) => model,
        Err(errors) => panic!("{name} should parse:\n{errors}"),
    }
}

fn parse_src(src: &str) -> Result<TemplateModel, ImportErrors> {
    parse_template(
        &[SourceFile::new("main.tf", src)],
        &ImportOptions::default(),
    )
}

fn only_error(src: &str) -> ImportError {
    let errors = parse_src(src).expect_err("should fail");
    assert_eq!(errors.len(), 1, "expected one error, got:\n{errors}");
    errors.0[0].clone()
}

fn ctx() -> EvalContext {
    EvalContext {
        workspace: WorkspaceCtx {
            id: "0b4a6ec4-7b9c-4a0e-9d8e-1f8c2b7d4e11".to_owned(),
            name: "dev1".to_owned(),
            start_count: 1,
            transition: "start".to_owned(),
            access_url: "http://127.0.0.1:3000".to_owned(),
            ..Default::default()
        },
        owner: OwnerCtx {
            id: "7c1e2a8b-3f7e-4bb5-9a52-0d3f6f1c2a90".to_owned(),
            name: "alice".to_owned(),
            email: "alice@example.com".to_owned(),
            full_name: "Alice".to_owned(),
            ..Default::default()
        },
        parameters: BTreeMap::from([("greeting".to_owned(), "hey".to_owned())]),
        agents: BTreeMap::from([(
            "main".to_owned(),
            AgentCtx {
                token: "secret-token".to_owned(),
                id: "agent-id".to_owned(),
                init_script: "#!/bin/sh".to_owned(),
            },
        )]),
        ..Default::default()
    }
}

#[test]
fn local_shell_parameters() {
    let model = parse_example("local-shell");
    let greeting = Parameter {
        block: BlockRef {
            file: "main.tf".to_owned(),
            line: 13,
            header: "data \"coder_parameter\" \"greeting\"".to_owned(),
        },
        label: "greeting".to_owned(),
        name: "greeting".to_owned(),
        display_name: "Greeting".to_owned(),
        description: "What the startup script writes to ~/greeting.txt.".to_owned(),
        param_type: ParameterType::String,
        form_type: String::new(),
        default_value: "hello".to_owned(),
        required: false,
        mutable: true,
        ephemeral: false,
        order: 1,
        icon: String::new(),
        options: Vec::new(),
        validation: None,
    };
    let size = Parameter {
        block: BlockRef {
            file: "main.tf".to_owned(),
            line: 23,
            header: "data \"coder_parameter\" \"size\"".to_owned(),
        },
        label: "size".to_owned(),
        name: "size".to_owned(),
        display_name: "Size".to_owned(),
        description: "A number the startup script records (1-8).".to_owned(),
        param_type: ParameterType::Number,
        form_type: String::new(),
        default_value: "1".to_owned(),
        required: false,
        mutable: false,
        ephemeral: false,
        order: 2,
        icon: String::new(),
        options: Vec::new(),
        validation: Some(ParameterValidation {
            min: Some(1),
            max: Some(8),
            regex: None,
            error: String::new(),
            monotonic: None,
        }),
    };
    assert_eq!(model.parameters, vec![greeting, size]);
    assert_eq!(
        model.provided_data,
        vec![
            ("coder_workspace".to_owned(), "me".to_owned()),
            ("coder_workspace_owner".to_owned(), "me".to_owned()),
        ]
    );
}

#[test]
fn local_shell_presets() {
    let model = parse_example("local-shell");
    assert_eq!(model.presets.len(), 2);

    let small = &model.presets[0];
    assert_eq!(small.label, "small");
    assert_eq!(small.name, "small");
    assert_eq!(small.description, "A small workspace, built on demand.");
    assert_eq!(small.icon, "");
    assert!(!small.default);
    // Map form, one key written as `(data.coder_parameter.greeting.name)`.
    assert_eq!(
        small.parameters,
        vec![
            ("greeting".to_owned(), "hi".to_owned()),
            ("size".to_owned(), "1".to_owned())
        ]
    );
    assert_eq!(small.prebuilds, None);

    let prebuilt = &model.presets[1];
    assert_eq!(prebuilt.name, "prebuilt");
    assert!(prebuilt.default);
    // Block form.
    assert_eq!(
        prebuilt.parameters,
        vec![
            ("greeting".to_owned(), "hello".to_owned()),
            ("size".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(
        prebuilt.prebuilds,
        Some(PrebuildSettings {
            instances: 2,
            ttl_seconds: Some(86400),
            scheduling: Some(PrebuildScheduling {
                timezone: "UTC".to_owned(),
                schedules: vec![("* 8-18 * * 1-5".to_owned(), 3)],
            }),
        })
    );
    assert_eq!(
        model.default_preset().map(|p| p.name.as_str()),
        Some("prebuilt")
    );
}

#[test]
fn local_shell_agents_apps_resources() {
    let model = parse_example("local-shell");
    assert_eq!(model.agents.len(), 1);
    let agent = &model.agents[0];
    assert_eq!(agent.name, "main");
    assert_eq!(agent.os.literal_string().as_deref(), Some("linux"));
    assert_eq!(agent.arch.literal_string().as_deref(), Some("amd64"));
    assert_eq!(agent.startup_script_behavior, "non-blocking");
    assert_eq!(agent.connection_timeout, 120);
    assert_eq!(agent.startup_script_timeout, 300);
    assert_eq!(agent.resource.as_deref(), Some("null_resource.home"));
    let script = agent.startup_script.as_ref().unwrap();
    assert!(!script.is_literal());
    assert!(script.source().starts_with("<<-EOT"), "{}", script.source());
    assert!(script
        .source()
        .contains("${data.coder_parameter.greeting.value} ${data.coder_workspace_owner.me.name}"));
    assert_eq!(agent.metadata.len(), 1);
    assert_eq!(agent.metadata[0].key, "greeting");
    assert_eq!(agent.metadata[0].display_name, "Greeting file");
    assert_eq!(agent.metadata[0].interval, 10);
    assert_eq!(agent.metadata[0].timeout, 1);
    assert_eq!(
        agent.display_apps.enabled(),
        vec![
            "vscode",
            "web_terminal",
            "port_forwarding_helper",
            "ssh_helper"
        ]
    );

    assert_eq!(model.apps.len(), 1);
    let app = &model.apps[0];
    assert_eq!(
        (app.agent.as_str(), app.slug.as_str()),
        ("main", "greeting")
    );
    assert_eq!(app.share, "owner");

    assert_eq!(model.resources.len(), 1);
    let home = &model.resources[0];
    assert_eq!(home.address(), "null_resource.home");
    assert_eq!(
        home.count.as_ref().unwrap().source(),
        "data.coder_workspace.me.start_count"
    );
    assert_eq!(home.ignore_changes, vec!["triggers"]);
    assert_eq!(home.depends_on, vec!["coder_agent.main"]);
    assert_eq!(home.attributes.keys().collect::<Vec<_>>(), vec!["triggers"]);
    assert_eq!(model.locals.len(), 1);
}

#[test]
fn broken_examples_fail_with_their_expected_message() {
    let mut checked = 0;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("broken-"))
        })
        .collect();
    dirs.sort();
    for dir in dirs {
        let main = std::fs::read_to_string(dir.join("main.tf")).unwrap();
        let mut header = main.lines();
        let expect = header
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{dir:?}: first line must be `# expect: …`"));
        let block = header.next().and_then(|l| l.strip_prefix("# block: "));
        let errors = match parse_template(&load(&dir), &ImportOptions::default()) {
            Ok(_) => panic!("{dir:?} parsed but should fail with {expect:?}"),
            Err(errors) => errors,
        };
        // "Otherwise valid": the rule under test is the only problem.
        assert_eq!(
            errors.len(),
            1,
            "{dir:?}: expected one error, got:\n{errors}"
        );
        let err = &errors.0[0];
        assert!(
            err.message.contains(expect),
            "{dir:?}: {err} does not contain {expect:?}"
        );
        assert_eq!(err.file, "main.tf");
        assert!(err.to_string().starts_with("main.tf: "), "{err}");
        if let Some(block) = block {
            assert_eq!(err.block, block, "{dir:?}");
            assert!(err.to_string().starts_with(&format!("main.tf: {block}: ")));
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} broken examples found");
}

#[test]
fn local_shell_startup_script_evaluates() {
    let model = parse_example("local-shell");
    let agents = evaluate_agents(&model, &ctx()).unwrap();
    assert_eq!(agents.len(), 1);
    let agent = &agents[0];
    assert_eq!(
        agent.startup_script.as_deref(),
        Some(
            "set -e\n\
             echo \"hey alice\" > \"$HOME/greeting.txt\"\n\
             echo \"workspace=dev1 size=1\" > \"$HOME/workspace.txt\"\n"
        )
    );
    assert_eq!(agent.os, "linux");
    assert_eq!(agent.dir.as_deref(), Some("$HOME"));
    assert_eq!(
        agent.env,
        BTreeMap::from([
            ("GREETING".to_owned(), "hey".to_owned()),
            ("WORKSPACE_NAME".to_owned(), "dev1".to_owned()),
        ])
    );
    assert_eq!(agent.metadata[0].script, "cat \"$HOME/greeting.txt\"");
    assert_eq!(agent.resource.as_deref(), Some("null_resource.home"));

    let apps = evaluate_apps(&model, &ctx()).unwrap();
    assert_eq!(
        apps[0].command.as_deref(),
        Some("cat \"$HOME/greeting.txt\"")
    );
    assert_eq!(apps[0].icon.as_deref(), Some("/icon/terminal.svg"));
}

#[test]
fn local_shell_resources_evaluate_with_ignore_changes() {
    let model = parse_example("local-shell");
    let resources = evaluate_resources(&model, &ctx()).unwrap();
    assert_eq!(resources.len(), 1);
    let home = &resources[0];
    assert_eq!(home.resource_type, "null_resource");
    assert_eq!(home.address, "null_resource.home[0]");
    assert_eq!(home.key, Some(InstanceKey::Index(0)));
    assert_eq!(home.count, 1);
    assert_eq!(
        home.attributes.get("triggers"),
        Some(&serde_json::json!({"owner": "alice", "workspace": "dev1"}))
    );
    assert_eq!(home.ignore_changes, vec!["triggers"]);

    // A claim re-evaluates with the new owner: the change is inside ignore_changes.
    let mut claimed = ctx();
    claimed.owner.name = "bob".to_owned();
    let after = evaluate_resources(&model, &claimed).unwrap();
    assert_ne!(after[0].attributes, home.attributes);
    assert!(after[0].changed_attributes(home).is_empty());

    // A stop build has start_count 0: the resource is omitted.
    let mut stop = ctx();
    stop.workspace.start_count = 0;
    stop.workspace.transition = "stop".to_owned();
    assert!(evaluate_resources(&model, &stop).unwrap().is_empty());
}

const PARAMS: &str = r#"
data "coder_parameter" "region" {
  name    = "region"
  default = "eu"
  option {
    name  = "EU"
    value = "eu"
  }
  option {
    name  = "US"
    value = "us"
  }
}
data "coder_parameter" "cpus" {
  name = "cpus"
  type = "number"
}
"#;

#[test]
fn preset_parameters_map_and_block_forms() {
    let src = format!(
        r#"{PARAMS}
locals {{
  region_param = data.coder_parameter.region.name
}}
data "coder_workspace_preset" "map" {{
  name = "map"
  parameters = {{
    (local.region_param) = "us"
    cpus                 = 4
  }}
}}
data "coder_workspace_preset" "block" {{
  name = "block"
  parameters {{
    region = "us"
    cpus   = "4"
  }}
}}
data "coder_workspace_preset" "blocks" {{
  name = "blocks"
  parameter {{
    name  = "region"
    value = "us"
  }}
  parameter {{
    name  = "cpus"
    value = 4
  }}
}}
"#
    );
    let model = parse_src(&src).unwrap();
    let expected = vec![
        ("cpus".to_owned(), "4".to_owned()),
        ("region".to_owned(), "us".to_owned()),
    ];
    for preset in &model.presets {
        assert_eq!(preset.parameters, expected, "{}", preset.name);
    }
    assert_eq!(model.presets.len(), 3);

    let twice = format!(
        r#"{PARAMS}
data "coder_workspace_preset" "p" {{
  name       = "p"
  parameters = {{ cpus = 2 }}
  parameters {{
    cpus = 3
  }}
}}
"#
    );
    let err = only_error(&twice);
    assert!(
        err.message
            .contains("preset parameter \"cpus\" is set more than once"),
        "{err}"
    );
}

#[test]
fn list_parameters_use_json_encoding() {
    let model = parse_src(
        r#"
data "coder_parameter" "repos" {
  name      = "repos"
  type      = "list(string)"
  default   = jsonencode(["a", "b"])
  form_type = "multi-select"
  option {
    name  = "A"
    value = "a"
  }
  option {
    name  = "B"
    value = "b"
  }
  option {
    name  = "C"
    value = "c"
  }
}
data "coder_workspace_preset" "p" {
  name       = "p"
  parameters = { repos = ["c"] }
}
"#,
    )
    .unwrap();
    assert_eq!(model.parameters[0].default_value, r#"["a","b"]"#);
    assert_eq!(model.presets[0].parameters[0].1, r#"["c"]"#);
    let err = validate_parameter_value(&model.parameters[0], r#"["a","z"]"#, None).unwrap_err();
    assert!(err.contains("missing from the options"), "{err}");
}

#[test]
fn parameter_value_validation_follows_the_provider() {
    let model = parse_src(
        r#"
data "coder_parameter" "disk" {
  name    = "disk"
  type    = "number"
  default = 10
  mutable = true
  validation {
    min       = 10
    max       = 100
    monotonic = "increasing"
    error     = "between {min} and {max}, got {value}"
  }
}
"#,
    )
    .unwrap();
    let disk = &model.parameters[0];
    assert_eq!(validate_parameter_value(disk, "20", Some("10")), Ok(()));
    assert_eq!(
        validate_parameter_value(disk, "5", None),
        Err("between 10 and 100, got 5".to_owned())
    );
    assert!(validate_parameter_value(disk, "15", Some("20"))
        .unwrap_err()
        .contains("must be equal or greater than previous value: 20"));
}

#[test]
fn ttl_rules_and_short_ttl_option() {
    let src = r#"
data "coder_workspace_preset" "p" {
  name = "p"
  prebuilds {
    instances = 1
    expiration_policy {
      ttl = 120
    }
  }
}
"#;
    assert!(only_error(src).message.contains("got 120"));
    let opts = ImportOptions {
        allow_short_prebuild_ttl: true,
    };
    let model = parse_template(&[SourceFile::new("main.tf", src)], &opts).unwrap();
    assert_eq!(
        model.presets[0].prebuilds.as_ref().unwrap().ttl_seconds,
        Some(120)
    );
    assert_eq!(check_ttl(0, false), Ok(()));
    assert_eq!(check_ttl(3600, false), Ok(()));
    assert_eq!(check_ttl(31_536_000, false), Ok(()));
    assert!(check_ttl(31_536_001, false).is_err());
    assert!(check_ttl(-1, true).is_err());
}

#[test]
fn errors_are_collected_across_files_in_order() {
    let files = [
        SourceFile::new(
            "b.tf",
            r#"
data "coder_workspace_preset" "one" {
  name = "same"
  default = true
}
"#,
        ),
        SourceFile::new(
            "a.tf",
            r#"
data "coder_workspace_preset" "two" {
  name    = "same"
  default = true
  prebuilds {
    instances = -2
  }
}
resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
  dir  = local.nowhere
}
"#,
        ),
        SourceFile::new("README.md", "not terraform {"),
        SourceFile::new("modules/x/main.tf", "not terraform {"),
    ];
    let errors = parse_template(&files, &ImportOptions::default()).unwrap_err();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "a.tf: data \"coder_workspace_preset\" \"two\": prebuilds instances must be >= 0, got -2",
            "a.tf: resource \"coder_agent\" \"main\": attribute \"dir\": unknown reference local.nowhere: no local value \"nowhere\" is declared",
            "b.tf: data \"coder_workspace_preset\" \"one\": preset name \"same\" is already used by data \"coder_workspace_preset\" \"two\" (a.tf:2)",
            "b.tf: data \"coder_workspace_preset\" \"one\": only one preset can be marked default = true, data \"coder_workspace_preset\" \"two\" (a.tf:2) is too",
        ]
    );
    assert_eq!(errors.0[0].line, Some(2));
}

#[test]
fn syntax_errors_name_line_and_column() {
    let err = only_error("resource \"x\" \"y\" {\n  a = \n}\n");
    assert_eq!(err.file, "main.tf");
    assert_eq!(err.line, Some(2));
    assert!(
        err.message
            .starts_with("syntax error at line 2, column 7: "),
        "{err}"
    );
}

#[test]
fn references_to_resources_and_computed_attributes() {
    let src = r#"
resource "coder_agent" "dev" {
  os   = "linux"
  arch = "amd64"
}
resource "docker_image" "main" {
  name = "codercom/enterprise-base:ubuntu"
}
resource "docker_container" "workspace" {
  count = data.coder_workspace.me.start_count
  image = docker_image.main.image_id
  name  = "coder-${data.coder_workspace_owner.me.name}-${lower(data.coder_workspace.me.name)}"
  env   = ["CODER_AGENT_TOKEN=${coder_agent.dev.token}"]
  dynamic "volumes" {
    for_each = ["/home", "/data"]
    content {
      container_path = volumes.value
    }
  }
}
resource "other_thing" "x" {
  ref = docker_container.workspace[0].id
}
"#;
    let model = parse_src(src).unwrap();
    assert_eq!(
        model.agents[0].resource.as_deref(),
        Some("docker_container.workspace")
    );
    let image = &model.resources[0];
    assert_eq!(
        image.referenced_attributes.iter().collect::<Vec<_>>(),
        vec!["image_id"]
    );

    let mut c = ctx();
    c.agents = BTreeMap::from([(
        "dev".to_owned(),
        AgentCtx {
            token: "t0k".to_owned(),
            ..Default::default()
        },
    )]);
    c.workspace.name = "Dev1".to_owned();
    let resources = evaluate_resources(&model, &c).unwrap();
    let container = resources
        .iter()
        .find(|r| r.resource_type == "docker_container")
        .unwrap();
    assert_eq!(
        container.attributes["image"],
        serde_json::json!("docker_image.main.image_id")
    );
    assert_eq!(
        container.attributes["name"],
        serde_json::json!("coder-alice-dev1")
    );
    assert_eq!(
        container.attributes["env"],
        serde_json::json!(["CODER_AGENT_TOKEN=t0k"])
    );
    assert_eq!(
        container.attributes["volumes"],
        serde_json::json!([{"container_path": "/home"}, {"container_path": "/data"}])
    );
    let other = resources
        .iter()
        .find(|r| r.resource_type == "other_thing")
        .unwrap();
    assert_eq!(
        other.attributes["ref"],
        serde_json::json!("docker_container.workspace[0]")
    );

    let err = only_error(
        r#"
resource "other_thing" "x" {
  ref = docker_container.missing.id
}
"#,
    );
    assert!(
        err.message
            .contains("unknown reference docker_container.missing.id: no resource \"docker_container\" \"missing\" is declared"),
        "{err}"
    );
    let err = only_error("resource \"x\" \"y\" {\n  a = data.coder_workspace.me.nmae\n}\n");
    assert!(
        err.message
            .contains("coder_workspace has no attribute \"nmae\""),
        "{err}"
    );
    let err = only_error("resource \"x\" \"y\" {\n  a = count.index\n}\n");
    assert!(
        err.message.contains("count.index is only available"),
        "{err}"
    );
}

#[test]
fn terraform_conversions_for_parameter_values() {
    let src = r#"
data "coder_parameter" "gpu" {
  name    = "gpu"
  type    = "bool"
  default = false
  mutable = true
}
data "coder_parameter" "cpus" {
  name    = "cpus"
  type    = "number"
  default = 2
  mutable = true
}
resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
}
resource "coder_app" "gpu_monitor" {
  count    = data.coder_parameter.gpu.value ? 1 : 0
  agent_id = coder_agent.main.id
  slug     = "nvtop"
}
resource "null_resource" "sized" {
  count    = data.coder_parameter.cpus.value > 3 ? 1 : 0
  triggers = { memory = data.coder_parameter.cpus.value * 1024 }
}
"#;
    let model = parse_src(src).unwrap();
    let mut c = ctx();
    let out = evaluate(&model, &c).unwrap();
    assert!(out.apps.is_empty());
    assert!(out.resources.is_empty());
    c.parameters = BTreeMap::from([
        ("gpu".to_owned(), "true".to_owned()),
        ("cpus".to_owned(), "4".to_owned()),
    ]);
    let out = evaluate(&model, &c).unwrap();
    assert_eq!(out.apps.len(), 1);
    assert_eq!(
        out.resources[0].attributes["triggers"],
        serde_json::json!({"memory": 4096})
    );
}

#[test]
fn variables_and_locals() {
    let src = r#"
variable "image" {
  type        = string
  default     = "ubuntu"
  description = "Base image"
}
variable "replicas" {
  type = number
}
locals {
  tag   = "${var.image}:${local.suffix}"
  suffix = "latest"
}
resource "thing" "t" {
  count = var.replicas
  tag   = local.tag
}
"#;
    let model = parse_src(src).unwrap();
    assert_eq!(model.variables.len(), 2);
    assert_eq!(model.variables[0].default_value, "ubuntu");
    assert_eq!(model.variables[0].var_type, "string");
    assert!(!model.variables[0].required);
    assert!(model.variables[1].required);
    let err = evaluate_resources(&model, &ctx()).unwrap_err();
    assert!(err.to_string().contains("variable \"replicas\""), "{err}");
    let mut c = ctx();
    c.variables.insert("replicas".to_owned(), "2".to_owned());
    let resources = evaluate_resources(&model, &c).unwrap();
    assert_eq!(resources.len(), 2);
    assert_eq!(
        resources[1].attributes["tag"],
        serde_json::json!("ubuntu:latest")
    );

    let cyclic = parse_src("locals {\n  a = local.b\n  b = local.a\n}\n").unwrap();
    assert!(matches!(
        evaluate(&cyclic, &ctx()),
        Err(EvalError::Cycle(_))
    ));
}

#[test]
fn large_template_parses_quickly() {
    let mut src = String::with_capacity(1_100_000);
    src.push_str(
        "data \"coder_parameter\" \"p\" {\n  name = \"p\"\n  default = \"x\"\n}\nresource \"coder_agent\" \"main\" {\n  os = \"linux\"\n  arch = \"amd64\"\n}\n",
    );
    let mut i = 0;
    while src.len() < 1_000_000 {
        src.push_str(&format!(
            "# Resource number {i}: a comment that makes the file bigger, as real templates have.\n\
             resource \"null_resource\" \"r{i}\" {{\n  triggers = {{\n    owner = data.coder_workspace_owner.me.name\n    value = \"${{data.coder_parameter.p.value}}-{i}\"\n    token = coder_agent.main.token\n  }}\n  lifecycle {{\n    ignore_changes = [triggers]\n  }}\n}}\n"
        ));
        i += 1;
    }
    let start = Instant::now();
    let model = parse_src(&src).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(model.resources.len(), i);
    // Unoptimised, hcl-edit alone needs about a second per MB: the crate's Cargo.toml builds
    // hcl-edit, hcl-rs and winnow with opt-level 3 in the dev profile.
    assert!(
        elapsed < Duration::from_secs(1),
        "parsing 1 MB took {elapsed:?}; is [profile.dev.package.hcl-edit] opt-level = 3 set?"
    );
}
