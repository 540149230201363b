//! A private PostgreSQL cluster a fault test can stop, start, reconfigure and fill: made
//! with the server binaries of `PG_BINDIR` (as scripts/lib/postgres.sh makes them), run
//! by `PG_OS_USER` when the tests run as root, deleted on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const PASSWORD: &str = "fault-test";

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bindir: PathBuf,
    os_user: Option<String>,
    mounts: Vec<PathBuf>,
}

/// The server binaries: `PG_BINDIR`, else the newest /usr/lib/postgresql/*/bin.
fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
    });
    found.pop().expect(
        "PostgreSQL server binaries not found: set PG_BINDIR (./scripts/test sets it) or install postgresql",
    )
}

pub fn running_as_root() -> bool {
    let output = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

/// PostgreSQL refuses to run as root: then `PG_OS_USER`, else `postgres`.
fn os_user() -> Option<String> {
    running_as_root()
        .then(|| std::env::var("PG_OS_USER").unwrap_or_else(|_| "postgres".to_string()))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn checked(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Cluster {
    /// A new cluster, started, with `settings` appended to postgresql.conf.
    pub fn start_new(settings: &[&str]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ketamine-faults-{}", uuid::Uuid::new_v4().simple()));
        let cluster = Cluster {
            dir,
            port: free_port(),
            bindir: bindir(),
            os_user: os_user(),
            mounts: Vec::new(),
        };
        cluster.own_dir(&cluster.dir);
        let password_file = cluster.dir.join("password");
        std::fs::write(&password_file, PASSWORD).unwrap();
        cluster.give(&password_file);
        let data = cluster.data();
        checked(
            "initdb",
            cluster
                .as_os_user(&cluster.bindir.join("initdb"))
                .args(["--username=postgres", "--encoding=UTF8", "--lc-collate=C"])
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pgdata={}", data.display()))
                .arg(format!("--pwfile={}", password_file.display()))
                .output()
                .unwrap(),
        );
        let mut conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n",
            cluster.port,
            cluster.dir.display()
        );
        for line in settings {
            conf.push_str(line);
            conf.push('\n');
        }
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        cluster.start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_os_user(&self, program: &Path) -> Command {
        match &self.os_user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    /// Makes `dir` (mode 700) and hands it to the cluster's OS user.
    pub fn own_dir(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        self.give(dir);
        checked(
            "chmod",
            Command::new("chmod").arg("700").arg(dir).output().unwrap(),
        );
    }

    fn give(&self, path: &Path) {
        if let Some(user) = &self.os_user {
            checked(
                "chown",
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(path)
                    .output()
                    .unwrap(),
            );
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.as_os_user(&self.bindir.join("pg_ctl"))
            .arg(format!("--pgdata={}", self.data().display()))
            .args(args)
            .output()
            .unwrap()
    }

    pub fn start(&self) {
        let log = format!("--log={}", self.dir.join("postgres.log").display());
        checked(
            "pg_ctl start",
            self.pg_ctl(&["start", "--wait", "--timeout=60", &log]),
        );
    }

    /// A fast shutdown: sessions are terminated, open transactions rolled back.
    pub fn stop_fast(&self) {
        checked(
            "pg_ctl stop",
            self.pg_ctl(&["stop", "--mode=fast", "--wait", "--timeout=60"]),
        );
    }

    /// Runs SQL as the superuser over the unix socket (`psql -At`) and returns its output.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        checked(
            &format!("psql {sql}"),
            Command::new(self.bindir.join("psql"))
                .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres"])
                .arg("-h")
                .arg(&self.dir)
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-d")
                .arg(database)
                .arg("-c")
                .arg(sql)
                .output()
                .unwrap(),
        )
        .trim()
        .to_string()
    }

    /// Creates a database and returns its URL (the superuser, over TCP, with its password).
    pub fn create_database(&self, name: &str, tablespace: Option<&str>) -> String {
        let placement = tablespace.map_or(String::new(), |t| format!(" TABLESPACE {t}"));
        self.sql("postgres", &format!("CREATE DATABASE {name}{placement}"));
        self.url(name)
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Mounts a tmpfs of `megabytes` at `dir` for the cluster's OS user (needs root, or
    /// password-less sudo): a filesystem that really fills up.
    pub fn mount_tmpfs(&mut self, dir: &Path, megabytes: u64) {
        std::fs::create_dir_all(dir).unwrap();
        privileged(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={megabytes}m,mode=700"),
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        self.mounts.push(dir.to_path_buf());
        self.give(dir);
    }

    /// Changes the size of a tmpfs mounted by `mount_tmpfs` (never below what it holds).
    pub fn resize_tmpfs(&self, dir: &Path, kilobytes: u64) {
        privileged(&[
            "mount",
            "-o",
            &format!("remount,size={kilobytes}k"),
            dir.to_str().unwrap(),
        ]);
    }
}

/// Runs a command as root: directly when the tests are root, else through `sudo -n`.
fn privileged(args: &[&str]) {
    let output = if running_as_root() {
        Command::new(args[0]).args(&args[1..]).output()
    } else {
        Command::new("sudo").arg("-n").args(args).output()
    }
    .unwrap();
    checked(
        &format!(
            "{} (the disk-full test mounts a size-limited tmpfs: run the tests as root or with password-less sudo)",
            args.join(" ")
        ),
        output,
    );
}

/// Kilobytes used on the filesystem holding `dir`.
pub fn used_kilobytes(dir: &Path) -> u64 {
    let output = checked(
        "df",
        Command::new("df")
            .args(["-k", "--output=used"])
            .arg(dir)
            .output()
            .unwrap(),
    );
    output.lines().nth(1).unwrap().trim().parse().unwrap()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "--mode=immediate", "--wait", "--timeout=30"]);
        for mount in self.mounts.iter().rev() {
            let _ = if running_as_root() {
                Command::new("umount").arg(mount).output()
            } else {
                Command::new("sudo")
                    .args(["-n", "umount"])
                    .arg(mount)
                    .output()
            };
        }
        if std::thread::panicking() {
            eprintln!(
                "PostgreSQL log of the failed test:\n{}",
                std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
