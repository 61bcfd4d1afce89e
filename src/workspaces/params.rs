//! Build-parameter resolution: which value each rich parameter of the template version gets in
//! a new workspace build. Pure (no I/O); the build use case loads the inputs and stores the result.
//!
//! This mirrors Coder's *classic* parameter flow, the one that works from the stored
//! `template_version_parameters` rows as this server does:
//! - `wsbuilder.Builder.getClassicParameters` (coderd/wsbuilder/wsbuilder.go): one value per
//!   template version parameter, in the version's parameter order; requested names the version
//!   doesn't declare are silently ignored (the "not present in the template" error is the CLI's
//!   `verifyConstraints`, client side only).
//! - `wsbuilder.Builder.findNewBuildParameterValue`: the preset's value, else the requested one.
//! - `codersdk.ParameterResolver.ValidateResolve` (codersdk/richparameters.go): immutability,
//!   required, and the new > previous (unless ephemeral) > default order.
//! - `codersdk.ValidateWorkspaceBuildParameter` / `validateBuildParameter`: empty-value handling,
//!   option membership (`inOptionSet`), then the provider's `Validation.Valid`, which this crate
//!   implements in [`crate::templates::hcl::validate_parameter_value`].

use crate::templates::hcl::{
    validate_parameter_value, BlockRef, Parameter, ParameterOption, ParameterType,
    ParameterValidation,
};

/// One rich parameter of the template version, as stored in `template_version_parameters`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    /// Used instead of the name in validation messages when set, as Coder does.
    pub display_name: String,
    /// `string`, `number`, `bool` or `list(string)`.
    pub r#type: String,
    /// `form_type` of the parameter ("" when unknown). Only `multi-select` matters: a
    /// `list(string)` multi-select checks each list item against the options rather than the
    /// whole JSON value. The table has no such column yet, so callers pass "".
    pub form_type: String,
    pub mutable: bool,
    pub ephemeral: bool,
    pub required: bool,
    pub default_value: String,
    /// (name, value) of each option, in declaration order.
    pub options: Vec<(String, String)>,
    pub validation_regex: String,
    pub validation_error: String,
    pub validation_min: Option<i32>,
    pub validation_max: Option<i32>,
    /// `increasing`, `decreasing` or "".
    pub validation_monotonic: String,
}

impl ParamSpec {
    /// The name validation messages use: the display name when set (Coder's
    /// `ValidateWorkspaceBuildParameter` does the same).
    fn label(&self) -> &str {
        if self.display_name.is_empty() {
            &self.name
        } else {
            &self.display_name
        }
    }

    /// Coder's `validationEnabled`: whether the provider's `Validation.Valid` runs at all. Bool
    /// and list(string) always go through it so that the value's shape gets checked.
    fn validation_enabled(&self) -> bool {
        !self.validation_regex.is_empty()
            || self.validation_min.is_some()
            || self.validation_max.is_some()
            || !self.validation_monotonic.is_empty()
            || self.r#type == "bool"
            || self.r#type == "list(string)"
    }

    /// The import model's view of this row, so the hcl module's validator (the provider's rules)
    /// can be reused instead of duplicated.
    fn to_model(&self) -> Result<Parameter, ParamError> {
        let param_type = ParameterType::parse(&self.r#type).ok_or_else(|| ParamError::BadSpec {
            name: self.name.clone(),
            detail: format!("unknown parameter type {:?}", self.r#type),
        })?;
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let validation = self.validation_enabled().then(|| ParameterValidation {
            min: self.validation_min,
            max: self.validation_max,
            regex: non_empty(&self.validation_regex),
            error: self.validation_error.clone(),
            monotonic: non_empty(&self.validation_monotonic),
        });
        Ok(Parameter {
            // Only used for import diagnostics, which this path never produces.
            block: BlockRef {
                file: String::new(),
                line: 0,
                header: format!("data \"coder_parameter\" {:?}", self.name),
            },
            label: self.name.clone(),
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            description: String::new(),
            param_type,
            form_type: self.form_type.clone(),
            default_value: self.default_value.clone(),
            required: self.required,
            mutable: self.mutable,
            ephemeral: self.ephemeral,
            order: 0,
            icon: String::new(),
            options: self
                .options
                .iter()
                .map(|(name, value)| ParameterOption {
                    name: name.clone(),
                    value: value.clone(),
                    description: String::new(),
                    icon: String::new(),
                })
                .collect(),
            validation,
        })
    }

    /// Coder's `inOptionSet`: the value is one of the option values, or for a `list(string)`
    /// multi-select, a JSON list whose every item is.
    fn in_option_set(&self, value: &str) -> bool {
        let allowed = || self.options.iter().map(|(_, v)| v.as_str());
        if self.r#type == "list(string)" && self.form_type == "multi-select" {
            match serde_json::from_str::<Vec<String>>(value) {
                Ok(items) => items.iter().all(|item| allowed().any(|a| a == item)),
                Err(_) => false,
            }
        } else {
            allowed().any(|a| a == value)
        }
    }
}

impl From<&Parameter> for ParamSpec {
    /// The row an import stores for a parsed `coder_parameter` (see `templates::import`).
    fn from(p: &Parameter) -> Self {
        let v = p.validation.clone().unwrap_or_default();
        ParamSpec {
            name: p.name.clone(),
            display_name: p.display_name.clone(),
            r#type: p.param_type.as_str().to_owned(),
            form_type: p.form_type.clone(),
            mutable: p.mutable,
            ephemeral: p.ephemeral,
            required: p.required,
            default_value: p.default_value.clone(),
            options: p
                .options
                .iter()
                .map(|o| (o.name.clone(), o.value.clone()))
                .collect(),
            validation_regex: v.regex.unwrap_or_default(),
            validation_error: v.error,
            validation_min: v.min,
            validation_max: v.max,
            validation_monotonic: v.monotonic.unwrap_or_default(),
        }
    }
}

/// Everything the resolution depends on.
#[derive(Debug, Clone, Copy)]
pub struct ResolveInput<'a> {
    /// The new build's template version parameters, in that version's order.
    pub specs: &'a [ParamSpec],
    /// The last build's stored values (`[]` for a first build).
    pub previous: &'a [(String, String)],
    /// `rich_parameter_values` of the request.
    pub requested: &'a [(String, String)],
    /// The chosen preset's values (`[]` without a preset).
    pub preset: &'a [(String, String)],
    /// No earlier build exists. The previous values are then ignored entirely, so neither the
    /// immutability nor the monotonic check can fire (as in Coder, where a first build simply
    /// has no previous values).
    pub first_build: bool,
    /// `start`, `stop` or `delete`. Coder's classic flow resolves and validates every transition
    /// alike (a stop or delete normally requests nothing, so it gets the previous values, which
    /// are validated again); kept so callers need not change if that ever differs.
    pub transition: &'a str,
}

/// Why a build's parameters were refused. `Display` is Coder's error detail; the response
/// message is [`ParamError::message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A later build tried to give an immutable parameter a value other than the previous one
    /// (`ParameterResolver.ValidateResolve`).
    #[error(
        "Parameter {name:?} is not mutable, so it can't be updated after creating a workspace."
    )]
    Immutable { name: String },
    /// A required parameter got no value, and no earlier build set it
    /// (`ParameterResolver.ValidateResolve`).
    #[error("Parameter {name:?} is required but not provided")]
    Required { name: String },
    /// The value fails the parameter's own rules: empty though required, not an option, regex,
    /// min/max, monotonic or type (`ValidateWorkspaceBuildParameter`). `label` is the display
    /// name when set.
    #[error("can't validate build parameter {label:?}: {detail}")]
    Invalid {
        name: String,
        label: String,
        detail: String,
    },
    /// The stored parameter row itself is unusable (unknown type). A server fault, not the
    /// request's: Coder answers 500 "failed to convert template version parameter".
    #[error("{detail}")]
    BadSpec { name: String, detail: String },
}

impl ParamError {
    /// The parameter the error is about.
    pub fn parameter(&self) -> &str {
        match self {
            ParamError::Immutable { name }
            | ParamError::Required { name }
            | ParamError::Invalid { name, .. }
            | ParamError::BadSpec { name, .. } => name,
        }
    }

    /// Coder's response message for the error (`BuildError.Message` in `getClassicParameters`).
    pub fn message(&self) -> String {
        match self {
            ParamError::BadSpec { .. } => "failed to convert template version parameter".to_owned(),
            _ => format!("Unable to validate parameter {:?}", self.parameter()),
        }
    }

    /// Whether this is the server's fault (500) rather than the request's (400).
    pub fn is_internal(&self) -> bool {
        matches!(self, ParamError::BadSpec { .. })
    }
}

/// First value for `name`: Coder's lookups (`findNewBuildParameterValue`, `findLastValue`) take
/// the first match, so a duplicated name in a request resolves to its first occurrence.
fn lookup<'v>(values: &'v [(String, String)], name: &str) -> Option<&'v str> {
    values
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The value of every spec, in spec order, or the first parameter that can't be resolved.
pub fn resolve(input: &ResolveInput) -> Result<Vec<(String, String)>, ParamError> {
    input
        .specs
        .iter()
        .map(|spec| resolve_one(spec, input).map(|value| (spec.name.clone(), value)))
        .collect()
}

/// `ParameterResolver.ValidateResolve` for one parameter.
fn resolve_one(spec: &ParamSpec, input: &ResolveInput) -> Result<String, ParamError> {
    // Checked before anything else so a broken row is reported as such rather than as a bad value.
    let model = spec.to_model()?;
    // The preset wins over the request without complaint (`findNewBuildParameterValue`); a
    // preset fixes the values it sets.
    let new = lookup(input.preset, &spec.name).or_else(|| lookup(input.requested, &spec.name));
    let previous = if input.first_build {
        None
    } else {
        lookup(input.previous, &spec.name)
    };

    // A parameter the previous build had no value for is new in this version, so even an
    // immutable one may be set now (Coder allows it so updates to such versions don't fail).
    if !spec.mutable {
        if let (Some(new), Some(previous)) = (new, previous) {
            if new != previous {
                return Err(ParamError::Immutable {
                    name: spec.name.clone(),
                });
            }
        }
    }
    if spec.required && new.is_none() && previous.is_none() {
        return Err(ParamError::Required {
            name: spec.name.clone(),
        });
    }
    // Ephemeral values last one build only; they fall back to the default, not the previous.
    let value = new
        .or(if spec.ephemeral { None } else { previous })
        .unwrap_or(spec.default_value.as_str());
    validate(spec, &model, value, previous)?;
    Ok(value.to_owned())
}

/// Coder's `validateBuildParameter`, with the provider's rules from the hcl module.
fn validate(
    spec: &ParamSpec,
    model: &Parameter,
    value: &str,
    previous: Option<&str>,
) -> Result<(), ParamError> {
    let invalid = |detail: String| ParamError::Invalid {
        name: spec.name.clone(),
        label: spec.label().to_owned(),
        detail,
    };
    if spec.required && value.is_empty() {
        return Err(invalid("parameter value is required".to_owned()));
    }
    // An empty value of an optional parameter is checked as its default. Coder still stores the
    // empty value itself (ValidateResolve returns the unsubstituted value), and so does `resolve`.
    let checked = if value.is_empty() {
        spec.default_value.as_str()
    } else {
        value
    };
    // Checked here rather than by the hcl validator to keep Coder's server-side wording, which
    // differs from the provider's.
    if !spec.options.is_empty() && !spec.in_option_set(checked) {
        let values: Vec<&str> = spec.options.iter().map(|(_, v)| v.as_str()).collect();
        return Err(invalid(format!(
            "parameter value must match one of options: [{}]",
            values.join(" ")
        )));
    }
    // Unlike Coder, which skips this when `validationEnabled` is false, the type is always
    // checked (the validator ends with `value_is_type`): a number parameter given "abc" would
    // only fail later, in the provisioner, otherwise.
    validate_parameter_value(model, checked, previous).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, typ: &str, default: &str) -> ParamSpec {
        ParamSpec {
            name: name.to_owned(),
            r#type: typ.to_owned(),
            mutable: true,
            default_value: default.to_owned(),
            ..ParamSpec::default()
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Inputs for one resolution; `first_build` follows from whether `previous` is empty.
    struct Case {
        specs: Vec<ParamSpec>,
        previous: Vec<(String, String)>,
        requested: Vec<(String, String)>,
        preset: Vec<(String, String)>,
        transition: &'static str,
    }

    impl Case {
        fn new(specs: Vec<ParamSpec>) -> Self {
            Case {
                specs,
                previous: vec![],
                requested: vec![],
                preset: vec![],
                transition: "start",
            }
        }
        fn previous(mut self, items: &[(&str, &str)]) -> Self {
            self.previous = pairs(items);
            self
        }
        fn requested(mut self, items: &[(&str, &str)]) -> Self {
            self.requested = pairs(items);
            self
        }
        fn preset(mut self, items: &[(&str, &str)]) -> Self {
            self.preset = pairs(items);
            self
        }
        fn transition(mut self, t: &'static str) -> Self {
            self.transition = t;
            self
        }
        fn run(&self) -> Result<Vec<(String, String)>, ParamError> {
            resolve(&ResolveInput {
                specs: &self.specs,
                previous: &self.previous,
                requested: &self.requested,
                preset: &self.preset,
                first_build: self.previous.is_empty(),
                transition: self.transition,
            })
        }
        fn ok(&self) -> Vec<(String, String)> {
            match self.run() {
                Ok(v) => v,
                Err(e) => panic!("expected values, got error: {e}"),
            }
        }
        fn err(&self) -> ParamError {
            match self.run() {
                Ok(v) => panic!("expected an error, got {v:?}"),
                Err(e) => e,
            }
        }
    }

    #[test]
    fn defaults_fill_in_in_spec_order() {
        let got = Case::new(vec![
            spec("region", "string", "eu"),
            spec("cpus", "number", "2"),
            spec("gpu", "bool", "false"),
        ])
        .ok();
        assert_eq!(
            got,
            pairs(&[("region", "eu"), ("cpus", "2"), ("gpu", "false")])
        );
    }

    #[test]
    fn requested_value_beats_default() {
        let got = Case::new(vec![spec("region", "string", "eu")])
            .requested(&[("region", "us")])
            .ok();
        assert_eq!(got, pairs(&[("region", "us")]));
    }

    #[test]
    fn previous_values_carry_over() {
        let got = Case::new(vec![
            spec("region", "string", "eu"),
            spec("size", "string", "s"),
        ])
        .previous(&[("region", "us"), ("size", "m")])
        .requested(&[("size", "l")])
        .ok();
        assert_eq!(got, pairs(&[("region", "us"), ("size", "l")]));
    }

    #[test]
    fn previous_values_ignored_on_first_build() {
        let specs = vec![spec("region", "string", "eu")];
        let previous = pairs(&[("region", "us")]);
        let got = resolve(&ResolveInput {
            specs: &specs,
            previous: &previous,
            requested: &[],
            preset: &[],
            first_build: true,
            transition: "start",
        });
        assert_eq!(got, Ok(pairs(&[("region", "eu")])));
    }

    #[test]
    fn ephemeral_does_not_carry_over() {
        let mut eph = spec("reset", "bool", "false");
        eph.ephemeral = true;
        let case = Case::new(vec![eph]).previous(&[("reset", "true")]);
        assert_eq!(case.ok(), pairs(&[("reset", "false")]));
        // ...but may be set for this build.
        assert_eq!(
            case.requested(&[("reset", "true")]).ok(),
            pairs(&[("reset", "true")])
        );
    }

    #[test]
    fn preset_wins_over_request_and_previous() {
        let got = Case::new(vec![
            spec("region", "string", "eu"),
            spec("size", "string", "s"),
        ])
        .previous(&[("region", "ap"), ("size", "m")])
        .requested(&[("region", "us")])
        .preset(&[("region", "sa"), ("size", "xl")])
        .ok();
        assert_eq!(got, pairs(&[("region", "sa"), ("size", "xl")]));
    }

    #[test]
    fn preset_cannot_change_immutable_on_later_build() {
        let mut p = spec("region", "string", "eu");
        p.mutable = false;
        let err = Case::new(vec![p])
            .previous(&[("region", "eu")])
            .preset(&[("region", "us")])
            .err();
        assert!(matches!(err, ParamError::Immutable { .. }), "{err:?}");
    }

    #[test]
    fn required_missing_on_first_build() {
        let mut p = spec("project", "string", "");
        p.required = true;
        let err = Case::new(vec![spec("region", "string", "eu"), p]).err();
        assert_eq!(
            err,
            ParamError::Required {
                name: "project".into()
            }
        );
        assert_eq!(err.parameter(), "project");
        assert_eq!(
            err.to_string(),
            "Parameter \"project\" is required but not provided"
        );
        assert_eq!(err.message(), "Unable to validate parameter \"project\"");
        assert!(!err.is_internal());
    }

    #[test]
    fn required_satisfied_by_previous_value() {
        let mut p = spec("project", "string", "");
        p.required = true;
        let got = Case::new(vec![p]).previous(&[("project", "x")]).ok();
        assert_eq!(got, pairs(&[("project", "x")]));
    }

    #[test]
    fn required_new_parameter_on_later_build() {
        // A parameter added by a newer version has no previous value to fall back to.
        let mut p = spec("project", "string", "");
        p.required = true;
        let err = Case::new(vec![spec("region", "string", "eu"), p])
            .previous(&[("region", "us")])
            .err();
        assert_eq!(err.parameter(), "project");
        assert!(matches!(err, ParamError::Required { .. }));
    }

    #[test]
    fn required_given_empty_value() {
        let mut p = spec("project", "string", "");
        p.required = true;
        p.display_name = "Project".into();
        let err = Case::new(vec![p]).requested(&[("project", "")]).err();
        assert_eq!(
            err.to_string(),
            "can't validate build parameter \"Project\": parameter value is required"
        );
        assert_eq!(err.parameter(), "project");
    }

    #[test]
    fn unknown_requested_parameter_is_ignored() {
        // Coder's server drops names the version doesn't declare; only its CLI complains.
        let got = Case::new(vec![spec("region", "string", "eu")])
            .requested(&[("nope", "x"), ("region", "us")])
            .preset(&[("also_nope", "y")])
            .ok();
        assert_eq!(got, pairs(&[("region", "us")]));
    }

    #[test]
    fn immutable_change_refused_on_later_build() {
        let mut p = spec("disk", "string", "10");
        p.mutable = false;
        let err = Case::new(vec![p])
            .previous(&[("disk", "10")])
            .requested(&[("disk", "20")])
            .err();
        assert_eq!(
            err.to_string(),
            "Parameter \"disk\" is not mutable, so it can't be updated after creating a workspace."
        );
        assert_eq!(err.message(), "Unable to validate parameter \"disk\"");
    }

    #[test]
    fn immutable_same_value_or_absent_is_fine_on_later_build() {
        let mut p = spec("disk", "string", "10");
        p.mutable = false;
        let case = Case::new(vec![p]).previous(&[("disk", "20")]);
        assert_eq!(case.ok(), pairs(&[("disk", "20")]));
        assert_eq!(
            case.requested(&[("disk", "20")]).ok(),
            pairs(&[("disk", "20")])
        );
    }

    #[test]
    fn immutable_set_on_first_build() {
        let mut p = spec("disk", "string", "10");
        p.mutable = false;
        let got = Case::new(vec![p]).requested(&[("disk", "20")]).ok();
        assert_eq!(got, pairs(&[("disk", "20")]));
    }

    #[test]
    fn new_immutable_parameter_may_be_set_on_later_build() {
        let mut p = spec("disk", "string", "10");
        p.mutable = false;
        let got = Case::new(vec![spec("region", "string", "eu"), p])
            .previous(&[("region", "us")])
            .requested(&[("disk", "20")])
            .ok();
        assert_eq!(got, pairs(&[("region", "us"), ("disk", "20")]));
    }

    #[test]
    fn option_violation() {
        let mut p = spec("region", "string", "eu");
        p.display_name = "Region".into();
        p.options = vec![("Europe".into(), "eu".into()), ("US".into(), "us".into())];
        let specs = vec![p];
        assert_eq!(
            Case::new(specs.clone()).requested(&[("region", "us")]).ok(),
            pairs(&[("region", "us")])
        );
        let err = Case::new(specs).requested(&[("region", "ap")]).err();
        assert_eq!(
            err.to_string(),
            "can't validate build parameter \"Region\": parameter value must match one of options: [eu us]"
        );
        assert_eq!(err.message(), "Unable to validate parameter \"region\"");
    }

    #[test]
    fn multi_select_checks_each_item() {
        let mut p = spec("tools", "list(string)", "[]");
        p.form_type = "multi-select".into();
        p.options = vec![("Git".into(), "git".into()), ("Vim".into(), "vim".into())];
        let case = Case::new(vec![p]);
        assert_eq!(
            Case::new(case.specs.clone())
                .requested(&[("tools", r#"["vim","git"]"#)])
                .ok(),
            pairs(&[("tools", r#"["vim","git"]"#)])
        );
        let err = case.requested(&[("tools", r#"["vim","emacs"]"#)]).err();
        assert!(
            err.to_string().contains("must match one of options"),
            "{err}"
        );
    }

    #[test]
    fn regex_violation_uses_validation_error() {
        let mut p = spec("name", "string", "abc");
        p.validation_regex = "^[a-z]+$".into();
        p.validation_error = "lowercase letters only".into();
        let case = Case::new(vec![p]);
        assert_eq!(case.ok(), pairs(&[("name", "abc")]));
        let err = case.requested(&[("name", "ABC")]).err();
        assert_eq!(
            err.to_string(),
            "can't validate build parameter \"name\": lowercase letters only (value \"ABC\" does not match \"^[a-z]+$\")"
        );
    }

    #[test]
    fn min_max_violations() {
        let mut p = spec("cpus", "number", "2");
        p.validation_min = Some(1);
        p.validation_max = Some(8);
        let specs = vec![p];
        assert_eq!(
            Case::new(specs.clone()).requested(&[("cpus", "8")]).ok(),
            pairs(&[("cpus", "8")])
        );
        let low = Case::new(specs.clone()).requested(&[("cpus", "0")]).err();
        assert_eq!(
            low.to_string(),
            "can't validate build parameter \"cpus\": value 0 is less than the minimum 1"
        );
        let high = Case::new(specs).requested(&[("cpus", "9")]).err();
        assert_eq!(
            high.to_string(),
            "can't validate build parameter \"cpus\": value 9 is more than the maximum 8"
        );
    }

    #[test]
    fn min_max_custom_error_is_rendered() {
        let mut p = spec("cpus", "number", "2");
        p.validation_min = Some(1);
        p.validation_max = Some(8);
        p.validation_error = "{value} not in {min}..{max}".into();
        let err = Case::new(vec![p]).requested(&[("cpus", "9")]).err();
        assert_eq!(
            err.to_string(),
            "can't validate build parameter \"cpus\": 9 not in 1..8"
        );
    }

    #[test]
    fn monotonic_increasing_and_decreasing() {
        let mut inc = spec("disk", "number", "10");
        inc.validation_monotonic = "increasing".into();
        let inc_case = || Case::new(vec![inc.clone()]).previous(&[("disk", "20")]);
        assert_eq!(
            inc_case().requested(&[("disk", "30")]).ok(),
            pairs(&[("disk", "30")])
        );
        assert_eq!(
            inc_case().requested(&[("disk", "10")]).err().to_string(),
            "can't validate build parameter \"disk\": parameter value '10' must be equal or greater than previous value: 20"
        );

        let mut dec = inc.clone();
        dec.validation_monotonic = "decreasing".into();
        let err = Case::new(vec![dec])
            .previous(&[("disk", "20")])
            .requested(&[("disk", "30")])
            .err();
        assert_eq!(
            err.to_string(),
            "can't validate build parameter \"disk\": parameter value '30' must be equal or lower than previous value: 20"
        );
    }

    #[test]
    fn monotonic_not_checked_on_first_build() {
        let mut p = spec("disk", "number", "50");
        p.validation_monotonic = "increasing".into();
        let got = Case::new(vec![p]).requested(&[("disk", "1")]).ok();
        assert_eq!(got, pairs(&[("disk", "1")]));
    }

    #[test]
    fn list_string_values_are_json() {
        let p = spec("tags", "list(string)", r#"["a"]"#);
        let specs = vec![p];
        assert_eq!(
            Case::new(specs.clone()).ok(),
            pairs(&[("tags", r#"["a"]"#)])
        );
        assert_eq!(
            Case::new(specs.clone())
                .requested(&[("tags", r#"["x","y"]"#)])
                .ok(),
            pairs(&[("tags", r#"["x","y"]"#)])
        );
        let err = Case::new(specs).requested(&[("tags", "x,y")]).err();
        assert_eq!(
            err.to_string(),
            "can't validate build parameter \"tags\": value \"x,y\" is not a valid list of strings"
        );
    }

    #[test]
    fn bool_type() {
        let specs = vec![spec("gpu", "bool", "false")];
        assert_eq!(
            Case::new(specs.clone()).requested(&[("gpu", "true")]).ok(),
            pairs(&[("gpu", "true")])
        );
        let err = Case::new(specs).requested(&[("gpu", "yes")]).err();
        assert_eq!(
            err.to_string(),
            "can't validate build parameter \"gpu\": boolean value can be either \"true\" or \"false\""
        );
    }

    #[test]
    fn number_type() {
        let specs = vec![spec("cpus", "number", "2")];
        assert_eq!(
            Case::new(specs.clone()).requested(&[("cpus", "4")]).ok(),
            pairs(&[("cpus", "4")])
        );
        let err = Case::new(specs).requested(&[("cpus", "four")]).err();
        assert!(matches!(err, ParamError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("is not a number"), "{err}");
    }

    #[test]
    fn empty_optional_value_is_checked_as_default_but_kept() {
        // Coder validates the default in place of "" yet stores "" (ValidateResolve).
        let mut p = spec("region", "string", "eu");
        p.options = vec![("Europe".into(), "eu".into())];
        let got = Case::new(vec![p]).requested(&[("region", "")]).ok();
        assert_eq!(got, pairs(&[("region", "")]));
    }

    #[test]
    fn previous_values_are_revalidated() {
        // The classic flow checks the carried-over value against the new version's rules.
        let mut p = spec("region", "string", "eu");
        p.options = vec![("Europe".into(), "eu".into())];
        let err = Case::new(vec![p]).previous(&[("region", "us")]).err();
        assert_eq!(err.parameter(), "region");
        assert!(matches!(err, ParamError::Invalid { .. }));
    }

    #[test]
    fn stop_and_delete_reuse_previous_values() {
        let mut eph = spec("reset", "bool", "false");
        eph.ephemeral = true;
        let mut imm = spec("disk", "number", "10");
        imm.mutable = false;
        for transition in ["stop", "delete"] {
            let got = Case::new(vec![
                spec("region", "string", "eu"),
                imm.clone(),
                eph.clone(),
            ])
            .previous(&[("region", "us"), ("disk", "30"), ("reset", "true")])
            .transition(transition)
            .ok();
            assert_eq!(
                got,
                pairs(&[("region", "us"), ("disk", "30"), ("reset", "false")]),
                "{transition}"
            );
        }
    }

    #[test]
    fn first_duplicate_request_wins() {
        let got = Case::new(vec![spec("region", "string", "eu")])
            .requested(&[("region", "us"), ("region", "ap")])
            .ok();
        assert_eq!(got, pairs(&[("region", "us")]));
    }

    #[test]
    fn unknown_type_is_a_spec_error() {
        let err = Case::new(vec![spec("x", "map(string)", "{}")]).err();
        assert!(err.is_internal());
        assert_eq!(err.parameter(), "x");
        assert_eq!(
            err.message(),
            "failed to convert template version parameter"
        );
    }

    #[test]
    fn spec_from_model_round_trips_validation() {
        let mut p = spec("cpus", "number", "2");
        p.validation_min = Some(1);
        p.validation_monotonic = "increasing".into();
        p.options = vec![];
        let model = match p.to_model() {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(ParamSpec::from(&model), p);
    }
}
