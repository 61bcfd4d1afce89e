//! The local runtime: a workspace is a directory under `<cache-dir>/workspaces/<workspace id>`; `start`
//! launches one `coder agent` process per agent, each in its own session (so it survives a server restart
//! and a terminal's Ctrl-C), with `HOME` set to the workspace directory; `stop` ends the agents' process
//! groups; `delete` also removes the directory. Each agent's pid is kept in `agent-<name>.pid` beside its
//! log, so a later stop finds it even after a server restart.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use uuid::Uuid;

pub fn workspace_dir(cache_dir: &Path, workspace: Uuid) -> PathBuf {
    workspaces_dir(cache_dir).join(workspace.to_string())
}

fn workspaces_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("workspaces")
}

/// An agent to launch.
pub struct AgentLaunch<'a> {
    pub name: &'a str,
    pub token: Uuid,
}

/// Starts the agents of a workspace. Already running agents of an earlier build are stopped first.
pub fn start(
    binary: &Path,
    cache_dir: &Path,
    workspace: Uuid,
    access_url: &str,
    agents: &[AgentLaunch<'_>],
) -> std::io::Result<Vec<u32>> {
    stop(cache_dir, workspace)?;
    let dir = workspace_dir(cache_dir, workspace);
    std::fs::create_dir_all(&dir)?;
    let mut pids = Vec::new();
    for agent in agents {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("agent-{}.log", agent.name)))?;
        let mut cmd = std::process::Command::new(binary);
        cmd.arg("agent")
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &dir)
            .env("CODER_AGENT_URL", access_url)
            .env("CODER_AGENT_TOKEN", agent.token.to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; it detaches the agent into its own session and group.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id();
        std::fs::write(
            dir.join(format!("agent-{}.pid", agent.name)),
            pid.to_string(),
        )?;
        // Reap the child when it exits so it never lingers as a zombie while we run.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        pids.push(pid);
    }
    Ok(pids)
}

/// Ends every agent process group of the workspace: SIGTERM, then SIGKILL after a grace period.
pub fn stop(cache_dir: &Path, workspace: Uuid) -> std::io::Result<()> {
    let dir = workspace_dir(cache_dir, workspace);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut groups = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("agent-") && n.ends_with(".pid"));
        if !is_pid {
            continue;
        }
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            // Only signal a process that is still our agent (pids get reused).
            if is_agent_process(pid) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
                groups.push(pid);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while groups.iter().any(|p| is_agent_process(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in groups.into_iter().filter(|p| is_agent_process(*p)) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    Ok(())
}

/// Whether any agent of the workspace has a live process.
pub fn any_running(cache_dir: &Path, workspace: Uuid) -> bool {
    let Ok(entries) = std::fs::read_dir(workspace_dir(cache_dir, workspace)) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        let is_pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("agent-") && n.ends_with(".pid"));
        is_pid
            && std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .is_some_and(is_agent_process)
    })
}

/// Whether every named agent of the workspace has a live process (a claim keeps them running).
pub fn all_running(cache_dir: &Path, workspace: Uuid, names: &[&str]) -> bool {
    let dir = workspace_dir(cache_dir, workspace);
    names.iter().all(|name| {
        std::fs::read_to_string(dir.join(format!("agent-{name}.pid")))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .is_some_and(is_agent_process)
    })
}

/// Stops the agents and removes the workspace directory.
pub fn delete(cache_dir: &Path, workspace: Uuid) -> std::io::Result<()> {
    stop(cache_dir, workspace)?;
    match std::fs::remove_dir_all(workspace_dir(cache_dir, workspace)) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Stops the agents of every workspace under `cache_dir` (e.g. before the directory is removed).
pub fn stop_all(cache_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(workspaces_dir(cache_dir)) else {
        return;
    };
    for workspace in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
    {
        let _ = stop(cache_dir, workspace);
    }
}

/// A live (not zombie) process whose command line is `… agent`.
fn is_agent_process(pid: i32) -> bool {
    let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false);
    alive
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"agent"))
            .unwrap_or(false)
}
