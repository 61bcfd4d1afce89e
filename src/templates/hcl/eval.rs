//! Build-time evaluation: the kept expressions against one build's context.
//!
//! Locals, data sources and resources may refer to each other, so they are evaluated in
//! dependency order (a cycle is an error). Attributes a real provider would compute (an image's
//! `image_id`, a module's outputs) are unknown here: they evaluate to the placeholder text
//! `<address>.<attribute>` and `id` to the instance address (e.g. `docker_container.main[0]`),
//! unless [`EvalContext::computed`] supplies them. Placeholders are stable across builds, so
//! they never show up as changes between two builds.

use std::collections::{BTreeMap, BTreeSet};

use hcl::eval::{Context, Evaluate};
use hcl::{Map, Value};
use serde::Serialize;

use super::error::EvalError;
use super::expr::{value_to_coder_string, Expr, Refs};
use super::functions;
use super::model::*;
use super::parse::path_object;

/// `data.coder_workspace.<n>` at build time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceCtx {
    pub id: String,
    pub name: String,
    /// 1 for a `start` transition, 0 otherwise (templates use it as `count`).
    pub start_count: i64,
    /// `start`, `stop` or `delete`.
    pub transition: String,
    pub access_url: String,
    pub access_port: i64,
    pub template_id: String,
    pub template_name: String,
    pub template_version: String,
    pub is_prebuild: bool,
    pub prebuild_count: i64,
}

/// `data.coder_workspace_owner.<n>` at build time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnerCtx {
    pub id: String,
    pub name: String,
    pub full_name: String,
    pub email: String,
    pub groups: Vec<String>,
    pub ssh_public_key: String,
    pub session_token: String,
    pub oidc_access_token: String,
    pub login_type: String,
    /// Role names; exposed as `[{name, org_id = ""}]` like the provider's `rbac_roles`.
    pub rbac_roles: Vec<String>,
}

/// `data.coder_provisioner.<n>`: where the build runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionerCtx {
    pub id: String,
    pub os: String,
    pub arch: String,
}

/// What `coder_agent.<n>` exposes to expressions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentCtx {
    pub token: String,
    pub id: String,
    pub init_script: String,
}

/// Everything one build knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalContext {
    pub workspace: WorkspaceCtx,
    pub owner: OwnerCtx,
    pub provisioner: ProvisionerCtx,
    /// Parameter values by parameter **name** (the `name` attribute), in Coder's encoding.
    /// Parameters not given take their default.
    pub parameters: BTreeMap<String, String>,
    /// By agent label (`resource "coder_agent" "<label>"`).
    pub agents: BTreeMap<String, AgentCtx>,
    /// Template variable values by name, as strings (Coder's `user_variable_values`); a
    /// variable not given takes its default.
    pub variables: BTreeMap<String, String>,
    /// Known computed attributes by resource address (`docker_image.main`), overriding the
    /// placeholders.
    pub computed: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

/// An agent with its expressions evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluatedAgent {
    pub name: String,
    /// `type.name` of the resource the agent runs in, if known.
    pub resource: Option<String>,
    pub os: String,
    pub arch: String,
    pub dir: Option<String>,
    pub startup_script: Option<String>,
    pub startup_script_behavior: String,
    pub env: BTreeMap<String, String>,
    pub metadata: Vec<EvaluatedMetadata>,
    /// Enabled display apps, in the API's spelling.
    pub display_apps: Vec<String>,
    pub connection_timeout: i32,
    pub startup_script_timeout: i32,
    pub ignore_changes: Vec<String>,
}

/// A metadata item with its script evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluatedMetadata {
    pub key: String,
    pub display_name: String,
    pub script: String,
    pub interval: i64,
    pub timeout: i64,
}

/// An app with its expressions evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvaluatedApp {
    pub name: String,
    pub agent: String,
    pub slug: String,
    pub display_name: Option<String>,
    pub url: Option<String>,
    pub command: Option<String>,
    pub icon: Option<String>,
    pub share: String,
    pub subdomain: bool,
    pub external: bool,
    pub hidden: bool,
}

/// Which instance of a resource with `count` or `for_each`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum InstanceKey {
    Index(i64),
    Key(String),
}

/// One instance of a managed resource, with its attributes evaluated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvaluatedResource {
    pub resource_type: String,
    pub name: String,
    /// Terraform's instance address, e.g. `null_resource.home` or `docker_volume.v[0]`.
    pub address: String,
    pub key: Option<InstanceKey>,
    /// Number of instances of this resource in this build (1 without count/for_each).
    pub count: usize,
    /// Attributes; nested blocks appear as lists of objects under their block type.
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub ignore_changes: Vec<String>,
}

impl EvaluatedResource {
    /// Attributes that differ from `previous`, outside `ignore_changes` (`all` ignores every
    /// attribute); what a claim's re-evaluation reports as replacements.
    pub fn changed_attributes(&self, previous: &EvaluatedResource) -> Vec<String> {
        if self.ignore_changes.iter().any(|i| i == "all") {
            return Vec::new();
        }
        let keys: BTreeSet<&String> = self
            .attributes
            .keys()
            .chain(previous.attributes.keys())
            .collect();
        keys.into_iter()
            .filter(|k| !self.ignore_changes.contains(k))
            .filter(|k| self.attributes.get(*k) != previous.attributes.get(*k))
            .cloned()
            .collect()
    }
}

/// Everything a build produces from a template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluated {
    pub agents: Vec<EvaluatedAgent>,
    pub apps: Vec<EvaluatedApp>,
    /// Managed resources only (data sources are read, not created), instances with count 0
    /// omitted.
    pub resources: Vec<EvaluatedResource>,
}

/// Evaluates agents, apps and resources for one build.
pub fn evaluate(model: &TemplateModel, ctx: &EvalContext) -> Result<Evaluated, EvalError> {
    let mut ev = Evaluator::new(model, ctx)?;
    let resources = ev.evaluate_nodes()?;
    let agents = ev.evaluate_agents()?;
    let apps = ev.evaluate_apps()?;
    Ok(Evaluated {
        agents,
        apps,
        resources,
    })
}

/// The agents of one build (startup script, env, dir, … evaluated).
pub fn evaluate_agents(
    model: &TemplateModel,
    ctx: &EvalContext,
) -> Result<Vec<EvaluatedAgent>, EvalError> {
    evaluate(model, ctx).map(|e| e.agents)
}

/// The apps of one build.
pub fn evaluate_apps(
    model: &TemplateModel,
    ctx: &EvalContext,
) -> Result<Vec<EvaluatedApp>, EvalError> {
    evaluate(model, ctx).map(|e| e.apps)
}

/// The managed resource instances of one build.
pub fn evaluate_resources(
    model: &TemplateModel,
    ctx: &EvalContext,
) -> Result<Vec<EvaluatedResource>, EvalError> {
    evaluate(model, ctx).map(|e| e.resources)
}

/// A local value or a resource/data source, the things that depend on each other.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Local(usize),
    Data(usize),
    Resource(usize),
}

struct Evaluator<'m> {
    model: &'m TemplateModel,
    ctx: &'m EvalContext,
    hcl: Context<'static>,
    /// Top-level names (`data`, `local`, resource types, …) and their current objects.
    roots: BTreeMap<String, Value>,
    /// Roots changed since they were last declared in `hcl`.
    dirty: BTreeSet<String>,
}

fn obj<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

fn insert_path(root: &mut Value, path: &[&str], value: Value) {
    let Value::Object(map) = root else {
        return;
    };
    match path {
        [] => {}
        [last] => {
            map.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let child = map
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            insert_path(child, rest, value);
        }
    }
}

fn json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

impl<'m> Evaluator<'m> {
    fn new(model: &'m TemplateModel, ctx: &'m EvalContext) -> Result<Self, EvalError> {
        let mut hcl = Context::new();
        functions::declare(&mut hcl);
        let mut ev = Evaluator {
            model,
            ctx,
            hcl,
            roots: BTreeMap::new(),
            dirty: BTreeSet::new(),
        };
        ev.roots.insert("data".to_owned(), ev.static_data());
        ev.roots.insert("var".to_owned(), ev.variables()?);
        ev.roots
            .insert("local".to_owned(), Value::Object(Map::new()));
        ev.roots.insert("path".to_owned(), path_object());
        ev.roots.insert(
            "terraform".to_owned(),
            obj([("workspace", Value::from("default"))]),
        );
        let mut agents = Map::new();
        for (name, agent) in &ctx.agents {
            agents.insert(
                name.clone(),
                obj([
                    ("token", Value::from(agent.token.as_str())),
                    ("id", Value::from(agent.id.as_str())),
                    ("init_script", Value::from(agent.init_script.as_str())),
                ]),
            );
        }
        ev.roots
            .insert("coder_agent".to_owned(), Value::Object(agents));
        let mut modules = Map::new();
        for module in &model.modules {
            let outputs = module
                .referenced_outputs
                .iter()
                .map(|o| {
                    (
                        o.clone(),
                        Value::from(format!("module.{}.{o}", module.name)),
                    )
                })
                .collect();
            modules.insert(module.name.clone(), Value::Object(outputs));
        }
        ev.roots.insert("module".to_owned(), Value::Object(modules));
        for resource in &model.resources {
            ev.roots
                .entry(resource.resource_type.clone())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        ev.dirty = ev.roots.keys().cloned().collect();
        Ok(ev)
    }

    /// The server-provided data sources and the parameters/presets.
    fn static_data(&self) -> Value {
        let (w, o, p) = (&self.ctx.workspace, &self.ctx.owner, &self.ctx.provisioner);
        let workspace = obj([
            ("id", Value::from(w.id.as_str())),
            ("name", Value::from(w.name.as_str())),
            ("start_count", Value::from(w.start_count)),
            ("transition", Value::from(w.transition.as_str())),
            ("access_url", Value::from(w.access_url.as_str())),
            ("access_port", Value::from(w.access_port)),
            ("template_id", Value::from(w.template_id.as_str())),
            ("template_name", Value::from(w.template_name.as_str())),
            ("template_version", Value::from(w.template_version.as_str())),
            ("is_prebuild", Value::from(w.is_prebuild)),
            ("prebuild_count", Value::from(w.prebuild_count)),
        ]);
        let roles = Value::Array(
            o.rbac_roles
                .iter()
                .map(|r| {
                    obj([
                        ("name", Value::from(r.as_str())),
                        ("org_id", Value::from("")),
                    ])
                })
                .collect(),
        );
        let owner = obj([
            ("id", Value::from(o.id.as_str())),
            ("name", Value::from(o.name.as_str())),
            ("full_name", Value::from(o.full_name.as_str())),
            ("email", Value::from(o.email.as_str())),
            ("groups", strings(&o.groups)),
            ("ssh_public_key", Value::from(o.ssh_public_key.as_str())),
            ("session_token", Value::from(o.session_token.as_str())),
            (
                "oidc_access_token",
                Value::from(o.oidc_access_token.as_str()),
            ),
            ("login_type", Value::from(o.login_type.as_str())),
            ("rbac_roles", roles),
        ]);
        let provisioner = obj([
            ("id", Value::from(p.id.as_str())),
            ("os", Value::from(p.os.as_str())),
            ("arch", Value::from(p.arch.as_str())),
        ]);
        let mut data = Value::Object(Map::new());
        let mut provided: Vec<(&str, &str)> = vec![
            ("coder_workspace", "me"),
            ("coder_workspace_owner", "me"),
            ("coder_provisioner", "me"),
        ];
        provided.extend(
            self.model
                .provided_data
                .iter()
                .map(|(t, n)| (t.as_str(), n.as_str())),
        );
        for (t, n) in provided {
            let value = match t {
                "coder_workspace" => workspace.clone(),
                "coder_workspace_owner" => owner.clone(),
                _ => provisioner.clone(),
            };
            insert_path(&mut data, &[t, n], value);
        }
        for param in &self.model.parameters {
            let value = self
                .ctx
                .parameters
                .get(&param.name)
                .cloned()
                .unwrap_or_else(|| param.default_value.clone());
            let default = if param.required {
                Value::Null
            } else {
                Value::from(param.default_value.as_str())
            };
            let object = obj([
                ("id", Value::from(param.name.as_str())),
                ("name", Value::from(param.name.as_str())),
                ("value", Value::from(value)),
                ("default", default),
                ("type", Value::from(param.param_type.as_str())),
                ("display_name", Value::from(param.display_name.as_str())),
                ("description", Value::from(param.description.as_str())),
                ("icon", Value::from(param.icon.as_str())),
                ("mutable", Value::from(param.mutable)),
                ("ephemeral", Value::from(param.ephemeral)),
                ("optional", Value::from(!param.required)),
                ("order", Value::from(param.order)),
            ]);
            insert_path(&mut data, &["coder_parameter", &param.label], object);
        }
        for preset in &self.model.presets {
            let parameters = preset
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect();
            let object = obj([
                ("id", Value::from(preset.name.as_str())),
                ("name", Value::from(preset.name.as_str())),
                ("description", Value::from(preset.description.as_str())),
                ("icon", Value::from(preset.icon.as_str())),
                ("default", Value::from(preset.default)),
                ("parameters", Value::Object(parameters)),
            ]);
            insert_path(
                &mut data,
                &["coder_workspace_preset", &preset.label],
                object,
            );
        }
        data
    }

    /// `var.*`: given values converted to the declared type, else defaults.
    fn variables(&self) -> Result<Value, EvalError> {
        let plain = {
            let mut c = Context::new();
            functions::declare(&mut c);
            c
        };
        let mut vars = Map::new();
        for var in &self.model.variables {
            let value = match self.ctx.variables.get(&var.name) {
                Some(given) => convert_variable(&var.var_type, given),
                None => match &var.default {
                    Some(default) => default
                        .eval_expression()
                        .evaluate(&plain)
                        .map_err(|e| expression_error(&var.block, "default", e.to_string()))?,
                    None => {
                        return Err(EvalError::MissingContext(format!(
                            "variable \"{}\" has no default and no value was given",
                            var.name
                        )))
                    }
                },
            };
            vars.insert(var.name.clone(), value);
        }
        Ok(Value::Object(vars))
    }

    /// Declares the roots `refs` uses that changed since they were last declared.
    fn flush(&mut self, roots: &BTreeSet<String>) {
        for root in roots {
            if self.dirty.remove(root) {
                if let Some(value) = self.roots.get(root) {
                    self.hcl.declare_var(root.as_str(), value.clone());
                }
            }
        }
    }

    fn eval(&self, expr: &Expr, at: &BlockRef, attribute: &str) -> Result<Value, EvalError> {
        expr.eval_expression().evaluate(&self.hcl).map_err(|e| {
            // A missing agent context is the caller's mistake; say so plainly.
            let mut refs = Refs::default();
            refs.collect(expr.expression(), &[]);
            let missing = refs.references.iter().find_map(|r| {
                let agent = r.attr(0).filter(|_| r.root == "coder_agent")?;
                (!self.ctx.agents.contains_key(agent)).then(|| agent.to_owned())
            });
            match missing {
                Some(agent) => EvalError::MissingContext(format!(
                    "{}: {}: {attribute}: no AgentCtx given for coder_agent \"{agent}\"",
                    at.file, at.header
                )),
                None => expression_error(at, attribute, e.to_string()),
            }
        })
    }

    fn eval_string(
        &self,
        expr: &Expr,
        at: &BlockRef,
        attribute: &str,
    ) -> Result<String, EvalError> {
        match self.eval(expr, at, attribute)? {
            v @ (Value::Array(_) | Value::Object(_)) => Err(expression_error(
                at,
                attribute,
                format!("expected a string, got {}", value_to_coder_string(&v)),
            )),
            v => Ok(value_to_coder_string(&v)),
        }
    }

    fn nodes(&self) -> Vec<Node> {
        let m = self.model;
        (0..m.locals.len())
            .map(Node::Local)
            .chain((0..m.data_sources.len()).map(Node::Data))
            .chain((0..m.resources.len()).map(Node::Resource))
            .collect()
    }

    fn node_exprs(&self, node: &Node) -> Vec<&'m Expr> {
        match node {
            Node::Local(i) => vec![&self.model.locals[*i].value],
            Node::Data(i) => resource_exprs(&self.model.data_sources[*i]),
            Node::Resource(i) => resource_exprs(&self.model.resources[*i]),
        }
    }

    fn node_name(&self, node: &Node) -> String {
        match node {
            Node::Local(i) => format!("local.{}", self.model.locals[*i].name),
            Node::Data(i) => self.model.data_sources[*i].address(),
            Node::Resource(i) => self.model.resources[*i].address(),
        }
    }

    /// The nodes `node` refers to, and the root names its expressions use.
    fn dependencies(
        &self,
        exprs: &[&Expr],
        bound: &[String],
    ) -> (BTreeSet<Node>, BTreeSet<String>) {
        let mut refs = Refs::default();
        for expr in exprs {
            refs.collect(expr.expression(), bound);
        }
        let mut nodes = BTreeSet::new();
        let mut roots = BTreeSet::new();
        let m = self.model;
        for r in &refs.references {
            roots.insert(r.root.clone());
            let found = match (r.root.as_str(), r.attr(0), r.attr(1)) {
                ("local", Some(n), _) => m.locals.iter().position(|l| l.name == n).map(Node::Local),
                ("data", Some(t), Some(n)) => m
                    .data_sources
                    .iter()
                    .position(|d| d.resource_type == t && d.name == n)
                    .map(Node::Data),
                (root, Some(n), _) => m
                    .resources
                    .iter()
                    .position(|res| res.resource_type == root && res.name == n)
                    .map(Node::Resource),
                _ => None,
            };
            nodes.extend(found);
        }
        (nodes, roots)
    }

    /// Evaluates locals, data sources and resources in dependency order; returns the managed
    /// resource instances in declaration order.
    fn evaluate_nodes(&mut self) -> Result<Vec<EvaluatedResource>, EvalError> {
        let nodes = self.nodes();
        let mut info: BTreeMap<Node, (BTreeSet<Node>, BTreeSet<String>)> = BTreeMap::new();
        for node in &nodes {
            let exprs = self.node_exprs(node);
            // Iterator names are bound inside resources; they never name other nodes.
            info.insert(node.clone(), self.dependencies(&exprs, &[]));
        }
        let order = topological(&nodes, &info, |n| self.node_name(n))?;
        let mut instances: BTreeMap<usize, Vec<EvaluatedResource>> = BTreeMap::new();
        for node in order {
            let roots = info.get(&node).map(|i| i.1.clone()).unwrap_or_default();
            self.flush(&roots);
            match node {
                Node::Local(i) => {
                    let local = &self.model.locals[i];
                    let value = self.eval(&local.value, &local.block, &local.name)?;
                    if let Some(Value::Object(map)) = self.roots.get_mut("local") {
                        map.insert(local.name.clone(), value);
                    }
                    self.dirty.insert("local".to_owned());
                }
                Node::Data(i) => {
                    let resource = &self.model.data_sources[i];
                    let (value, _) = self.evaluate_resource(resource)?;
                    if let Some(data) = self.roots.get_mut("data") {
                        insert_path(data, &[&resource.resource_type, &resource.name], value);
                    }
                    self.dirty.insert("data".to_owned());
                }
                Node::Resource(i) => {
                    let resource = &self.model.resources[i];
                    let (value, evaluated) = self.evaluate_resource(resource)?;
                    if let Some(root) = self.roots.get_mut(&resource.resource_type) {
                        insert_path(root, &[&resource.name], value);
                    }
                    self.dirty.insert(resource.resource_type.clone());
                    instances.insert(i, evaluated);
                }
            }
        }
        Ok(instances.into_values().flatten().collect())
    }

    /// Evaluates every instance of `resource`; returns the value references see (object, list
    /// for `count`, map for `for_each`) and the instances.
    fn evaluate_resource(
        &mut self,
        resource: &Resource,
    ) -> Result<(Value, Vec<EvaluatedResource>), EvalError> {
        let at = &resource.block;
        let keys: Option<Vec<(InstanceKey, Value)>> = if let Some(count) = &resource.count {
            let n = count_value(self.eval(count, at, "count")?, at)?;
            Some(
                (0..n)
                    .map(|i| (InstanceKey::Index(i), Value::Null))
                    .collect(),
            )
        } else if let Some(for_each) = &resource.for_each {
            Some(for_each_entries(self.eval(for_each, at, "for_each")?, at)?)
        } else {
            None
        };
        let base = resource.address();
        let Some(keys) = keys else {
            let attrs = self.evaluate_body(&resource.attributes, &resource.blocks, at, "")?;
            let value = self.reference_value(resource, &base, &attrs);
            let evaluated = self.evaluated(resource, &base, None, 1, attrs);
            return Ok((value, vec![evaluated]));
        };
        let total = keys.len();
        let mut list = Vec::new();
        let mut map = Map::new();
        let mut out = Vec::new();
        for (key, each_value) in keys {
            let address = match &key {
                InstanceKey::Index(i) => {
                    self.hcl
                        .declare_var("count", obj([("index", Value::from(*i))]));
                    format!("{base}[{i}]")
                }
                InstanceKey::Key(k) => {
                    self.hcl.declare_var(
                        "each",
                        obj([("key", Value::from(k.as_str())), ("value", each_value)]),
                    );
                    format!("{base}[{k:?}]")
                }
            };
            let attrs = self.evaluate_body(&resource.attributes, &resource.blocks, at, "")?;
            let value = self.reference_value(resource, &address, &attrs);
            match &key {
                InstanceKey::Index(_) => list.push(value),
                InstanceKey::Key(k) => {
                    map.insert(k.clone(), value);
                }
            }
            out.push(self.evaluated(resource, &address, Some(key), total, attrs));
        }
        let value = if resource.count.is_some() {
            Value::Array(list)
        } else {
            Value::Object(map)
        };
        Ok((value, out))
    }

    fn evaluated(
        &self,
        resource: &Resource,
        address: &str,
        key: Option<InstanceKey>,
        count: usize,
        attrs: Map<String, Value>,
    ) -> EvaluatedResource {
        EvaluatedResource {
            resource_type: resource.resource_type.clone(),
            name: resource.name.clone(),
            address: address.to_owned(),
            key,
            count,
            attributes: attrs.iter().map(|(k, v)| (k.clone(), json(v))).collect(),
            ignore_changes: resource.ignore_changes.clone(),
        }
    }

    /// What `type.name` resolves to: the evaluated attributes, then known computed values,
    /// then placeholders for the computed attributes others reference and for `id`.
    fn reference_value(
        &self,
        resource: &Resource,
        address: &str,
        attrs: &Map<String, Value>,
    ) -> Value {
        let mut value = attrs.clone();
        let computed = self
            .ctx
            .computed
            .get(address)
            .or_else(|| self.ctx.computed.get(&resource.address()));
        if let Some(computed) = computed {
            for (k, v) in computed {
                if let Ok(v) = hcl::to_value(v) {
                    value.insert(k.clone(), v);
                }
            }
        }
        value
            .entry("id".to_owned())
            .or_insert_with(|| Value::from(address));
        for attr in &resource.referenced_attributes {
            value
                .entry(attr.clone())
                .or_insert_with(|| Value::from(format!("{address}.{attr}")));
        }
        Value::Object(value)
    }

    fn evaluate_body(
        &mut self,
        attributes: &BTreeMap<String, Expr>,
        blocks: &[NestedBlock],
        at: &BlockRef,
        prefix: &str,
    ) -> Result<Map<String, Value>, EvalError> {
        let mut out = Map::new();
        for (key, expr) in attributes {
            out.insert(key.clone(), self.eval(expr, at, &format!("{prefix}{key}"))?);
        }
        for block in blocks {
            let path = format!("{prefix}{}.", block.block_type);
            let mut generated = Vec::new();
            match &block.dynamic {
                None => {
                    generated.push(Value::Object(self.evaluate_body(
                        &block.attributes,
                        &block.blocks,
                        at,
                        &path,
                    )?));
                }
                Some(dynamic) => {
                    let items = self.eval(&dynamic.for_each, at, &format!("{path}for_each"))?;
                    let entries: Vec<(Value, Value)> = match items {
                        Value::Array(items) => items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::from(i), v))
                            .collect(),
                        Value::Object(map) => {
                            map.into_iter().map(|(k, v)| (Value::from(k), v)).collect()
                        }
                        Value::Null => Vec::new(),
                        other => {
                            return Err(expression_error(
                                at,
                                &format!("{path}for_each"),
                                format!(
                                    "expected a list or map, got {}",
                                    value_to_coder_string(&other)
                                ),
                            ))
                        }
                    };
                    for (key, value) in entries {
                        self.hcl.declare_var(
                            dynamic.iterator.as_str(),
                            obj([("key", key), ("value", value)]),
                        );
                        generated.push(Value::Object(self.evaluate_body(
                            &block.attributes,
                            &block.blocks,
                            at,
                            &path,
                        )?));
                    }
                    // The iterator may have shadowed a root; declare it again before next use.
                    self.dirty.insert(dynamic.iterator.clone());
                }
            }
            let entry = out
                .entry(block.block_type.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                list.extend(generated);
            }
        }
        Ok(out)
    }

    /// The number of instances of an agent or app (`count`), which Coder allows to be 0 or 1.
    fn instances(
        &mut self,
        count: Option<&Expr>,
        at: &BlockRef,
        name: &str,
    ) -> Result<bool, EvalError> {
        let Some(count) = count else {
            return Ok(true);
        };
        let roots = self.dependencies(&[count], &[]).1;
        self.flush(&roots);
        let n = count_value(self.eval(count, at, "count")?, at)?;
        if n > 1 {
            return Err(expression_error(
                at,
                "count",
                format!("{name} would exist {n} times; names must be unique"),
            ));
        }
        self.hcl
            .declare_var("count", obj([("index", Value::from(0))]));
        Ok(n == 1)
    }

    fn prepare(&mut self, exprs: &[&Expr]) {
        let roots = self.dependencies(exprs, &[]).1;
        self.flush(&roots);
    }

    fn evaluate_agents(&mut self) -> Result<Vec<EvaluatedAgent>, EvalError> {
        let mut out = Vec::new();
        for agent in &self.model.agents {
            let at = &agent.block;
            if !self.instances(
                agent.count.as_ref(),
                at,
                &format!("coder_agent.{}", agent.name),
            )? {
                continue;
            }
            let mut exprs = vec![&agent.os, &agent.arch];
            exprs.extend(agent.dir.iter());
            exprs.extend(agent.startup_script.iter());
            exprs.extend(agent.env.iter());
            exprs.extend(agent.metadata.iter().map(|m| &m.script));
            self.prepare(&exprs);
            let env = match &agent.env {
                None => BTreeMap::new(),
                Some(expr) => match self.eval(expr, at, "env")? {
                    Value::Object(map) => map
                        .iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), value_to_coder_string(v)))
                        .collect(),
                    Value::Null => BTreeMap::new(),
                    other => {
                        return Err(expression_error(
                            at,
                            "env",
                            format!("expected a map, got {}", value_to_coder_string(&other)),
                        ))
                    }
                },
            };
            let mut metadata = Vec::new();
            for item in &agent.metadata {
                metadata.push(EvaluatedMetadata {
                    key: item.key.clone(),
                    display_name: item.display_name.clone(),
                    script: self.eval_string(&item.script, at, "metadata.script")?,
                    interval: item.interval,
                    timeout: item.timeout,
                });
            }
            out.push(EvaluatedAgent {
                name: agent.name.clone(),
                resource: agent.resource.clone(),
                os: self.eval_string(&agent.os, at, "os")?,
                arch: self.eval_string(&agent.arch, at, "arch")?,
                dir: self.optional_string(agent.dir.as_ref(), at, "dir")?,
                startup_script: self.optional_string(
                    agent.startup_script.as_ref(),
                    at,
                    "startup_script",
                )?,
                startup_script_behavior: agent.startup_script_behavior.clone(),
                env,
                metadata,
                display_apps: agent
                    .display_apps
                    .enabled()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                connection_timeout: agent.connection_timeout,
                startup_script_timeout: agent.startup_script_timeout,
                ignore_changes: agent.ignore_changes.clone(),
            });
        }
        Ok(out)
    }

    fn optional_string(
        &self,
        expr: Option<&Expr>,
        at: &BlockRef,
        attribute: &str,
    ) -> Result<Option<String>, EvalError> {
        match expr {
            None => Ok(None),
            Some(expr) => match self.eval(expr, at, attribute)? {
                Value::Null => Ok(None),
                _ => self.eval_string(expr, at, attribute).map(Some),
            },
        }
    }

    fn evaluate_apps(&mut self) -> Result<Vec<EvaluatedApp>, EvalError> {
        let mut out = Vec::new();
        for app in &self.model.apps {
            let at = &app.block;
            if !self.instances(app.count.as_ref(), at, &format!("coder_app.{}", app.name))? {
                continue;
            }
            let exprs: Vec<&Expr> = [&app.display_name, &app.url, &app.command, &app.icon]
                .into_iter()
                .flatten()
                .collect();
            self.prepare(&exprs);
            out.push(EvaluatedApp {
                name: app.name.clone(),
                agent: app.agent.clone(),
                slug: app.slug.clone(),
                display_name: self.optional_string(
                    app.display_name.as_ref(),
                    at,
                    "display_name",
                )?,
                url: self.optional_string(app.url.as_ref(), at, "url")?,
                command: self.optional_string(app.command.as_ref(), at, "command")?,
                icon: self.optional_string(app.icon.as_ref(), at, "icon")?,
                share: app.share.clone(),
                subdomain: app.subdomain,
                external: app.external,
                hidden: app.hidden,
            });
        }
        Ok(out)
    }
}

fn expression_error(at: &BlockRef, attribute: &str, message: String) -> EvalError {
    EvalError::Expression {
        file: at.file.clone(),
        block: at.header.clone(),
        attribute: attribute.to_owned(),
        message,
    }
}

fn resource_exprs(resource: &Resource) -> Vec<&Expr> {
    fn nested<'a>(blocks: &'a [NestedBlock], out: &mut Vec<&'a Expr>) {
        for block in blocks {
            out.extend(block.attributes.values());
            if let Some(dynamic) = &block.dynamic {
                out.push(&dynamic.for_each);
            }
            nested(&block.blocks, out);
        }
    }
    let mut out: Vec<&Expr> = resource
        .count
        .iter()
        .chain(resource.for_each.iter())
        .collect();
    out.extend(resource.attributes.values());
    nested(&resource.blocks, &mut out);
    out
}

/// Depth-first order so every node comes after what it uses; declaration order otherwise.
fn topological(
    nodes: &[Node],
    info: &BTreeMap<Node, (BTreeSet<Node>, BTreeSet<String>)>,
    name: impl Fn(&Node) -> String,
) -> Result<Vec<Node>, EvalError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Active,
        Done,
    }
    let mut state: BTreeMap<&Node, State> = nodes.iter().map(|n| (n, State::New)).collect();
    let mut order = Vec::new();
    // Explicit stack: deep chains of locals must not overflow the thread's stack.
    for start in nodes {
        if state.get(start) != Some(&State::New) {
            continue;
        }
        let mut stack: Vec<(&Node, Vec<&Node>)> = Vec::new();
        state.insert(start, State::Active);
        stack.push((start, deps_of(info, start)));
        while let Some((node, pending)) = stack.last_mut() {
            match pending.pop() {
                Some(dep) => match state.get(dep).copied() {
                    Some(State::New) => {
                        state.insert(dep, State::Active);
                        let deps = deps_of(info, dep);
                        stack.push((dep, deps));
                    }
                    Some(State::Active) => {
                        let mut cycle: Vec<String> = stack.iter().map(|(n, _)| name(n)).collect();
                        cycle.push(name(dep));
                        return Err(EvalError::Cycle(cycle.join(" -> ")));
                    }
                    _ => {}
                },
                None => {
                    let node = *node;
                    state.insert(node, State::Done);
                    order.push(node.clone());
                    stack.pop();
                }
            }
        }
    }
    Ok(order)
}

fn deps_of<'a>(
    info: &'a BTreeMap<Node, (BTreeSet<Node>, BTreeSet<String>)>,
    node: &Node,
) -> Vec<&'a Node> {
    // Reversed so that popping visits dependencies in declaration order.
    info.get(node)
        .map(|(deps, _)| deps.iter().rev().collect())
        .unwrap_or_default()
}

fn count_value(value: Value, at: &BlockRef) -> Result<i64, EvalError> {
    let n = match &value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    };
    match n {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(expression_error(
            at,
            "count",
            format!(
                "count must be a whole number >= 0, got {}",
                value_to_coder_string(&value)
            ),
        )),
    }
}

fn for_each_entries(value: Value, at: &BlockRef) -> Result<Vec<(InstanceKey, Value)>, EvalError> {
    match value {
        Value::Object(map) => Ok(map
            .into_iter()
            .map(|(k, v)| (InstanceKey::Key(k), v))
            .collect()),
        // A set of strings: each.key and each.value are both the element.
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => Ok((InstanceKey::Key(s.clone()), Value::from(s))),
                other => Err(expression_error(
                    at,
                    "for_each",
                    format!(
                        "for_each over a list needs strings, got {}",
                        value_to_coder_string(&other)
                    ),
                )),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(expression_error(
            at,
            "for_each",
            format!(
                "expected a map or set of strings, got {}",
                value_to_coder_string(&other)
            ),
        )),
    }
}

/// A variable value given as text, typed like the declaration says.
fn convert_variable(var_type: &str, given: &str) -> Value {
    let typ = var_type.trim();
    match typ {
        "number" => given
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| given.trim().parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(given)),
        "bool" => match given {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::from(given),
        },
        "string" | "" => Value::from(given),
        // Complex types arrive JSON-encoded, as Terraform's -var does with HCL syntax.
        _ => serde_json::from_str::<serde_json::Value>(given)
            .ok()
            .and_then(|j| hcl::to_value(j).ok())
            .unwrap_or_else(|| Value::from(given)),
    }
}
