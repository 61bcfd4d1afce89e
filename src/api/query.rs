//! Query-string parameters: pagination and Coder's `q` search syntax.

use std::collections::HashMap;

use uuid::Uuid;

use super::error::{ApiError, Validation};

pub type QueryMap = HashMap<String, String>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pagination {
    /// 0 = no limit.
    pub limit: i64,
    pub offset: i64,
    pub after_id: Option<Uuid>,
}

impl Pagination {
    pub fn from_query(q: &QueryMap) -> Result<Self, ApiError> {
        let mut validations = Vec::new();
        let mut int = |name: &str| -> i64 {
            match q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
                None => 0,
                Some(v) => match v.parse::<i32>() {
                    Ok(n) if n >= 0 => n as i64,
                    _ => {
                        validations.push(Validation::new(
                            name,
                            format!("Query param {name:?} must be a valid 32-bit positive integer: {v:?}"),
                        ));
                        0
                    }
                },
            }
        };
        let limit = int("limit");
        let offset = int("offset");
        let after_id = match q
            .get("after_id")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(v) => match Uuid::parse_str(v) {
                Ok(id) => Some(id).filter(|id| !id.is_nil()),
                Err(_) => {
                    validations.push(Validation::new(
                        "after_id",
                        "Query param \"after_id\" must be a valid uuid",
                    ));
                    None
                }
            },
        };
        if !validations.is_empty() {
            return Err(
                ApiError::bad_request("Query parameters have invalid values.")
                    .validations(validations),
            );
        }
        Ok(Self {
            limit,
            offset,
            after_id,
        })
    }

    /// SQL `LIMIT` value: NULL means all rows.
    pub fn sql_limit(&self) -> Option<i64> {
        (self.limit > 0).then_some(self.limit)
    }
}

/// A parsed `q`: lowercased keys mapped to their values, in order. Bare terms are under the key `""`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    pub terms: Vec<(String, String)>,
}

impl SearchQuery {
    /// Splits like Coder's `searchquery`: on spaces outside double quotes, each element on its single
    /// `:`, quotes trimmed, everything lowercased.
    pub fn parse(q: &str) -> Result<Self, Vec<Validation>> {
        let lowered = q.to_lowercase();
        let mut terms = Vec::new();
        let mut errors = Vec::new();
        for element in split_outside_quotes(&lowered, ' ') {
            if element.is_empty() {
                continue;
            }
            let parts = split_outside_quotes(&element, ':');
            match parts.len() {
                1 => terms.push((String::new(), unquote(&parts[0]))),
                2 => {
                    if parts[0].is_empty() || parts[1].is_empty() {
                        errors.push(Validation::new(
                            "q",
                            format!("Query element {element:?} cannot start or end with ':'"),
                        ));
                    } else {
                        terms.push((unquote(&parts[0]), unquote(&parts[1])));
                    }
                }
                _ => errors.push(Validation::new(
                    "q",
                    format!("Query element {element:?} can only contain 1 ':'"),
                )),
            }
        }
        if errors.is_empty() {
            Ok(Self { terms })
        } else {
            Err(errors)
        }
    }

    /// Rejects keys other than `allowed` (bare terms always pass), as Coder does.
    pub fn check_keys(&self, allowed: &[&str]) -> Vec<Validation> {
        self.terms
            .iter()
            .filter(|(k, _)| !k.is_empty() && !allowed.contains(&k.as_str()))
            .map(|(k, _)| Validation::new(k.clone(), format!("{k:?} is not a valid query param")))
            .collect()
    }

    /// A single-valued key; more than one occurrence is an error.
    pub fn single(&self, key: &str, errors: &mut Vec<Validation>) -> Option<String> {
        let values: Vec<&String> = self
            .terms
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect();
        if values.len() > 1 {
            errors.push(Validation::new(
                key,
                format!(
                    "Query param {key:?} provided more than once, found {} times. Only provide 1 instance of this query param.",
                    values.len()
                ),
            ));
        }
        values
            .first()
            .map(|v| v.to_string())
            .filter(|v| !v.is_empty())
    }

    /// A comma-separated multi-valued key (values from repeated keys are merged).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.terms
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn bare(&self) -> Vec<String> {
        self.list("")
    }
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            current.push(c);
        } else if c == sep && !quoted {
            out.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    out.push(current);
    out
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdk_style_queries() {
        let q = SearchQuery::parse(r#"owner:"me" name:"My WS" status:running free"#).unwrap();
        assert_eq!(
            q.terms,
            vec![
                ("owner".into(), "me".into()),
                ("name".into(), "my ws".into()),
                ("status".into(), "running".into()),
                ("".into(), "free".into()),
            ]
        );
    }

    #[test]
    fn rejects_bad_elements() {
        assert!(SearchQuery::parse("owner:").is_err());
        assert!(SearchQuery::parse(":x").is_err());
        assert!(SearchQuery::parse("a:b:c").is_err());
        let q = SearchQuery::parse("bogus:1").unwrap();
        assert_eq!(q.check_keys(&["owner"])[0].field, "bogus");
    }

    #[test]
    fn repeated_single_key_is_an_error() {
        let q = SearchQuery::parse("status:a status:b").unwrap();
        let mut errs = Vec::new();
        q.single("status", &mut errs);
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn pagination_validates() {
        let mut m = QueryMap::new();
        m.insert("limit".into(), "-1".into());
        assert!(Pagination::from_query(&m).is_err());
        m.insert("limit".into(), "5".into());
        m.insert("offset".into(), "10".into());
        let p = Pagination::from_query(&m).unwrap();
        assert_eq!((p.limit, p.offset), (5, 10));
    }
}
