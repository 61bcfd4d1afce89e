//! Reading the blocks of a template into the model.
//!
//! Files are parsed with hcl-rs's editable parser (`hcl::edit`), which keeps byte spans, so
//! errors can name lines and expressions keep their exact source text; each expression is then
//! converted to hcl-rs's `Expression` for evaluation. Attributes that describe the template
//! itself (parameter names, defaults, preset values, prebuild settings, …) are evaluated at
//! import against a static context of variable defaults, locals and parameter names/defaults,
//! like Terraform's plan at import; everything else stays an expression for build time.

use std::collections::{BTreeMap, BTreeSet};

use hcl::edit::structure::{Block as EBlock, Body as EBody, Structure as EStructure};
use hcl::edit::Span;
use hcl::eval::{Context, Evaluate};
use hcl::{Map, Value};

use super::error::ImportError;
use super::expr::{value_to_coder_string, Expr, Refs};
use super::functions;
use super::model::*;

/// Data sources the server provides itself; their blocks carry no configuration.
pub(crate) const BUILTIN_DATA: &[&str] = &[
    "coder_workspace",
    "coder_workspace_owner",
    "coder_provisioner",
];

/// Resource meta-arguments, not attributes of the resource.
const META_ATTRIBUTES: &[&str] = &["count", "for_each", "depends_on", "provider"];
/// Nested blocks that configure Terraform rather than the resource.
const META_BLOCKS: &[&str] = &["lifecycle", "provisioner", "connection"];

/// A parsed file.
pub(crate) struct ParsedFile<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub body: EBody,
    lines: LineIndex,
}

impl ParsedFile<'_> {
    pub fn line_of(&self, span: Option<std::ops::Range<usize>>) -> usize {
        span.map_or(1, |s| self.lines.line(s.start))
    }
}

/// Byte offset → line number, without rescanning the file for every block.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Parses every root-level `*.tf` file, sorted by name. Syntax errors are returned instead.
pub(crate) fn parse_files(files: &[SourceFile]) -> Result<Vec<ParsedFile<'_>>, Vec<ImportError>> {
    let mut selected: Vec<&SourceFile> =
        files.iter().filter(|f| is_root_tf_file(&f.name)).collect();
    selected.sort_by(|a, b| a.name.cmp(&b.name));

    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for file in selected {
        let name = file.name.strip_prefix("./").unwrap_or(&file.name);
        match hcl::edit::parser::parse_body(&file.content) {
            Ok(body) => parsed.push(ParsedFile {
                name,
                source: &file.content,
                body,
                lines: LineIndex::new(&file.content),
            }),
            Err(err) => errors.push(ImportError::new(
                name,
                Some(err.location().line()),
                "",
                format!(
                    "syntax error at line {}, column {}: {}",
                    err.location().line(),
                    err.location().column(),
                    err.message()
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

/// Terraform reads the `.tf` files of the root module only; files in sub-directories belong to
/// local modules, which this server does not evaluate.
fn is_root_tf_file(name: &str) -> bool {
    let name = name.strip_prefix("./").unwrap_or(name);
    name.ends_with(".tf") && !name.contains('/')
}

/// The kind of a top-level block, after looking at its identifier and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Parameter,
    Preset,
    BuiltinData,
    Agent,
    App,
    Resource,
    Data,
    Variable,
    Locals,
    Module,
    Other,
}

/// A top-level block with where it came from.
pub(crate) struct RawBlock<'a> {
    pub file: &'a ParsedFile<'a>,
    pub block: &'a EBlock,
    pub kind: Kind,
    pub at: BlockRef,
}

impl RawBlock<'_> {
    pub fn label(&self, i: usize) -> &str {
        self.block.labels.get(i).map_or("", |l| l.as_str())
    }

    pub fn body(&self) -> &EBody {
        &self.block.body
    }
}

fn header(block: &EBlock) -> String {
    let mut out = block.ident.as_str().to_owned();
    for label in &block.labels {
        out.push_str(&format!(" \"{}\"", label.as_str()));
    }
    out
}

/// Classifies every top-level block of every file, in file order.
pub(crate) fn collect_blocks<'a>(
    files: &'a [ParsedFile<'a>],
    errors: &mut Vec<ImportError>,
) -> Vec<RawBlock<'a>> {
    let mut out = Vec::new();
    for file in files {
        for structure in file.body.iter() {
            let EStructure::Block(block) = structure else {
                continue;
            };
            let at = BlockRef {
                file: file.name.to_owned(),
                line: file.line_of(block.span()),
                header: header(block),
            };
            let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
            let kind = match (block.ident.as_str(), labels.as_slice()) {
                ("data", ["coder_parameter", _]) => Kind::Parameter,
                ("data", ["coder_workspace_preset", _]) => Kind::Preset,
                ("data", [t, _]) if BUILTIN_DATA.contains(t) => Kind::BuiltinData,
                ("data", [_, _]) => Kind::Data,
                ("resource", ["coder_agent", _]) => Kind::Agent,
                ("resource", ["coder_app", _]) => Kind::App,
                ("resource", [_, _]) => Kind::Resource,
                ("variable", [_]) => Kind::Variable,
                ("locals", []) => Kind::Locals,
                ("module", [_]) => Kind::Module,
                ("data" | "resource" | "variable" | "locals" | "module", _) => {
                    errors.push(ImportError::new(
                        &at.file,
                        Some(at.line),
                        &at.header,
                        "wrong number of block labels",
                    ));
                    Kind::Other
                }
                _ => Kind::Other,
            };
            out.push(RawBlock {
                file,
                block,
                kind,
                at,
            });
        }
    }
    out
}

/// Reports blocks (and locals) declared twice; Terraform refuses those.
pub(crate) fn check_duplicates(blocks: &[RawBlock<'_>], errors: &mut Vec<ImportError>) {
    let mut seen: BTreeMap<String, &BlockRef> = BTreeMap::new();
    let mut seen_locals: BTreeMap<String, &BlockRef> = BTreeMap::new();
    for raw in blocks {
        match raw.kind {
            Kind::Other => continue,
            Kind::Locals => {
                for attr in raw.body().attributes() {
                    let name = attr.key.as_str().to_owned();
                    if let Some(first) = seen_locals.get(&name) {
                        errors.push(ImportError::new(
                            &raw.at.file,
                            Some(raw.at.line),
                            &raw.at.header,
                            format!("local value \"{name}\" is already declared in {first}"),
                        ));
                    } else {
                        seen_locals.insert(name, &raw.at);
                    }
                }
            }
            _ => {
                if let Some(first) = seen.get(&raw.at.header) {
                    errors.push(ImportError::new(
                        &raw.at.file,
                        Some(raw.at.line),
                        &raw.at.header,
                        format!("duplicate block: already declared in {first}"),
                    ));
                } else {
                    seen.insert(raw.at.header.clone(), &raw.at);
                }
            }
        }
    }
}

/// Variables, locals and parameters evaluated at import.
pub(crate) struct StaticEnv {
    ctx: Context<'static>,
}

impl StaticEnv {
    fn new(
        vars: &Map<String, Value>,
        locals: &Map<String, Value>,
        params: &Map<String, Value>,
    ) -> Self {
        let mut ctx = Context::new();
        functions::declare(&mut ctx);
        ctx.declare_var("var", Value::Object(vars.clone()));
        ctx.declare_var("local", Value::Object(locals.clone()));
        let mut data = Map::new();
        data.insert("coder_parameter".to_owned(), Value::Object(params.clone()));
        ctx.declare_var("data", Value::Object(data));
        ctx.declare_var("path", path_object());
        StaticEnv { ctx }
    }

    pub fn eval(&self, expr: &Expr) -> Result<Value, String> {
        expr.eval_expression()
            .evaluate(&self.ctx)
            .map_err(|e| e.to_string())
    }
}

/// `path.module`, `path.root`, `path.cwd`: the template's root directory.
pub(crate) fn path_object() -> Value {
    let mut path = Map::new();
    for key in ["module", "root", "cwd"] {
        path.insert(key.to_owned(), Value::from("."));
    }
    Value::Object(path)
}

/// Builds the import-time context. Locals and parameters may refer to each other (a local
/// holding a parameter's name, a default taken from a local), so they are resolved in rounds
/// until nothing new can be evaluated; what stays unknown depends on build-time data.
pub(crate) fn static_env(blocks: &[RawBlock<'_>]) -> StaticEnv {
    let mut vars = Map::new();
    let plain = StaticEnv::new(&Map::new(), &Map::new(), &Map::new());
    for raw in blocks.iter().filter(|b| b.kind == Kind::Variable) {
        if let Some(attr) = raw.body().get_attribute("default") {
            let expr = Expr::from_edit(&attr.value, raw.file.source);
            if let Ok(value) = plain.eval(&expr) {
                vars.insert(raw.label(0).to_owned(), value);
            }
        }
    }

    let locals: Vec<(String, Expr)> = blocks
        .iter()
        .filter(|b| b.kind == Kind::Locals)
        .flat_map(|raw| {
            raw.body().attributes().map(|attr| {
                (
                    attr.key.as_str().to_owned(),
                    Expr::from_edit(&attr.value, raw.file.source),
                )
            })
        })
        .collect();
    // (label, name, default, type) of each parameter.
    type ParamExprs = (String, Option<Expr>, Option<Expr>, Option<Expr>);
    let params: Vec<ParamExprs> = blocks
        .iter()
        .filter(|b| b.kind == Kind::Parameter)
        .map(|raw| {
            let get = |key: &str| {
                raw.body()
                    .get_attribute(key)
                    .map(|a| Expr::from_edit(&a.value, raw.file.source))
            };
            (
                raw.label(1).to_owned(),
                get("name"),
                get("default"),
                get("type"),
            )
        })
        .collect();

    let mut known_locals = Map::new();
    let mut known_params = Map::new();
    let mut complete_params: BTreeSet<String> = BTreeSet::new();
    loop {
        let env = StaticEnv::new(&vars, &known_locals, &known_params);
        let mut progress = false;
        for (name, expr) in &locals {
            if known_locals.contains_key(name) {
                continue;
            }
            if let Ok(value) = env.eval(expr) {
                known_locals.insert(name.clone(), value);
                progress = true;
            }
        }
        for (label, name, default, typ) in &params {
            if complete_params.contains(label) {
                continue;
            }
            let Some(Ok(name)) = name.as_ref().map(|n| env.eval(n)) else {
                continue;
            };
            let default = default.as_ref().map(|d| env.eval(d));
            let complete = !matches!(default, Some(Err(_)));
            let default = match default {
                Some(Ok(v)) if !v.is_null() => Some(v),
                _ => None,
            };
            let typ = typ
                .as_ref()
                .and_then(|t| env.eval(t).ok())
                .unwrap_or_else(|| Value::from("string"));
            let object = parameter_object(&name, default.as_ref(), &typ);
            if known_params.get(label) != Some(&object) {
                known_params.insert(label.clone(), object);
                progress = true;
            }
            if complete {
                complete_params.insert(label.clone());
            }
        }
        if !progress {
            return env;
        }
    }
}

/// What `data.coder_parameter.<label>` holds at import (the value is the default, as in
/// Terraform's plan without user input).
fn parameter_object(name: &Value, default: Option<&Value>, typ: &Value) -> Value {
    let default = default.map(value_to_coder_string);
    let mut obj = Map::new();
    obj.insert("name".to_owned(), name.clone());
    obj.insert(
        "value".to_owned(),
        Value::from(default.clone().unwrap_or_default()),
    );
    obj.insert(
        "default".to_owned(),
        default.clone().map_or(Value::Null, Value::from),
    );
    obj.insert("optional".to_owned(), Value::from(default.is_some()));
    obj.insert("type".to_owned(), typ.clone());
    Value::Object(obj)
}

/// Reads attributes of one block, collecting errors against it.
pub(crate) struct Reader<'a> {
    pub env: &'a StaticEnv,
    /// (block header, attribute path) pairs with reported reference problems.
    pub bad_attributes: &'a BTreeSet<(String, String)>,
    pub source: &'a str,
    pub at: &'a BlockRef,
    pub errors: &'a mut Vec<ImportError>,
}

impl Reader<'_> {
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(ImportError::new(
            &self.at.file,
            Some(self.at.line),
            &self.at.header,
            message,
        ));
    }

    pub fn expr(&self, body: &EBody, key: &str) -> Option<Expr> {
        body.get_attribute(key)
            .map(|attr| Expr::from_edit(&attr.value, self.source))
    }

    /// The statically evaluated value; `None` when absent, null or not evaluable (reported).
    pub fn value(&mut self, body: &EBody, path: &str, key: &str) -> Option<Value> {
        let expr = self.expr(body, key)?;
        match self.env.eval(&expr) {
            Ok(Value::Null) => None,
            Ok(value) => Some(value),
            Err(err) => {
                let attribute = format!("{path}{key}");
                let reported = self.bad_attributes.iter().any(|(h, a)| {
                    *h == self.at.header
                        && (*a == attribute || a.starts_with(&format!("{attribute}.")))
                });
                if !reported {
                    self.error(format!(
                        "attribute \"{attribute}\" cannot be evaluated at import \
                         (only variable defaults, locals and parameter names and defaults are known then): {err}"
                    ));
                }
                None
            }
        }
    }

    pub fn require(&mut self, body: &EBody, path: &str, key: &str) -> bool {
        if body.get_attribute(key).is_some() {
            return true;
        }
        self.error(format!("attribute \"{path}{key}\" is required"));
        false
    }

    pub fn string(&mut self, body: &EBody, path: &str, key: &str) -> Option<String> {
        match self.value(body, path, key)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.error(format!(
                    "attribute \"{path}{key}\": expected a string, got {}",
                    describe(&other)
                ));
                None
            }
        }
    }

    pub fn bool(&mut self, body: &EBody, path: &str, key: &str) -> Option<bool> {
        match self.value(body, path, key)? {
            Value::Bool(b) => Some(b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            other => {
                self.error(format!(
                    "attribute \"{path}{key}\": expected a bool, got {}",
                    describe(&other)
                ));
                None
            }
        }
    }

    pub fn int(&mut self, body: &EBody, path: &str, key: &str) -> Option<i64> {
        let value = self.value(body, path, key)?;
        let parsed = match &value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(format!(
                "attribute \"{path}{key}\": expected a whole number, got {}",
                describe(&value)
            ));
        }
        parsed
    }

    pub fn i32(&mut self, body: &EBody, path: &str, key: &str) -> Option<i32> {
        let n = self.int(body, path, key)?;
        match i32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(format!(
                    "attribute \"{path}{key}\": {n} is out of range for a 32-bit integer"
                ));
                None
            }
        }
    }

    /// The only block `ident` of `body`, reporting a second one.
    pub fn single_block<'b>(
        &mut self,
        body: &'b EBody,
        path: &str,
        ident: &str,
    ) -> Option<&'b EBlock> {
        let mut blocks = body.blocks().filter(|b| b.ident.as_str() == ident);
        let first = blocks.next();
        if blocks.next().is_some() {
            self.error(format!("only one \"{path}{ident}\" block is allowed"));
        }
        first
    }
}

/// A value for messages: strings quoted, others as HCL prints them.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        other => other.to_string(),
    }
}

pub(crate) fn read_parameter(r: &mut Reader<'_>, label: &str, body: &EBody) -> Option<Parameter> {
    reject_repetition(r, body, "coder_parameter");
    let name_given = r.require(body, "", "name");
    let name = r.string(body, "", "name");
    if name_given && name.as_deref() == Some("") {
        r.error("attribute \"name\" must not be empty");
    }
    let type_text = r
        .string(body, "", "type")
        .unwrap_or_else(|| "string".to_owned());
    let param_type = match ParameterType::parse(&type_text) {
        Some(t) => t,
        None => {
            r.error(format!(
                "type \"{type_text}\" is not one of \"string\", \"number\", \"bool\", \"list(string)\""
            ));
            ParameterType::String
        }
    };
    let default = r
        .value(body, "", "default")
        .map(|v| value_to_coder_string(&v));
    let mut options = Vec::new();
    for option in body.get_blocks("option") {
        let ob = &option.body;
        r.require(ob, "option.", "name");
        r.require(ob, "option.", "value");
        options.push(ParameterOption {
            name: r.string(ob, "option.", "name").unwrap_or_default(),
            value: r
                .value(ob, "option.", "value")
                .map(|v| value_to_coder_string(&v))
                .unwrap_or_default(),
            description: r.string(ob, "option.", "description").unwrap_or_default(),
            icon: r.string(ob, "option.", "icon").unwrap_or_default(),
        });
    }
    let validation = r.single_block(body, "", "validation").map(|block| {
        let vb = &block.body;
        ParameterValidation {
            min: r.i32(vb, "validation.", "min"),
            max: r.i32(vb, "validation.", "max"),
            regex: r.string(vb, "validation.", "regex"),
            error: r.string(vb, "validation.", "error").unwrap_or_default(),
            monotonic: r
                .string(vb, "validation.", "monotonic")
                .filter(|m| !m.is_empty()),
        }
    });
    Some(Parameter {
        block: r.at.clone(),
        label: label.to_owned(),
        name: name?,
        display_name: r.string(body, "", "display_name").unwrap_or_default(),
        description: r.string(body, "", "description").unwrap_or_default(),
        param_type,
        form_type: r.string(body, "", "form_type").unwrap_or_default(),
        required: default.is_none(),
        default_value: default.unwrap_or_default(),
        mutable: r.bool(body, "", "mutable").unwrap_or(false),
        ephemeral: r.bool(body, "", "ephemeral").unwrap_or(false),
        order: r.i32(body, "", "order").unwrap_or(0),
        icon: r.string(body, "", "icon").unwrap_or_default(),
        options,
        validation,
    })
}

/// Parameters and presets are read once at import, so `count`/`for_each` on them cannot be
/// honoured; say so rather than silently reading one instance.
fn reject_repetition(r: &mut Reader<'_>, body: &EBody, what: &str) {
    for key in ["count", "for_each"] {
        if body.get_attribute(key).is_some() {
            r.error(format!("\"{key}\" is not supported on {what} blocks"));
        }
    }
}

pub(crate) fn read_preset(r: &mut Reader<'_>, label: &str, body: &EBody) -> Option<Preset> {
    reject_repetition(r, body, "coder_workspace_preset");
    r.require(body, "", "name");
    let name = r.string(body, "", "name");
    if name.as_deref() == Some("") {
        r.error("attribute \"name\" must not be empty");
    }

    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    let mut set = |r: &mut Reader<'_>, key: String, value: String| {
        if parameters.insert(key.clone(), value).is_some() {
            r.error(format!("preset parameter \"{key}\" is set more than once"));
        }
    };
    // Map attribute form: `parameters = { "region" = "eu" }`.
    if let Some(value) = r.value(body, "", "parameters") {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    // A list is accepted and JSON-encoded, Coder's encoding of list(string)
                    // values, although Terraform would want jsonencode() here.
                    match value {
                        Value::Null => {
                            r.error(format!("preset parameter \"{key}\" has a null value"))
                        }
                        v => set(r, key, value_to_coder_string(&v)),
                    }
                }
            }
            other => r.error(format!(
                "attribute \"parameters\": expected a map, got {}",
                describe(&other)
            )),
        }
    }
    // Block forms: `parameters { region = "eu" }` and `parameter { name = "region" value = "eu" }`.
    for block in body.get_blocks("parameters") {
        for attr in block.body.attributes() {
            let key = attr.key.as_str();
            if let Some(v) = r.value(&block.body, "parameters.", key) {
                set(r, key.to_owned(), value_to_coder_string(&v));
            }
        }
    }
    for block in body.get_blocks("parameter") {
        let pb = &block.body;
        let has_name = r.require(pb, "parameter.", "name");
        let has_value = r.require(pb, "parameter.", "value");
        let key = r.string(pb, "parameter.", "name");
        let value = r.value(pb, "parameter.", "value");
        if let (true, true, Some(key), Some(value)) = (has_name, has_value, key, value) {
            set(r, key, value_to_coder_string(&value));
        }
    }

    let prebuilds = r
        .single_block(body, "", "prebuilds")
        .map(|block| read_prebuilds(r, &block.body));
    Some(Preset {
        block: r.at.clone(),
        label: label.to_owned(),
        name: name?,
        description: r.string(body, "", "description").unwrap_or_default(),
        icon: r.string(body, "", "icon").unwrap_or_default(),
        default: r.bool(body, "", "default").unwrap_or(false),
        parameters: parameters.into_iter().collect(),
        prebuilds,
    })
}

fn read_prebuilds(r: &mut Reader<'_>, body: &EBody) -> PrebuildSettings {
    r.require(body, "prebuilds.", "instances");
    let instances = r.i32(body, "prebuilds.", "instances").unwrap_or(0);
    let ttl_seconds = r
        .single_block(body, "prebuilds.", "expiration_policy")
        .and_then(|block| {
            r.require(&block.body, "prebuilds.expiration_policy.", "ttl");
            r.i32(&block.body, "prebuilds.expiration_policy.", "ttl")
        });
    let scheduling = r
        .single_block(body, "prebuilds.", "scheduling")
        .and_then(|block| {
            let sb = &block.body;
            let has_timezone = r.require(sb, "prebuilds.scheduling.", "timezone");
            let timezone = r.string(sb, "prebuilds.scheduling.", "timezone");
            let mut schedules = Vec::new();
            for schedule in sb.get_blocks("schedule") {
                let b = &schedule.body;
                let path = "prebuilds.scheduling.schedule.";
                let has_cron = r.require(b, path, "cron");
                let has_instances = r.require(b, path, "instances");
                let cron = r.string(b, path, "cron");
                let instances = r.i32(b, path, "instances");
                if let (true, true, Some(cron), Some(instances)) =
                    (has_cron, has_instances, cron, instances)
                {
                    schedules.push((cron, instances));
                }
            }
            if sb.get_blocks("schedule").next().is_none() {
                r.error("\"prebuilds.scheduling\" needs at least one \"schedule\" block");
            }
            // Without a timezone the block is already reported; validating its schedules
            // would only repeat that.
            Some(PrebuildScheduling {
                timezone: timezone.filter(|_| has_timezone)?,
                schedules,
            })
        });
    PrebuildSettings {
        instances,
        ttl_seconds,
        scheduling,
    }
}

pub(crate) fn read_agent(r: &mut Reader<'_>, name: &str, body: &EBody) -> Option<Agent> {
    let has_os = r.require(body, "", "os");
    let has_arch = r.require(body, "", "arch");
    let os = r.expr(body, "os");
    let arch = r.expr(body, "arch");
    let mut metadata = Vec::new();
    for block in body.get_blocks("metadata") {
        let mb = &block.body;
        let path = "metadata.";
        r.require(mb, path, "key");
        let has_script = r.require(mb, path, "script");
        r.require(mb, path, "interval");
        let script = r.expr(mb, "script");
        let item = AgentMetadata {
            key: r.string(mb, path, "key").unwrap_or_default(),
            display_name: r.string(mb, path, "display_name").unwrap_or_default(),
            interval: r.int(mb, path, "interval").unwrap_or(0),
            timeout: r.int(mb, path, "timeout").unwrap_or(0),
            script: script.unwrap_or_else(empty_string_expr),
        };
        if has_script {
            metadata.push(item);
        }
    }
    let mut display_apps = DisplayApps::default();
    if let Some(block) = r.single_block(body, "", "display_apps") {
        let b = &block.body;
        let path = "display_apps.";
        let flag = |r: &mut Reader<'_>, key: &str, slot: &mut bool| {
            if let Some(v) = r.bool(b, path, key) {
                *slot = v;
            }
        };
        flag(r, "vscode", &mut display_apps.vscode);
        flag(r, "vscode_insiders", &mut display_apps.vscode_insiders);
        flag(r, "web_terminal", &mut display_apps.web_terminal);
        flag(
            r,
            "port_forwarding_helper",
            &mut display_apps.port_forwarding_helper,
        );
        flag(r, "ssh_helper", &mut display_apps.ssh_helper);
    }
    let startup_script_behavior = r
        .string(body, "", "startup_script_behavior")
        .unwrap_or_else(|| "non-blocking".to_owned());
    let connection_timeout = r.i32(body, "", "connection_timeout").unwrap_or(120);
    let startup_script_timeout = r
        .i32(body, "", "startup_script_timeout")
        .unwrap_or(300)
        .max(0);
    if !(has_os && has_arch) {
        return None;
    }
    Some(Agent {
        block: r.at.clone(),
        name: name.to_owned(),
        os: os?,
        arch: arch?,
        dir: r.expr(body, "dir"),
        startup_script: r.expr(body, "startup_script"),
        startup_script_behavior,
        env: r.expr(body, "env"),
        metadata,
        display_apps,
        connection_timeout,
        startup_script_timeout,
        count: r.expr(body, "count"),
        resource: None,
        ignore_changes: lifecycle_ignore_changes(r, body),
    })
}

fn empty_string_expr() -> Expr {
    Expr::from_expression(hcl::Expression::String(String::new()))
}

pub(crate) fn read_app(r: &mut Reader<'_>, name: &str, body: &EBody) -> Option<App> {
    let has_agent = r.require(body, "", "agent_id");
    let agent = r.expr(body, "agent_id").and_then(|expr| {
        let mut refs = Refs::default();
        refs.collect(expr.expression(), &[]);
        refs.references
            .iter()
            .find(|reference| reference.root == "coder_agent")
            .and_then(|reference| reference.attr(0).map(str::to_owned))
    });
    if has_agent && agent.is_none() {
        r.error("attribute \"agent_id\" does not reference a coder_agent (expected coder_agent.<name>.id)");
    }
    r.require(body, "", "slug");
    let slug = r.string(body, "", "slug");
    Some(App {
        block: r.at.clone(),
        name: name.to_owned(),
        agent: agent?,
        slug: slug?,
        display_name: r.expr(body, "display_name"),
        url: r.expr(body, "url"),
        command: r.expr(body, "command"),
        icon: r.expr(body, "icon"),
        share: r
            .string(body, "", "share")
            .unwrap_or_else(|| "owner".to_owned()),
        subdomain: r.bool(body, "", "subdomain").unwrap_or(false),
        external: r.bool(body, "", "external").unwrap_or(false),
        hidden: r.bool(body, "", "hidden").unwrap_or(false),
        count: r.expr(body, "count"),
    })
}

pub(crate) fn read_resource(
    r: &mut Reader<'_>,
    mode: ResourceMode,
    resource_type: &str,
    name: &str,
    body: &EBody,
) -> Resource {
    let depends_on = r
        .expr(body, "depends_on")
        .map(|expr| match expr.expression() {
            hcl::Expression::Array(items) => items.iter().map(expression_text).collect(),
            other => vec![expression_text(other)],
        })
        .unwrap_or_default();
    let ignore_changes = lifecycle_ignore_changes(r, body);
    let mut attributes = BTreeMap::new();
    for attr in body.attributes() {
        let key = attr.key.as_str();
        if !META_ATTRIBUTES.contains(&key) {
            attributes.insert(key.to_owned(), Expr::from_edit(&attr.value, r.source));
        }
    }
    let blocks = body
        .blocks()
        .filter(|b| !META_BLOCKS.contains(&b.ident.as_str()))
        .map(|b| read_nested(r.source, b))
        .collect();
    Resource {
        block: r.at.clone(),
        mode,
        resource_type: resource_type.to_owned(),
        name: name.to_owned(),
        count: r.expr(body, "count"),
        for_each: r.expr(body, "for_each"),
        depends_on,
        ignore_changes,
        attributes,
        blocks,
        referenced_attributes: BTreeSet::new(),
    }
}

fn read_nested(source: &str, block: &EBlock) -> NestedBlock {
    let labels: Vec<String> = block.labels.iter().map(|l| l.as_str().to_owned()).collect();
    if block.ident.as_str() == "dynamic" {
        let block_type = labels.first().cloned().unwrap_or_default();
        let iterator = block
            .body
            .get_attribute("iterator")
            .map(|a| expression_text(&a.value.clone().into()))
            .unwrap_or_else(|| block_type.clone());
        let for_each = block
            .body
            .get_attribute("for_each")
            .map(|a| Expr::from_edit(&a.value, source))
            .unwrap_or_else(empty_list_expr);
        let content = block.body.get_blocks("content").next();
        let (attributes, blocks) = content.map_or_else(
            || (BTreeMap::new(), Vec::new()),
            |c| nested_parts(source, &c.body),
        );
        return NestedBlock {
            block_type,
            labels: Vec::new(),
            attributes,
            blocks,
            dynamic: Some(DynamicBlock { for_each, iterator }),
        };
    }
    let (attributes, blocks) = nested_parts(source, &block.body);
    NestedBlock {
        block_type: block.ident.as_str().to_owned(),
        labels,
        attributes,
        blocks,
        dynamic: None,
    }
}

fn nested_parts(source: &str, body: &EBody) -> (BTreeMap<String, Expr>, Vec<NestedBlock>) {
    let attributes = body
        .attributes()
        .map(|a| (a.key.as_str().to_owned(), Expr::from_edit(&a.value, source)))
        .collect();
    let blocks = body.blocks().map(|b| read_nested(source, b)).collect();
    (attributes, blocks)
}

fn empty_list_expr() -> Expr {
    Expr::from_expression(hcl::Expression::Array(Vec::new()))
}

/// `coder_agent.main` from a `depends_on` entry, `iterator = x` and similar bare references.
pub(crate) fn expression_text(expr: &hcl::Expression) -> String {
    let mut refs = Refs::default();
    refs.collect(expr, &[]);
    match refs.references.first() {
        Some(reference) if refs.references.len() == 1 => reference.display(),
        _ => hcl::format::to_string(expr).unwrap_or_default(),
    }
}

/// The top-level attribute an `ignore_changes` entry names (`tags["x"]` → `tags`).
/// `lifecycle { ignore_changes = [...] }` attribute names (`all` when so written).
fn lifecycle_ignore_changes(r: &mut Reader<'_>, body: &EBody) -> Vec<String> {
    let mut ignore_changes = Vec::new();
    for lifecycle in body.get_blocks("lifecycle") {
        if let Some(expr) = r.expr(&lifecycle.body, "ignore_changes") {
            match expr.expression() {
                hcl::Expression::Array(items) => {
                    ignore_changes.extend(items.iter().map(attribute_name))
                }
                other => ignore_changes.push(attribute_name(other)),
            }
        }
    }
    ignore_changes
}

fn attribute_name(expr: &hcl::Expression) -> String {
    match expr {
        hcl::Expression::Variable(v) => v.as_str().to_owned(),
        hcl::Expression::Traversal(t) => match &t.expr {
            hcl::Expression::Variable(v) => v.as_str().to_owned(),
            other => expression_text(other),
        },
        hcl::Expression::String(s) => s.clone(),
        other => expression_text(other),
    }
}

pub(crate) fn read_variable(r: &mut Reader<'_>, name: &str, body: &EBody) -> Variable {
    let default = r.expr(body, "default");
    // Variable defaults may not refer to anything, so they evaluate with functions only.
    let default_value = default
        .as_ref()
        .and_then(|d| r.env.eval(d).ok())
        .filter(|v| !v.is_null());
    Variable {
        block: r.at.clone(),
        name: name.to_owned(),
        var_type: r
            .expr(body, "type")
            .map(|t| t.source().to_owned())
            .unwrap_or_else(|| "string".to_owned()),
        required: default_value.is_none(),
        default_value: default_value
            .as_ref()
            .map(value_to_coder_string)
            .unwrap_or_default(),
        default,
        description: r.string(body, "", "description").unwrap_or_default(),
        sensitive: r.bool(body, "", "sensitive").unwrap_or(false),
    }
}
