//! `sockit shell`: an sftp-like shell. On a terminal it is interactive (rustyline: history,
//! Tab completion of commands, remote paths and local paths); with piped input it runs each
//! line as it arrives, in order, and stops at the first failure with a non-zero exit.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use rustyline::Editor;
use rustyline::error::ReadlineError;
use tokio::io::AsyncBufReadExt;

use sockit::client::Client;
use sockit::client::shell::{HELP, RemoteCwd, ShellCommand, parse_line};
use sockit::client::{Space, Verified};
use sockit::quota::format_size;
use sockit::storage::{Entry, EntryKind};

use crate::cli::completer::Completion;
use crate::cli::files::{LoginArgs, print_entries, remote_name, transfer_line};

/// `sockit shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Start in this folder of your home, or at sockit://[USER@]HOST[:PORT]/PATH.
    pub remote: Option<String>,
    /// Login and connection options.
    #[command(flatten)]
    pub login: LoginArgs,
}

/// Runs the shell until `quit`, the end of input, or (in a script) the first failure.
///
/// # Errors
/// Login failures, a starting folder that is not one; in a script, the first failing line.
pub async fn run(args: ShellArgs) -> Result<()> {
    let client = args.login.connect().await?;
    let mut shell = Shell {
        client: Arc::new(tokio::sync::Mutex::new(client)),
        cwd: RemoteCwd::new(),
        login: args.login,
    };
    if let Some(start) = args.remote {
        shell.execute(ShellCommand::Cd(Some(start))).await?;
    }
    if std::io::stdin().is_terminal() {
        shell.interactive().await
    } else {
        shell.script().await
    }
}

struct Shell {
    /// Shared with Tab completion, which lists folders while a line is being typed.
    client: Arc<tokio::sync::Mutex<Client>>,
    cwd: RemoteCwd,
    login: LoginArgs,
}

impl Shell {
    async fn interactive(&mut self) -> Result<()> {
        // Tab as in bash and sftp: the common part first, then the list.
        let config = rustyline::Config::builder()
            .completion_type(rustyline::CompletionType::List)
            .build();
        let mut editor: Editor<Completion, _> = Editor::with_config(config)?;
        editor.set_helper(Some(Completion::new(self.client.clone())));
        out!("connected; `help` lists the commands");
        loop {
            if let Some(completion) = editor.helper_mut() {
                completion.cwd = self.cwd.clone();
            }
            let prompt = format!("sockit:{}> ", self.cwd.display());
            // Keys typed while a command ran wait in the terminal's input queue, which
            // rustyline does not flush; what it reads past this line it keeps for the next
            // (its buffer-redux feature): lines typed ahead all run, in order.
            let line = tokio::task::block_in_place(|| editor.readline(&prompt));
            let line = match line {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let _ = editor.add_history_entry(line.as_str());
            if editor.helper().is_some_and(Completion::lost) {
                eprintln!("reconnecting…");
                *self.client.lock().await = self.login.connect().await?;
            }
            match parse_line(&line) {
                Ok(None) => {}
                Ok(Some(ShellCommand::Quit)) => return Ok(()),
                Ok(Some(cmd)) => {
                    let result = self.execute(cmd).await;
                    // The command may have changed any folder listed so far.
                    if let Some(completion) = editor.helper_mut() {
                        completion.forget();
                    }
                    if let Err(e) = result {
                        eprintln!("error: {e:#}");
                        if is_connection_lost(&e) {
                            eprintln!("reconnecting…");
                            *self.client.lock().await = self.login.connect().await?;
                        }
                    }
                }
                Err(msg) => eprintln!("error: {msg}"),
            }
        }
    }

    /// Runs stdin's lines in order, each as soon as it has arrived.
    async fn script(&mut self) -> Result<()> {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let mut n = 0;
        while let Some(line) = lines.next_line().await.context("reading the script")? {
            n += 1;
            let cmd = parse_line(&line).map_err(|m| anyhow!("line {n}: {m}"))?;
            match cmd {
                None => {}
                Some(ShellCommand::Quit) => return Ok(()),
                Some(cmd) => self
                    .execute(cmd)
                    .await
                    .with_context(|| format!("line {n}: {}", line.trim()))?,
            }
        }
        Ok(())
    }

    async fn execute(&mut self, cmd: ShellCommand) -> Result<()> {
        let mut client = self.client.lock().await;
        let c = &mut *client;
        match cmd {
            ShellCommand::Ls { path, long, all } => {
                let path = self.cwd.resolve(path.as_deref().unwrap_or("."))?;
                // Printed a page at a time: a folder of any size, in flat memory.
                c.ls_pages(&path, |page| {
                    let entries = visible(page, &path, all);
                    if long {
                        print_entries(&entries);
                    } else {
                        for e in entries {
                            let slash = if e.kind == EntryKind::Dir { "/" } else { "" };
                            out!("{}{slash}", e.name);
                        }
                    }
                    Ok(())
                })
                .await?;
            }
            ShellCommand::Cd(path) => {
                let target = self.cwd.resolve(path.as_deref().unwrap_or("/"))?;
                let entry = c.stat(&target).await?;
                if entry.kind != EntryKind::Dir {
                    bail!("{target} is not a folder");
                }
                self.cwd.cd(&target)?;
            }
            ShellCommand::Pwd => out!("{}", self.cwd.display()),
            ShellCommand::Lcd(path) => {
                std::env::set_current_dir(&path).with_context(|| format!("lcd {path}"))?;
            }
            ShellCommand::Lpwd => out!("{}", std::env::current_dir()?.display()),
            ShellCommand::Lls(path) => {
                let dir = PathBuf::from(path.unwrap_or_else(|| ".".into()));
                let mut names: Vec<String> = std::fs::read_dir(&dir)
                    .with_context(|| format!("lls {}", dir.display()))?
                    .filter_map(|e| e.ok())
                    .map(|e| {
                        let slash = if e.path().is_dir() { "/" } else { "" };
                        format!("{}{slash}", e.file_name().to_string_lossy())
                    })
                    .collect();
                names.sort();
                names.iter().for_each(|n| out!("{n}"));
            }
            ShellCommand::Lmkdir { path, parents } => {
                let made = if parents {
                    std::fs::create_dir_all(&path)
                } else {
                    std::fs::create_dir(&path)
                };
                made.with_context(|| format!("lmkdir {path}"))?;
            }
            ShellCommand::Mkdir { path, parents } => {
                c.mkdir(&self.cwd.resolve(&path)?, parents).await?
            }
            ShellCommand::Rm { path, recursive } => {
                c.rm(&self.cwd.resolve(&path)?, recursive).await?
            }
            ShellCommand::Mv(from, to) => {
                c.mv(&self.cwd.resolve(&from)?, &self.cwd.resolve(&to)?)
                    .await?;
            }
            ShellCommand::Stat(path) => print_entries(&[c.stat(&self.cwd.resolve(&path)?).await?]),
            ShellCommand::Df => out!("{}", df_lines(&c.df().await?)),
            ShellCommand::Put {
                local,
                remote,
                recursive: true,
                ..
            } => {
                let local = PathBuf::from(local);
                let name = match remote {
                    Some(r) => r,
                    None => sockit::client::tree::default_name(&local.to_string_lossy())?,
                };
                let remote = self.cwd.resolve(&name)?;
                crate::cli::tree::put_with(c, &local, &remote, self.login.quiet).await?;
            }
            ShellCommand::Get {
                remote,
                local,
                recursive: true,
                ..
            } => {
                let local = match local {
                    Some(l) => PathBuf::from(l),
                    None => sockit::client::tree::default_name(&remote)?.into(),
                };
                let remote = self.cwd.resolve(&remote)?;
                crate::cli::tree::get_with(c, &remote, &local, self.login.quiet).await?;
            }
            ShellCommand::Put {
                local,
                remote,
                resume,
                ..
            } => {
                let local = PathBuf::from(local);
                let name = match remote {
                    Some(r) => r,
                    None => remote_name(&local.to_string_lossy()),
                };
                let remote = self.cwd.resolve(&name)?;
                let mut bar = self.login.progress(&name);
                let v = c.put(&local, &remote, resume, bar.as_mut()).await?;
                out!("{}", transfer_line("stored", &remote, &v));
            }
            ShellCommand::Get {
                remote,
                local,
                resume,
                ..
            } => {
                let local = match local {
                    Some(dir) if Path::new(&dir).is_dir() => {
                        Path::new(&dir).join(remote_name(&remote))
                    }
                    Some(l) => PathBuf::from(l),
                    None => PathBuf::from(remote_name(&remote)),
                };
                let remote = self.cwd.resolve(&remote)?;
                let mut bar = self.login.progress(&remote);
                let v: Verified = c.get(&remote, &local, resume, bar.as_mut()).await?;
                let local = local.display().to_string();
                out!("{}", transfer_line("saved", &local, &v));
            }
            ShellCommand::Exec(command) => {
                let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
                let sinks = sockit::client::command::Sinks {
                    stdout: &mut stdout,
                    stderr: &mut stderr,
                    encoding: None,
                };
                let exit = c.exec(&self.cwd.command_here(&command), sinks).await?;
                if exit.status_code() != 0 {
                    bail!("the command ended with status {}", exit.status_code());
                }
            }
            ShellCommand::Help => out!("{HELP}"),
            ShellCommand::Quit => {}
        }
        Ok(())
    }
}

/// The entries `ls` shows: without `all`, no dot files, unless the path names one itself
/// (the server answers a file's path with that one entry).
fn visible(entries: Vec<Entry>, path: &str, all: bool) -> Vec<Entry> {
    let named = path.rsplit('/').next().unwrap_or_default();
    let the_file_itself =
        entries.len() == 1 && entries[0].name == named && entries[0].kind != EntryKind::Dir;
    if all || the_file_itself {
        return entries;
    }
    entries
        .into_iter()
        .filter(|e| !e.name.starts_with('.'))
        .collect()
}

/// What `df` prints: each figure readable and in bytes.
fn df_lines(space: &Space) -> String {
    let line = |what: &str, bytes: u64| format!("{what:<6}{} ({bytes} bytes)", format_size(bytes));
    match (space.quota, space.free()) {
        (Some(quota), Some(free)) => [
            line("quota", quota),
            line("used", space.used),
            line("free", free),
        ]
        .join("\n"),
        _ => format!(
            "quota none (unlimited)\n{}\nfree  unlimited",
            line("used", space.used)
        ),
    }
}

/// Whether an error means the connection is gone (worth one reconnect).
fn is_connection_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sockit::Error>()
            .is_some_and(|e| e.closes_connection() || e.is_disconnect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: EntryKind) -> Entry {
        Entry {
            name: name.into(),
            kind,
            size: 1,
            modified: 0,
            mode: None,
        }
    }

    #[test]
    fn plain_ls_hides_dot_files_unless_named() {
        let listing = vec![entry(".env", EntryKind::File), entry("a", EntryKind::File)];
        let names = |v: Vec<Entry>| v.into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(names(visible(listing.clone(), "/d", false)), ["a"]);
        assert_eq!(names(visible(listing, "/d", true)), [".env", "a"]);
        let one = vec![entry(".env", EntryKind::File)];
        assert_eq!(names(visible(one, "/d/.env", false)), [".env"]);
        let folder = vec![entry(".git", EntryKind::Dir)];
        assert!(visible(folder, "/.git", false).is_empty());
    }

    #[test]
    fn df_shows_quota_used_and_free() {
        let limited = Space {
            quota: Some(10 << 20),
            used: 4096,
        };
        assert_eq!(
            df_lines(&limited),
            "quota 10.0 MiB (10485760 bytes)\nused  4.0 KiB (4096 bytes)\n\
             free  10.0 MiB (10481664 bytes)"
        );
        let unlimited = Space {
            quota: None,
            used: 0,
        };
        assert_eq!(
            df_lines(&unlimited),
            "quota none (unlimited)\nused  0 B (0 bytes)\nfree  unlimited"
        );
    }
}
