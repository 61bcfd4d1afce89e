//! The real binary's help, version and completion output, and `docs/configuration.md` kept in step with
//! `coder server --help`: every flag the binary lists is documented with the same environment variable and
//! default, and the docs list no flag the binary lacks. (`server_process.rs` spot-checks a few flags; this
//! compares the whole set, for `coder server` and each of its subcommands.)

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_coder");

/// The commands whose flags `docs/configuration.md` documents, each under a heading
/// ``### `coder <args>` `` followed by a `| flag | env | default | meaning |` table.
const DOCUMENTED: &[&[&str]] = &[
    &["server"],
    &["server", "postgres-builtin-url"],
    &["server", "postgres-builtin-serve"],
    &["server", "create-admin-user"],
];

/// What a flag declares: its environment variable and default, `None` when it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FlagSpec {
    env: Option<String>,
    default: Option<String>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with no `CODER_*` variables inherited: clap prints a set variable's value inside
/// `[env: NAME=value]`, which would make the output depend on the caller's environment.
fn run(args: &[&str], extra_env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CODER_") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the coder binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text between `open` and the next `]` in `entry`.
fn bracketed<'a>(entry: &'a str, open: &str) -> Option<&'a str> {
    let start = entry.find(open)? + open.len();
    let len = entry[start..].find(']')?;
    Some(&entry[start..start + len])
}

/// Every `--flag` of a clap help text with its `[env: NAME=]` and `[default: VALUE]`, by long name.
///
/// An entry starts at an option line (indented less than its description, beginning with `-`) and runs
/// until the next one; wrapped lines are joined, so a bracket split across lines still parses.
fn parse_help(help: &str) -> BTreeMap<String, FlagSpec> {
    let mut entries: Vec<String> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line.trim_end() == "Options:" {
            in_options = true;
            continue;
        }
        if !in_options {
            continue;
        }
        if !line.is_empty() && !line.starts_with(' ') {
            // The next section (e.g. an `after_help` text).
            break;
        }
        let indent = line.len() - line.trim_start().len();
        if line.trim_start().starts_with('-') && indent < 8 {
            entries.push(line.to_owned());
        } else if let Some(last) = entries.last_mut() {
            last.push(' ');
            last.push_str(line);
        }
    }
    let mut flags = BTreeMap::new();
    for entry in entries {
        let entry = collapse(&entry);
        let long = entry
            .split(' ')
            .map(|t| t.trim_end_matches(','))
            .find(|t| t.starts_with("--"))
            .unwrap_or_else(|| panic!("option entry without a long flag: {entry}"))
            .to_owned();
        let env = bracketed(&entry, "[env: ").map(|e| e.split('=').next().unwrap_or(e).to_owned());
        let default = bracketed(&entry, "[default: ").map(str::to_owned);
        let previous = flags.insert(long.clone(), FlagSpec { env, default });
        assert!(previous.is_none(), "{long} listed twice in the help");
    }
    flags
}

/// The `| flag | env | default | meaning |` table under the heading ``### `coder <command>` ``, by long
/// flag. Env and default cells are `` `VALUE` `` or `—` (none); a default of the empty string is written
/// `` `""` ``, as clap prints it.
fn parse_docs_table(docs: &str, command: &str) -> BTreeMap<String, FlagSpec> {
    let heading = format!("### `coder {command}`");
    let mut lines = docs.lines().skip_while(|l| l.trim_end() != heading);
    assert!(
        lines.next().is_some(),
        "docs/configuration.md has no heading {heading:?}"
    );
    let rows: Vec<&str> = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(
        rows.len() >= 3,
        "no table under {heading:?} in docs/configuration.md"
    );
    let header: Vec<String> = cells(rows[0]);
    assert_eq!(
        header,
        ["flag", "env", "default", "meaning"],
        "table header under {heading:?}"
    );
    let cell_value = |cell: &str| -> Option<String> {
        let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
        Some(inner.to_owned())
    };
    let mut flags = BTreeMap::new();
    for row in &rows[2..] {
        let c = cells(row);
        assert_eq!(c.len(), 4, "row under {heading:?} without 4 cells: {row}");
        let longs: Vec<String> = c[0]
            .split('`')
            .filter(|t| t.starts_with("--"))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            longs.len(),
            1,
            "flag cell under {heading:?} must name one `--flag`: {row}"
        );
        let spec = FlagSpec {
            env: cell_value(&c[1]),
            default: cell_value(&c[2]),
        };
        assert!(
            !c[3].is_empty(),
            "{} under {heading:?} has no meaning",
            longs[0]
        );
        let previous = flags.insert(longs[0].clone(), spec);
        assert!(
            previous.is_none(),
            "{} documented twice under {heading:?}",
            longs[0]
        );
    }
    flags
}

/// The cells of a table row; `\|` is a literal `|` inside a cell, as in GitHub's Markdown.
fn cells(row: &str) -> Vec<String> {
    const PIPE: &str = "\u{1}";
    row.trim()
        .replace("\\|", PIPE)
        .trim_start_matches('|')
        .trim_end_matches('|')
        .split('|')
        .map(|c| c.trim().replace(PIPE, "|"))
        .collect()
}

fn show(spec: &FlagSpec) -> String {
    format!(
        "env {}, default {}",
        spec.env.as_deref().unwrap_or("—"),
        spec.default.as_deref().unwrap_or("—")
    )
}

#[test]
fn server_help_matches_the_configuration_docs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let docs = std::fs::read_to_string(path).expect("read docs/configuration.md");
    let mut problems = Vec::new();
    for args in DOCUMENTED {
        let command = args.join(" ");
        let mut help_args = args.to_vec();
        help_args.push("--help");
        let out = run(&help_args, &[]);
        assert_eq!(out.code, 0, "coder {command} --help: {}", out.stderr);
        let help = parse_help(&out.stdout);
        assert!(
            help.contains_key("--help") && help.len() >= 2,
            "parsed no flags from `coder {command} --help`:\n{}",
            out.stdout
        );
        let documented = parse_docs_table(&docs, &command);
        for (flag, spec) in &help {
            match documented.get(flag) {
                None => problems.push(format!(
                    "coder {command}: {flag} ({}) is not in docs/configuration.md",
                    show(spec)
                )),
                Some(doc) if doc != spec => problems.push(format!(
                    "coder {command}: {flag}: --help says {}, docs say {}",
                    show(spec),
                    show(doc)
                )),
                Some(_) => {}
            }
        }
        for flag in documented.keys() {
            if !help.contains_key(flag) {
                problems.push(format!(
                    "coder {command}: {flag} is documented but not in --help"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md is out of date:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_help_parser_reads_wrapped_entries() {
    let help = "Options:\n      --a <A>\n          Something long [env:\n          CODER_A=] [default:\n          1m]\n  -v, --verbose [<V>]\n          Debug [env: CODER_VERBOSE=x] [default: false]\n      --secret <S>\n          Hidden [env: CODER_SECRET]\n  -h, --help\n          Print help\n";
    let flags = parse_help(help);
    let spec = |env: Option<&str>, default: Option<&str>| FlagSpec {
        env: env.map(str::to_owned),
        default: default.map(str::to_owned),
    };
    assert_eq!(flags["--a"], spec(Some("CODER_A"), Some("1m")));
    assert_eq!(
        flags["--verbose"],
        spec(Some("CODER_VERBOSE"), Some("false"))
    );
    assert_eq!(flags["--secret"], spec(Some("CODER_SECRET"), None));
    assert_eq!(flags["--help"], spec(None, None));
    assert_eq!(flags.len(), 4);
}

#[test]
fn version_flag_and_subcommand_print_coders_version_text() {
    let flag = run(&["--version"], &[]);
    assert_eq!(flag.code, 0, "{}", flag.stderr);
    let first = flag.stdout.lines().next().unwrap_or_default();
    let expected = format!("Coder v{}", env!("CARGO_PKG_VERSION"));
    assert!(
        first == expected || first.starts_with(&format!("{expected}+")),
        "first line {first:?}, expected {expected:?} (optionally +commit)"
    );
    assert!(flag
        .stdout
        .contains("Full build of Coder, supports the server subcommand."));

    let short = run(&["-V"], &[]);
    assert_eq!(short.stdout, flag.stdout);
    let sub = run(&["version"], &[]);
    assert_eq!(sub.code, 0, "{}", sub.stderr);
    assert_eq!(sub.stdout, flag.stdout);

    let json = run(&["version", "--output", "json"], &[]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: Value = serde_json::from_str(&json.stdout).expect("version JSON");
    let version = v["version"].as_str().unwrap();
    assert!(version.starts_with(coder::app::VERSION), "{version}");
    assert_eq!(first, format!("Coder {version}"));
    for key in ["build_time", "external_url", "slim", "agpl"] {
        assert!(v.get(key).is_some(), "{key} missing from {v}");
    }
}

#[test]
fn completion_prints_a_script_for_each_shell() {
    let bash = run(&["completion", "bash"], &[]);
    assert_eq!(bash.code, 0, "{}", bash.stderr);
    for word in ["server", "create", "login", "--http-address", "complete -F"] {
        assert!(bash.stdout.contains(word), "bash script lacks {word:?}");
    }
    let zsh = run(&["completion", "zsh"], &[]);
    assert_eq!(zsh.code, 0, "{}", zsh.stderr);
    assert!(zsh.stdout.starts_with("#compdef coder"));
    let fish = run(&["completion", "--shell", "fish"], &[]);
    assert_eq!(fish.code, 0, "{}", fish.stderr);
    assert!(fish.stdout.contains("complete -c coder"));
    assert!(fish.stdout.contains("create"));

    // Without a shell argument the shell comes from $SHELL.
    let detected = run(&["completion"], &[("SHELL", "/usr/bin/zsh")]);
    assert_eq!(detected.code, 0, "{}", detected.stderr);
    assert_eq!(detected.stdout, zsh.stdout);
    let unknown = run(&["completion"], &[("SHELL", "/bin/sh")]);
    assert_ne!(unknown.code, 0);
    assert!(unknown.stderr.contains("bash"), "{}", unknown.stderr);
    let bad = run(&["completion", "tcsh"], &[]);
    assert_ne!(bad.code, 0);
}
