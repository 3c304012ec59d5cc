//! The local control channel behind `petrel queue summary|list|flush|remove`:
//! a Unix socket in the spool directory, owner-only, one request per
//! connection.
//!
//! The protocol is lines of text: the client sends one request line
//! (`summary`, `list DOMAIN`, `flush DOMAIN`, `remove ID`); the server
//! answers `ok` or `error: WHY` on the first line, then the answer's lines,
//! and closes. Only the spool's owner can connect: the socket is made
//! mode 0600 inside the spool directory, which is 0700.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The socket's name in the spool directory.
pub const SOCKET: &str = "control";

/// Longest request line read.
const MAX_REQUEST: u64 = 1024;

/// How long a client may take to send its request, or to read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// An operator's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Counts by domain and state.
    Summary,
    /// The messages to a domain, with their next attempt and last error.
    List(String),
    /// Retry every message to a domain now.
    Flush(String),
    /// Forget a message (no bounce), by queue id.
    Remove(String),
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Summary => f.write_str("summary"),
            Request::List(domain) => write!(f, "list {domain}"),
            Request::Flush(domain) => write!(f, "flush {domain}"),
            Request::Remove(id) => write!(f, "remove {id}"),
        }
    }
}

impl std::str::FromStr for Request {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default().to_ascii_lowercase();
        let argument = words.next().map(str::to_owned);
        if words.next().is_some() {
            return Err(format!("too many words in {line:?}"));
        }
        match (verb.as_str(), argument) {
            ("summary", None) => Ok(Request::Summary),
            ("list", Some(domain)) => Ok(Request::List(domain)),
            ("flush", Some(domain)) => Ok(Request::Flush(domain)),
            ("remove", Some(id)) => Ok(Request::Remove(id)),
            _ => Err(format!(
                "unknown request {line:?}: expected summary, list DOMAIN, flush DOMAIN or remove ID"
            )),
        }
    }
}

/// The control socket, serving requests on a thread of its own until
/// dropped.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listens at `SOCKET` in `spool_dir` (replacing a stale socket left by
    /// a crash: the spool's lock says no other petrel runs there) and
    /// answers each request with `answer`.
    pub fn start(
        spool_dir: &Path,
        answer: impl Fn(Request) -> Result<String, String> + Send + 'static,
    ) -> io::Result<Self> {
        let path = spool_dir.join(SOCKET);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("petrel-control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    // One at a time: requests are rare and quick, and a
                    // slow client is bounded by IO_TIMEOUT.
                    if let Ok(stream) = stream {
                        serve(stream, &answer);
                    }
                }
            })?;
        Ok(Self {
            path,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `stop`.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(stream: UnixStream, answer: &impl Fn(Request) -> Result<String, String>) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut line = String::new();
    let read = BufReader::new(stream.take(MAX_REQUEST)).read_line(&mut line);
    let reply = match read {
        Ok(_) => match line.trim().parse::<Request>() {
            Ok(request) => match answer(request) {
                Ok(text) => format!("ok\n{text}"),
                Err(why) => format!("error: {why}\n"),
            },
            Err(why) => format!("error: {why}\n"),
        },
        Err(error) => format!("error: {error}\n"),
    };
    let _ = writer.write_all(reply.as_bytes());
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum ControlError {
    /// No petrel is running on this spool (no socket, or nobody listening).
    NotRunning(PathBuf),
    /// The running petrel refused the request.
    Refused(String),
    /// The connection failed midway.
    Io(io::Error),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::NotRunning(path) => write!(
                f,
                "no petrel is running on this spool ({} does not answer)",
                path.display()
            ),
            ControlError::Refused(why) => f.write_str(why),
            ControlError::Io(error) => write!(f, "control socket: {error}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// Sends `request` to the petrel running on `spool_dir` and returns its
/// answer (without the `ok` line).
pub fn request(spool_dir: &Path, request: &Request) -> Result<String, ControlError> {
    let path = spool_dir.join(SOCKET);
    let mut stream =
        UnixStream::connect(&path).map_err(|_| ControlError::NotRunning(path.clone()))?;
    stream
        .set_read_timeout(Some(IO_TIMEOUT * 3))
        .map_err(ControlError::Io)?;
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(ControlError::Io)?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(ControlError::Io)?;
    match answer.split_once('\n') {
        Some(("ok", rest)) => Ok(rest.to_owned()),
        Some((first, _)) => Err(ControlError::Refused(
            first.strip_prefix("error: ").unwrap_or(first).to_owned(),
        )),
        None => Err(ControlError::Refused(format!(
            "unexpected answer {answer:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_print_alike() {
        for line in [
            "summary",
            "list example.com",
            "flush example.com",
            "remove 00AB",
        ] {
            let request: Request = line.parse().unwrap();
            assert_eq!(request.to_string(), line);
        }
        assert!("list".parse::<Request>().is_err());
        assert!("remove a b".parse::<Request>().is_err());
        assert!("drop everything".parse::<Request>().is_err());
    }

    #[test]
    fn a_request_round_trip_and_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let server = ControlServer::start(dir.path(), |request| match request {
            Request::Summary => Ok("example.com 3 deferred\n".into()),
            Request::Remove(id) => Err(format!("no message {id}")),
            other => Ok(format!("{other}\n")),
        })
        .unwrap();
        let mode = std::fs::metadata(dir.path().join(SOCKET))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            request(dir.path(), &Request::Summary).unwrap(),
            "example.com 3 deferred\n"
        );
        let refused = request(dir.path(), &Request::Remove("42".into())).unwrap_err();
        assert_eq!(refused.to_string(), "no message 42");
        drop(server);
        assert!(matches!(
            request(dir.path(), &Request::Summary),
            Err(ControlError::NotRunning(_))
        ));
    }
}
