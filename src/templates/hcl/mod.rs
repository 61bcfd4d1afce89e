//! Reading Coder templates: the `coder_*` blocks of a template version's Terraform files.
//!
//! [`parse_template`] is the import step: it parses every root `*.tf` file with hcl-rs, extracts
//! parameters, presets (with prebuild settings), agents, apps, other resources, variables and
//! locals into a [`TemplateModel`], and validates them, returning every problem at once, each
//! naming its file and block. [`evaluate`] (and [`evaluate_agents`], [`evaluate_apps`],
//! [`evaluate_resources`]) is the build step: it evaluates the kept expressions against one
//! build's [`EvalContext`] (workspace, owner, parameter values, agent tokens).
//!
//! Pure: no I/O, inputs are file contents in memory.
//!
//! Expressions are evaluated by hcl-rs with the functions listed in [`SUPPORTED_FUNCTIONS`].
//! Terraform's implicit conversions (a `"true"` parameter value used as a condition, a numeric
//! string in arithmetic) are made explicit before evaluation, except inside string templates.

mod error;
mod eval;
mod expr;
mod functions;
mod model;
mod parse;
mod refs;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use error::{EvalError, ImportError, ImportErrors};
pub use eval::{
    evaluate, evaluate_agents, evaluate_apps, evaluate_resources, AgentCtx, EvalContext, Evaluated,
    EvaluatedAgent, EvaluatedApp, EvaluatedMetadata, EvaluatedResource, InstanceKey, OwnerCtx,
    ProvisionerCtx, WorkspaceCtx,
};
pub use expr::{value_to_coder_string, Expr};
pub use functions::SUPPORTED_FUNCTIONS;
pub use model::*;
pub use validate::{
    check_ttl, definition_problems, validate_parameter_value, value_is_type,
    MAX_PREBUILD_TTL_SECONDS, MIN_PREBUILD_TTL_SECONDS,
};

use parse::{Kind, Reader};

/// Parses and validates a template version's files.
///
/// Only root-level `*.tf` files are read (sorted by name); other files are ignored. On any
/// problem, all problems found are returned, sorted by file and line. Syntax errors stop the
/// import before the other checks, which would otherwise report follow-up noise.
pub fn parse_template(
    files: &[SourceFile],
    opts: &ImportOptions,
) -> Result<TemplateModel, ImportErrors> {
    let parsed = parse::parse_files(files).map_err(finish)?;
    let mut errors = Vec::new();
    let blocks = parse::collect_blocks(&parsed, &mut errors);
    parse::check_duplicates(&blocks, &mut errors);
    let env = parse::static_env(&blocks);
    let declarations = refs::Declarations::new(&blocks);
    let index = refs::check(&blocks, &declarations, &mut errors);

    let mut model = TemplateModel::default();
    for raw in &blocks {
        let mut r = Reader {
            env: &env,
            bad_attributes: &index.bad_attributes,
            source: raw.file.source,
            at: &raw.at,
            errors: &mut errors,
        };
        let (first, second) = (raw.label(0), raw.label(1));
        match raw.kind {
            Kind::Parameter => {
                model
                    .parameters
                    .extend(parse::read_parameter(&mut r, second, raw.body()))
            }
            Kind::Preset => model
                .presets
                .extend(parse::read_preset(&mut r, second, raw.body())),
            Kind::Agent => model
                .agents
                .extend(parse::read_agent(&mut r, second, raw.body())),
            Kind::App => model
                .apps
                .extend(parse::read_app(&mut r, second, raw.body())),
            Kind::Resource => model.resources.push(parse::read_resource(
                &mut r,
                ResourceMode::Managed,
                first,
                second,
                raw.body(),
            )),
            Kind::Data => model.data_sources.push(parse::read_resource(
                &mut r,
                ResourceMode::Data,
                first,
                second,
                raw.body(),
            )),
            Kind::Variable => model
                .variables
                .push(parse::read_variable(&mut r, first, raw.body())),
            Kind::Locals => {
                for attr in raw.body().attributes() {
                    model.locals.push(Local {
                        block: raw.at.clone(),
                        name: attr.key.as_str().to_owned(),
                        value: Expr::from_edit(&attr.value, raw.file.source),
                    });
                }
            }
            Kind::Module => model.modules.push(ModuleCall {
                block: raw.at.clone(),
                name: first.to_owned(),
                referenced_outputs: Default::default(),
            }),
            Kind::BuiltinData => model
                .provided_data
                .push((first.to_owned(), second.to_owned())),
            Kind::Other => {}
        }
    }
    link(&mut model, index);
    validate::validate_model(&model, opts, &mut errors);

    if errors.is_empty() {
        Ok(model)
    } else {
        Err(finish(errors))
    }
}

/// Fills in what needs all blocks: which resource each agent runs in, and which computed
/// attributes of resources, data sources and modules other blocks use.
fn link(model: &mut TemplateModel, index: refs::RefIndex) {
    for agent in &mut model.agents {
        agent.resource = index
            .agent_users
            .iter()
            .find(|(_, agents)| agents.contains(&agent.name))
            .map(|(address, _)| address.clone());
    }
    let mut referenced: BTreeMap<String, _> = index.referenced;
    for resource in model
        .resources
        .iter_mut()
        .chain(model.data_sources.iter_mut())
    {
        if let Some(attrs) = referenced.remove(&resource.address()) {
            resource.referenced_attributes = attrs
                .into_iter()
                .filter(|a| {
                    !resource.attributes.contains_key(a)
                        && !resource.blocks.iter().any(|b| b.block_type == *a)
                })
                .collect();
        }
    }
    for module in &mut model.modules {
        if let Some(attrs) = referenced.remove(&format!("module.{}", module.name)) {
            module.referenced_outputs = attrs;
        }
    }
}

fn finish(mut errors: Vec<ImportError>) -> ImportErrors {
    // Stable: problems of one block keep the order they were found in.
    errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    ImportErrors(errors)
}
