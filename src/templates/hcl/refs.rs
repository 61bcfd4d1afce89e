//! The import-time reference check: every name an expression uses must be declared or
//! provided by the server, and every function must be one the evaluator has.

use std::collections::{BTreeMap, BTreeSet};

use hcl::edit::structure::Body as EBody;

use super::error::ImportError;
use super::expr::{Reference, Refs};
use super::functions::SUPPORTED_FUNCTIONS;
use super::parse::{Kind, RawBlock, BUILTIN_DATA};

/// Attributes of `data.coder_workspace.<n>` the evaluation context provides.
pub(crate) const WORKSPACE_ATTRS: &[&str] = &[
    "access_port",
    "access_url",
    "id",
    "is_prebuild",
    "name",
    "prebuild_count",
    "start_count",
    "template_id",
    "template_name",
    "template_version",
    "transition",
];
/// Attributes of `data.coder_workspace_owner.<n>`.
pub(crate) const OWNER_ATTRS: &[&str] = &[
    "email",
    "full_name",
    "groups",
    "id",
    "login_type",
    "name",
    "oidc_access_token",
    "rbac_roles",
    "session_token",
    "ssh_public_key",
];
/// Attributes of `data.coder_provisioner.<n>`.
pub(crate) const PROVISIONER_ATTRS: &[&str] = &["arch", "id", "os"];
/// Attributes of `data.coder_parameter.<n>`.
pub(crate) const PARAMETER_ATTRS: &[&str] = &[
    "default",
    "description",
    "display_name",
    "ephemeral",
    "icon",
    "id",
    "mutable",
    "name",
    "optional",
    "order",
    "type",
    "value",
];
/// Attributes of `data.coder_workspace_preset.<n>`.
pub(crate) const PRESET_ATTRS: &[&str] =
    &["default", "description", "icon", "id", "name", "parameters"];
/// Attributes of `coder_agent.<n>` (only what a build knows; see the module docs).
pub(crate) const AGENT_ATTRS: &[&str] = &["id", "init_script", "token"];

fn builtin_attrs(data_type: &str) -> &'static [&'static str] {
    match data_type {
        "coder_workspace" => WORKSPACE_ATTRS,
        "coder_workspace_owner" => OWNER_ATTRS,
        _ => PROVISIONER_ATTRS,
    }
}

/// Everything a template declares, by the names references use.
#[derive(Debug, Default)]
pub(crate) struct Declarations {
    parameters: BTreeSet<String>,
    presets: BTreeSet<String>,
    builtin: BTreeMap<String, BTreeSet<String>>,
    agents: BTreeSet<String>,
    managed: BTreeMap<String, BTreeSet<String>>,
    data: BTreeMap<String, BTreeSet<String>>,
    locals: BTreeSet<String>,
    variables: BTreeSet<String>,
    modules: BTreeSet<String>,
}

impl Declarations {
    pub fn new(blocks: &[RawBlock<'_>]) -> Self {
        let mut d = Declarations::default();
        for raw in blocks {
            let (t, n) = (raw.label(0).to_owned(), raw.label(1).to_owned());
            match raw.kind {
                Kind::Parameter => {
                    d.parameters.insert(n);
                }
                Kind::Preset => {
                    d.presets.insert(n);
                }
                Kind::BuiltinData => {
                    d.builtin.entry(t).or_default().insert(n);
                }
                Kind::Agent => {
                    d.agents.insert(n);
                }
                Kind::App | Kind::Resource => {
                    d.managed.entry(t).or_default().insert(n);
                }
                Kind::Data => {
                    d.data.entry(t).or_default().insert(n);
                }
                Kind::Variable => {
                    d.variables.insert(t);
                }
                Kind::Locals => d
                    .locals
                    .extend(raw.body().attributes().map(|a| a.key.as_str().to_owned())),
                Kind::Module => {
                    d.modules.insert(t);
                }
                Kind::Other => {}
            }
        }
        d
    }

    /// Why `reference` is not acceptable, or `None` when it is.
    fn problem(&self, reference: &Reference) -> Option<String> {
        let name = reference.attr(0);
        let missing = |what: String| Some(format!("no {what} is declared"));
        match reference.root.as_str() {
            "data" => {
                let (Some(t), Some(n)) = (name, reference.attr(1)) else {
                    return Some("expected data.<type>.<name>".to_owned());
                };
                let attr = reference.attr_after_index(2);
                let check_attr = |known: &[&str], what: &str| {
                    attr.filter(|a| !known.contains(a)).map(|a| {
                        format!(
                            "{what} has no attribute \"{a}\" (available: {})",
                            known.join(", ")
                        )
                    })
                };
                if BUILTIN_DATA.contains(&t) {
                    let declared = self.builtin.get(t).is_some_and(|s| s.contains(n));
                    if !declared && n != "me" {
                        return missing(format!("data \"{t}\" \"{n}\""));
                    }
                    return check_attr(builtin_attrs(t), t);
                }
                match t {
                    "coder_parameter" if !self.parameters.contains(n) => {
                        missing(format!("data \"coder_parameter\" \"{n}\""))
                    }
                    "coder_parameter" => check_attr(PARAMETER_ATTRS, t),
                    "coder_workspace_preset" if !self.presets.contains(n) => {
                        missing(format!("data \"coder_workspace_preset\" \"{n}\""))
                    }
                    "coder_workspace_preset" => check_attr(PRESET_ATTRS, t),
                    _ if self.data.get(t).is_some_and(|s| s.contains(n)) => None,
                    _ => missing(format!("data \"{t}\" \"{n}\"")),
                }
            }
            "local" => match name {
                Some(n) if self.locals.contains(n) => None,
                Some(n) => missing(format!("local value \"{n}\"")),
                None => Some("expected local.<name>".to_owned()),
            },
            "var" => match name {
                Some(n) if self.variables.contains(n) => None,
                Some(n) => missing(format!("variable \"{n}\"")),
                None => Some("expected var.<name>".to_owned()),
            },
            "module" => match name {
                Some(n) if self.modules.contains(n) => None,
                Some(n) => missing(format!("module \"{n}\"")),
                None => Some("expected module.<name>".to_owned()),
            },
            "coder_agent" => match name {
                Some(n) if self.agents.contains(n) => reference
                    .attr_after_index(1)
                    .filter(|a| !AGENT_ATTRS.contains(a))
                    .map(|a| {
                        format!(
                            "coder_agent has no attribute \"{a}\" available to expressions (available: {})",
                            AGENT_ATTRS.join(", ")
                        )
                    }),
                Some(n) => missing(format!("resource \"coder_agent\" \"{n}\"")),
                None => Some("expected coder_agent.<name>".to_owned()),
            },
            "count" => Some("count.index is only available in blocks that set count".to_owned()),
            "each" => Some("each is only available in blocks that set for_each".to_owned()),
            // Terraform's own objects, and `self` in provisioner-like contexts.
            "path" | "terraform" | "self" => None,
            root => match name {
                Some(n) if self.managed.get(root).is_some_and(|s| s.contains(n)) => None,
                Some(n) => missing(format!("resource \"{root}\" \"{n}\"")),
                None => Some(format!("\"{root}\" is not a known name")),
            },
        }
    }
}

/// What the reference check learned that the model needs.
#[derive(Debug, Default)]
pub(crate) struct RefIndex {
    /// Per managed resource address (`type.name`, declaration order): agents it references.
    pub agent_users: Vec<(String, BTreeSet<String>)>,
    /// Per address (`type.name`, `data.type.name`, `module.name`): attributes referenced.
    pub referenced: BTreeMap<String, BTreeSet<String>>,
    /// (block header, attribute path) already reported, so evaluating them at import does not
    /// report the same problem again.
    pub bad_attributes: BTreeSet<(String, String)>,
}

/// Checks every expression of the blocks the server reads (everything but `terraform`,
/// `provider`, `output` and `variable` blocks), reporting each bad reference once per
/// attribute.
pub(crate) fn check(
    blocks: &[RawBlock<'_>],
    decls: &Declarations,
    errors: &mut Vec<ImportError>,
) -> RefIndex {
    let mut index = RefIndex::default();
    for raw in blocks {
        if matches!(raw.kind, Kind::Other | Kind::Variable) {
            continue;
        }
        let mut bound = Vec::new();
        if raw.body().get_attribute("count").is_some() {
            bound.push("count".to_owned());
        }
        if raw.body().get_attribute("for_each").is_some() {
            bound.push("each".to_owned());
        }
        let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
        let mut agents_used = BTreeSet::new();
        let mut visit = |path: &str, expr: &hcl::Expression, bound: &[String]| {
            let mut refs = Refs::default();
            refs.collect(expr, bound);
            for function in &refs.functions {
                if SUPPORTED_FUNCTIONS.contains(&function.as_str()) {
                    continue;
                }
                index
                    .bad_attributes
                    .insert((raw.at.header.clone(), path.to_owned()));
                if reported.insert((path.to_owned(), format!("fn {function}"))) {
                    errors.push(ImportError::new(
                        &raw.at.file,
                        Some(raw.at.line),
                        &raw.at.header,
                        format!("attribute \"{path}\": function \"{function}\" is not supported by this server"),
                    ));
                }
            }
            for reference in &refs.references {
                if reference.root == "coder_agent" {
                    if let Some(agent) = reference.attr(0) {
                        agents_used.insert(agent.to_owned());
                    }
                    // An app's agent_id has its own, clearer check.
                    if raw.kind == Kind::App && path == "agent_id" {
                        continue;
                    }
                }
                if let Some(problem) = decls.problem(reference) {
                    index
                        .bad_attributes
                        .insert((raw.at.header.clone(), path.to_owned()));
                    if reported.insert((path.to_owned(), reference.display())) {
                        errors.push(ImportError::new(
                            &raw.at.file,
                            Some(raw.at.line),
                            &raw.at.header,
                            format!(
                                "attribute \"{path}\": unknown reference {}: {problem}",
                                reference.display()
                            ),
                        ));
                    }
                    continue;
                }
                note_referenced_attribute(&mut index.referenced, reference);
            }
        };
        walk_body(raw.body(), "", &mut bound, &mut visit);
        if raw.kind == Kind::Resource {
            index
                .agent_users
                .push((format!("{}.{}", raw.label(0), raw.label(1)), agents_used));
        }
    }
    index
}

/// Records `attr` of `type.name[...].attr`, `data.type.name.attr` and `module.name.attr`.
fn note_referenced_attribute(out: &mut BTreeMap<String, BTreeSet<String>>, reference: &Reference) {
    let (address, attr) = match reference.root.as_str() {
        "data" => match (reference.attr(0), reference.attr(1)) {
            (Some(t), Some(n)) => (format!("data.{t}.{n}"), reference.attr_after_index(2)),
            _ => return,
        },
        "module" => match reference.attr(0) {
            Some(n) => (format!("module.{n}"), reference.attr(1)),
            None => return,
        },
        "local" | "var" | "path" | "terraform" | "self" | "count" | "each" | "coder_agent" => {
            return
        }
        root => match reference.attr(0) {
            Some(n) => (format!("{root}.{n}"), reference.attr_after_index(1)),
            None => return,
        },
    };
    if let Some(attr) = attr {
        out.entry(address).or_default().insert(attr.to_owned());
    }
}

/// Calls `visit(path, expression, bound names)` for every attribute in `body` and its nested
/// blocks. `dynamic` blocks bind their iterator inside `content`; `lifecycle`, `provisioner`
/// and `connection` blocks configure Terraform and are skipped.
pub(crate) fn walk_body(
    body: &EBody,
    prefix: &str,
    bound: &mut Vec<String>,
    visit: &mut dyn FnMut(&str, &hcl::Expression, &[String]),
) {
    for attr in body.attributes() {
        let expr: hcl::Expression = attr.value.clone().into();
        visit(&format!("{prefix}{}", attr.key.as_str()), &expr, bound);
    }
    for block in body.blocks() {
        let ident = block.ident.as_str();
        match ident {
            "lifecycle" | "provisioner" | "connection" => {}
            "dynamic" => {
                let label = block.labels.first().map_or("", |l| l.as_str());
                let path = format!("{prefix}{label}.");
                let iterator = block
                    .body
                    .get_attribute("iterator")
                    .and_then(|a| a.value.as_variable().map(|v| v.as_str().to_owned()))
                    .unwrap_or_else(|| label.to_owned());
                if let Some(for_each) = block.body.get_attribute("for_each") {
                    let expr: hcl::Expression = for_each.value.clone().into();
                    visit(&format!("{path}for_each"), &expr, bound);
                }
                bound.push(iterator);
                for content in block.body.get_blocks("content") {
                    walk_body(&content.body, &path, bound, visit);
                }
                bound.pop();
            }
            _ => walk_body(&block.body, &format!("{prefix}{ident}."), bound, visit),
        }
    }
}
