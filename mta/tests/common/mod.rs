//! Running `petrel` as a process: a configuration in a temporary
//! directory, the addresses it listens on, its spool and its log.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petrel_tests::{Proc, TempDir, START_TIMEOUT, STOP_TIMEOUT};

/// The `petrel` binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_petrel")
}

/// A petrel instance's directory: its configuration, spool and log.
#[derive(Debug)]
pub struct Instance {
    pub dir: TempDir,
    pub config: PathBuf,
}

impl Instance {
    /// Writes `config` (which may say `{dir}` for the instance's directory)
    /// to `petrel.conf`.
    pub fn new(config: &str) -> Instance {
        let dir = petrel_tests::temp_dir();
        let path = dir.path().join("petrel.conf");
        let text = config.replace("{dir}", petrel_tests::path_str(dir.path()));
        std::fs::write(&path, text).expect("write petrel.conf");
        Instance { dir, config: path }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts `petrel -c petrel.conf ARGS` and waits until it listens.
    pub fn start(&self, args: &[&str]) -> Running {
        let mut proc = Proc::spawn(
            "petrel",
            Command::new(binary())
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .current_dir(self.dir.path()),
        );
        let output = proc.wait_for("listening on", START_TIMEOUT, |out| {
            out.contains("petrel: listening on ")
        });
        let addrs = output
            .lines()
            .filter_map(|line| line.strip_prefix("petrel: listening on "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|addr| addr.parse().expect("a socket address"))
            .collect();
        Running { proc, addrs }
    }

    /// `petrel -c petrel.conf ARGS` run to completion.
    pub fn command(&self, args: &[&str]) -> petrel_tests::Finished {
        petrel_tests::run(
            Command::new(binary())
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .current_dir(self.dir.path()),
            petrel_tests::CLIENT_TIMEOUT,
        )
    }

    /// The JSON-lines log, parsed.
    pub fn log(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    /// Every file under the spool directory (`{dir}/spool`) whose
    /// content holds `needle`.
    pub fn spool_files_with(&self, needle: &str) -> Vec<PathBuf> {
        files_with(&self.path("spool"), needle)
    }
}

/// Every file under `dir` whose content holds `needle`.
pub fn files_with(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    find_in(dir, needle.as_bytes(), &mut found);
    found
}

fn find_in(dir: &Path, needle: &[u8], found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            find_in(&path, needle, found);
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
}

/// A running petrel.
#[derive(Debug)]
pub struct Running {
    pub proc: Proc,
    pub addrs: Vec<SocketAddr>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// SIGTERM, then waits for a clean exit; returns the output.
    pub fn stop(self) -> String {
        self.proc.signal("TERM");
        let finished = self.proc.finish(STOP_TIMEOUT);
        assert!(
            finished.status.success(),
            "petrel exited with {} after SIGTERM:\n{}",
            finished.status,
            finished.output
        );
        finished.output
    }
}

/// A grace period long enough for any test's sessions.
pub const GRACE: Duration = Duration::from_secs(30);
