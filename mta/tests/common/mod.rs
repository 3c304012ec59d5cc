//! Running `petrel` as a process: a configuration in a temporary
//! directory, the addresses it listens on, its spool and its log.
#![allow(dead_code)]

pub mod dns;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

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
        let instance = Instance { dir, config: path };
        instance.reconfigure(config);
        instance
    }

    /// Replaces `petrel.conf` (for the next start), as [`Instance::new`]
    /// writes it.
    pub fn reconfigure(&self, config: &str) {
        let text = config.replace("{dir}", petrel_tests::path_str(self.dir.path()));
        std::fs::write(&self.config, text).expect("write petrel.conf");
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

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> usize {
    files_with(dir, "").len()
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
            if needle.is_empty() || bytes.windows(needle.len()).any(|w| w == needle) {
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

/// Accepts connections and relays each to `upstream`, recording the queue
/// id of each `250 … queued as ID` on its way to the client, before the
/// client can see it (smtp-source does not say which messages were
/// accepted). Runs until the process ends (a test binary).
pub fn recording_proxy(upstream: SocketAddr, accepted: Arc<Mutex<Vec<String>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let accepted = accepted.clone();
            let (mut client_read, mut server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut client_read, &mut server_write);
                let _ = server_write.shutdown(Shutdown::Write);
            });
            thread::spawn(move || relay_replies(server, client, &accepted));
        }
    });
    addr
}

fn relay_replies(mut server: TcpStream, mut client: TcpStream, accepted: &Mutex<Vec<String>>) {
    let mut partial = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        partial.extend_from_slice(&buf[..n]);
        while let Some(end) = partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(id) = line.strip_prefix("250 2.0.0 Ok: queued as ") {
                accepted.lock().unwrap().push(id.trim().to_owned());
            }
        }
        // Recorded first, then the client may see it.
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

/// One round of load and a crash: petrel (just started) gets Postfix's
/// smtp-source through a [`recording_proxy`] until 300 more messages were
/// acknowledged, then, a moment up to a second later, SIGKILL. `context`
/// says what petrel was doing, should the load not get going.
pub fn load_then_kill(
    petrel: Running,
    accepted: &Arc<Mutex<Vec<String>>>,
    round: usize,
    context: impl Fn(&Running) -> String,
) {
    let smtp_source = petrel_tests::require_tool("smtp-source");
    let proxy = recording_proxy(petrel.addr(), accepted.clone());
    let before = accepted.lock().unwrap().len();
    let mut source = Proc::spawn(
        "smtp-source",
        Command::new(&smtp_source)
            .args(["-s", "20", "-m", "100000", "-l", "1000"])
            .args(["-f", "a@example.org", "-t", "b@example.com"])
            .arg(proxy.to_string()),
    );
    let deadline = std::time::Instant::now() + petrel_tests::BULK_TIMEOUT;
    while accepted.lock().unwrap().len() < before + 300 {
        assert!(
            std::time::Instant::now() < deadline && !source.has_exited(),
            "round {round}: no 300 messages accepted; smtp-source:\n{}\n{}",
            source.output(),
            context(&petrel)
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(random_below(1000)));
    petrel.proc.signal("KILL");
    let killed = petrel.proc.finish(petrel_tests::BULK_TIMEOUT);
    assert!(!killed.status.success());
}

/// A pseudo-random number below `n`, from the clock: the moments of the
/// kills are meant to differ between runs.
pub fn random_below(n: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos.wrapping_mul(2_654_435_761)) % n
}
