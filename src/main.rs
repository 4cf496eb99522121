//! The `sockit` binary: parse arguments, set up logging, run, map errors to an exit code.

/// `println!` for a command's output. Rust ignores SIGPIPE, so `println!` panics when the
/// reader goes away (`sockit ls | head -1`); this ends the process quietly instead, as a
/// command killed by SIGPIPE would.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use sockit::config::LogFormat;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // The exec sandbox runs this binary as its helper (`__sandbox`) and as its namespace's
    // PID 1: before clap, logging and the runtime, while the process has one thread, as
    // `unshare` of a user namespace needs.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(ran) = sockit::runner::helper_main(&args) {
        return ran.unwrap_or_else(|e| {
            eprintln!("sockit: exec sandbox: {e}");
            ExitCode::from(sockit::runner::SANDBOX_FAILED)
        });
    }
    // The matches are kept: they say which settings a flag gave (see cli::precedence).
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let default_level = match cli.verbose {
        // The demo narrates on stdout; its server's logs would only interleave with that.
        0 if matches!(cli.command, cli::Command::Demo) => "off",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // libunftp (the FTP door) logs each command at info, with spans that print its whole
        // session state, and tokio-postgres each NOTICE of the database (the schema's
        // `IF NOT EXISTS` at every start): their warnings are enough unless tracing.
        match default_level {
            "info" | "debug" => {
                EnvFilter::new(format!("{default_level},libunftp=warn,tokio_postgres=warn"))
            }
            _ => EnvFilter::new(default_level),
        }
    });
    // Colours only for a person at a terminal, not in a file or the journal.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match &cli.command {
        // One JSON object per line: the event's fields at the top, the connection's span
        // (id, peer) under "span".
        cli::Command::Serve(options) if options.log_format() == LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        _ => logs.init(),
    }
    // Tasks polled between two looks at the I/O driver while a worker has work queued
    // (tokio's default: 61). Each look can move newly ready connections onto the busy
    // worker's queue, where they wait out its time slice if the OS preempts it; looking
    // half as often cut the echo benchmark's p99 from 4.4 ms to 2.7 ms (100 connections,
    // 2 cores shared with the load generator), with throughput unchanged.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(128)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sockit: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli::run(cli, &matches));
    // Do not wait for tasks left behind (connections past the grace period).
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // `sockit exec` passes the remote command's status on, without a message.
            if let Some(cli::remote_exec::ExitWith(code)) = e.downcast_ref() {
                return ExitCode::from(*code);
            }
            eprintln!("sockit: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `sockit ... | head` closing our stdout is not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `text` to stdout; a closed pipe exits quietly, any other failure loudly.
fn write_out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sockit: writing to stdout: {e}");
        std::process::exit(1);
    }
}
