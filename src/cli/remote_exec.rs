//! `sockit exec`: its arguments, and the terminal side of a remote command: stdin forwarded
//! when it is not a terminal, output decoded when asked, the remote status passed on.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use clap::Args;

use sockit::client::command::{SinkError, Sinks};

/// `sockit exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Speak the seed's "终极版" protocol (`serve --seed-exec`, or the seed's server).
    #[arg(long)]
    pub seed: bool,
    /// Decode the output from this encoding for display (e.g. gbk, as a Windows server
    /// writes); the bytes travel unchanged.
    #[arg(long, value_name = "LABEL")]
    pub encoding: Option<String>,
    /// The command and its arguments, run by the server's shell in your home.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Login and connection options (-u is not needed with --seed).
    #[command(flatten)]
    pub login: crate::cli::files::LoginArgs,
}

/// `sockit exec` ends with the remote command's status: 128 + the signal when one ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the remote command ended with status {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

/// Runs `sockit exec`: the seed protocol, or the native one with stdin forwarded when it is
/// not a terminal; a non-zero remote status comes back as [`ExitWith`].
///
/// # Errors
/// Connection, login and server errors, with the address in the message.
pub async fn run(args: ExecArgs) -> Result<()> {
    let command = args.command.join(" ");
    let server = &args.login.client.server;
    if args.seed {
        sockit::seed::command::request(server, &command, &mut tokio::io::stdout()).await?;
        return Ok(());
    }
    let encoding = match &args.encoding {
        Some(label) => Some(
            encoding_rs::Encoding::for_label(label.as_bytes())
                .with_context(|| format!("--encoding {label}: unknown encoding"))?,
        ),
        None => None,
    };
    let mut client = args.login.connect().await?;
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let sinks = Sinks {
        stdout: &mut stdout,
        stderr: &mut stderr,
        encoding,
    };
    let exit = if std::io::stdin().is_terminal() {
        client.exec(&command, sinks).await
    } else {
        client
            .exec_with_input(&command, tokio::io::stdin(), sinks)
            .await
    };
    let exit = match exit {
        // `sockit exec … | head`: the reader has all it wanted (and the command is killed
        // as the connection closes).
        Err(e) if SinkError::is_closed_pipe(&e) => return Ok(()),
        other => other.with_context(|| format!("exec on {server}"))?,
    };
    match exit.status_code() {
        0 => Ok(()),
        code => Err(ExitWith(code).into()),
    }
}
