//! The harness of Petrel's conformance suite and interop tests.
//!
//! The suite is written once and run against each runtime (tokio, mio,
//! smol) through the runtimes' example binaries, which share one command
//! line: `<runtime>-sink` (a receiving server) and `<runtime>-send` (a
//! delivering client). Around them this crate starts the real peers nobody
//! here wrote — swaks, `openssl s_client`, Python's smtplib and aiosmtpd,
//! Postfix's `smtp-source` and `smtp-sink` — and speaks raw SMTP over
//! sockets where the test is about bytes on the wire.
//!
//! Rules every helper keeps, so a broken runtime fails a test instead of
//! hanging CI:
//! - every child process is owned by a [`Proc`], killed (SIGKILL) and reaped
//!   when dropped;
//! - every wait is bounded and fails with the process's output;
//! - every socket is on 127.0.0.1, every port chosen by the kernel.
//!
//! A missing peer fails the test with the command that installs it (the
//! project's `scripts/setup` installs them all); nothing is skipped.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// How long a process may take to start and say it is ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to stop after SIGTERM, once its clients are gone.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one short client run (swaks, smtplib, a few messages) may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one bulk run (thousands of messages, 50 MB bodies) may take, in
/// unoptimised builds on a loaded 2-core CI machine. A bound against hangs,
/// not a performance assertion.
pub const BULK_TIMEOUT: Duration = Duration::from_secs(600);

/// Where each peer comes from, for the failure message when it is missing.
const INSTALL_HINT: &str = "run `bash scripts/setup` from the repository root, which installs \
     every peer (apt-get install -y swaks libnet-ssleay-perl postfix openssl iproute2; \
     python3 -m pip install aiosmtpd)";

// ---------------------------------------------------------------------------
// Runtimes and their example binaries

/// One of the three runtimes under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    Tokio,
    Mio,
    Smol,
}

impl Runtime {
    pub const ALL: [Runtime; 3] = [Runtime::Tokio, Runtime::Mio, Runtime::Smol];

    /// The runtime's short name, which prefixes its example binaries.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Tokio => "tokio",
            Runtime::Mio => "mio",
            Runtime::Smol => "smol",
        }
    }

    /// The runtime called `name` (`tokio`, `mio` or `smol`).
    pub fn from_name(name: &str) -> Runtime {
        Runtime::ALL
            .into_iter()
            .find(|runtime| runtime.name() == name)
            .unwrap_or_else(|| panic!("no runtime called {name:?}"))
    }

    /// The runtime's cargo package, which owns the examples.
    pub fn package(self) -> &'static str {
        match self {
            Runtime::Tokio => "petrel-tokio",
            Runtime::Mio => "petrel-mio",
            Runtime::Smol => "petrel-smol",
        }
    }

    /// The path of the `<runtime>-sink` example binary.
    pub fn sink_binary(self) -> PathBuf {
        example_binary(self, "sink")
    }

    /// The path of the `<runtime>-send` example binary.
    pub fn send_binary(self) -> PathBuf {
        example_binary(self, "send")
    }
}

/// The directory cargo puts example binaries in, next to this test binary:
/// `<target>/<profile>/deps/<test>` → `<target>/<profile>/examples/`.
/// `PETREL_EXAMPLES_DIR` overrides it (to run the suite against release builds).
pub fn examples_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PETREL_EXAMPLES_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps/", exe.display()));
    profile_dir.join("examples")
}

fn example_binary(runtime: Runtime, role: &str) -> PathBuf {
    let name = format!("{}-{role}", runtime.name());
    let path = examples_dir().join(&name);
    assert!(
        path.is_file(),
        "{} is missing: `cargo build --workspace --all-features --examples` builds it \
         (so does `cargo test --workspace --all-features`; `cargo test -p petrel-tests` alone \
         does not build the {} examples)",
        path.display(),
        runtime.package(),
    );
    path
}

// ---------------------------------------------------------------------------
// Peers

/// The path of the program `name`, searched in `PATH` and in the sbin
/// directories (where Postfix's tools live). Fails with the install command
/// when it is missing.
pub fn require_tool(name: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("peer `{name}` is not installed: {INSTALL_HINT}"))
}

/// `python3`, checked to have aiosmtpd when `with_aiosmtpd`.
pub fn require_python(with_aiosmtpd: bool) -> PathBuf {
    let python = require_tool("python3");
    if with_aiosmtpd {
        let check = run(
            Command::new(&python).args(["-c", "import aiosmtpd"]),
            CLIENT_TIMEOUT,
        );
        assert!(
            check.status.success(),
            "python3 has no aiosmtpd module: {INSTALL_HINT}\n{}",
            check.output
        );
    }
    python
}

/// swaks, checked to have its TLS support (Net::SSLeay, a Debian Recommends
/// that minimal installs lack).
pub fn require_swaks() -> PathBuf {
    let swaks = require_tool("swaks");
    let check = run(
        Command::new("perl").args(["-MNet::SSLeay", "-e", "1"]),
        CLIENT_TIMEOUT,
    );
    assert!(
        check.status.success(),
        "swaks has no TLS support (perl module Net::SSLeay): {INSTALL_HINT}\n{}",
        check.output
    );
    swaks
}

// ---------------------------------------------------------------------------
// Processes

/// Output captured from a child: its stdout exactly, and stdout and stderr
/// merged line by line in arrival order (a line is never split by the other
/// stream, so `listening on ADDR` stays whole even when a warning is written
/// to stderr piecewise at the same moment).
#[derive(Debug, Default)]
struct Captured {
    state: Mutex<CapturedState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct CapturedState {
    /// stdout and stderr, merged by whole lines (ended by LF or CR).
    text: String,
    /// stdout alone, as it arrives.
    stdout: String,
    open_streams: usize,
}

/// Which output a wait looks at.
#[derive(Clone, Copy, Debug)]
enum Source {
    Merged,
    Stdout,
}

impl CapturedState {
    fn get(&self, source: Source) -> &str {
        match source {
            Source::Merged => &self.text,
            Source::Stdout => &self.stdout,
        }
    }
}

impl Captured {
    /// Appends whatever `stream` yields as it arrives. Records end with LF
    /// or CR (smtp-sink's counters end with CR only).
    fn pump(self: &Arc<Self>, mut stream: impl Read + Send + 'static, is_stdout: bool) {
        self.state.lock().unwrap().open_streams += 1;
        let captured = Arc::clone(self);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            // Bytes of a UTF-8 sequence split between two reads.
            let mut pending = Vec::new();
            // The start of a line not yet complete.
            let mut partial_line = String::new();
            loop {
                let n = match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&chunk[..n]);
                let complete = match std::str::from_utf8(&pending) {
                    Ok(_) => pending.len(),
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    Err(_) => pending.len(),
                };
                let text = String::from_utf8_lossy(&pending[..complete]).into_owned();
                pending.drain(..complete);
                partial_line.push_str(&text);
                let mut state = captured.state.lock().unwrap();
                if is_stdout {
                    state.stdout.push_str(&text);
                }
                if let Some(end) = partial_line.rfind(['\n', '\r']) {
                    state.text.push_str(&partial_line[..=end]);
                    partial_line.drain(..=end);
                }
                captured.changed.notify_all();
            }
            let rest = String::from_utf8_lossy(&pending).into_owned();
            let mut state = captured.state.lock().unwrap();
            if is_stdout {
                state.stdout.push_str(&rest);
            }
            partial_line.push_str(&rest);
            if !partial_line.is_empty() {
                partial_line.push('\n');
                state.text.push_str(&partial_line);
            }
            state.open_streams -= 1;
            captured.changed.notify_all();
        });
    }

    fn text(&self, source: Source) -> String {
        self.state.lock().unwrap().get(source).to_string()
    }

    /// Waits until `done` holds for the state, at most `timeout`; returns
    /// whether it did.
    fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&CapturedState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().unwrap();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            // Wake up now and then even without output, so callers' predicates
            // that look elsewhere (process exit) are re-evaluated.
            let step = (deadline - now).min(Duration::from_millis(50));
            state = self.changed.wait_timeout(state, step).unwrap().0;
        }
    }
}

/// A child process that is killed and reaped when dropped, with its stdout
/// and stderr captured together.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    captured: Arc<Captured>,
    status: Option<ExitStatus>,
}

/// How a process ended, and everything it printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr merged by lines.
    pub output: String,
    /// stdout alone.
    pub stdout: String,
}

impl Proc {
    /// Starts `command` with stdout and stderr captured and stdin piped
    /// (closing it is [`Proc::close_stdin`]).
    pub fn spawn(name: impl Into<String>, command: &mut Command) -> Proc {
        let name = name.into();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let captured = Arc::new(Captured::default());
        if let Some(stdout) = child.stdout.take() {
            captured.pump(stdout, true);
        }
        if let Some(stderr) = child.stderr.take() {
            captured.pump(stderr, false);
        }
        Proc {
            name,
            child,
            captured,
            status: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far, stdout and stderr merged by
    /// lines.
    pub fn output(&self) -> String {
        self.captured.text(Source::Merged)
    }

    /// What the process printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.captured.text(Source::Stdout)
    }

    /// The process's stdin (until [`Proc::close_stdin`]).
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.child.stdin.as_mut().expect("stdin already closed")
    }

    /// Writes `text` to the process's stdin. Errors (the process has gone)
    /// are ignored: what the process printed tells the test what happened.
    pub fn write_stdin(&mut self, text: &str) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Whether the process has exited (and reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.is_some()
    }

    /// Waits at most `timeout` until the (merged) output satisfies `done`,
    /// and returns it. Fails, with the output, on timeout or when the process
    /// exits first.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_on(Source::Merged, what, timeout, done)
    }

    /// [`Proc::wait_for`] looking at stdout alone (where the examples print
    /// the lines of their contract), and returning it.
    pub fn wait_for_stdout(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        self.wait_on(Source::Stdout, what, timeout, done)
    }

    fn wait_on(
        &mut self,
        source: Source,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        if self.wait_or_exit(source, timeout, &done) {
            return self.captured.text(source);
        }
        let output = self.output();
        if self.has_exited() {
            panic!(
                "{} exited ({:?}) before {what}; its output:\n{output}",
                self.name, self.status
            );
        }
        panic!(
            "{} did not show {what} within {timeout:?}; its output:\n{output}",
            self.name
        );
    }

    /// Waits at most `timeout` until the (merged) output satisfies `done` or
    /// the process has exited and its output is complete; returns whether
    /// `done` holds. For waits whose failure the caller handles.
    pub fn wait_for_or_exit(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        self.wait_or_exit(Source::Merged, timeout, done)
    }

    fn wait_or_exit(
        &mut self,
        source: Source,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.has_exited();
            let step = if exited {
                // Let the readers drain what the process wrote before exiting.
                deadline.saturating_duration_since(Instant::now())
            } else {
                Duration::from_millis(50)
            };
            let mut matched = false;
            self.captured.wait_until(step, |state| {
                matched = done(state.get(source));
                matched || (exited && state.open_streams == 0)
            });
            if matched {
                return true;
            }
            if exited || Instant::now() >= deadline {
                return done(&self.captured.text(source));
            }
        }
    }

    /// Sends `signal` (a name such as `TERM` or `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill -{signal} {pid}`: {e}"));
        assert!(
            status.success(),
            "`kill -{signal} {pid}` ({}) failed",
            self.name
        );
    }

    /// Waits at most `timeout` for the process to exit and its output to be
    /// complete. Fails, killing it, on timeout.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        while !self.has_exited() {
            if Instant::now() >= deadline {
                panic!(
                    "{} did not exit within {timeout:?}; its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        // Its pipes may be held open by a grandchild: wait for them, bounded.
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5));
        self.captured
            .wait_until(remaining, |state| state.open_streams == 0);
        Finished {
            status: self.status.expect("exited"),
            output: self.output(),
            stdout: self.stdout(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `command` to completion, with stdin closed, bounded by `timeout`.
pub fn run(command: &mut Command, timeout: Duration) -> Finished {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut proc = Proc::spawn(program, command);
    proc.close_stdin();
    proc.finish(timeout)
}

/// A port on 127.0.0.1 that was free a moment ago, for peers that cannot
/// listen on port 0 and report it (smtp-sink). Callers retry on a clash.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Waits at most `timeout` until something accepts TCP connections on
/// `addr`; returns whether it did.
pub fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The `key=value` pairs of a line such as `accepted=3 rejected=0`.
pub fn parse_counts(line: &str) -> HashMap<String, u64> {
    line.split_whitespace()
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_string(), value.trim_end_matches(',').parse().ok()?))
        })
        .collect()
}

/// The last line of `output` that holds every one of `keys` as `key=N`.
fn last_counts_line(output: &str, keys: &[&str]) -> Option<HashMap<String, u64>> {
    output
        .lines()
        .rev()
        .map(parse_counts)
        .find(|counts| keys.iter().all(|key| counts.contains_key(*key)))
}

/// The peak resident set size (`VmHWM`) of process `pid`, in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
    kib * 1024
}

// ---------------------------------------------------------------------------
// Our server and client

/// A running `<runtime>-sink`.
#[derive(Debug)]
pub struct Sink {
    proc: Proc,
    pub addr: SocketAddr,
    pub runtime: Runtime,
}

/// The sink's final `accepted=N rejected=N connections=N recipients=N`
/// line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkCounts {
    pub accepted: u64,
    pub rejected: u64,
    pub connections: u64,
    /// Recipients of the accepted messages.
    pub recipients: u64,
}

impl Sink {
    /// Starts `<runtime>-sink --listen 127.0.0.1:0 ARGS` and waits for its
    /// `listening on ADDR` line.
    pub fn start(runtime: Runtime, args: &[&str]) -> Sink {
        Self::spawn(runtime, Command::new(runtime.sink_binary()), args)
    }

    /// [`Sink::start`] with the sink's limit on open descriptors lowered
    /// to `max` (`ulimit -n` in a shell that then becomes the sink).
    pub fn start_with_descriptor_limit(runtime: Runtime, max: u32, args: &[&str]) -> Sink {
        let mut command = Command::new("sh");
        command
            .args(["-c", &format!("ulimit -n {max} && exec \"$0\" \"$@\"")])
            .arg(runtime.sink_binary());
        Self::spawn(runtime, command, args)
    }

    fn spawn(runtime: Runtime, mut command: Command, args: &[&str]) -> Sink {
        let name = format!("{}-sink {}", runtime.name(), args.join(" "));
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        let mut proc = Proc::spawn(name, &mut command);
        let output = proc.wait_for_stdout("a `listening on ADDR` line", START_TIMEOUT, |out| {
            listening_addr(out).is_some()
        });
        let addr = listening_addr(&output).expect("checked by wait_for");
        assert!(
            addr.ip().is_loopback(),
            "sink listens on {addr}, not loopback"
        );
        Sink {
            proc,
            addr,
            runtime,
        }
    }

    /// `127.0.0.1:PORT`, for command lines.
    pub fn addr_arg(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Everything the sink printed so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }

    /// The sink's peak resident set size so far, in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        peak_rss_bytes(self.pid())
    }

    /// Stops the sink with SIGTERM (its clients must have gone: it lets open
    /// sessions finish) and returns its final counts. Fails unless it exits 0
    /// with the counts line.
    pub fn stop(self) -> SinkCounts {
        self.proc.signal("TERM");
        let finished = self.proc.finish(STOP_TIMEOUT);
        assert!(
            finished.status.success(),
            "sink exited with {} after SIGTERM; its output:\n{}",
            finished.status,
            finished.output
        );
        let keys = ["accepted", "rejected", "connections", "recipients"];
        let counts = last_counts_line(&finished.stdout, &keys).unwrap_or_else(|| {
            panic!(
                "sink printed no `accepted=N rejected=N connections=N recipients=N` line; \
                     its output:\n{}",
                finished.output
            )
        });
        SinkCounts {
            accepted: counts["accepted"],
            rejected: counts["rejected"],
            connections: counts["connections"],
            recipients: counts["recipients"],
        }
    }
}

fn listening_addr(output: &str) -> Option<SocketAddr> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("listening on "))
        .and_then(|addr| addr.trim().parse().ok())
}

/// The final line of `<runtime>-send`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendReport {
    pub delivered: u64,
    pub transient: u64,
    pub permanent: u64,
    pub tls: u64,
    pub plaintext: u64,
    /// Everything the sender printed, for failure messages.
    pub output: String,
}

/// Runs `<runtime>-send --to TO ARGS` to completion (bounded by `timeout`),
/// checks it exits 0 and returns its final counts.
pub fn send(runtime: Runtime, to: SocketAddr, args: &[&str], timeout: Duration) -> SendReport {
    let to = to.to_string();
    let name = format!("{}-send --to {to} {}", runtime.name(), args.join(" "));
    let mut command = Command::new(runtime.send_binary());
    command.args(["--to", &to]).args(args);
    let mut proc = Proc::spawn(name.clone(), &mut command);
    proc.close_stdin();
    let finished = proc.finish(timeout);
    assert!(
        finished.status.success(),
        "`{name}` exited with {}; its output:\n{}",
        finished.status,
        finished.output
    );
    let keys = ["delivered", "transient", "permanent", "tls", "plaintext"];
    let counts = last_counts_line(&finished.stdout, &keys).unwrap_or_else(|| {
        panic!(
            "`{name}` printed no `delivered=D transient=T permanent=P tls=X plaintext=Y` \
             line; its output:\n{}",
            finished.output
        )
    });
    SendReport {
        delivered: counts["delivered"],
        transient: counts["transient"],
        permanent: counts["permanent"],
        tls: counts["tls"],
        plaintext: counts["plaintext"],
        output: finished.output,
    }
}

impl SendReport {
    /// Asserts the counts `(delivered, transient, permanent, tls, plaintext)`.
    pub fn assert_counts(&self, expected: (u64, u64, u64, u64, u64), context: &str) {
        let actual = (
            self.delivered,
            self.transient,
            self.permanent,
            self.tls,
            self.plaintext,
        );
        assert_eq!(
            actual, expected,
            "{context}: (delivered, transient, permanent, tls, plaintext) differ; \
             the sender's output:\n{}",
            self.output
        );
    }
}

// ---------------------------------------------------------------------------
// Certificates

/// A test CA and server certificates it signed, as PEM files in a temporary
/// directory.
#[derive(Debug)]
pub struct Pki {
    dir: TempDir,
    /// The CA certificate: what `--ca` trusts.
    pub ca: PathBuf,
    /// A server certificate for `localhost` and `127.0.0.1`, and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A server certificate for `other.example` only (same CA), and its key:
    /// valid for `--verify ca`, wrong for `--verify host` against 127.0.0.1.
    pub other_cert: PathBuf,
    pub other_key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = temp_dir();
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Petrel test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let leaf = |names: &[&str], common_name: &str| {
            let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
            let mut params = rcgen::CertificateParams::new(names).expect("leaf parameters");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            params.use_authority_key_identifier_extension = true;
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::DigitalSignature,
                rcgen::KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let key = rcgen::KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (cert_pem, key_pem) = leaf(&["localhost", "127.0.0.1"], "localhost");
        let (other_pem, other_key_pem) = leaf(&["other.example"], "other.example");

        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {name}: {e}"));
            path
        };
        Pki {
            ca: write("ca.pem", &ca_cert.pem()),
            cert: write("cert.pem", &cert_pem),
            key: write("key.pem", &key_pem),
            other_cert: write("other-cert.pem", &other_pem),
            other_key: write("other-key.pem", &other_key_pem),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// A path as a `&str`, for argument lists (temporary paths are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("petrel-tests-")
        .tempdir()
        .expect("temporary directory")
}

/// Writes a whole message (headers and a body of about `body_bytes` bytes
/// in CRLF lines of 78 characters, ending with `marker`) to `path`.
pub fn write_message_file(path: &Path, body_bytes: usize, marker: &str) {
    let mut text = String::with_capacity(body_bytes + 1024);
    text.push_str(
        "From: <sender@example.org>\r\nTo: <rcpt@example.com>\r\n\
         Subject: a large body\r\nMessage-ID: <large@petrel.test>\r\n\r\n",
    );
    let mut line_number = 0u64;
    while text.len() < body_bytes {
        line_number += 1;
        // 70 visible characters + CRLF, no leading dot.
        let _ = write!(text, "line {line_number:010} ");
        text.push_str(&"x".repeat(54));
        text.push_str("\r\n");
    }
    text.push_str(marker);
    text.push_str("\r\n");
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The files under `maildir/new/`.
pub fn maildir_messages(maildir: &Path) -> Vec<PathBuf> {
    let new = maildir.join("new");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&new)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", new.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    files.sort();
    files
}

// ---------------------------------------------------------------------------
// Raw SMTP over a socket

/// One SMTP reply: its code and its lines' texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// Whether any line's text (after the code) starts with `keyword`
    /// (case-insensitive), as EHLO keywords do.
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.lines.iter().any(|line| {
            line.get(4..).is_some_and(|text| {
                text.to_ascii_uppercase()
                    .starts_with(&keyword.to_ascii_uppercase())
            })
        })
    }
}

/// A raw SMTP connection: bytes written as given, replies read line by line,
/// every read bounded.
#[derive(Debug)]
pub struct RawSmtp {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// What a bounded read saw.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes arrived.
    Data(Vec<u8>),
    /// The peer closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived within the wait.
    Silent,
}

impl RawSmtp {
    pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

    pub fn connect(addr: SocketAddr) -> RawSmtp {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        Self::from_stream(stream)
    }

    /// A connection whose own socket buffers are small (a few KiB), so that
    /// what is in flight towards the server stays small too.
    pub fn connect_small_buffers(addr: SocketAddr) -> RawSmtp {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket.set_send_buffer_size(4096).expect("SO_SNDBUF");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket
            .connect_timeout(&addr.into(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        Self::from_stream(socket.into())
    }

    fn from_stream(stream: TcpStream) -> RawSmtp {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_write_timeout(Some(Self::READ_TIMEOUT))
            .expect("write timeout");
        RawSmtp {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Writes `bytes` in one `write` call (one segment on loopback).
    pub fn send(&mut self, bytes: &[u8]) {
        let written = self
            .stream
            .write(bytes)
            .unwrap_or_else(|e| panic!("write {:?}: {e}", String::from_utf8_lossy(bytes)));
        if written < bytes.len() {
            self.stream
                .write_all(&bytes[written..])
                .unwrap_or_else(|e| panic!("write: {e}"));
        }
    }

    /// Reads once, waiting at most `wait`.
    pub fn read_some(&mut self, wait: Duration) -> ReadOutcome {
        if !self.buffer.is_empty() {
            return ReadOutcome::Data(std::mem::take(&mut self.buffer));
        }
        self.stream
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .expect("read timeout");
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => ReadOutcome::Data(chunk[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                ReadOutcome::Silent
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                ReadOutcome::Closed
            }
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF); `None` when the
    /// peer closed the connection first. Fails after [`Self::READ_TIMEOUT`].
    pub fn read_line(&mut self) -> Option<String> {
        let deadline = Instant::now() + Self::READ_TIMEOUT;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).take(end).collect();
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            assert!(
                !remaining.is_zero(),
                "no complete line within {:?}; have {:?}",
                Self::READ_TIMEOUT,
                String::from_utf8_lossy(&self.buffer)
            );
            let pending = std::mem::take(&mut self.buffer);
            match self.read_some(remaining) {
                ReadOutcome::Data(bytes) => {
                    self.buffer = pending;
                    self.buffer.extend_from_slice(&bytes);
                }
                ReadOutcome::Closed => {
                    self.buffer = pending;
                    return None;
                }
                ReadOutcome::Silent => self.buffer = pending,
            }
        }
    }

    /// Reads one whole (possibly multi-line) reply. Fails when the
    /// connection closes first or on timeout.
    pub fn read_reply(&mut self) -> Reply {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().unwrap_or_else(|| {
                panic!("connection closed while reading a reply; got so far: {lines:?}")
            });
            let code: u16 = line
                .get(..3)
                .and_then(|code| code.parse().ok())
                .unwrap_or_else(|| panic!("not a reply line: {line:?}"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Reply { code, lines };
            }
        }
    }

    /// Reads a reply and checks its code.
    pub fn expect(&mut self, code: u16, after: &str) -> Reply {
        let reply = self.read_reply();
        assert_eq!(reply.code, code, "after {after}: got {:?}", reply.lines);
        reply
    }

    /// Sends `command` (CRLF added) and checks the reply's code.
    pub fn command(&mut self, command: &str, code: u16) -> Reply {
        self.send(format!("{command}\r\n").as_bytes());
        self.expect(code, command)
    }

    /// Checks the peer closes the connection cleanly: nothing more, then
    /// the end of input, and no reset, either at the read or waiting on
    /// the socket (the kernel's answer to input the server left unread,
    /// which on a real network may destroy the last reply).
    pub fn expect_clean_close(&mut self, after: &str) {
        assert!(
            self.buffer.is_empty(),
            "after {after}: more came: {:?}",
            String::from_utf8_lossy(&self.buffer)
        );
        self.stream
            .set_read_timeout(Some(Self::READ_TIMEOUT))
            .expect("read timeout");
        let mut rest = Vec::new();
        let read = self.stream.read_to_end(&mut rest);
        assert!(read.is_ok(), "after {after}: {read:?}");
        assert_eq!(String::from_utf8_lossy(&rest), "", "after {after}");
        let error = self.stream.take_error().expect("SO_ERROR");
        assert!(error.is_none(), "after {after}: {error:?}");
    }

    /// The socket, for tests that drive it themselves.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Checks the peer closes the connection (within the read timeout)
    /// without sending anything more.
    pub fn expect_closed(&mut self, after: &str) {
        match self.read_some(Self::READ_TIMEOUT) {
            ReadOutcome::Closed => {}
            ReadOutcome::Data(bytes) => panic!(
                "after {after}: expected the connection to close, got {:?}",
                String::from_utf8_lossy(&bytes)
            ),
            ReadOutcome::Silent => panic!(
                "after {after}: the connection is still open after {:?}",
                Self::READ_TIMEOUT
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Peers as processes

/// `swaks --server ADDR --to … --from … --helo … ARGS`, run to completion.
pub fn swaks(server: SocketAddr, args: &[&str], timeout: Duration) -> Finished {
    let swaks = require_swaks();
    run(
        Command::new(swaks)
            .args(["--server", &server.to_string()])
            .args(["--to", "rcpt@example.com", "--from", "sender@example.org"])
            .args(["--helo", "swaks.example", "--timeout", "60"])
            .args(args),
        timeout,
    )
}

/// Runs swaks and fails unless it exits 0 (the message was accepted).
pub fn swaks_ok(server: SocketAddr, args: &[&str], timeout: Duration) -> String {
    let finished = swaks(server, args, timeout);
    assert!(
        finished.status.success(),
        "swaks {args:?} exited with {}; its output:\n{}",
        finished.status,
        finished.output
    );
    finished.output
}

/// `openssl s_client -starttls smtp` connected to `server` (stdout and
/// stderr merged, so its output is in order), driven line by line.
#[derive(Debug)]
pub struct SClient {
    proc: Proc,
}

impl SClient {
    /// Connects with `version_flag` (`-tls1_2`, `-tls1_3`) and waits for the
    /// handshake (the certificate's verify lines).
    pub fn connect(server: SocketAddr, version_flag: &str) -> SClient {
        let openssl = require_tool("openssl");
        let command_line = format!(
            "exec '{}' s_client -starttls smtp {version_flag} -crlf -quiet -no_ign_eof \
             -connect {server} 2>&1",
            openssl.display()
        );
        let mut proc = Proc::spawn(
            format!("openssl s_client {version_flag} -connect {server}"),
            Command::new("sh").args(["-c", &command_line]),
        );
        proc.wait_for("the TLS handshake", START_TIMEOUT, |out| {
            out.contains("verify return:")
        });
        // Let stray output settle before counting replies: s_client can
        // print the tail of the plaintext EHLO reply after the handshake.
        proc.wait_for_or_exit(Duration::from_millis(500), |_| false);
        SClient { proc }
    }

    /// Everything s_client printed so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }

    pub fn count(&self, needle: &str) -> usize {
        count_lines_starting(&self.output(), needle)
    }

    /// Types `line` (s_client sends it with CRLF). Beware: s_client reads
    /// a line starting with `Q` as "quit" and one starting with `R` as
    /// "renegotiate", so type SMTP commands such as `quit` in lower case.
    pub fn type_line(&mut self, line: &str) {
        self.proc.write_stdin(&format!("{line}\n"));
    }

    /// Types `line` and waits for one more final `250 ` reply line. Fails
    /// with the transcript when none comes.
    pub fn type_expecting_250(&mut self, line: &str) {
        let before = self.count("250 ");
        self.type_line(line);
        self.proc
            .wait_for(&format!("a 250 reply to {line}"), CLIENT_TIMEOUT, |out| {
                count_lines_starting(out, "250 ") > before
            });
    }

    /// Waits at most `timeout` for `done` to hold for the output, or for
    /// s_client to exit; returns whether `done` holds.
    pub fn wait_for_or_exit(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        self.proc.wait_for_or_exit(timeout, done)
    }

    pub fn has_exited(&mut self) -> bool {
        self.proc.has_exited()
    }

    /// Ends s_client (closing stdin, then killing it if need be) and returns
    /// its whole output.
    pub fn close(mut self) -> String {
        self.proc.close_stdin();
        if !self
            .proc
            .wait_for_or_exit(Duration::from_secs(10), |_| false)
        {
            // Still running with stdin closed: kill it (Drop); the output is
            // what matters.
        }
        self.proc.output()
    }
}

/// How many lines of `output` start with `prefix`.
pub fn count_lines_starting(output: &str, prefix: &str) -> usize {
    output
        .lines()
        .filter(|line| line.trim_start().starts_with(prefix))
        .count()
}

/// Python's smtplib sending one message to `server`, plain or after
/// `starttls()` with the CA at `ca` (checking the certificate for the
/// server's IP). Fails unless the message was accepted.
pub fn smtplib_send(server: SocketAddr, starttls_ca: Option<&Path>) -> String {
    const SCRIPT: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg = EmailMessage()
msg["From"] = "python@example.org"
msg["To"] = "rcpt@example.com"
msg["Subject"] = "Petrel interop: smtplib"
msg.set_content("hello from smtplib\n" * 200)
with smtplib.SMTP(host, port, timeout=60) as smtp:
    smtp.ehlo("python.example")
    if ca:
        assert smtp.has_extn("starttls"), "STARTTLS not offered"
        smtp.starttls(context=ssl.create_default_context(cafile=ca))
        print("tls", smtp.sock.version())
        smtp.ehlo("python.example")
        assert not smtp.has_extn("starttls"), "STARTTLS offered again over TLS"
    refused = smtp.send_message(msg)
    assert not refused, refused
print("sent")
"#;
    let python = require_python(false);
    let ca = starttls_ca.map(path_str).unwrap_or("");
    let finished = run(
        Command::new(python).args([
            "-c",
            SCRIPT,
            &server.ip().to_string(),
            &server.port().to_string(),
            ca,
        ]),
        CLIENT_TIMEOUT,
    );
    assert!(
        finished.status.success() && finished.output.contains("sent"),
        "smtplib (starttls: {}) failed with {}:\n{}",
        starttls_ca.is_some(),
        finished.status,
        finished.output
    );
    finished.output
}

/// aiosmtpd (tests/peers/aiosmtpd_server.py) as a receiving server.
#[derive(Debug)]
pub struct Aiosmtpd {
    proc: Proc,
    pub addr: SocketAddr,
}

/// What aiosmtpd received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AiosmtpdCounts {
    pub messages: u64,
    pub tls: u64,
    pub plaintext: u64,
}

/// How to start aiosmtpd (see `tests/peers/aiosmtpd_server.py`).
#[derive(Clone, Debug, Default)]
pub struct AiosmtpdOptions {
    /// Offer STARTTLS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Listen on this port of 127.0.0.1 (to come back on the port of a
    /// server that was stopped); a free one otherwise.
    pub port: Option<u16>,
    /// Write each message to `NNNN.eml` (as received) in this directory,
    /// with its envelope in `NNNN.json`.
    pub save: Option<PathBuf>,
    /// Answer every RCPT with this reply (e.g. `451 4.3.0 try later`).
    pub rcpt_reply: Option<String>,
}

impl Aiosmtpd {
    /// Starts aiosmtpd, offering STARTTLS with `cert`/`key` when given.
    pub fn start(tls: Option<(&Path, &Path)>) -> Aiosmtpd {
        Self::start_with(&AiosmtpdOptions {
            tls: tls.map(|(cert, key)| (cert.to_owned(), key.to_owned())),
            ..AiosmtpdOptions::default()
        })
    }

    /// Starts aiosmtpd as `options` say.
    pub fn start_with(options: &AiosmtpdOptions) -> Aiosmtpd {
        let python = require_python(true);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/aiosmtpd_server.py");
        let mut command = Command::new(python);
        command.arg(&script);
        if let Some((cert, key)) = &options.tls {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(port) = options.port {
            command.args(["--port", &port.to_string()]);
        }
        if let Some(dir) = &options.save {
            command.arg("--save").arg(dir);
        }
        if let Some(reply) = &options.rcpt_reply {
            command.args(["--rcpt-reply", reply]);
        }
        let mut proc = Proc::spawn("aiosmtpd", &mut command);
        let output = proc.wait_for_stdout("`ready PORT`", START_TIMEOUT, |out| {
            ready_port(out).is_some()
        });
        let port = ready_port(&output).expect("checked by wait_for");
        Aiosmtpd {
            proc,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Everything aiosmtpd printed so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }

    /// What aiosmtpd has received so far (from its `message N tls|plaintext`
    /// lines).
    pub fn counts(&self) -> AiosmtpdCounts {
        message_counts(&self.proc.stdout())
    }

    /// Waits (bounded) until aiosmtpd has received `messages` messages, and
    /// returns its counts then (or at the timeout: the caller asserts).
    pub fn wait_for_messages(&mut self, messages: u64, timeout: Duration) -> AiosmtpdCounts {
        self.proc.wait_or_exit(Source::Stdout, timeout, |out| {
            message_counts(out).messages >= messages
        });
        self.counts()
    }

    /// Stops aiosmtpd and returns what it received.
    pub fn stop(self) -> AiosmtpdCounts {
        self.proc.signal("TERM");
        let finished = self.proc.finish(STOP_TIMEOUT);
        let counts = last_counts_line(&finished.stdout, &["messages", "tls", "plaintext"])
            .unwrap_or_else(|| {
                panic!(
                    "aiosmtpd printed no counts ({}); its output:\n{}",
                    finished.status, finished.output
                )
            });
        AiosmtpdCounts {
            messages: counts["messages"],
            tls: counts["tls"],
            plaintext: counts["plaintext"],
        }
    }
}

/// The counts of aiosmtpd's `message N tls|plaintext` lines.
fn message_counts(output: &str) -> AiosmtpdCounts {
    let mut counts = AiosmtpdCounts {
        messages: 0,
        tls: 0,
        plaintext: 0,
    };
    for line in output.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("message") || words.next().is_none() {
            continue;
        }
        match words.next() {
            Some("tls") => counts.tls += 1,
            Some("plaintext") => counts.plaintext += 1,
            _ => continue,
        }
        counts.messages += 1;
    }
    counts
}

fn ready_port(output: &str) -> Option<u16> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("ready "))
        .and_then(|port| port.trim().parse().ok())
}

/// Postfix's `smtp-sink` listening on 127.0.0.1, counting what it receives.
#[derive(Debug)]
pub struct PostfixSink {
    proc: Proc,
    pub addr: SocketAddr,
}

impl PostfixSink {
    pub fn start() -> PostfixSink {
        Self::start_with(&[])
    }

    /// Starts smtp-sink with extra options (before the address), e.g.
    /// `-d TEMPLATE` to dump every transaction to a file.
    pub fn start_with(options: &[&str]) -> PostfixSink {
        let smtp_sink = require_tool("smtp-sink");
        // smtp-sink cannot report a kernel-chosen port: try free ones.
        let mut last_output = String::new();
        for attempt in 0..10 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            // A name of its own in the greeting tells this smtp-sink from
            // whatever else may have taken the port meanwhile.
            let name = format!("petrel-sink-{}-{attempt}", std::process::id());
            let mut command = Command::new(&smtp_sink);
            if running_as_root() {
                // smtp-sink refuses to run as root without dropping privileges.
                command.args(["-u", "nobody"]);
            }
            command.args(options);
            command.args(["-h", &name, "-c", &addr.to_string(), "1000"]);
            let mut proc = Proc::spawn(format!("smtp-sink {addr}"), &mut command);
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline && !proc.has_exited() {
                if greeting_names(addr, &name) {
                    return PostfixSink { proc, addr };
                }
                thread::sleep(Duration::from_millis(50));
            }
            last_output = proc.output();
        }
        panic!("smtp-sink did not start listening; its last output:\n{last_output}");
    }

    /// Starts smtp-sink dumping every transaction it completes to a file
    /// of its own in `dir` (`-d`; a transaction cut off before its final
    /// `.` leaves no file). `dir` is made writable by everyone: as root,
    /// smtp-sink runs as `nobody`; so its parent must let `nobody` through
    /// (a [`temp_dir`] does: it is in the system's temporary directory).
    pub fn start_dumping(dir: &Path) -> PostfixSink {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("chmod 777 {}: {e}", dir.display()));
        let template = format!("{}/%H%M%S.", path_str(dir));
        Self::start_with(&["-d", &template])
    }

    /// Everything smtp-sink printed so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }

    /// Waits (bounded) until smtp-sink has counted `messages` messages, and
    /// returns its count (the last `mesg=N` of its `-c` output).
    pub fn wait_for_messages(&mut self, messages: u64, timeout: Duration) -> u64 {
        self.proc.wait_for_or_exit(timeout, |out| {
            last_mesg_count(out).is_some_and(|count| count >= messages)
        });
        last_mesg_count(&self.proc.output()).unwrap_or(0)
    }
}

/// Whether the server at `addr` greets with `name`.
fn greeting_names(addr: SocketAddr, name: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut greeting = Vec::new();
    let mut byte = [0; 1];
    while !greeting.ends_with(b"\n") && greeting.len() < 512 {
        match std::io::Read::read(&mut stream, &mut byte) {
            Ok(1) => greeting.extend_from_slice(&byte),
            _ => break,
        }
    }
    let _ = std::io::Write::write_all(&mut stream, b"QUIT\r\n");
    String::from_utf8_lossy(&greeting).contains(name)
}

fn last_mesg_count(output: &str) -> Option<u64> {
    // `-c` prints `sess=N quit=N mesg=N` repeatedly, separated by CR.
    output
        .rsplit(['\r', '\n'])
        .find_map(|record| parse_counts(record).get("mesg").copied())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The backlog of the socket listening on `addr`, as the kernel has it:
/// for a listening socket, `ss -lnt` shows it as Send-Q (`/proc/net/tcp`
/// does not show it at all).
pub fn listen_backlog(addr: SocketAddr) -> u32 {
    let ss = require_tool("ss");
    let finished = run(
        Command::new(ss).args(["-Hltn", &format!("sport = :{}", addr.port())]),
        CLIENT_TIMEOUT,
    );
    let local = addr.to_string();
    // State, Recv-Q, Send-Q, local address, peer address.
    finished
        .stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&"LISTEN") && fields.get(3) == Some(&local.as_str()))
        .and_then(|fields| fields.get(2).and_then(|backlog| backlog.parse().ok()))
        .unwrap_or_else(|| panic!("{addr} is not in `ss -ltn`:\n{}", finished.output))
}

/// The kernel's bound on listen backlogs.
pub fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("/proc/sys/net/core/somaxconn")
        .trim()
        .parse()
        .expect("a number in /proc/sys/net/core/somaxconn")
}

/// Runs Postfix's `smtp-source ARGS 127.0.0.1:PORT` to completion and fails
/// unless it exits 0.
pub fn smtp_source(server: SocketAddr, args: &[&str], timeout: Duration) -> String {
    let smtp_source = require_tool("smtp-source");
    let finished = run(
        Command::new(smtp_source).args(args).arg(server.to_string()),
        timeout,
    );
    assert!(
        finished.status.success(),
        "smtp-source {args:?} exited with {}; its output:\n{}",
        finished.status,
        finished.output
    );
    finished.output
}

/// Instantiates each listed test function (`fn name(rt: Runtime)`, defined
/// beside the macro call) once per runtime, as `tokio::name`, `mio::name`
/// and `smol::name`, so a failure names the runtime:
///
/// ```text
/// fn plain_session(rt: Runtime) { /* ... */ }
/// petrel_tests::per_runtime!(plain_session, starttls);
/// ```
#[macro_export]
macro_rules! per_runtime {
    ($($test:ident),* $(,)?) => {
        $crate::per_runtime!(@runtime tokio: $($test),*);
        $crate::per_runtime!(@runtime mio: $($test),*);
        $crate::per_runtime!(@runtime smol: $($test),*);
    };
    (@runtime $runtime:ident: $($test:ident),*) => {
        mod $runtime {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::Runtime::from_name(stringify!($runtime)));
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lines_parse() {
        let counts = parse_counts("delivered=5 transient=1 permanent=0 tls=4 plaintext=1");
        assert_eq!(counts["delivered"], 5);
        assert_eq!(counts["plaintext"], 1);
        let output = "noise\naccepted=1 rejected=2 connections=3\n";
        let last = last_counts_line(output, &["accepted", "connections"]).unwrap();
        assert_eq!(last["rejected"], 2);
    }

    #[test]
    fn listening_line_parses() {
        let output = "starting\nlistening on 127.0.0.1:40123\n";
        assert_eq!(
            listening_addr(output),
            Some(SocketAddr::from(([127, 0, 0, 1], 40123)))
        );
        assert_eq!(listening_addr("listening on soon"), None);
    }

    #[test]
    fn aiosmtpd_message_lines_count() {
        let output = "ready 4000\nmessage 1 tls\nmessage 2 plaintext\nmessage 3 tls\n\
                      messages=3 tls=2 plaintext=1\n";
        assert_eq!(
            message_counts(output),
            AiosmtpdCounts {
                messages: 3,
                tls: 2,
                plaintext: 1
            }
        );
    }

    #[test]
    fn smtp_sink_counts_parse() {
        let output = "sess=0 quit=0 mesg=1\rsess=1 quit=1 mesg=1\rsess=1 quit=1 mesg=2";
        assert_eq!(last_mesg_count(output), Some(2));
    }

    #[test]
    #[should_panic(expected = "bash scripts/setup")]
    fn a_missing_peer_fails_with_the_install_command() {
        require_tool("no-such-peer-petrel");
    }

    #[test]
    fn message_file_has_short_crlf_lines() {
        let dir = temp_dir();
        let path = dir.path().join("message.eml");
        write_message_file(&path, 10_000, "THE-END");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() >= 10_000);
        assert!(text.ends_with("THE-END\r\n"));
        assert!(text
            .split("\r\n")
            .all(|line| line.len() <= 998 && !line.contains('\n')));
    }

    #[test]
    fn process_waits_are_bounded() {
        let mut proc = Proc::spawn("sleep", Command::new("sleep").arg("30"));
        assert!(!proc.wait_for_or_exit(Duration::from_millis(200), |out| out.contains("x")));
        drop(proc); // killed, not waited for 30 s
        let finished = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            CLIENT_TIMEOUT,
        );
        assert!(finished.status.success());
        assert!(finished.output.contains("out") && finished.output.contains("err"));
        assert_eq!(finished.stdout, "out\n");
        // A line written piecewise stays whole despite the other stream.
        let finished = run(
            Command::new("sh").args([
                "-c",
                "printf 'warning: ' >&2; echo 'listening on 127.0.0.1:9'; \
                 sleep 0.1; echo ' rest of warning' >&2",
            ]),
            CLIENT_TIMEOUT,
        );
        assert!(
            finished
                .output
                .lines()
                .any(|line| line == "listening on 127.0.0.1:9"),
            "{:?}",
            finished.output
        );
        assert_eq!(
            listening_addr(&finished.stdout),
            Some(SocketAddr::from(([127, 0, 0, 1], 9)))
        );
    }
}
