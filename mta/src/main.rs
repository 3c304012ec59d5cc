//! `petrel`: the mail transfer agent's command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use petrel::config::policy::Runtime;
use petrel::config::{self, Loaded};
use petrel::control::{self, ControlServer, Request};
use petrel::engine::{Engine, Input};
use petrel::listen::{self, Reception};
use petrel::log::Log;
use petrel::route::Router;
use petrel::spool::{self, Spool};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Debug, Parser)]
#[command(
    name = "petrel",
    version,
    about = "Petrel, a mail transfer agent configured in Momentum's language",
    long_about = "Petrel, a mail transfer agent configured in Momentum's language.\n\n\
        With no command it runs: with no -c, the embedded default (ESMTP on 127.0.0.1:2525, \
        STARTTLS with a self-signed certificate, relaying for loopback clients only, spool in \
        ./petrel-spool)."
)]
struct Cli {
    /// The configuration file (Momentum's ecelerity.conf language); without
    /// it, the embedded default.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// On SIGTERM or SIGINT, how long sessions in progress may take to
    /// finish before they are told 421 and closed.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    grace: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks the configuration: prints every problem as FILE:LINE:COL and
    /// exits 1 if there is an error.
    CheckConfig {
        /// Checks the syntax only (no option, scope or module checks, and
        /// includes are not opened).
        #[arg(long)]
        syntax: bool,
    },
    /// Configuration queries.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The spool's messages (read from the spool directory).
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Prints an option's effective value in a scope, and where it came
    /// from: e.g. `config eval binding b domain example.com TLS`.
    Eval {
        /// The scope path, then the option name.
        #[arg(required = true, num_args = 1.., value_name = "SCOPE... OPTION")]
        words: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// With a domain: the running petrel's messages to it, with their next
    /// attempt and last error. Without: every message in the spool, oldest
    /// first, read from disk (petrel need not run).
    List {
        /// The recipients' domain.
        domain: Option<String>,
    },
    /// How many messages the spool holds (read from disk).
    Count,
    /// The running petrel's queue: counts by binding, domain and state.
    Summary,
    /// Makes every message to DOMAIN due now.
    Flush {
        /// The recipients' domain.
        domain: String,
    },
    /// Forgets a message (no bounce) and removes it from the spool.
    Remove {
        /// Its queue id.
        id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        None => run(&cli),
        Some(Command::CheckConfig { syntax }) => check_config(cli.config.as_deref(), *syntax),
        Some(Command::Config {
            command: ConfigCommand::Eval { words },
        }) => match load(cli.config.as_deref()) {
            Some(loaded) => match config::eval(&loaded, words) {
                Ok(evaluated) => {
                    println!("{evaluated}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("petrel: {error}");
                    ExitCode::FAILURE
                }
            },
            None => ExitCode::FAILURE,
        },
        Some(Command::Queue { command }) => queue(cli.config.as_deref(), command),
    }
}

/// Loads and checks the configuration, printing warnings and errors.
fn load(path: Option<&Path>) -> Option<Loaded> {
    let loaded = match path {
        Some(path) => config::load(path),
        None => config::load_str("(embedded default)", config::DEFAULT_CONFIG, Path::new(".")),
    };
    match loaded {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                eprintln!("{warning}");
            }
            Some(loaded)
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            None
        }
    }
}

fn check_config(path: Option<&Path>, syntax_only: bool) -> ExitCode {
    if syntax_only {
        let problems = match path {
            Some(path) => config::check_syntax(path),
            None => Vec::new(),
        };
        for problem in &problems {
            eprintln!("{problem}");
        }
        return if problems
            .iter()
            .any(|problem| problem.severity == config::Severity::Error)
        {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    match load(path) {
        Some(_) => ExitCode::SUCCESS,
        None => ExitCode::FAILURE,
    }
}

fn queue(path: Option<&Path>, command: &QueueCommand) -> ExitCode {
    let Some(loaded) = load(path) else {
        return ExitCode::FAILURE;
    };
    let dir = &loaded.policies.global.spool_directory;
    let request = match command {
        QueueCommand::List { domain: None } | QueueCommand::Count => None,
        QueueCommand::List {
            domain: Some(domain),
        } => Some(Request::List(domain.clone())),
        QueueCommand::Summary => Some(Request::Summary),
        QueueCommand::Flush { domain } => Some(Request::Flush(domain.clone())),
        QueueCommand::Remove { id } => Some(Request::Remove(id.clone())),
    };
    if let Some(request) = request {
        return match control::request(dir, &request) {
            Ok(answer) => {
                print!("{answer}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("petrel: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let messages = match spool::list(dir) {
        Ok(messages) => messages,
        Err(error) => {
            eprintln!("petrel: spool {}: {error}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    if let QueueCommand::Count = command {
        println!("{}", messages.len());
    } else {
        for message in &messages {
            println!("{}", queue_line(message));
        }
    }
    ExitCode::SUCCESS
}

/// One message of `petrel queue list`: the id first, so that scripts can
/// take the first word.
fn queue_line(message: &spool::StoredMessage) -> String {
    let envelope = &message.envelope;
    let pending = message
        .states
        .iter()
        .filter(|state| **state == spool::RecipientState::Pending)
        .count();
    let sender = if envelope.sender.is_empty() {
        "<>"
    } else {
        &envelope.sender
    };
    // A delivery's attempts, as the queue counts them: the most of any
    // recipient's.
    let attempts = message.attempts.iter().copied().max().unwrap_or(0);
    format!(
        "{id} {size} {received} {sender} -> {recipients} ({pending}/{total} pending, \
         {attempts} {tried})",
        id = message.id,
        tried = if attempts == 1 { "attempt" } else { "attempts" },
        size = message.size,
        received = petrel::log::rfc3339(envelope.received_at),
        recipients = envelope
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect::<Vec<_>>()
            .join(","),
        total = envelope.recipients.len(),
    )
}

fn run(cli: &Cli) -> ExitCode {
    let Some(loaded) = load(cli.config.as_deref()) else {
        return ExitCode::FAILURE;
    };
    match serve(&loaded, Duration::from_secs(cli.grace)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("petrel: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve(loaded: &Loaded, grace: Duration) -> Result<(), String> {
    let policies = &loaded.policies;
    let global = &policies.global;
    // Registered before anything listens, so that a signal right after
    // start is never the default (fatal) one.
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| format!("signals: {e}"))?;
    let dir = &global.spool_directory;
    let (spool, recovery) =
        Spool::open(dir).map_err(|e| format!("spool {}: {e}", dir.display()))?;
    eprintln!(
        "petrel: spool {}: {} messages",
        dir.display(),
        recovery.messages.len()
    );
    let log = Log::open(global.log_file.as_deref()).map_err(|e| {
        let file = global.log_file.as_deref().unwrap_or(Path::new("-"));
        format!("log {}: {e}", file.display())
    })?;
    let serve_config = listen::serve_config(policies).map_err(|e| e.to_string())?;
    let router = Router::new(&global.name_servers).map_err(|e| format!("DNS resolver: {e}"))?;
    let engine = Engine::start(
        Arc::new(policies.clone()),
        spool.clone(),
        recovery.messages,
        log.clone(),
        router,
    )
    .map_err(|e| format!("queue: {e}"))?;
    let inputs = engine.inputs();
    let control = ControlServer::start(dir, move |request| {
        let (answer, answered) = std::sync::mpsc::channel();
        inputs
            .send(Input::Control(request, answer))
            .map_err(|_| "the queue has stopped".to_owned())?;
        answered
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "the queue did not answer".to_owned())?
    })
    .map_err(|e| format!("control socket in {}: {e}", dir.display()))?;
    let stored = engine.inputs();
    let reception = Arc::new(Reception::new(
        policies,
        spool.clone(),
        log.clone(),
        Arc::new(move |message| {
            let _ = stored.send(Input::Stored(message));
        }),
    ));
    let handler = reception.clone();
    let mut wait = |addrs: Vec<std::net::SocketAddr>| {
        reception.set_bound(addrs.clone());
        for addr in addrs {
            eprintln!(
                "petrel: listening on {addr} ({})",
                format!("{:?}", global.runtime).to_lowercase()
            );
        }
        // SIGHUP reopens the log (rotation); SIGINT or SIGTERM stops.
        for signal in signals.forever() {
            if signal != SIGHUP {
                break;
            }
            match log.reopen() {
                Ok(()) => eprintln!("petrel: log reopened"),
                Err(e) => eprintln!("petrel: cannot reopen the log, it goes on as it was: {e}"),
            }
        }
        eprintln!(
            "petrel: stopping: sessions have {} s to finish",
            grace.as_secs()
        );
    };
    match global.runtime {
        Runtime::Tokio => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio: {e}"))?;
            let server = runtime
                .block_on(petrel_tokio::serve(serve_config, handler))
                .map_err(|e| format!("listen: {e}"))?;
            wait(server.local_addrs());
            runtime.block_on(server.shutdown(grace));
        }
        Runtime::Smol => {
            let server = smol::block_on(petrel_smol::serve(serve_config, handler))
                .map_err(|e| format!("listen: {e}"))?;
            wait(server.local_addrs());
            smol::block_on(server.shutdown(grace));
        }
        Runtime::Mio => {
            let server =
                petrel_mio::serve(serve_config, handler).map_err(|e| format!("listen: {e}"))?;
            wait(server.local_addrs());
            server.shutdown(grace);
        }
    }
    // Every session has ended: what they stored is durable already. The
    // deliveries in flight get the same grace; then the spool finishes its
    // last batch, and the log its last records.
    engine.stop(grace);
    drop(control);
    spool.shutdown();
    log.close();
    eprintln!("petrel: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use petrel::spool::message::{Envelope, QueueId, Recipient};
    use petrel::spool::{RecipientState, StoredMessage};

    use super::queue_line;

    #[test]
    fn a_queue_line_says_what_is_pending_and_how_often_it_was_tried() {
        let recipient = |address: &str| Recipient {
            address: address.into(),
            notify: None,
            orcpt: None,
        };
        let envelope = Envelope {
            sender: String::new(),
            recipients: vec![recipient("a@example.com"), recipient("b@example.net")],
            ret: None,
            envid: None,
            received_at: UNIX_EPOCH + Duration::from_secs(1_796_145_674),
            client: "192.0.2.7:40000".parse().unwrap(),
            binding: "default".into(),
        };
        let mut message = StoredMessage::new(QueueId(0x1_0000_0002), envelope, 1234);
        message.states[0] = RecipientState::Delivered;
        message.attempts = vec![1, 3];
        assert_eq!(
            queue_line(&message),
            "0000000100000002 1234 2026-12-01T17:21:14.000000Z <> -> \
             a@example.com,b@example.net (1/2 pending, 3 attempts)"
        );
        message.attempts = vec![0, 1];
        assert!(queue_line(&message).ends_with("(1/2 pending, 1 attempt)"));
    }
}
