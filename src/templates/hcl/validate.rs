//! Import validation rules on the extracted model, and parameter value validation as Coder's
//! provider does it (also used when a workspace is created with user values).

use std::collections::BTreeMap;

use crate::prebuilds::schedule::Scheduling;

use super::error::ImportError;
use super::model::*;

/// Prebuild ttl bounds of Coder's provider: 0 (never expire) or 1 hour to 1 year.
pub const MIN_PREBUILD_TTL_SECONDS: i32 = 3600;
pub const MAX_PREBUILD_TTL_SECONDS: i32 = 31_536_000;

const APP_SHARE_LEVELS: &[&str] = &["owner", "authenticated", "organization", "public"];
const AGENT_OS: &[&str] = &["linux", "darwin", "windows"];
const AGENT_ARCH: &[&str] = &["amd64", "arm64", "armv7", "386"];

fn push(errors: &mut Vec<ImportError>, at: &BlockRef, message: impl Into<String>) {
    errors.push(ImportError::new(
        &at.file,
        Some(at.line),
        &at.header,
        message,
    ));
}

/// Runs every model-level rule.
pub(crate) fn validate_model(
    model: &TemplateModel,
    opts: &ImportOptions,
    errors: &mut Vec<ImportError>,
) {
    validate_parameters(model, errors);
    validate_presets(model, opts, errors);
    validate_agents(model, errors);
    validate_apps(model, errors);
}

fn validate_parameters(model: &TemplateModel, errors: &mut Vec<ImportError>) {
    let mut names: BTreeMap<&str, &BlockRef> = BTreeMap::new();
    for param in &model.parameters {
        if let Some(first) = names.get(param.name.as_str()) {
            push(
                errors,
                &param.block,
                format!(
                    "parameter name \"{}\" is already used by {first}",
                    param.name
                ),
            );
        } else {
            names.insert(&param.name, &param.block);
        }
        let problems = definition_problems(param);
        let definition_ok = problems.is_empty();
        for problem in problems {
            push(errors, &param.block, problem);
        }
        // A broken definition would make every value fail; report the definition only.
        if definition_ok && !param.required {
            if let Err(problem) = validate_parameter_value(param, &param.default_value, None) {
                push(
                    errors,
                    &param.block,
                    format!("default value {:?}: {problem}", param.default_value),
                );
            }
        }
    }
}

/// What is wrong with a parameter regardless of any value (the provider's checks).
pub fn definition_problems(param: &Parameter) -> Vec<String> {
    let mut out = Vec::new();
    if param.ephemeral && !param.mutable {
        out.push("parameter can't be immutable and ephemeral".to_owned());
    }
    if param.ephemeral && param.required {
        out.push("ephemeral parameter requires the default property".to_owned());
    }
    if !param.options.is_empty() && param.validation.is_some() {
        out.push("\"option\" and \"validation\" cannot be used together".to_owned());
    }
    let option_type = option_type(param);
    let mut names = Vec::new();
    let mut values = Vec::new();
    for option in &param.options {
        if names.contains(&&option.name) {
            out.push(format!(
                "multiple options found with the same name {:?}",
                option.name
            ));
        }
        if values.contains(&&option.value) {
            out.push(format!(
                "multiple options found with the same value {:?}",
                option.value
            ));
        }
        if let Err(problem) = value_is_type(option_type, &option.value) {
            out.push(format!(
                "option {:?} with value {:?} is not of type {:?}: {problem}",
                option.name,
                option.value,
                option_type.as_str()
            ));
        }
        names.push(&option.name);
        values.push(&option.value);
    }
    if let Some(v) = &param.validation {
        let typ = param.param_type;
        if typ != ParameterType::Number {
            if v.min.is_some() {
                out.push(format!("a min cannot be specified for a {typ} type"));
            }
            if v.max.is_some() {
                out.push(format!("a max cannot be specified for a {typ} type"));
            }
            if v.monotonic.is_some() {
                out.push(format!(
                    "monotonic validation can only be specified for number types, not {typ} types"
                ));
            }
        }
        if let Some(m) = &v.monotonic {
            if m != "increasing" && m != "decreasing" {
                out.push(
                    "number monotonicity can be either \"increasing\" or \"decreasing\"".to_owned(),
                );
            }
        }
        if let (Some(min), Some(max)) = (v.min, v.max) {
            if min > max {
                out.push(format!("validation min {min} is greater than max {max}"));
            }
        }
        if let Some(regex) = &v.regex {
            if typ != ParameterType::String {
                out.push(format!("a regex cannot be specified for a {typ} type"));
            }
            if let Err(err) = regex::Regex::new(regex) {
                out.push(format!("compile regex {regex:?}: {err}"));
            }
            if v.error.is_empty() {
                out.push("an error must be specified with a regex validation".to_owned());
            }
        }
    }
    out
}

/// The type option values have: `string` for a `list(string)` multi-select, else the
/// parameter's type (as in the provider's form-type table).
fn option_type(param: &Parameter) -> ParameterType {
    if param.param_type == ParameterType::ListString && param.form_type == "multi-select" {
        ParameterType::String
    } else {
        param.param_type
    }
}

/// Checks `value` (Coder's string encoding) against the parameter's options, validation block
/// and type, in the provider's order. `previous` is the value of the previous build, for
/// monotonic validation.
pub fn validate_parameter_value(
    param: &Parameter,
    value: &str,
    previous: Option<&str>,
) -> Result<(), String> {
    if !param.options.is_empty() {
        let allowed: Vec<&str> = param.options.iter().map(|o| o.value.as_str()).collect();
        if option_type(param) != param.param_type {
            let items = list_of_strings(value)?;
            let missing: Vec<&str> = items
                .iter()
                .map(String::as_str)
                .filter(|item| !allowed.contains(item))
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "value {value:?} is not a valid option, values {:?} are missing from the options",
                    missing.join(", ")
                ));
            }
        } else if !allowed.contains(&value) {
            let quoted: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            return Err(format!(
                "value {value:?} must be one of the options ({})",
                quoted.join(", ")
            ));
        }
    }
    if let Some(v) = &param.validation {
        check_validation(param.param_type, v, value, previous)?;
    }
    value_is_type(param.param_type, value)
}

fn check_validation(
    typ: ParameterType,
    v: &ParameterValidation,
    value: &str,
    previous: Option<&str>,
) -> Result<(), String> {
    // The error text may use {min}, {max} and {value}, as in the provider.
    let rendered = || {
        (!v.error.is_empty()).then(|| {
            v.error
                .replace("{min}", &v.min.unwrap_or(0).to_string())
                .replace("{max}", &v.max.unwrap_or(0).to_string())
                .replace("{value}", value)
        })
    };
    match typ {
        ParameterType::Bool => {
            if value != "true" && value != "false" {
                return Err("boolean value can be either \"true\" or \"false\"".to_owned());
            }
        }
        ParameterType::String => {
            if let Some(pattern) = &v.regex {
                let re = regex::Regex::new(pattern)
                    .map_err(|e| format!("compile regex {pattern:?}: {e}"))?;
                if !re.is_match(value) {
                    return Err(format!(
                        "{} (value {value:?} does not match {pattern:?})",
                        v.error
                    ));
                }
            }
        }
        ParameterType::Number => {
            let Ok(num) = value.parse::<i64>() else {
                return Err(
                    rendered().unwrap_or_else(|| format!("value {value:?} is not a number"))
                );
            };
            if let Some(min) = v.min {
                if num < i64::from(min) {
                    return Err(rendered()
                        .unwrap_or_else(|| format!("value {num} is less than the minimum {min}")));
                }
            }
            if let Some(max) = v.max {
                if num > i64::from(max) {
                    return Err(rendered()
                        .unwrap_or_else(|| format!("value {num} is more than the maximum {max}")));
                }
            }
            if let (Some(m), Some(prev)) =
                (&v.monotonic, previous.and_then(|p| p.parse::<i64>().ok()))
            {
                if m == "increasing" && num < prev {
                    return Err(format!(
                        "parameter value '{num}' must be equal or greater than previous value: {prev}"
                    ));
                }
                if m == "decreasing" && num > prev {
                    return Err(format!(
                        "parameter value '{num}' must be equal or lower than previous value: {prev}"
                    ));
                }
            }
        }
        ParameterType::ListString => {
            list_of_strings(value)?;
        }
    }
    Ok(())
}

fn list_of_strings(value: &str) -> Result<Vec<String>, String> {
    serde_json::from_str::<Vec<String>>(value)
        .map_err(|_| format!("value {value:?} is not a valid list of strings"))
}

/// Whether `value` is a valid encoding of `typ`.
pub fn value_is_type(typ: ParameterType, value: &str) -> Result<(), String> {
    match typ {
        ParameterType::String => Ok(()),
        ParameterType::Number => value
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|_| ())
            .ok_or_else(|| format!("{value:?} is not a number")),
        ParameterType::Bool => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!(
                "{value:?} is not a bool (expected \"true\" or \"false\")"
            )),
        },
        ParameterType::ListString => list_of_strings(value).map(|_| ()),
    }
}

/// Whether a prebuild ttl is acceptable.
pub fn check_ttl(ttl: i32, allow_short: bool) -> Result<(), String> {
    if ttl == 0 {
        return Ok(());
    }
    if allow_short {
        if ttl < 1 {
            return Err(format!(
                "expiration_policy ttl must be 0 or at least 1 second, got {ttl}"
            ));
        }
        return Ok(());
    }
    if !(MIN_PREBUILD_TTL_SECONDS..=MAX_PREBUILD_TTL_SECONDS).contains(&ttl) {
        return Err(format!(
            "expiration_policy ttl must be 0 or between {MIN_PREBUILD_TTL_SECONDS} and {MAX_PREBUILD_TTL_SECONDS} seconds, got {ttl}"
        ));
    }
    Ok(())
}

fn validate_presets(model: &TemplateModel, opts: &ImportOptions, errors: &mut Vec<ImportError>) {
    let mut names: BTreeMap<&str, &BlockRef> = BTreeMap::new();
    let mut first_default: Option<&BlockRef> = None;
    for preset in &model.presets {
        let at = &preset.block;
        if let Some(first) = names.get(preset.name.as_str()) {
            push(
                errors,
                at,
                format!("preset name \"{}\" is already used by {first}", preset.name),
            );
        } else {
            names.insert(&preset.name, at);
        }
        if preset.default {
            match first_default {
                Some(first) => push(
                    errors,
                    at,
                    format!("only one preset can be marked default = true, {first} is too"),
                ),
                None => first_default = Some(at),
            }
        }
        for (name, value) in &preset.parameters {
            // The provider refuses empty preset values outright.
            if value.is_empty() {
                push(
                    errors,
                    at,
                    format!("preset parameter \"{name}\" has an empty value"),
                );
                continue;
            }
            match model.parameter(name) {
                None => push(
                    errors,
                    at,
                    format!("preset parameter \"{name}\" does not name a coder_parameter"),
                ),
                Some(param) => {
                    if let Err(problem) = validate_parameter_value(param, value, None) {
                        push(
                            errors,
                            at,
                            format!("preset parameter \"{name}\": {problem}"),
                        );
                    }
                }
            }
        }
        for param in model.parameters.iter().filter(|p| p.required) {
            if !preset.parameters.iter().any(|(n, _)| *n == param.name) {
                push(
                    errors,
                    at,
                    format!(
                        "preset does not set required parameter \"{}\" (it has no default)",
                        param.name
                    ),
                );
            }
        }
        if let Some(prebuilds) = &preset.prebuilds {
            if prebuilds.instances < 0 {
                push(
                    errors,
                    at,
                    format!(
                        "prebuilds instances must be >= 0, got {}",
                        prebuilds.instances
                    ),
                );
            }
            if let Some(ttl) = prebuilds.ttl_seconds {
                if let Err(problem) = check_ttl(ttl, opts.allow_short_prebuild_ttl) {
                    push(errors, at, problem);
                }
            }
            if let Some(scheduling) = &prebuilds.scheduling {
                if let Err(err) = Scheduling::parse(&scheduling.timezone, &scheduling.schedules) {
                    push(errors, at, format!("prebuilds scheduling: {err}"));
                }
            }
        }
    }
}

fn validate_agents(model: &TemplateModel, errors: &mut Vec<ImportError>) {
    for agent in &model.agents {
        let at = &agent.block;
        if let Some(os) = agent.os.literal_string() {
            if !AGENT_OS.contains(&os.as_str()) {
                push(
                    errors,
                    at,
                    format!("os {os:?} is not one of {}", AGENT_OS.join(", ")),
                );
            }
        }
        if let Some(arch) = agent.arch.literal_string() {
            if !AGENT_ARCH.contains(&arch.as_str()) {
                push(
                    errors,
                    at,
                    format!("arch {arch:?} is not one of {}", AGENT_ARCH.join(", ")),
                );
            }
        }
        if !["blocking", "non-blocking"].contains(&agent.startup_script_behavior.as_str()) {
            push(
                errors,
                at,
                format!(
                    "startup_script_behavior {:?} is not \"blocking\" or \"non-blocking\"",
                    agent.startup_script_behavior
                ),
            );
        }
        if agent.connection_timeout < 0 {
            push(errors, at, "connection_timeout must be >= 0");
        }
        let mut keys: Vec<&str> = Vec::new();
        for item in &agent.metadata {
            if item.key.is_empty() {
                push(errors, at, "metadata key must not be empty");
            } else if keys.contains(&item.key.as_str()) {
                push(
                    errors,
                    at,
                    format!("metadata key {:?} is used twice", item.key),
                );
            }
            keys.push(&item.key);
        }
    }
}

/// Coder's app slug rule: lowercase alphanumerics and single hyphens, not at either end.
fn valid_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !slug.contains("--")
}

fn validate_apps(model: &TemplateModel, errors: &mut Vec<ImportError>) {
    let mut slugs: BTreeMap<(&str, &str), &BlockRef> = BTreeMap::new();
    for app in &model.apps {
        let at = &app.block;
        if model.agent(&app.agent).is_none() {
            push(
                errors,
                at,
                format!(
                    "attribute \"agent_id\" references coder_agent \"{}\", which is not declared",
                    app.agent
                ),
            );
        }
        if !valid_slug(&app.slug) {
            push(
                errors,
                at,
                format!(
                    "slug {:?} is invalid: use lowercase letters, digits and single hyphens, not at either end",
                    app.slug
                ),
            );
        }
        if let Some(first) = slugs.get(&(app.agent.as_str(), app.slug.as_str())) {
            push(
                errors,
                at,
                format!(
                    "app slug {:?} is already used by {first} on the same agent",
                    app.slug
                ),
            );
        } else {
            slugs.insert((&app.agent, &app.slug), at);
        }
        if !APP_SHARE_LEVELS.contains(&app.share.as_str()) {
            push(
                errors,
                at,
                format!(
                    "share {:?} is not one of {}",
                    app.share,
                    APP_SHARE_LEVELS.join(", ")
                ),
            );
        }
    }
}
