//! The file-server subcommands: `put`, `get`, `ls`, `mkdir`, `rm`, `mv`, `stat`, with
//! progress bars and password prompts. Only presentation lives here; the protocol is in
//! `sockit::client`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use sockit::client::Client;
use sockit::filecopy::{Progress, Quiet};
use sockit::storage::{Entry, EntryKind};

use crate::cli::ClientArgs;

/// Options of every file subcommand: where, who, and whether to draw bars.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// User name (password from SOCKIT_PASSWORD, or a prompt).
    #[arg(short, long, env = "SOCKIT_USER")]
    pub user: Option<String>,
    /// Log in with this private key (from `sockit key gen`) instead of a password.
    #[arg(short = 'i', long, env = "SOCKIT_IDENTITY")]
    pub identity: Option<PathBuf>,
    /// No progress bars.
    #[arg(short, long)]
    pub quiet: bool,
}

impl LoginArgs {
    /// Connects and logs in.
    ///
    /// # Errors
    /// Connection and login failures, with the address and user in the message.
    pub async fn connect(&self) -> Result<Client> {
        let Some(user) = &self.user else {
            bail!("which user? give -u NAME (or set SOCKIT_USER)");
        };
        let server = &self.client.server;
        // The server first, trusted before a password is typed or sent.
        let mut client = self.client.connect().await?;
        if let Some(path) = &self.identity {
            let identity = sockit::keys::KeyPair::load(path)
                .with_context(|| format!("reading the key {}", path.display()))?;
            client
                .login_with_key(user, &identity)
                .await
                .with_context(|| {
                    format!("logging in to {server} as {user} with {}", path.display())
                })?;
            return Ok(client);
        }
        let password = match std::env::var("SOCKIT_PASSWORD") {
            Ok(p) => p,
            Err(_) => rpassword::prompt_password(format!("password for {user}@{server}: "))
                .context("reading the password (set SOCKIT_PASSWORD when there is no terminal)")?,
        };
        client
            .login(user, &password)
            .await
            .with_context(|| format!("logging in to {server} as {user}"))?;
        Ok(client)
    }

    /// A progress reporter: a bar on a terminal, nothing otherwise or with `-q`.
    pub fn progress(&self, label: &str) -> Box<dyn Progress> {
        progress_bar(label, self.quiet)
    }
}

/// A bar on stderr when it is a terminal (and not `quiet`); otherwise nothing.
pub fn progress_bar(label: &str, quiet: bool) -> Box<dyn Progress> {
    if quiet || !std::io::stderr().is_terminal() {
        Box::new(Quiet)
    } else {
        Box::new(Bar::new(label))
    }
}

/// An indicatif bar with bytes, rate and ETA.
struct Bar(ProgressBar);

impl Bar {
    fn new(label: &str) -> Bar {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:20!} {bar:30} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(label.to_string());
        Bar(bar)
    }
}

impl Progress for Bar {
    fn start(&mut self, total: u64, done: u64) {
        self.0
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.reset_eta();
    }
    fn advance(&mut self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

/// `sockit get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Continue an interrupted download from its partial file.
    #[arg(long)]
    pub resume: bool,
    /// Fetch the folder REMOTE and all below it; a rerun fetches only what is missing or
    /// changed.
    #[arg(short, long, conflicts_with = "resume")]
    pub recursive: bool,
    /// The file on the server, or sockit://[USER@]HOST[:PORT]/PATH.
    pub remote: String,
    /// Where to save it (default: the remote file's name, here; a folder: that name in it).
    pub local: Option<PathBuf>,
    /// Login options.
    #[command(flatten)]
    pub login: LoginArgs,
}

/// `sockit ls`, `mkdir`, `rm`, `stat`: one remote path.
#[derive(Debug, Args)]
pub struct PathArgs {
    /// The path in your home (for ls: default `/`, the home itself), or
    /// sockit://[USER@]HOST[:PORT]/PATH.
    pub path: Option<String>,
    /// For rm: remove folders and their contents. For mkdir: create parents.
    #[arg(short = 'r', long = "recursive", alias = "parents", short_alias = 'p')]
    pub recursive: bool,
    /// Login options.
    #[command(flatten)]
    pub login: LoginArgs,
}

impl PathArgs {
    /// The path, which every command but `ls` needs.
    ///
    /// # Errors
    /// When none was given.
    pub fn required(&self, command: &str) -> Result<&str> {
        self.path
            .as_deref()
            .with_context(|| format!("{command} needs a PATH"))
    }

    /// The path, or the home for `ls`.
    pub fn or_home(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
}

/// `sockit mv`.
#[derive(Debug, Args)]
pub struct MvArgs {
    /// Existing path (or sockit://[USER@]HOST[:PORT]/PATH).
    pub from: String,
    /// New path (or an address of the same server and user).
    pub to: String,
    /// Login options.
    #[command(flatten)]
    pub login: LoginArgs,
}

/// Uploads `local` (native protocol) and prints what was stored.
///
/// # Errors
/// Local, connection and server errors.
pub async fn put(
    login: &LoginArgs,
    local: &Path,
    remote: Option<&str>,
    resume: bool,
) -> Result<()> {
    let remote = match remote {
        Some(r) => r.to_string(),
        None => file_name(local)?,
    };
    let mut client = login.connect().await?;
    let mut bar = login.progress(&remote);
    let done = client.put(local, &remote, resume, bar.as_mut()).await?;
    out!("{}", transfer_line("stored", &remote, &done));
    Ok(())
}

/// Downloads `remote` and prints what was saved.
///
/// # Errors
/// Local, connection and server errors.
pub async fn get(args: GetArgs) -> Result<()> {
    let local = match args.local {
        Some(dir) if dir.is_dir() => dir.join(remote_name(&args.remote)),
        Some(l) => l,
        None => PathBuf::from(remote_name(&args.remote)),
    };
    let mut client = args.login.connect().await?;
    let mut bar = args.login.progress(&args.remote);
    let done = client
        .get(&args.remote, &local, args.resume, bar.as_mut())
        .await?;
    out!(
        "{}",
        transfer_line("saved", &local.display().to_string(), &done)
    );
    Ok(())
}

/// The line a finished transfer prints: size, the digest it was checked by, any resume.
pub fn transfer_line(what: &str, name: &str, v: &sockit::client::Verified) -> String {
    let resumed = if v.resumed_from > 0 {
        format!(", resumed at {}", v.resumed_from)
    } else {
        String::new()
    };
    let (digest, hex) = v.digest();
    format!(
        "{what} {name}: {} bytes, {digest} {hex} verified{resumed}",
        v.size
    )
}

/// Prints a listing the way `ls -l` would.
pub fn print_entries(entries: &[Entry]) {
    for e in entries {
        let kind = match e.kind {
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::File => '-',
            EntryKind::Other => '?',
        };
        let when = chrono::DateTime::from_timestamp(e.modified, 0)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        let slash = if e.kind == EntryKind::Dir { "/" } else { "" };
        out!("{kind} {:>12}  {when}  {}{slash}", e.size, e.name);
    }
}

/// The last component of a remote path.
pub fn remote_name(remote: &str) -> String {
    remote
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("download")
        .to_string()
}

fn file_name(local: &Path) -> Result<String> {
    local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", local.display()))
}
