//! The built-in PostgreSQL: a cluster under `<cache-dir>/postgres`, run from the system's binaries.
//!
//! Layout: `data/` (the cluster), `password` (generated once, 0600), `port` (reused while free),
//! `postgres.log`. PostgreSQL refuses to run as root, so when we are root the cluster is owned by and run as
//! the unprivileged `postgres` system user. The postmaster is started with `pg_ctl` (it detaches into its
//! own session, so a terminal's Ctrl-C reaches only us and we stop it cleanly); a postmaster left behind by
//! a crashed server is detected through `postmaster.pid` and stopped before we start our own.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rand::distributions::Alphanumeric;
use rand::Rng;

pub const DB_USER: &str = "coder";
pub const DB_NAME: &str = "coder";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: apt-get install -y postgresql) or pass --postgres-url")]
    BinariesNotFound,
    #[error("running as root needs an unprivileged user to own the built-in PostgreSQL; create the 'postgres' system user (apt-get install postgresql does) or run coder as a regular user")]
    NoUnprivilegedUser,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// The unprivileged account that runs the cluster when we are root.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct BuiltinPostgres {
    root: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    /// Extra `-c name=value` settings (tests turn durability off).
    settings: Vec<(String, String)>,
    port: u16,
    password: String,
}

impl BuiltinPostgres {
    /// Finds the binaries and the account to run as; nothing is started or written yet.
    pub fn new(cache_dir: &Path) -> Result<Self, EmbeddedError> {
        let bin_dir = find_bin_dir().ok_or(EmbeddedError::BinariesNotFound)?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or(EmbeddedError::NoUnprivilegedUser)?;
            Some(RunAs {
                name: user.name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })
        } else {
            None
        };
        Ok(Self {
            root: cache_dir.join("postgres"),
            bin_dir,
            run_as,
            settings: Vec::new(),
            port: 0,
            password: String::new(),
        })
    }

    pub fn with_settings(mut self, settings: &[(&str, &str)]) -> Self {
        self.settings = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn run_as(&self) -> Option<&RunAs> {
        self.run_as.as_ref()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of another database of this cluster.
    pub fn url_for_db(&self, db: &str) -> String {
        url_for(self.port, &self.password, db)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn url(&self) -> String {
        url_for(self.port, &self.password, DB_NAME)
    }

    /// Reads the stored password and port without starting anything (`postgres-builtin-url`).
    pub fn load_url(&mut self) -> Result<String, EmbeddedError> {
        self.prepare_files()?;
        Ok(self.url())
    }

    /// Initialises the cluster on first use, then starts it and makes sure the `coder` database exists.
    /// Blocking: call from `spawn_blocking` in async code.
    pub fn start(&mut self) -> Result<String, EmbeddedError> {
        self.prepare_files()?;
        let data = self.data_dir();
        if !data.join("PG_VERSION").exists() {
            self.initdb()?;
        }
        self.stop_leftover()?;
        let opts = self.postgres_options();
        self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                self.root.join("postgres.log").as_os_str(),
                "-o".as_ref(),
                opts.as_ref(),
            ],
        )?;
        tracing::info!(target: "coderd.postgres", port = self.port, data = %data.display(), "built-in PostgreSQL started");
        self.ensure_database()?;
        Ok(self.url())
    }

    /// Fast shutdown: active connections are closed, the data is consistent. Blocking.
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        let data = self.data_dir();
        if !data.join("postmaster.pid").exists() {
            return Ok(());
        }
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-w".as_ref(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        )?;
        tracing::info!(target: "coderd.postgres", "built-in PostgreSQL stopped");
        Ok(())
    }

    fn postgres_options(&self) -> String {
        let mut opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            self.port
        );
        for (k, v) in &self.settings {
            opts.push_str(&format!(" -c {k}={v}"));
        }
        opts
    }

    /// Creates the directory, password and port files, and (as root) hands the directory to the run-as user.
    fn prepare_files(&mut self) -> Result<(), EmbeddedError> {
        fs::create_dir_all(&self.root).map_err(io(format!("create {}", self.root.display())))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(io("chmod postgres dir"))?;
        let password_file = self.root.join("password");
        self.password = match fs::read_to_string(&password_file) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ => {
                let p: String = rand::thread_rng()
                    .sample_iter(&Alphanumeric)
                    .take(32)
                    .map(char::from)
                    .collect();
                write_private(&password_file, &p)?;
                p
            }
        };
        let port_file = self.root.join("port");
        let stored = fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok());
        let running = self.data_dir().join("postmaster.pid").exists();
        self.port = match stored {
            // A running cluster (ours from a crash) holds its port; keep it so the URL stays stable.
            Some(p) if running || port_is_free(p) => p,
            _ => {
                let p = free_port().map_err(io("find a free port"))?;
                write_private(&port_file, &p.to_string())?;
                p
            }
        };
        if let Some(user) = &self.run_as {
            grant_traversal(&self.root, user)?;
            chown_tree(&self.root, user)?;
        }
        Ok(())
    }

    fn initdb(&self) -> Result<(), EmbeddedError> {
        let data = self.data_dir();
        if data.exists() {
            // A half-written cluster from an interrupted first start: start over.
            fs::remove_dir_all(&data).map_err(io("remove incomplete data dir"))?;
        }
        if let Some(user) = &self.run_as {
            tracing::info!(target: "coderd.postgres", user = %user.name, "running as root: the built-in PostgreSQL runs as an unprivileged user");
        }
        let pwfile = self.root.join(".pwfile");
        write_private(&pwfile, &self.password)?;
        if let Some(user) = &self.run_as {
            chown(&pwfile, user)?;
        }
        let result = self.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                DB_USER.as_ref(),
                format!("--pwfile={}", pwfile.display()).as_ref(),
                "-A".as_ref(),
                "scram-sha-256".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
            ],
        );
        let _ = fs::remove_file(&pwfile);
        result.map(|_| ())
    }

    /// Deals with `postmaster.pid` left by a crash: stop the orphaned postmaster, or drop a stale file.
    fn stop_leftover(&self) -> Result<(), EmbeddedError> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let Ok(contents) = fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid = contents
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok());
        let alive_postgres = pid.is_some_and(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmd| String::from_utf8_lossy(&cmd).contains("postgres"))
                .unwrap_or(false)
        });
        if alive_postgres {
            tracing::warn!(target: "coderd.postgres", pid, "a built-in PostgreSQL from an earlier run is still running; stopping it");
            self.stop()
        } else {
            tracing::warn!(target: "coderd.postgres", "removing stale postmaster.pid");
            fs::remove_file(&pid_file).map_err(io("remove stale postmaster.pid"))
        }
    }

    fn ensure_database(&self) -> Result<(), EmbeddedError> {
        // psql is part of the client package, which the server package always depends on.
        let exists = self.psql(
            "postgres",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"),
        )?;
        if exists.trim() != "1" {
            self.psql("postgres", &format!("CREATE DATABASE {DB_NAME}"))?;
        }
        Ok(())
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String, EmbeddedError> {
        let psql = self.bin_dir.join("psql");
        let program = if psql.exists() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let out = Command::new(&program)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(url_for(self.port, &self.password, db))
            .output()
            .map_err(io("run psql"))?;
        check("psql", out).map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<Output, EmbeddedError> {
        let mut cmd = Command::new(self.bin_dir.join(tool));
        cmd.args(args).current_dir(&self.root).env("LC_ALL", "C");
        if let Some(user) = &self.run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(user.uid).gid(user.gid);
        }
        // pg_ctl's postmaster keeps the pipes open; send its output to the log only.
        cmd.stdin(std::process::Stdio::null());
        let out = cmd.output().map_err(io(format!("run {tool}")))?;
        check(tool, out)
    }
}

fn check(command: &str, out: Output) -> Result<Output, EmbeddedError> {
    if out.status.success() {
        Ok(out)
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(EmbeddedError::Command {
            command: command.into(),
            status: out.status.to_string(),
            stderr,
        })
    }
}

pub fn url_for(port: u16, password: &str, db: &str) -> String {
    format!("postgres://{DB_USER}:{password}@127.0.0.1:{port}/{db}?sslmode=disable")
}

/// Where Debian and Ubuntu install the server binaries, one folder per major version.
const DEBIAN_LIB_DIR: &str = "/usr/lib/postgresql";

/// `initdb` on PATH, else the newest `/usr/lib/postgresql/<major>/bin`. `CODER_BUILTIN_POSTGRES_LIB_DIR`
/// replaces the Debian folder (a test hook, so the missing-binaries path can be exercised).
pub fn find_bin_dir() -> Option<PathBuf> {
    let lib_dir = std::env::var_os("CODER_BUILTIN_POSTGRES_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEBIAN_LIB_DIR));
    find_bin_dir_in(std::env::var_os("PATH"), &lib_dir)
}

fn find_bin_dir_in(path: Option<std::ffi::OsString>, lib_dir: &Path) -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).exists())
    };
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            if has_all(&dir) {
                // Debian links initdb into /usr/bin only sometimes; resolve to the real bin dir for psql.
                let real = fs::canonicalize(dir.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf));
                return Some(real.filter(|d| has_all(d)).unwrap_or(dir));
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(lib_dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, dir)| has_all(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn write_private(path: &Path, contents: &str) -> Result<(), EmbeddedError> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("write {}", path.display())))?;
    f.write_all(contents.as_bytes())
        .map_err(io(format!("write {}", path.display())))
}

use std::os::unix::fs::OpenOptionsExt;

fn chown(path: &Path, user: &RunAs) -> Result<(), EmbeddedError> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .map_err(io(format!("chown {}", path.display())))
}

fn chown_tree(root: &Path, user: &RunAs) -> Result<(), EmbeddedError> {
    let meta = fs::symlink_metadata(root).map_err(io(format!("stat {}", root.display())))?;
    if meta.uid() != user.uid || meta.gid() != user.gid {
        chown(root, user)?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(root).map_err(io(format!("read {}", root.display())))? {
            let entry = entry.map_err(io("read dir entry"))?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// The run-as user must be able to reach the data directory. When an ancestor (typically `/root`, mode
/// 0700) blocks it, grant search-only permission (`o+x`: no listing) and say so.
fn grant_traversal(dir: &Path, user: &RunAs) -> Result<(), EmbeddedError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for ancestor in parent.ancestors() {
        let meta = fs::metadata(ancestor).map_err(io(format!("stat {}", ancestor.display())))?;
        let mode = meta.permissions().mode();
        let can_search = if meta.uid() == user.uid {
            mode & 0o100 != 0
        } else if meta.gid() == user.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !can_search {
            tracing::warn!(target: "coderd.postgres", dir = %ancestor.display(), user = %user.name,
                "granting search permission (o+x) so the PostgreSQL user can reach its data directory");
            fs::set_permissions(ancestor, fs::Permissions::from_mode(mode | 0o001))
                .map_err(io(format!("chmod o+x {}", ancestor.display())))?;
        }
    }
    Ok(())
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits for a TCP port to accept connections (used by callers that start a cluster in the background).
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_newest_debian_version_and_nothing_in_empty_dirs() {
        let root = tempfile::tempdir().unwrap();
        for major in ["13", "15", "9"] {
            let bin = root.path().join(major).join("bin");
            fs::create_dir_all(&bin).unwrap();
            for tool in ["initdb", "pg_ctl", "postgres"] {
                fs::write(bin.join(tool), "").unwrap();
            }
        }
        let found = find_bin_dir_in(None, root.path()).unwrap();
        assert_eq!(found, root.path().join("15").join("bin"));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            find_bin_dir_in(Some("/nonexistent".into()), empty.path()),
            None
        );
    }

    #[test]
    fn url_shape() {
        assert_eq!(
            url_for(5432, "pw", "coder"),
            "postgres://coder:pw@127.0.0.1:5432/coder?sslmode=disable"
        );
    }
}
