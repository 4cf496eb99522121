//! The command line: clap definitions and the code that turns them into library calls.
//!
//! Everything a peer can observe lives in the library; this module only parses arguments,
//! builds configurations, and prints results for a person.

pub mod bench;
pub mod completer;
pub mod config;
pub mod demo;
pub mod files;
pub mod key;
pub mod lab;
pub mod precedence;
pub mod remote_exec;
pub mod serve;
pub mod shell;
pub mod tree;
pub mod trust;
pub mod user;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};
use tokio::io::AsyncBufReadExt;

use sockit::client::Client;
use sockit::client::chat::{self, Incoming};
use sockit::net::Endpoint;

/// The default server address, for `serve --listen` and every client's `--server`.
pub const DEFAULT_ADDR: &str = sockit::config::DEFAULT_LISTEN;

/// How long a UDP client waits for a reply datagram.
const UDP_WAIT: Duration = Duration::from_secs(5);

/// sockit: framed TCP messaging, a file server and remote commands, from the socket seeds.
#[derive(Debug, Parser)]
#[command(name = "sockit", version, about, propagate_version = true)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (and, when asked, the seeds' TCP and UDP listeners).
    Serve(Box<crate::cli::serve::ServeOptions>),
    /// Manage the users of a data folder (on the server's machine).
    User(crate::cli::user::UserArgs),
    /// Login keys on this machine: `key gen [FILE]` makes one (log in with -i FILE).
    Key {
        /// What to do.
        #[command(subcommand)]
        action: crate::cli::key::KeyAction,
    },
    /// Upload LOCAL as REMOTE (verified by md5; --resume continues).
    Put(PutArgs),
    /// Download REMOTE to LOCAL (verified by md5; --resume continues).
    Get(crate::cli::files::GetArgs),
    /// List a folder of your home on the server.
    Ls(crate::cli::files::PathArgs),
    /// Create a folder (-p: with parents).
    Mkdir(crate::cli::files::PathArgs),
    /// Remove a file (-r: a folder and its contents).
    Rm(crate::cli::files::PathArgs),
    /// Rename or move FROM to TO.
    Mv(crate::cli::files::MvArgs),
    /// Show one file or folder.
    Stat(crate::cli::files::PathArgs),
    /// An interactive shell on the server, like sftp (or a script on stdin).
    Shell(crate::cli::shell::ShellArgs),
    /// Run COMMAND on the server, in your home: its stdout, stderr and exit status come back
    /// (stdin is forwarded when it is not a terminal).
    Exec(crate::cli::remote_exec::ExecArgs),
    /// Send TEXT to the server's echo and print the reply.
    Echo(EchoArgs),
    /// Ask a UDP time server for the time in FORMAT (strftime; default `%Y-%m-%d %X`).
    Time(TimeArgs),
    /// Join a UDP chat room: typed lines are messages, `@name text` goes to one member,
    /// `/quit` leaves.
    Chat(ChatArgs),
    /// Run the whole system once on free loopback ports and show each part.
    Demo,
    /// Print the server's TLS certificate fingerprint (SHA256:…) to hand to its users
    /// (made with the certificate, in DATA/tls/, if there is none yet).
    Fingerprint {
        /// The server's data folder.
        #[arg(long, default_value = "./sockit-data")]
        data: PathBuf,
    },
    /// Generate load against a sockit server and measure it (echo, put, get, idle).
    Bench(Box<crate::cli::bench::BenchArgs>),
    /// The seeds' socket phenomena on loopback: `lab` lists them, `lab NAME` runs one
    /// (sticky, nagle, time-wait, udp-boundaries, backlog, half-close), `lab all` every one.
    Lab(crate::cli::lab::LabArgs),
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Options every client subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address: HOST:PORT or unix:PATH.
    #[arg(short, long, env = "SOCKIT_SERVER", default_value = DEFAULT_ADDR)]
    pub server: Endpoint,
    /// Speak plaintext, not TLS, to a TCP server (a server serves it only on loopback
    /// unless it runs with --allow-plaintext).
    #[arg(long, env = "SOCKIT_PLAINTEXT", value_parser = clap::builder::BoolishValueParser::new())]
    pub plaintext: bool,
    /// A server not in the known-hosts file yet: ask, accept-new (trust and remember it) or
    /// strict (refuse) [default: ask on a terminal, strict otherwise].
    #[arg(long, env = "SOCKIT_TRUST", value_enum)]
    pub trust: Option<crate::cli::trust::Trust>,
    /// Accept exactly the server certificate with this fingerprint (SHA256:…), known or not.
    #[arg(long, env = "SOCKIT_FINGERPRINT", value_name = "SHA256:…")]
    pub fingerprint: Option<String>,
}

impl ClientArgs {
    /// Connects to the server: TLS, trusted as the flags say (see [`crate::cli::trust`]).
    ///
    /// # Errors
    /// As [`crate::cli::trust::connect`].
    pub async fn connect(&self) -> Result<Client> {
        crate::cli::trust::connect(
            &self.server,
            self.plaintext,
            self.trust,
            self.fingerprint.as_deref(),
        )
        .await
    }
}

/// `sockit echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// The text to send.
    pub text: String,
    /// Send one datagram to a UDP echo server (`serve --udp-echo`, or the seed's).
    #[arg(long, conflicts_with = "seed")]
    pub udp: bool,
    /// Speak the seed's raw TCP echo protocol (`serve --seed-echo`, or the seed's server).
    #[arg(long)]
    pub seed: bool,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sockit put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Continue an interrupted upload from where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// Speak the seed's upload protocol (`serve --seed-upload`, or the seed's server).
    #[arg(long, conflicts_with = "resume")]
    pub seed: bool,
    /// Send the folder LOCAL and all below it; a rerun sends only what is missing or changed.
    #[arg(short, long, conflicts_with_all = ["seed", "resume"])]
    pub recursive: bool,
    /// The local file.
    pub local: PathBuf,
    /// The name on the server (default: LOCAL's file name), or
    /// sockit://[USER@]HOST[:PORT]/PATH (a PATH ending in `/`: LOCAL's name in that folder).
    pub remote: Option<String>,
    /// Login and connection options.
    #[command(flatten)]
    pub login: crate::cli::files::LoginArgs,
}

/// `sockit time`.
#[derive(Debug, Args)]
pub struct TimeArgs {
    /// The strftime format; empty asks for the server's default.
    #[arg(default_value = "")]
    pub format: String,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `sockit chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Your name in the room.
    #[arg(long)]
    pub name: String,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs the parsed command line (`matches`: what clap found, and where; see
/// [`precedence::settle`]).
///
/// # Errors
/// Whatever failed, with context for the one-line message `main` prints.
pub async fn run(mut cli: Cli, matches: &clap::ArgMatches) -> Result<()> {
    precedence::settle(&mut cli, matches)?;
    match cli.command {
        Command::Serve(options) => crate::cli::serve::run(*options).await,
        Command::Echo(args) => echo(args).await,
        Command::Exec(args) => crate::cli::remote_exec::run(args).await,
        Command::Put(args) if args.seed => {
            let sent = sockit::seed::upload::send(
                &args.login.client.server,
                &args.local,
                args.remote.as_deref(),
            )
            .await
            .with_context(|| format!("uploading {}", args.local.display()))?;
            out!("sent {} ({sent} bytes)", args.local.display());
            Ok(())
        }
        Command::Put(args) if args.recursive => {
            let remote = args.remote.as_deref();
            crate::cli::tree::put(&args.login, &args.local, remote).await
        }
        Command::Put(args) => {
            crate::cli::files::put(
                &args.login,
                &args.local,
                args.remote.as_deref(),
                args.resume,
            )
            .await
        }
        Command::User(args) => crate::cli::user::user(args),
        Command::Key { action } => crate::cli::key::key(action),
        Command::Get(args) if args.recursive => crate::cli::tree::get(args).await,
        Command::Get(args) => crate::cli::files::get(args).await,
        Command::Ls(args) => {
            let mut client = args.login.connect().await?;
            // Printed a page at a time: a folder of any size, in flat memory.
            client
                .ls_pages(args.or_home(), |page| {
                    crate::cli::files::print_entries(&page);
                    Ok(())
                })
                .await?;
            Ok(())
        }
        Command::Stat(args) => {
            let path = args.required("stat")?;
            let mut client = args.login.connect().await?;
            crate::cli::files::print_entries(&[client.stat(path).await?]);
            Ok(())
        }
        Command::Mkdir(args) => {
            let path = args.required("mkdir")?;
            Ok(args
                .login
                .connect()
                .await?
                .mkdir(path, args.recursive)
                .await?)
        }
        Command::Rm(args) => {
            let path = args.required("rm")?;
            Ok(args.login.connect().await?.rm(path, args.recursive).await?)
        }
        Command::Mv(args) => Ok(args.login.connect().await?.mv(&args.from, &args.to).await?),
        Command::Shell(args) => crate::cli::shell::run(args).await,
        Command::Time(args) => {
            let server = udp_addr(&args.client.server)?;
            let time = sockit::client::udp::time(server, &args.format, UDP_WAIT).await?;
            out!("{time}");
            Ok(())
        }
        Command::Chat(args) => chat_session(args).await,
        Command::Demo => crate::cli::demo::run(&mut std::io::stdout()).await,
        Command::Fingerprint { data } => {
            let identity = sockit::tls::Identity::load_or_create(&data)
                .with_context(|| format!("the TLS identity in {}", data.display()))?;
            out!("{}", identity.fingerprint());
            Ok(())
        }
        Command::Bench(args) => crate::cli::bench::run(*args).await,
        Command::Lab(args) => crate::cli::lab::run(args).await,
        Command::Completions { shell } => {
            // Into a buffer first: `generate` panics when it cannot write (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sockit", &mut script);
            out!("{}", String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
    }
}

async fn echo(args: EchoArgs) -> Result<()> {
    let text = args.text.as_bytes();
    let reply = if args.udp {
        let server = udp_addr(&args.client.server)?;
        sockit::seed::echo::request_udp(server, text, UDP_WAIT).await?
    } else if args.seed {
        sockit::seed::echo::request_tcp(&args.client.server, text).await?
    } else {
        args.client.connect().await?.echo(text).await?
    };
    out!("{}", String::from_utf8_lossy(&reply));
    Ok(())
}

/// The `HOST:PORT` of a UDP server.
fn udp_addr(server: &Endpoint) -> Result<&str> {
    match server {
        Endpoint::Tcp(addr) => Ok(addr),
        Endpoint::Unix(_) => bail!("{server}: UDP services need HOST:PORT"),
    }
}

/// `sockit chat`: stdin lines out, room messages in, until `/quit` or the end of stdin.
async fn chat_session(args: ChatArgs) -> Result<()> {
    let server = udp_addr(&args.client.server)?;
    let client = chat::Client::connect(server).await?;
    client.send(&format!("JOIN {}", args.name)).await?;
    let mut early = Vec::new();
    let welcome = client
        .reply(UDP_WAIT, &mut early)
        .await
        .with_context(|| format!("joining the chat at {server}"))?;
    out!("* {welcome}");
    early.into_iter().for_each(show);

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut ping = tokio::time::interval(chat::PING_EVERY);
    ping.tick().await;
    // Every datagram is answered once: count the answers still owed, to drain them at the end.
    let mut owed = 0usize;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let line = line.trim();
                if line == "/quit" {
                    break;
                }
                if !line.is_empty() {
                    client.say(line).await?;
                    owed += 1;
                }
            }
            incoming = client.recv() => owed = owed.saturating_sub(handle(incoming?)),
            _ = ping.tick() => {
                client.send("PING").await?;
                owed += 1;
            }
        }
    }
    // Piped input ends at once: let the room answer what was sent before leaving.
    let drain = async {
        while owed > 0 {
            owed = owed.saturating_sub(handle(client.recv().await?));
        }
        Ok::<_, sockit::Error>(())
    };
    let _ = tokio::time::timeout(UDP_WAIT, drain).await;
    client.send("LEAVE").await?;
    let mut rest = Vec::new();
    let bye = client.reply(UDP_WAIT, &mut rest).await;
    rest.into_iter().for_each(show);
    bye.context("leaving the chat")?;
    Ok(())
}

/// Shows one incoming datagram; returns 1 if it was a reply to us.
fn handle(incoming: Incoming) -> usize {
    match incoming {
        Incoming::Reply(Ok(_)) => 1,
        Incoming::Reply(Err(e)) => {
            eprintln!("sockit: {e}");
            1
        }
        other => {
            show(other);
            0
        }
    }
}

fn show(incoming: Incoming) {
    match incoming {
        Incoming::Message {
            from,
            text,
            direct: false,
        } => out!("[{from}] {text}"),
        Incoming::Message {
            from,
            text,
            direct: true,
        } => out!("[{from} -> you] {text}"),
        Incoming::Notice(text) => out!("* {text}"),
        Incoming::Reply(Ok(text)) => out!("* {text}"),
        Incoming::Reply(Err(text)) => eprintln!("sockit: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exec_takes_the_rest_of_the_line() {
        let cli = Cli::parse_from(["sockit", "exec", "--seed", "ls", "-l", "/tmp"]);
        let Command::Exec(args) = cli.command else {
            panic!("not exec")
        };
        assert!(args.seed);
        assert_eq!(args.command, ["ls", "-l", "/tmp"]);
    }
}
