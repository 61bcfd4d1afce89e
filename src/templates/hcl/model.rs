//! What an import extracts from a template: plain data, no behaviour beyond small accessors.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::expr::Expr;

/// One file of the uploaded archive, already read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path inside the archive, e.g. `main.tf`.
    pub name: String,
    pub content: String,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, content: impl Into<String>) -> Self {
        SourceFile {
            name: name.into(),
            content: content.into(),
        }
    }
}

/// Server settings that change what an import accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// `--dangerous-allow-short-prebuild-ttl`: accept any prebuild ttl >= 1 s.
    pub allow_short_prebuild_ttl: bool,
}

/// Where a block was declared, for error messages and for callers that point users at it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRef {
    pub file: String,
    /// 1-based line of the block's first token.
    pub line: usize,
    /// The block header as written, e.g. `data "coder_parameter" "region"`.
    pub header: String,
}

impl fmt::Display for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}:{})", self.header, self.file, self.line)
    }
}

/// Everything an import needs from a template version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateModel {
    /// `data "coder_parameter"`, in declaration order (files sorted by name).
    pub parameters: Vec<Parameter>,
    /// `data "coder_workspace_preset"`, in declaration order.
    pub presets: Vec<Preset>,
    /// `resource "coder_agent"`.
    pub agents: Vec<Agent>,
    /// `resource "coder_app"`.
    pub apps: Vec<App>,
    /// Every other `resource` block, whatever its type.
    pub resources: Vec<Resource>,
    /// `data` blocks other than the coder ones the server provides (e.g. `data "docker_image"`).
    pub data_sources: Vec<Resource>,
    /// Terraform `variable` blocks (Coder's template version variables).
    pub variables: Vec<Variable>,
    /// Entries of all `locals` blocks.
    pub locals: Vec<Local>,
    /// `module` blocks; only their names matter (outputs are unknown to this server).
    pub modules: Vec<ModuleCall>,
    /// (type, name) of the `data "coder_workspace"`, `"coder_workspace_owner"` and
    /// `"coder_provisioner"` blocks, whose values the server provides at build time.
    pub provided_data: Vec<(String, String)>,
}

impl TemplateModel {
    /// The parameter whose `name` attribute is `name`.
    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// The agent declared as `resource "coder_agent" "<label>"`.
    pub fn agent(&self, label: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.name == label)
    }

    /// The preset marked `default = true`, if any.
    pub fn default_preset(&self) -> Option<&Preset> {
        self.presets.iter().find(|p| p.default)
    }
}

/// The `type` of a `coder_parameter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParameterType {
    String,
    Number,
    Bool,
    ListString,
}

impl ParameterType {
    /// Coder's spelling, as in the API's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Number => "number",
            ParameterType::Bool => "bool",
            ParameterType::ListString => "list(string)",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "string" => Some(ParameterType::String),
            "number" => Some(ParameterType::Number),
            "bool" => Some(ParameterType::Bool),
            "list(string)" => Some(ParameterType::ListString),
            _ => None,
        }
    }
}

impl fmt::Display for ParameterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `option { … }` of a parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterOption {
    pub name: String,
    /// In Coder's string encoding (see [`Parameter::default_value`]).
    pub value: String,
    pub description: String,
    pub icon: String,
}

/// The `validation { … }` block of a parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterValidation {
    pub min: Option<i32>,
    pub max: Option<i32>,
    pub regex: Option<String>,
    /// `error`, "" when not given.
    pub error: String,
    /// `increasing` or `decreasing`.
    pub monotonic: Option<String>,
}

/// `data "coder_parameter" "<label>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub block: BlockRef,
    /// The block's second label, used in references (`data.coder_parameter.<label>.value`).
    pub label: String,
    /// The `name` attribute: what the API, presets and workspace builds use.
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub param_type: ParameterType,
    /// `form_type` as written ("" when absent); only `multi-select` changes validation.
    pub form_type: String,
    /// The default in Coder's encoding: numbers as decimal text, bools as `true`/`false`,
    /// `list(string)` as a JSON array. "" when there is none.
    pub default_value: String,
    /// No `default` (or `default = null`): the user must give a value.
    pub required: bool,
    pub mutable: bool,
    pub ephemeral: bool,
    /// `order` (Coder's display order), 0 when absent.
    pub order: i32,
    pub icon: String,
    pub options: Vec<ParameterOption>,
    pub validation: Option<ParameterValidation>,
}

/// `data "coder_workspace_preset" "<label>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub block: BlockRef,
    pub label: String,
    pub name: String,
    pub description: String,
    pub icon: String,
    pub default: bool,
    /// (parameter name, value in Coder's encoding), sorted by parameter name.
    pub parameters: Vec<(String, String)>,
    pub prebuilds: Option<PrebuildSettings>,
}

/// The `prebuilds { … }` block of a preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrebuildSettings {
    pub instances: i32,
    /// `expiration_policy { ttl }`; `None` when the block is absent.
    pub ttl_seconds: Option<i32>,
    pub scheduling: Option<PrebuildScheduling>,
}

/// The `scheduling { … }` block, as written (validated with the schedule module at import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrebuildScheduling {
    pub timezone: String,
    /// (cron, instances) in declaration order.
    pub schedules: Vec<(String, i32)>,
}

/// `resource "coder_agent" "<name>"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub block: BlockRef,
    /// The block label, used in references (`coder_agent.<name>.token`) and as the agent's name.
    pub name: String,
    pub os: Expr,
    pub arch: Expr,
    pub dir: Option<Expr>,
    /// The script as written (heredoc or quoted template); [`Expr::source`] is the raw text and
    /// [`Expr::is_literal`] says whether it needs evaluation at all.
    pub startup_script: Option<Expr>,
    /// `blocking` or `non-blocking` (the default).
    pub startup_script_behavior: String,
    /// The `env` map expression.
    pub env: Option<Expr>,
    pub metadata: Vec<AgentMetadata>,
    pub display_apps: DisplayApps,
    /// Seconds, default 120.
    pub connection_timeout: i32,
    /// `startup_script_timeout` in seconds (provider default 300; 0 = none): past it the agent
    /// reports `start_timeout`.
    pub startup_script_timeout: i32,
    pub count: Option<Expr>,
    /// `type.name` of the resource this agent runs in, by Coder's convention: the first resource
    /// (declaration order) whose body references `coder_agent.<name>`.
    pub resource: Option<String>,
    /// `lifecycle { ignore_changes = [...] }`: attributes whose change on a claim is no replacement.
    pub ignore_changes: Vec<String>,
}

/// One `metadata { … }` block of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentMetadata {
    pub key: String,
    pub display_name: String,
    pub script: Expr,
    /// Seconds.
    pub interval: i64,
    /// Seconds, 0 when absent.
    pub timeout: i64,
}

/// The `display_apps { … }` block of an agent, with the provider's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisplayApps {
    pub vscode: bool,
    pub vscode_insiders: bool,
    pub web_terminal: bool,
    pub port_forwarding_helper: bool,
    pub ssh_helper: bool,
}

impl Default for DisplayApps {
    fn default() -> Self {
        DisplayApps {
            vscode: true,
            vscode_insiders: false,
            web_terminal: true,
            port_forwarding_helper: true,
            ssh_helper: true,
        }
    }
}

impl DisplayApps {
    /// The enabled apps in the API's spelling (`display_apps` of a workspace agent).
    pub fn enabled(&self) -> Vec<&'static str> {
        [
            (self.vscode, "vscode"),
            (self.vscode_insiders, "vscode_insiders"),
            (self.web_terminal, "web_terminal"),
            (self.port_forwarding_helper, "port_forwarding_helper"),
            (self.ssh_helper, "ssh_helper"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// `resource "coder_app" "<name>"`.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub block: BlockRef,
    pub name: String,
    /// Label of the agent that `agent_id` references (`coder_agent.<label>.id`).
    pub agent: String,
    pub slug: String,
    pub display_name: Option<Expr>,
    pub url: Option<Expr>,
    pub command: Option<Expr>,
    pub icon: Option<Expr>,
    /// `owner` (default), `authenticated`, `organization` or `public`.
    pub share: String,
    pub subdomain: bool,
    pub external: bool,
    pub hidden: bool,
    pub count: Option<Expr>,
}

/// Managed resource or data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceMode {
    Managed,
    Data,
}

/// A `resource` (or non-coder `data`) block kept with unevaluated expressions, so a build can
/// evaluate it with that build's context and compare attributes with the previous build.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub block: BlockRef,
    pub mode: ResourceMode,
    pub resource_type: String,
    pub name: String,
    pub count: Option<Expr>,
    pub for_each: Option<Expr>,
    /// `depends_on` entries as written, e.g. `coder_agent.main`.
    pub depends_on: Vec<String>,
    /// `lifecycle { ignore_changes = [...] }` attribute names (`all` when so written).
    pub ignore_changes: Vec<String>,
    /// Attributes other than the meta-arguments (`count`, `for_each`, `depends_on`,
    /// `provider`), by name.
    pub attributes: BTreeMap<String, Expr>,
    /// Nested blocks other than `lifecycle`, `provisioner` and `connection`, in order.
    pub blocks: Vec<NestedBlock>,
    /// Attributes of this resource that other blocks reference but that are not set here
    /// (computed by a real provider, e.g. `docker_image.main.image_id`); evaluation gives them
    /// placeholder values so references still resolve.
    pub referenced_attributes: BTreeSet<String>,
}

impl Resource {
    /// `type.name` (data sources: `data.type.name`), Terraform's address.
    pub fn address(&self) -> String {
        match self.mode {
            ResourceMode::Managed => format!("{}.{}", self.resource_type, self.name),
            ResourceMode::Data => format!("data.{}.{}", self.resource_type, self.name),
        }
    }
}

/// A block nested in a resource. `dynamic "x" { for_each; iterator; content { … } }` blocks
/// are kept as [`NestedBlock::dynamic`] and expanded at evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct NestedBlock {
    pub block_type: String,
    pub labels: Vec<String>,
    pub attributes: BTreeMap<String, Expr>,
    pub blocks: Vec<NestedBlock>,
    pub dynamic: Option<DynamicBlock>,
}

/// The parts of a `dynamic` block; the generated blocks are `content` per element.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicBlock {
    pub for_each: Expr,
    /// The iterator variable's name (the block label unless `iterator` is given).
    pub iterator: String,
}

/// A Terraform `variable` block (Coder's template version variable).
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub block: BlockRef,
    pub name: String,
    /// The type constraint as written, `string` when absent.
    pub var_type: String,
    pub default: Option<Expr>,
    /// The default in Coder's string encoding, "" when there is none.
    pub default_value: String,
    pub required: bool,
    pub description: String,
    pub sensitive: bool,
}

/// One entry of a `locals` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    pub block: BlockRef,
    pub name: String,
    pub value: Expr,
}

/// A `module "<name>"` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleCall {
    pub block: BlockRef,
    pub name: String,
    /// Outputs other blocks reference; evaluation gives them placeholder values.
    pub referenced_outputs: BTreeSet<String>,
}
