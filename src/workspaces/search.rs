//! Coder's workspace search (`GET /api/v2/workspaces?q=`): parsing only, no database access.
//!
//! Mirrors `searchquery.Workspaces` (coderd/searchquery/search.go) on top of the shared `q` tokenizer
//! ([`SearchQuery`]), with Coder's `httpapi.QueryParamParser` messages. Resolving the parsed values
//! (`owner:me` to the caller, an organization name to its id) is left to the handler.
//!
//! NB: as in Coder, the whole query is lowercased by the tokenizer before anything else, so every value
//! here (names, usernames, parameter names and values) arrives lowercase; time values are uppercased
//! again before RFC 3339 parsing, exactly as Coder's `Time3339Nano` does.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::api::error::Validation;
use crate::api::query::SearchQuery;

/// Coder's `Response.message` for a rejected workspace `q`.
pub const INVALID_QUERY_MESSAGE: &str = "Invalid workspace search query.";

/// The keys `q` accepts for workspaces; any other key is a 400 (`"<key>" is not a valid query param`).
/// Keys added by newer Coder (`has-ai-task`, `has_external_agent`, `shared`, `shared_with_user`,
/// `shared_with_group`, `healthy`, ...) are not supported and are rejected like any unknown key.
pub const WORKSPACE_QUERY_KEYS: &[&str] = &[
    "id",
    "owner",
    "template",
    "name",
    "status",
    "has-agent",
    "dormant",
    "last_used_after",
    "last_used_before",
    "outdated",
    "organization",
    "param",
];

/// Coder's `database.WorkspaceStatus` values, the only ones `status:` accepts.
pub use super::types::WORKSPACE_STATUSES;

/// The values Coder's SQL compares `has-agent:` against. Coder does not validate the value: anything
/// else is accepted and simply matches no workspace; we do the same.
pub const AGENT_STATUSES: &[&str] = &["connecting", "connected", "disconnected", "timeout"];

/// Go's `time.RFC3339Nano`, quoted in Coder's date error.
const RFC3339_NANO_LAYOUT: &str = "2006-01-02T15:04:05.999999999Z07:00";

/// Whose workspaces `owner:` (or the `owner/name` bare form) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerFilter {
    /// `owner:me`: the caller. Like Coder (`coderd/workspaces.go` turns `OwnerUsername == "me"` into the
    /// caller's id), `me` always means the requester, even if some user is literally named `me`.
    Me,
    /// Any other value: a username, matched case-insensitively (Coder does not accept a UUID here).
    Username(String),
}

impl OwnerFilter {
    fn from_value(value: String) -> Self {
        if value == "me" {
            Self::Me
        } else {
            Self::Username(value)
        }
    }
}

/// A parsed workspace `q`. `None` / empty means "no filter on this".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceFilter {
    /// `owner:me` / `owner:<username>`; also from an `owner/name` bare term.
    pub owner: Option<OwnerFilter>,
    /// Substring of the workspace name, case-insensitive (Coder: `name ILIKE '%' || @name || '%'`, with
    /// no escaping of `%`/`_`). Bare terms (all joined with single spaces, as Coder does) are the name.
    pub name: Option<String>,
    /// Template name: exact, case-insensitive.
    pub template: Option<String>,
    /// One of [`WORKSPACE_STATUSES`].
    pub status: Option<String>,
    /// `has-agent:` (with a hyphen): normally one of [`AGENT_STATUSES`], not validated (see there).
    pub has_agent: Option<String>,
    /// `Some(true)`: only workspaces whose latest build is not on the template's active version;
    /// `Some(false)`: only up-to-date ones; `None` (key absent): both. `outdated:""` counts as `true`,
    /// like Coder's `Boolean(values, true, "outdated")` with `Valid: values.Has("outdated")`.
    pub outdated: Option<bool>,
    /// `Some(true)`: only dormant workspaces. Coder's `dormant:false` filters nothing, so it is
    /// normalised to `None` here; this is never `Some(false)`.
    pub dormant: Option<bool>,
    pub last_used_after: Option<DateTime<Utc>>,
    pub last_used_before: Option<DateTime<Utc>>,
    /// An organization UUID or name, as typed (lowercased); resolved by the caller, which reports an
    /// unknown one with [`organization_not_found`].
    pub organization: Option<String>,
    /// `id:` values (comma-separated and/or repeated, merged in order).
    pub ids: Vec<Uuid>,
    /// `param:<name>` (workspace has the parameter) or `param:<name>=<value>` (and it has this value);
    /// comma-separated and/or repeated, merged in order.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses a workspace `q` the way Coder's `searchquery.Workspaces` does. On failure, returns the
/// validations for a 400 with [`INVALID_QUERY_MESSAGE`].
pub fn parse_workspace_query(q: &str) -> Result<WorkspaceFilter, Vec<Validation>> {
    let query = expand_bare_terms(SearchQuery::parse(q)?)?;
    let mut errors = Vec::new();
    // Same order as Coder's parser calls, so validations come out in Coder's order.
    let ids = parse_ids(&query, &mut errors);
    let owner = query
        .single("owner", &mut errors)
        .map(OwnerFilter::from_value);
    let template = query.single("template", &mut errors);
    let name = query.single("name", &mut errors);
    let status = query.single("status", &mut errors).and_then(|s| {
        if WORKSPACE_STATUSES.contains(&s.as_str()) {
            Some(s)
        } else {
            errors.push(Validation::new(
                "status",
                format!("Query param \"status\" has invalid value: {s:?} is not a valid value"),
            ));
            None
        }
    });
    let has_agent = query.single("has-agent", &mut errors);
    let dormant = parse_bool(&query, "dormant", &mut errors).filter(|&d| d);
    let last_used_after = parse_time(&query, "last_used_after", &mut errors);
    let last_used_before = parse_time(&query, "last_used_before", &mut errors);
    let outdated = if query.terms.iter().any(|(k, _)| k == "outdated") {
        // Present but empty (`outdated:""`) falls back to Coder's default of `true`.
        Some(parse_bool(&query, "outdated", &mut errors).unwrap_or(true))
    } else {
        None
    };
    let organization = query.single("organization", &mut errors);
    let params = parse_params(&query, &mut errors);
    errors.extend(query.check_keys(WORKSPACE_QUERY_KEYS));

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(WorkspaceFilter {
        owner,
        name,
        template,
        status,
        has_agent,
        outdated,
        dormant,
        last_used_after,
        last_used_before,
        organization,
        ids,
        params,
    })
}

/// The validation Coder's `parseOrganization` reports when `organization:` names no visible
/// organization (for the handler that resolves [`WorkspaceFilter::organization`]).
pub fn organization_not_found(value: &str) -> Validation {
    Validation::new(
        "organization",
        format!(
            "Query param \"organization\" has invalid value: organization {value:?} either does not exist, or you are unauthorized to view it"
        ),
    )
}

/// Turns the bare terms (key `""`) into `name` / `owner` terms. Like Coder's `processTokens`, all bare
/// terms are joined with single spaces into one element; that element is split on `/` dropping empty
/// pieces (Go's `strings.FieldsFunc`): one piece is the name, two are `owner/name`, anything else is an
/// error that, as in Coder's `searchTerms`, is returned alone.
fn expand_bare_terms(parsed: SearchQuery) -> Result<SearchQuery, Vec<Validation>> {
    let (bare, mut terms): (Vec<_>, Vec<_>) =
        parsed.terms.into_iter().partition(|(k, _)| k.is_empty());
    let element = bare
        .into_iter()
        .map(|(_, v)| v)
        .collect::<Vec<_>>()
        .join(" ");
    // A quoted empty bare term (`""`) is an empty name in Coder, i.e. no filter.
    if !element.is_empty() {
        let parts: Vec<&str> = element.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            [name] => terms.push(("name".into(), name.to_string())),
            [owner, name] => {
                terms.push(("owner".into(), owner.to_string()));
                terms.push(("name".into(), name.to_string()));
            }
            _ => {
                return Err(vec![Validation::new(
                    "q",
                    format!("Query element {element:?} can only contain 1 '/'"),
                )])
            }
        }
    }
    Ok(SearchQuery { terms })
}

/// The raw pieces of a csv / repeatable key, as Coder's `ParseCustomList` sees them: nothing when the key
/// is absent or its first value is empty; otherwise every value split on `,` (pieces not trimmed and
/// empty pieces kept: the element parser decides what they mean).
fn csv_pieces(query: &SearchQuery, key: &str) -> Vec<String> {
    let values: Vec<&str> = query
        .terms
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect();
    if values.first().is_none_or(|v| v.is_empty()) {
        return Vec::new();
    }
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::to_string)
        .collect()
}

/// Coder's `ParseCustomList` error: every bad piece's error, joined with newlines (`errors.Join`).
fn list_error(key: &str, errors: &[String]) -> Validation {
    Validation::new(
        key,
        format!(
            "Query param {key:?} has invalid values: {}",
            errors.join("\n")
        ),
    )
}

fn parse_ids(query: &SearchQuery, errors: &mut Vec<Validation>) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for piece in csv_pieces(query, "id") {
        let piece = piece.trim();
        match Uuid::parse_str(piece) {
            Ok(id) => ids.push(id),
            Err(_) => bad.push(go_uuid_error(piece)),
        }
    }
    if bad.is_empty() {
        ids
    } else {
        errors.push(list_error("id", &bad));
        Vec::new()
    }
}

/// The message of Go's `uuid.Parse` error for a string that does not parse.
fn go_uuid_error(s: &str) -> String {
    match s.len() {
        45 if !s
            .get(..9)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:uuid:")) =>
        {
            format!("invalid urn prefix: {:?}", s.get(..9).unwrap_or(s))
        }
        32 | 36 | 38 | 45 => "invalid UUID format".to_string(),
        n => format!("invalid UUID length: {n}"),
    }
}

fn parse_params(
    query: &SearchQuery,
    errors: &mut Vec<Validation>,
) -> Vec<(String, Option<String>)> {
    let mut params = Vec::new();
    let mut bad = Vec::new();
    for piece in csv_pieces(query, "param") {
        // Coder ignores excess spaces around each element.
        let piece = piece.trim();
        let parts: Vec<&str> = piece.split('=').collect();
        match parts.as_slice() {
            [name] => params.push((name.to_string(), None)),
            [_, ""] => bad.push(format!(
                "query element {piece:?} has an empty value. omit the '=' to match just on the parameter name"
            )),
            [name, value] => params.push((name.to_string(), Some(value.to_string()))),
            _ => bad.push(format!("query element {piece:?} can only contain 1 '='")),
        }
    }
    if bad.is_empty() {
        params
    } else {
        errors.push(list_error("param", &bad));
        Vec::new()
    }
}

/// Coder's `Boolean`: Go's `strconv.ParseBool` on the (lowercased) value.
fn parse_bool(query: &SearchQuery, key: &str, errors: &mut Vec<Validation>) -> Option<bool> {
    let value = query.single(key, errors)?;
    match value.as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => {
            errors.push(Validation::new(
                key,
                format!(
                    "Query param {key:?} must be a valid boolean: strconv.ParseBool: parsing {value:?}: invalid syntax"
                ),
            ));
            None
        }
    }
}

/// Coder's `Time3339Nano`: the value is uppercased (the tokenizer lowercased it) and parsed as RFC 3339
/// with optional fractional seconds; the result is in UTC.
fn parse_time(
    query: &SearchQuery,
    key: &str,
    errors: &mut Vec<Validation>,
) -> Option<DateTime<Utc>> {
    let value = query.single(key, errors)?.to_uppercase();
    // Go's layout needs a literal `T` separator; chrono would also take a space.
    let parsed = if value.get(10..11) == Some("T") {
        DateTime::parse_from_rfc3339(&value).map_err(|e| e.to_string())
    } else {
        Err("missing 'T' date/time separator".to_string())
    };
    match parsed {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(reason) => {
            errors.push(Validation::new(
                key,
                format!(
                    "Query param {key:?} must be a valid date format ({RFC3339_NANO_LAYOUT}): parsing time {value:?} as {RFC3339_NANO_LAYOUT:?}: {reason}"
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn ok(q: &str) -> WorkspaceFilter {
        parse_workspace_query(q).unwrap_or_else(|e| panic!("{q:?} should parse, got {e:?}"))
    }

    fn err(q: &str) -> Vec<Validation> {
        match parse_workspace_query(q) {
            Ok(f) => panic!("{q:?} should fail, got {f:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the query fails with exactly one validation, and returns it.
    fn one_err(q: &str) -> Validation {
        let errors = err(q);
        assert_eq!(errors.len(), 1, "{q:?}: {errors:?}");
        errors.into_iter().next().unwrap()
    }

    fn user(name: &str) -> Option<OwnerFilter> {
        Some(OwnerFilter::Username(name.to_string()))
    }

    #[test]
    fn empty_and_blank_queries_filter_nothing() {
        assert_eq!(ok(""), WorkspaceFilter::default());
        assert_eq!(ok("   "), WorkspaceFilter::default());
        assert_eq!(ok(r#""""#), WorkspaceFilter::default());
    }

    #[test]
    fn sdk_style_quoted_query() {
        let f = ok(r#"owner:"me" name:"ws" template:"t""#);
        assert_eq!(
            f,
            WorkspaceFilter {
                owner: Some(OwnerFilter::Me),
                name: Some("ws".into()),
                template: Some("t".into()),
                ..Default::default()
            }
        );
        let f = ok(r#"owner:"alice" status:"running" has-agent:"connected""#);
        assert_eq!(f.owner, user("alice"));
        assert_eq!(f.status.as_deref(), Some("running"));
        assert_eq!(f.has_agent.as_deref(), Some("connected"));
    }

    #[test]
    fn owner_me_is_distinct_from_usernames() {
        assert_eq!(ok("owner:me").owner, Some(OwnerFilter::Me));
        // Lowercased first, as in Coder: `ME` is `me`.
        assert_eq!(ok("owner:ME").owner, Some(OwnerFilter::Me));
        assert_eq!(ok("owner:alice").owner, user("alice"));
        assert_eq!(ok("owner:Alice").owner, user("alice"));
        assert_eq!(ok("owner:meme").owner, user("meme"));
        assert_eq!(ok(r#"owner:"""#).owner, None);
    }

    #[test]
    fn bare_term_is_the_name() {
        let f = ok("MyWS");
        assert_eq!(f.name.as_deref(), Some("myws"));
        assert_eq!(f.owner, None);
        // Coder joins all bare terms with spaces into one element.
        assert_eq!(ok("foo bar").name.as_deref(), Some("foo bar"));
        assert_eq!(
            ok("foo status:running bar").name.as_deref(),
            Some("foo bar")
        );
    }

    #[test]
    fn owner_slash_name_bare_term() {
        let f = ok("alice/dev");
        assert_eq!(f.owner, user("alice"));
        assert_eq!(f.name.as_deref(), Some("dev"));
        let f = ok("me/dev");
        assert_eq!(f.owner, Some(OwnerFilter::Me));
        assert_eq!(f.name.as_deref(), Some("dev"));
        let f = ok(r#""alice/dev" template:"t""#);
        assert_eq!(f.owner, user("alice"));
        assert_eq!(f.template.as_deref(), Some("t"));
        // Empty pieces are dropped, as by Go's strings.FieldsFunc.
        let f = ok("/dev");
        assert_eq!((f.owner, f.name.as_deref()), (None, Some("dev")));
        let f = ok("alice/");
        assert_eq!((f.owner, f.name.as_deref()), (None, Some("alice")));
        let f = ok("alice//dev");
        assert_eq!((f.owner, f.name.as_deref()), (user("alice"), Some("dev")));
    }

    #[test]
    fn more_than_one_slash_is_rejected_alone() {
        let e = one_err("a/b/c status:bogus");
        assert_eq!(e.field, "q");
        assert_eq!(e.detail, r#"Query element "a/b/c" can only contain 1 '/'"#);
        assert_eq!(
            one_err("/").detail,
            r#"Query element "/" can only contain 1 '/'"#
        );
    }

    #[test]
    fn owner_from_bare_term_and_key_is_repeated() {
        let e = one_err("alice/dev owner:bob");
        assert_eq!(e.field, "owner");
        assert_eq!(
            e.detail,
            "Query param \"owner\" provided more than once, found 2 times. Only provide 1 instance of this query param."
        );
        assert_eq!(one_err("dev name:other").field, "name");
    }

    #[test]
    fn name_and_template() {
        let f = ok("name:Dev template:Docker-Go");
        assert_eq!(f.name.as_deref(), Some("dev"));
        assert_eq!(f.template.as_deref(), Some("docker-go"));
        assert_eq!(one_err("template:a template:b").field, "template");
    }

    #[test]
    fn every_status_is_accepted() {
        for s in [
            "pending",
            "starting",
            "running",
            "stopping",
            "stopped",
            "failed",
            "canceling",
            "canceled",
            "deleting",
            "deleted",
        ] {
            assert_eq!(ok(&format!("status:{s}")).status.as_deref(), Some(s));
        }
        assert_eq!(ok("status:RUNNING").status.as_deref(), Some("running"));
    }

    #[test]
    fn invalid_status() {
        let e = one_err("status:x");
        assert_eq!(e.field, "status");
        assert_eq!(
            e.detail,
            r#"Query param "status" has invalid value: "x" is not a valid value"#
        );
        // Single-valued: no csv.
        assert_eq!(
            one_err("status:running,stopped").detail,
            r#"Query param "status" has invalid value: "running,stopped" is not a valid value"#
        );
        let e = one_err("status:running status:stopped");
        assert_eq!(e.field, "status");
        assert!(e.detail.contains("provided more than once, found 2 times"));
    }

    #[test]
    fn has_agent_uses_a_hyphen() {
        for s in AGENT_STATUSES {
            assert_eq!(ok(&format!("has-agent:{s}")).has_agent.as_deref(), Some(*s));
        }
        // Not validated, as in Coder.
        assert_eq!(ok("has-agent:weird").has_agent.as_deref(), Some("weird"));
        let e = one_err("has_agent:connected");
        assert_eq!(e.field, "has_agent");
        assert_eq!(e.detail, r#""has_agent" is not a valid query param"#);
    }

    #[test]
    fn outdated_is_tristate() {
        assert_eq!(ok("").outdated, None);
        assert_eq!(ok("outdated:true").outdated, Some(true));
        assert_eq!(ok("outdated:TRUE").outdated, Some(true));
        assert_eq!(ok("outdated:t").outdated, Some(true));
        assert_eq!(ok("outdated:1").outdated, Some(true));
        assert_eq!(ok("outdated:false").outdated, Some(false));
        assert_eq!(ok("outdated:f").outdated, Some(false));
        assert_eq!(ok("outdated:0").outdated, Some(false));
        assert_eq!(ok(r#"outdated:"""#).outdated, Some(true));
    }

    #[test]
    fn dormant_only_filters_when_true() {
        assert_eq!(ok("dormant:true").dormant, Some(true));
        assert_eq!(ok("dormant:1").dormant, Some(true));
        assert_eq!(ok("dormant:false").dormant, None);
        assert_eq!(ok("").dormant, None);
    }

    #[test]
    fn bad_booleans() {
        let e = one_err("dormant:yes");
        assert_eq!(e.field, "dormant");
        assert_eq!(
            e.detail,
            r#"Query param "dormant" must be a valid boolean: strconv.ParseBool: parsing "yes": invalid syntax"#
        );
        let e = one_err("outdated:nope");
        assert_eq!(e.field, "outdated");
        assert_eq!(
            e.detail,
            r#"Query param "outdated" must be a valid boolean: strconv.ParseBool: parsing "nope": invalid syntax"#
        );
        assert_eq!(one_err("outdated:true outdated:false").field, "outdated");
    }

    #[test]
    fn last_used_times() {
        let f = ok(
            r#"last_used_after:"2024-01-02T03:04:05Z" last_used_before:"2024-06-01T12:00:00.5+02:00""#,
        );
        assert_eq!(
            f.last_used_after,
            Some(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap())
        );
        assert_eq!(
            f.last_used_before,
            Some(
                Utc.with_ymd_and_hms(2024, 6, 1, 10, 0, 0).unwrap()
                    + chrono::Duration::milliseconds(500)
            )
        );
        // The tokenizer lowercased `T`/`Z`; they are uppercased again before parsing.
        assert_eq!(
            ok(r#"last_used_after:"2024-01-02t03:04:05.123456789z""#).last_used_after,
            Some(
                Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
                    + chrono::Duration::nanoseconds(123_456_789)
            )
        );
    }

    #[test]
    fn bad_times() {
        let e = one_err(r#"last_used_after:"yesterday""#);
        assert_eq!(e.field, "last_used_after");
        assert!(
            e.detail.starts_with(
                r#"Query param "last_used_after" must be a valid date format (2006-01-02T15:04:05.999999999Z07:00): parsing time "YESTERDAY""#
            ),
            "{}",
            e.detail
        );
        let e = one_err("last_used_before:2024-01-02");
        assert_eq!(e.field, "last_used_before");
        assert!(
            e.detail.contains(r#"parsing time "2024-01-02""#),
            "{}",
            e.detail
        );
        // Go's layout needs `T`, chrono alone would accept a space.
        assert_eq!(
            one_err(r#"last_used_before:"2024-01-02 03:04:05z""#).field,
            "last_used_before"
        );
        // Unquoted, the colons of the time break the element: the tokenizer's error.
        let e = one_err("last_used_after:2024-01-02T03:04:05Z");
        assert_eq!(e.field, "q");
        assert!(e.detail.contains("can only contain 1 ':'"), "{}", e.detail);
    }

    #[test]
    fn organization_is_kept_as_typed() {
        assert_eq!(
            ok("organization:Acme").organization.as_deref(),
            Some("acme")
        );
        let id = "7d8a2d3c-9c33-4a4b-8f0e-5a4f5c8b2e11";
        assert_eq!(
            ok(&format!("organization:{id}")).organization.as_deref(),
            Some(id)
        );
        assert_eq!(
            one_err("organization:a organization:b").field,
            "organization"
        );
        let e = organization_not_found("acme");
        assert_eq!(e.field, "organization");
        assert_eq!(
            e.detail,
            r#"Query param "organization" has invalid value: organization "acme" either does not exist, or you are unauthorized to view it"#
        );
    }

    #[test]
    fn ids_are_csv_and_repeatable() {
        let a = Uuid::parse_str("7d8a2d3c-9c33-4a4b-8f0e-5a4f5c8b2e11").unwrap();
        let b = Uuid::parse_str("0f3a1b2c-1111-4222-8333-444455556666").unwrap();
        let c = Uuid::parse_str("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee").unwrap();
        let f = ok(&format!("id:{a},{b} id:{}", c.to_string().to_uppercase()));
        assert_eq!(f.ids, vec![a, b, c]);
    }

    #[test]
    fn bad_ids() {
        let e = one_err("id:abc");
        assert_eq!(e.field, "id");
        assert_eq!(
            e.detail,
            r#"Query param "id" has invalid values: invalid UUID length: 3"#
        );
        let e = one_err(
            "id:7d8a2d3c-9c33-4a4b-8f0e-5a4f5c8b2e11,zzzzzzzz-9c33-4a4b-8f0e-5a4f5c8b2e11,x",
        );
        assert_eq!(
            e.detail,
            "Query param \"id\" has invalid values: invalid UUID format\ninvalid UUID length: 1"
        );
        // An empty csv piece is an invalid UUID in Coder too.
        assert_eq!(
            one_err("id:7d8a2d3c-9c33-4a4b-8f0e-5a4f5c8b2e11,").detail,
            r#"Query param "id" has invalid values: invalid UUID length: 0"#
        );
    }

    #[test]
    fn params_presence_and_value() {
        let f = ok(r#"param:region param:"size=large,Zone=EU-1""#);
        assert_eq!(
            f.params,
            vec![
                ("region".to_string(), None),
                ("size".to_string(), Some("large".to_string())),
                ("zone".to_string(), Some("eu-1".to_string())),
            ]
        );
        // Spaces around each element are ignored.
        assert_eq!(
            ok(r#"param:"a = b""#).params,
            vec![("a ".to_string(), Some(" b".to_string()))]
        );
        assert_eq!(ok(r#"param:" a""#).params, vec![("a".to_string(), None)]);
    }

    #[test]
    fn bad_params() {
        let e = one_err("param:size=");
        assert_eq!(e.field, "param");
        assert_eq!(
            e.detail,
            r#"Query param "param" has invalid values: query element "size=" has an empty value. omit the '=' to match just on the parameter name"#
        );
        assert_eq!(
            one_err("param:a=b=c").detail,
            r#"Query param "param" has invalid values: query element "a=b=c" can only contain 1 '='"#
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = one_err("bogus:1");
        assert_eq!(e.field, "bogus");
        assert_eq!(e.detail, r#""bogus" is not a valid query param"#);
        // Newer-Coder keys are not supported.
        assert_eq!(one_err("healthy:true").field, "healthy");
        // Keys are lowercased too.
        assert_eq!(ok("Status:Running").status.as_deref(), Some("running"));
    }

    #[test]
    fn all_errors_are_collected_in_coder_order() {
        let errors = err("bogus:1 status:x dormant:maybe id:nope");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["id", "status", "dormant", "bogus"]);
    }

    #[test]
    fn tokenizer_errors_pass_through() {
        let e = one_err("owner:");
        assert_eq!(e.field, "q");
        assert_eq!(
            e.detail,
            r#"Query element "owner:" cannot start or end with ':'"#
        );
        assert_eq!(one_err("a:b:c").field, "q");
    }

    #[test]
    fn everything_at_once() {
        let id = Uuid::parse_str("7d8a2d3c-9c33-4a4b-8f0e-5a4f5c8b2e11").unwrap();
        let f = ok(&format!(
            r#"alice/dev template:"T" status:"stopped" has-agent:"timeout" outdated:"false" dormant:"true" last_used_after:"2024-01-01T00:00:00Z" last_used_before:"2024-02-01T00:00:00Z" organization:"default" id:"{id}" param:"a=b""#
        ));
        assert_eq!(
            f,
            WorkspaceFilter {
                owner: user("alice"),
                name: Some("dev".into()),
                template: Some("t".into()),
                status: Some("stopped".into()),
                has_agent: Some("timeout".into()),
                outdated: Some(false),
                dormant: Some(true),
                last_used_after: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
                last_used_before: Some(Utc.with_ymd_and_hms(2024, 2, 1, 0, 0, 0).unwrap()),
                organization: Some("default".into()),
                ids: vec![id],
                params: vec![("a".into(), Some("b".into()))],
            }
        );
    }
}
