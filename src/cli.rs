//! The command line: clap definitions and the code that turns them into library calls.
//!
//! Everything a peer can observe lives in the library; this module only parses arguments,
//! builds configurations, and prints results for a person.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tracing::info;

use sockit::client::Client;
use sockit::net::{Endpoint, Listener};
use sockit::protocol::{Limits, MAX_BODY, MAX_HEADER_LEN, MAX_INLINE_BODY};
use sockit::server::{ServerConfig, Shutdown, serve_tcp};
use sockit::service::Native;

/// The default server address, for `serve --listen` and every client's `--server`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9900";

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
    /// Run the server.
    Serve(ServeArgs),
    /// Send TEXT to the server's echo op and print the reply.
    Echo(EchoArgs),
    /// Run the whole system once on free loopback ports and show each part.
    Demo,
}

/// `sockit serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the native protocol: HOST:PORT or unix:PATH.
    #[arg(long, default_value = DEFAULT_ADDR)]
    pub listen: Endpoint,
    /// Data folder (users, homes).
    #[arg(long, default_value = "./sockit-data")]
    pub data: PathBuf,
    /// Connections served at once; more wait in the backlog.
    #[arg(long, default_value_t = ServerConfig::default().max_connections)]
    pub max_connections: usize,
    /// Seconds a connection may stay silent (or not read) before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub idle_timeout: u64,
    /// Seconds shutdown waits for requests in flight.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub grace: u64,
    /// Largest JSON header accepted (e.g. 64KiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = MAX_HEADER_LEN as u64)]
    pub max_header: u64,
    /// Largest body accepted, streamed or not (e.g. 1TiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = MAX_BODY)]
    pub max_body: u64,
    /// Largest body read into memory (e.g. 16MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = MAX_INLINE_BODY)]
    pub max_inline_body: u64,
}

/// Options every client subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address: HOST:PORT or unix:PATH.
    #[arg(short, long, env = "SOCKIT_SERVER", default_value = DEFAULT_ADDR)]
    pub server: Endpoint,
}

/// `sockit echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    /// The text to send.
    pub text: String,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Parses a size: plain bytes, or a number with B, KB/MB/GB/TB (powers of 1000) or
/// KiB/MiB/GiB/TiB (powers of 1024), case-insensitive, spaces allowed.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a size (like 4096, 10MB or 1GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(format!("`{s}`: unknown unit (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Runs the parsed command line.
///
/// # Errors
/// Whatever failed, with context for the one-line message `main` prints.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Echo(args) => {
            let mut client = Client::connect(&args.client.server).await?;
            let reply = client.echo(args.text.as_bytes()).await?;
            println!("{}", String::from_utf8_lossy(&reply));
            Ok(())
        }
        Command::Demo => crate::demo::run(&mut std::io::stdout()).await,
    }
}

impl ServeArgs {
    /// The server configuration these flags describe.
    ///
    /// # Errors
    /// A limit out of its range.
    pub fn config(&self) -> Result<ServerConfig> {
        let max_header_len = u32::try_from(self.max_header)
            .ok()
            .filter(|n| *n <= i32::MAX as u32 && *n > 0)
            .context("--max-header must be between 1 byte and 2GiB")?;
        Ok(ServerConfig {
            max_connections: self.max_connections.max(1),
            idle_timeout: Duration::from_secs(self.idle_timeout.max(1)),
            grace: Duration::from_secs(self.grace),
            limits: Limits {
                max_header_len,
                max_body: self.max_body,
            },
            max_inline_body: self.max_inline_body,
        })
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let config = Arc::new(args.config()?);
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating the data folder {}", args.data.display()))?;
    let listener = Listener::bind(&args.listen).await?;
    // One line on stdout per listener, so scripts and tests that asked for port 0 learn the
    // real port (logs go to stderr).
    println!("sockit: native protocol on {}", listener.local_endpoint()?);
    info!(data = %args.data.display(), "sockit serving");
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve_tcp(
        listener,
        Arc::new(Native::new()),
        config.clone(),
        shutdown.clone(),
    ));
    wait_for_signal().await?;
    info!(grace = ?config.grace, "shutting down");
    let clean = shutdown.drain(config.grace).await;
    server.await.context("listener task")??;
    if !clean {
        info!("grace period over; closing the remaining connections");
    }
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64 kib"), Ok(65536));
        assert!(parse_size("").is_err());
        assert!(parse_size("1.5GB").is_err());
        assert!(parse_size("10XB").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
