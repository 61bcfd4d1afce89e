//! `coder completion [SHELL]`: print a shell completion script for the whole command tree, generated from
//! the same clap definition that parses the command line (so it never drifts from the real flags).
//!
//! Coder's command installs the script into the shell's configuration after a prompt; this one only prints
//! it (Coder's `--print`), which is what scripts and packagers want:
//!
//! ```sh
//! coder completion bash > ~/.local/share/bash-completion/completions/coder
//! coder completion zsh  > "${fpath[1]}/_coder"
//! coder completion fish > ~/.config/fish/completions/coder.fish
//! ```

use std::io::Write;

use anyhow::{bail, Context};
use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell as ClapShell;

/// Shells for which a script can be generated (Coder's list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

impl Shell {
    fn to_clap(self) -> ClapShell {
        match self {
            Shell::Bash => ClapShell::Bash,
            Shell::Zsh => ClapShell::Zsh,
            Shell::Fish => ClapShell::Fish,
            Shell::Powershell => ClapShell::PowerShell,
        }
    }

    /// The shell named by a path such as `$SHELL` (`/usr/bin/zsh` → zsh).
    pub fn from_path(path: &str) -> Option<Shell> {
        let name = std::path::Path::new(path).file_name()?.to_str()?;
        let name = name.strip_suffix(".exe").unwrap_or(name);
        match name {
            "bash" => Some(Shell::Bash),
            "zsh" => Some(Shell::Zsh),
            "fish" => Some(Shell::Fish),
            "pwsh" | "powershell" => Some(Shell::Powershell),
            _ => None,
        }
    }
}

#[derive(Debug, Args)]
#[command(
    about = "Print the shell completion script for bash, zsh, fish or powershell",
    after_help = "Examples:\n  coder completion bash > ~/.local/share/bash-completion/completions/coder\n  coder completion zsh > \"${fpath[1]}/_coder\"\n  coder completion fish > ~/.config/fish/completions/coder.fish"
)]
pub struct CompletionArgs {
    /// The shell to print the script for. Default: the shell named by $SHELL.
    #[arg(value_enum)]
    pub shell: Option<Shell>,

    /// The shell, as a flag (Coder's spelling); the positional argument wins.
    #[arg(short = 's', long = "shell", value_enum, value_name = "SHELL")]
    pub shell_flag: Option<Shell>,

    /// Accepted for compatibility with Coder: the script is always printed, never installed.
    #[arg(short, long)]
    pub print: bool,
}

/// Writes the completion script for the chosen (or detected) shell to stdout.
pub fn run(args: CompletionArgs) -> anyhow::Result<()> {
    let shell = match args.shell.or(args.shell_flag) {
        Some(shell) => shell,
        None => {
            let env = std::env::var("SHELL").unwrap_or_default();
            match Shell::from_path(&env) {
                Some(shell) => shell,
                None => bail!(
                    "could not detect the shell from $SHELL ({env:?}); name one: coder completion bash|zsh|fish|powershell"
                ),
            }
        }
    };
    let mut out = Vec::new();
    write_script(shell, &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .context("writing the completion script")
}

/// The completion script for `shell`, covering every subcommand and flag of the `coder` binary.
pub fn write_script(shell: Shell, out: &mut dyn Write) {
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell.to_clap(), &mut cmd, "coder", out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(shell: Shell) -> String {
        let mut out = Vec::new();
        write_script(shell, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn scripts_cover_the_command_tree() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Powershell] {
            let s = script(shell);
            // Fish names long flags without dashes (`-l http-address`).
            for word in ["server", "create", "login", "http-address", "preset"] {
                assert!(s.contains(word), "{shell:?} script lacks {word}");
            }
        }
    }

    #[test]
    fn shell_from_path() {
        assert_eq!(Shell::from_path("/bin/bash"), Some(Shell::Bash));
        assert_eq!(Shell::from_path("/usr/bin/zsh"), Some(Shell::Zsh));
        assert_eq!(Shell::from_path("/usr/local/bin/fish"), Some(Shell::Fish));
        assert_eq!(Shell::from_path("pwsh.exe"), Some(Shell::Powershell));
        assert_eq!(Shell::from_path("/bin/sh"), None);
        assert_eq!(Shell::from_path(""), None);
    }
}
