//! `sockit shell`: an sftp-like shell. On a terminal it is interactive (rustyline: history,
//! command completion); with piped input it runs the lines as a script and stops at the first
//! failure with a non-zero exit.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::{Editor, Helper, Highlighter, Hinter, Validator};

use sockit::client::Client;
use sockit::client::shell::{COMMANDS, HELP, RemoteCwd, ShellCommand, parse_line};

use crate::cli::files::{LoginArgs, print_entries, read_stdin, remote_name, transfer_line};

/// Runs the shell until `quit`, the end of input, or (in a script) the first failure.
///
/// # Errors
/// Login failures; in a script, the first failing line.
pub async fn run(login: LoginArgs) -> Result<()> {
    let client = login.connect().await?;
    let mut shell = Shell {
        client,
        cwd: RemoteCwd::new(),
        login,
    };
    if std::io::stdin().is_terminal() {
        shell.interactive().await
    } else {
        shell.script(&read_stdin()?).await
    }
}

struct Shell {
    client: Client,
    cwd: RemoteCwd,
    login: LoginArgs,
}

impl Shell {
    async fn interactive(&mut self) -> Result<()> {
        let mut editor: Editor<Commands, _> = Editor::new()?;
        editor.set_helper(Some(Commands));
        out!("connected; `help` lists the commands");
        loop {
            let prompt = format!("sockit:{}> ", self.cwd.display());
            let line = tokio::task::block_in_place(|| editor.readline(&prompt));
            let line = match line {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let _ = editor.add_history_entry(line.as_str());
            match parse_line(&line) {
                Ok(None) => {}
                Ok(Some(ShellCommand::Quit)) => return Ok(()),
                Ok(Some(cmd)) => {
                    if let Err(e) = self.execute(cmd).await {
                        eprintln!("error: {e:#}");
                        if is_connection_lost(&e) {
                            eprintln!("reconnecting…");
                            self.client = self.login.connect().await?;
                        }
                    }
                }
                Err(msg) => eprintln!("error: {msg}"),
            }
        }
    }

    async fn script(&mut self, text: &str) -> Result<()> {
        for (n, line) in text.lines().enumerate() {
            let cmd = parse_line(line).map_err(|m| anyhow!("line {}: {m}", n + 1))?;
            match cmd {
                None => {}
                Some(ShellCommand::Quit) => return Ok(()),
                Some(cmd) => self
                    .execute(cmd)
                    .await
                    .with_context(|| format!("line {}: {}", n + 1, line.trim()))?,
            }
        }
        Ok(())
    }

    async fn execute(&mut self, cmd: ShellCommand) -> Result<()> {
        let c = &mut self.client;
        match cmd {
            ShellCommand::Ls(path) => {
                let path = self.cwd.resolve(path.as_deref().unwrap_or("."))?;
                print_entries(&c.ls(&path).await?);
            }
            ShellCommand::Cd(path) => {
                let target = self.cwd.resolve(path.as_deref().unwrap_or("/"))?;
                let entry = c.stat(&target).await?;
                if entry.kind != sockit::storage::EntryKind::Dir {
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
            ShellCommand::Put {
                local,
                remote,
                resume,
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
            } => {
                let local = PathBuf::from(local.unwrap_or_else(|| remote_name(&remote)));
                let remote = self.cwd.resolve(&remote)?;
                let mut bar = self.login.progress(&remote);
                let v = c.get(&remote, &local, resume, bar.as_mut()).await?;
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

/// Whether an error means the connection is gone (worth one reconnect).
fn is_connection_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<sockit::Error>()
            .is_some_and(|e| e.closes_connection() || e.is_disconnect())
    })
}

/// Completes command names at the start of a line.
#[derive(Helper, Highlighter, Hinter, Validator)]
struct Commands;

impl Completer for Commands {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        if head.contains(' ') {
            return Ok((pos, Vec::new()));
        }
        let matches = COMMANDS
            .iter()
            .filter(|c| c.starts_with(head))
            .map(|c| Pair {
                display: c.to_string(),
                replacement: format!("{c} "),
            })
            .collect();
        Ok((0, matches))
    }
}
