//! `sockit put -r` and `sockit get -r`: a folder both ways, with one bar for the whole
//! folder and a report of what moved, what was already there and what was left out.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use sockit::client::Client;
use sockit::client::tree::{TreeProgress, TreeReport, default_name};

use crate::cli::files::{GetArgs, LoginArgs};

/// `sockit put -r LOCAL [REMOTE]`: REMOTE (default: LOCAL's name) becomes LOCAL's copy.
///
/// # Errors
/// Local, connection and server errors, and any file that failed (after the rest went).
pub async fn put(login: &LoginArgs, local: &Path, remote: Option<&str>) -> Result<()> {
    let remote = match remote {
        Some(r) => r.to_string(),
        None => default_name(&local.to_string_lossy())?,
    };
    let mut client = login.connect().await?;
    put_with(&mut client, local, &remote, login.quiet).await
}

/// `put -r` on a logged-in `client` (the command, or the shell's).
///
/// # Errors
/// As [`put`].
pub async fn put_with(client: &mut Client, local: &Path, remote: &str, quiet: bool) -> Result<()> {
    let mut bar = FolderBar::new(quiet);
    let report = client.put_tree(local, remote, &mut bar).await?;
    bar.0.finish_and_clear();
    summary("sent", &report, &format!("{} -> {remote}", local.display()))
}

/// `get -r` on a logged-in `client` (the command, or the shell's).
///
/// # Errors
/// As [`put`].
pub async fn get_with(client: &mut Client, remote: &str, local: &Path, quiet: bool) -> Result<()> {
    let mut bar = FolderBar::new(quiet);
    let report = client.get_tree(remote, local, &mut bar).await?;
    bar.0.finish_and_clear();
    summary(
        "fetched",
        &report,
        &format!("{remote} -> {}", local.display()),
    )
}

/// `sockit get -r REMOTE [LOCAL]`: LOCAL (default: REMOTE's name, here) becomes its copy.
///
/// # Errors
/// As [`put`].
pub async fn get(args: GetArgs) -> Result<()> {
    let local = match &args.local {
        Some(l) => l.clone(),
        None => default_name(&args.remote)?.into(),
    };
    let mut client = args.login.connect().await?;
    get_with(&mut client, &args.remote, &local, args.login.quiet).await
}

/// Prints the report; fails when any file did.
fn summary(verb: &str, report: &TreeReport, what: &str) -> Result<()> {
    for (path, why) in &report.skipped {
        eprintln!("sockit: skipped {path}: {why}");
    }
    for (path, error) in &report.failed {
        eprintln!("sockit: failed {path}: {error}");
    }
    let compared = match report.compared {
        0 => String::new(),
        n => format!(" ({n} by digest)"),
    };
    out!(
        "{what}: {verb} {} files ({}), {} unchanged{compared}, {} folders made, {} skipped, {} failed",
        report.transferred,
        indicatif::HumanBytes(report.bytes),
        report.unchanged,
        report.folders_made,
        report.skipped.len(),
        report.failed.len()
    );
    if !report.failed.is_empty() {
        bail!(
            "{} files failed (run the same command again to retry them)",
            report.failed.len()
        );
    }
    Ok(())
}

/// One bar for a whole folder: bytes done of the bytes to move, files counted in its
/// message. Hidden when stderr is no terminal or with `-q`.
struct FolderBar(ProgressBar, u64, u64);

impl FolderBar {
    fn new(quiet: bool) -> FolderBar {
        let bar = if quiet || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:24!} {bar:30} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        FolderBar(bar, 0, 0)
    }
}

impl TreeProgress for FolderBar {
    fn planned(&mut self, files: u64, bytes: u64) {
        self.0.set_length(bytes);
        self.2 = files;
        self.0.set_message(format!("0/{files} files"));
    }

    fn file_done(&mut self, _path: &str, bytes: u64, _error: Option<&str>) {
        self.1 += 1;
        self.0.inc(bytes);
        self.0.set_message(format!("{}/{} files", self.1, self.2));
    }
}
