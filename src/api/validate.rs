//! Coder's input rules (codersdk name validators, go-playground tags) as plain functions.

use std::sync::LazyLock;

use regex::Regex;

use super::error::Validation;

static NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$").unwrap_or_else(|_| unreachable!())
});
static VERSION_NAME_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-zA-Z0-9]+(?:[_.-][a-zA-Z0-9]+)*$").unwrap_or_else(|_| unreachable!())
});

/// `codersdk.NameValid`: usernames, workspace, template and organization names.
pub fn name_error(name: &str) -> Option<&'static str> {
    if name.len() > 32 {
        return Some("must be <= 32 characters");
    }
    if name.is_empty() {
        return Some("must be >= 1 character");
    }
    if name == "new" || name == "create" {
        return Some("cannot use \"new\" or \"create\" as a name");
    }
    if !NAME_RE.is_match(name) {
        return Some("must be alphanumeric with hyphens");
    }
    None
}

/// `codersdk.DisplayNameValid`.
pub fn display_name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return None;
    }
    if name.chars().count() > 64 {
        return Some("must be <= 64 characters");
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Some("must not start or end with whitespace");
    }
    None
}

/// `codersdk.TemplateVersionNameValid`.
pub fn version_name_error(name: &str) -> Option<&'static str> {
    if name.len() > 64 {
        return Some("must be <= 64 characters");
    }
    if !VERSION_NAME_RE.is_match(name) {
        return Some("must be alphanumeric with underscores, dots or hyphens");
    }
    None
}

/// `codersdk.UserRealNameValid`.
pub fn real_name_error(name: &str) -> Option<&'static str> {
    if name.chars().count() > 128 {
        return Some("must be <= 128 characters");
    }
    if name.trim() != name {
        return Some("must not have leading or trailing white spaces");
    }
    None
}

/// A pragmatic subset of RFC 5322 matching what go-playground's `email` tag accepts in practice.
pub fn email_valid(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && email.len() <= 254
        && !domain.is_empty()
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !local.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// go-playground's message for a failed tag.
pub fn tag_failed(field: &str, tag: &str, value: &str) -> Validation {
    Validation::new(
        field,
        format!("Validation failed for tag {tag:?} with value: {value:?}"),
    )
}

/// Collects the `required` + `username` checks of a username field.
pub fn check_username(field: &str, value: &str, out: &mut Vec<Validation>) {
    if value.is_empty() {
        out.push(Validation::required(field));
    } else if name_error(value).is_some() {
        out.push(tag_failed(field, "username", value));
    }
}

pub fn check_email(field: &str, value: &str, out: &mut Vec<Validation>) {
    if value.is_empty() {
        out.push(Validation::required(field));
    } else if !email_valid(value) {
        out.push(tag_failed(field, "email", value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_coder_rules() {
        for ok in ["a", "abc-def", "A1-b2-C3", &"x".repeat(32)] {
            assert_eq!(name_error(ok), None, "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a--b",
            "a_b",
            "a b",
            "new",
            "create",
            &"x".repeat(33),
        ] {
            assert!(name_error(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn version_names() {
        assert_eq!(version_name_error("nostalgic_hopper4"), None);
        assert_eq!(version_name_error("v1.2.3"), None);
        assert!(version_name_error("a__b").is_some());
        assert!(version_name_error("").is_some());
    }

    #[test]
    fn emails() {
        assert!(email_valid("admin@example.com"));
        assert!(email_valid("prebuilds@system"));
        for bad in ["", "a", "@x", "a@", "a b@c", "a@.c", "a@b..c"] {
            assert!(!email_valid(bad), "{bad}");
        }
    }
}
