//! The shell's language: one line in, one [`ShellCommand`] out. Pure: no I/O, no client.
//!
//! The REPL (in the binary) reads lines, calls [`parse_line`], and runs the command against a
//! [`super::Client`]; the remote current folder lives here, on the client side, so the server
//! stays stateless ([`RemoteCwd`]).

use crate::storage::WirePath;

/// One shell command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShellCommand {
    /// `ls [-l] [-a] [PATH]`
    Ls {
        /// The folder (default: the current one).
        path: Option<String>,
        /// `-l`: kind, size and time of each entry, not just its name.
        long: bool,
        /// `-a`: dot files too.
        all: bool,
    },
    /// `cd [PATH]` (no path: the home)
    Cd(Option<String>),
    /// `pwd`
    Pwd,
    /// `lcd PATH`: change the local folder.
    Lcd(String),
    /// `lls [PATH]`: list a local folder.
    Lls(Option<String>),
    /// `lpwd`: show the local folder.
    Lpwd,
    /// `lmkdir [-p] PATH`: create a local folder.
    Lmkdir {
        /// The folder.
        path: String,
        /// Create parents too.
        parents: bool,
    },
    /// `df`: the quota, what the home uses, and what is free.
    Df,
    /// `mkdir [-p] PATH`
    Mkdir {
        /// The folder.
        path: String,
        /// Create parents too.
        parents: bool,
    },
    /// `rm [-r] PATH`
    Rm {
        /// What to remove.
        path: String,
        /// Folders too.
        recursive: bool,
    },
    /// `mv FROM TO`
    Mv(String, String),
    /// `stat PATH`
    Stat(String),
    /// `put [-r|--resume] LOCAL [REMOTE]`
    Put {
        /// Local file.
        local: String,
        /// Remote name (default: LOCAL's file name, in the current folder).
        remote: Option<String>,
        /// Continue a partial upload.
        resume: bool,
        /// A whole folder (`-r`).
        recursive: bool,
    },
    /// `get [-r|--resume] REMOTE [LOCAL]`
    Get {
        /// Remote file.
        remote: String,
        /// Local name (default: REMOTE's file name, in the local folder).
        local: Option<String>,
        /// Continue a partial download.
        resume: bool,
        /// A whole folder (`-r`).
        recursive: bool,
    },
    /// `exec COMMAND`: run COMMAND on the server, in the current remote folder.
    Exec(String),
    /// `help`
    Help,
    /// `quit`, `exit`, `bye`
    Quit,
}

/// Every command name, for completion and help.
pub const COMMANDS: [&str; 19] = [
    "ls", "cd", "pwd", "lcd", "lls", "lpwd", "lmkdir", "mkdir", "rm", "mv", "stat", "df", "put",
    "get", "exec", "help", "quit", "exit", "bye",
];

/// What `help` prints.
pub const HELP: &str = "\
ls [-l] [-a] [PATH]          list a remote folder (-l: long, -a: dot files too)
cd [PATH] / pwd              change / show the remote folder
lcd PATH / lls [PATH] / lpwd change / list / show the local folder
lmkdir [-p] PATH             create a local folder
mkdir [-p] PATH              create a remote folder
rm [-r] PATH                 remove a remote file (folder with -r)
mv FROM TO                   rename or move
stat PATH                    show one entry
df                           quota, used, free
put [-r|--resume] LOCAL [REMOTE]  upload, verified (BLAKE3); -r: a folder
get [-r|--resume] REMOTE [LOCAL]  download, verified (BLAKE3); -r: a folder
exec COMMAND                 run COMMAND on the server, in the remote folder
help / quit (or exit, bye)";

/// Parses one line; `Ok(None)` for a blank line or a `#` comment.
///
/// # Errors
/// A message for a person: unknown command, missing or extra arguments, bad quoting.
pub fn parse_line(line: &str) -> Result<Option<ShellCommand>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    // The rest of an exec line is the server shell's to parse, quotes and all.
    if let Some(rest) = line.strip_prefix("exec")
        && (rest.is_empty() || rest.starts_with(char::is_whitespace))
    {
        return match rest.trim() {
            "" => Err("usage: exec COMMAND".into()),
            command => Ok(Some(ShellCommand::Exec(command.to_string()))),
        };
    }
    let words = shlex::split(line).ok_or("unbalanced quotes")?;
    let Some((name, args)) = words.split_first() else {
        return Ok(None);
    };
    let (flags, args): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| a.starts_with('-') && a.len() > 1);
    // Short options may come together: `ls -la` is `ls -l -a`.
    let flags: Vec<String> = flags
        .into_iter()
        .flat_map(|f| match f.strip_prefix('-') {
            Some(shorts) if !shorts.starts_with('-') => {
                shorts.chars().map(|c| format!("-{c}")).collect()
            }
            _ => vec![f.clone()],
        })
        .collect();
    let flag = |short: &str, long: &str| flags.iter().any(|f| *f == short || *f == long);
    let known: &[&str] = match name.as_str() {
        "ls" | "dir" => &["-l", "-a"],
        "rm" => &["-r", "--recursive"],
        "mkdir" | "lmkdir" => &["-p", "--parents"],
        "put" | "get" => &["--resume", "-r", "--recursive"],
        _ => &[],
    };
    if let Some(bad) = flags.iter().find(|f| !known.contains(&f.as_str())) {
        return Err(format!("{name}: unknown option {bad}"));
    }
    let arg = |i: usize| args.get(i).map(|s| s.to_string());
    let want = |min: usize, max: usize| -> Result<(), String> {
        if args.len() < min || args.len() > max {
            let usage = HELP
                .lines()
                .find(|l| l.starts_with(name.as_str()))
                .unwrap_or(name);
            return Err(format!("usage: {usage}"));
        }
        Ok(())
    };
    let cmd = match name.as_str() {
        "ls" | "dir" => want(0, 1).map(|_| ShellCommand::Ls {
            path: arg(0),
            long: flag("-l", "-l"),
            all: flag("-a", "-a"),
        })?,
        "cd" => want(0, 1).map(|_| ShellCommand::Cd(arg(0)))?,
        "pwd" => want(0, 0).map(|_| ShellCommand::Pwd)?,
        "lcd" => want(1, 1).map(|_| ShellCommand::Lcd(args[0].clone()))?,
        "lls" => want(0, 1).map(|_| ShellCommand::Lls(arg(0)))?,
        "lpwd" => want(0, 0).map(|_| ShellCommand::Lpwd)?,
        "lmkdir" => want(1, 1).map(|_| ShellCommand::Lmkdir {
            path: args[0].clone(),
            parents: flag("-p", "--parents"),
        })?,
        "df" => want(0, 0).map(|_| ShellCommand::Df)?,
        "mkdir" => want(1, 1).map(|_| ShellCommand::Mkdir {
            path: args[0].clone(),
            parents: flag("-p", "--parents"),
        })?,
        "rm" => want(1, 1).map(|_| ShellCommand::Rm {
            path: args[0].clone(),
            recursive: flag("-r", "--recursive"),
        })?,
        "mv" => want(2, 2).map(|_| ShellCommand::Mv(args[0].clone(), args[1].clone()))?,
        "stat" => want(1, 1).map(|_| ShellCommand::Stat(args[0].clone()))?,
        "put" => want(1, 2).map(|_| ShellCommand::Put {
            local: args[0].clone(),
            remote: arg(1),
            resume: flag("--resume", "--resume"),
            recursive: flag("-r", "--recursive"),
        })?,
        "get" => want(1, 2).map(|_| ShellCommand::Get {
            remote: args[0].clone(),
            local: arg(1),
            resume: flag("--resume", "--resume"),
            recursive: flag("-r", "--recursive"),
        })?,
        "help" | "?" => ShellCommand::Help,
        "quit" | "exit" | "bye" => ShellCommand::Quit,
        other => return Err(format!("unknown command `{other}` (try `help`)")),
    };
    Ok(Some(cmd))
}

/// The shell's remote current folder, kept on the client side.
#[derive(Debug, Clone, Default)]
pub struct RemoteCwd(WirePath);

impl RemoteCwd {
    /// The home root.
    pub fn new() -> Self {
        RemoteCwd(WirePath::root())
    }

    /// Resolves a path typed in the shell to the full path the server takes.
    ///
    /// # Errors
    /// [`crate::Error::PermissionDenied`] when the path climbs above the home; a bad request
    /// when it is malformed.
    pub fn resolve(&self, path: &str) -> crate::Result<String> {
        self.0.resolve(path).map(|p| p.to_string())
    }

    /// Moves to `path` (already checked to be a folder by the caller).
    ///
    /// # Errors
    /// As [`RemoteCwd::resolve`].
    pub fn cd(&mut self, path: &str) -> crate::Result<()> {
        self.0 = self.0.resolve(path)?;
        Ok(())
    }

    /// `command` as a shell line that first enters the current folder (commands start in
    /// the home); if that fails, the command does not run.
    pub fn command_here(&self, command: &str) -> String {
        if self.0 == WirePath::root() {
            return command.to_string();
        }
        // Single quotes keep every byte literal in sh; a quote itself is closed, escaped and
        // reopened.
        let dir = format!(".{}", self.display()).replace('\'', r"'\''");
        format!("cd '{dir}' || exit\n{command}")
    }

    /// The current folder, as `/a/b`.
    pub fn display(&self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> ShellCommand {
        parse_line(line).unwrap().unwrap()
    }

    #[test]
    fn parses_commands_with_flags_and_quotes() {
        let ls = |path: Option<&str>, long, all| ShellCommand::Ls {
            path: path.map(String::from),
            long,
            all,
        };
        assert_eq!(p("ls"), ls(None, false, false));
        assert_eq!(p("  ls docs "), ls(Some("docs"), false, false));
        assert_eq!(
            p("rm -r 'my folder'"),
            ShellCommand::Rm {
                path: "my folder".into(),
                recursive: true
            }
        );
        assert_eq!(
            p("put --resume \"a b.bin\" remote.bin"),
            ShellCommand::Put {
                local: "a b.bin".into(),
                remote: Some("remote.bin".into()),
                resume: true,
                recursive: false,
            }
        );
        assert_eq!(
            p("get -r docs"),
            ShellCommand::Get {
                remote: "docs".into(),
                local: None,
                resume: false,
                recursive: true,
            }
        );
        assert_eq!(p("mv a b"), ShellCommand::Mv("a".into(), "b".into()));
        assert_eq!(p("exit"), ShellCommand::Quit);
    }

    #[test]
    fn ls_takes_long_and_all_alone_or_together() {
        let ls = |long, all| ShellCommand::Ls {
            path: Some("d".into()),
            long,
            all,
        };
        assert_eq!(p("ls -l d"), ls(true, false));
        assert_eq!(p("ls -a d"), ls(false, true));
        assert_eq!(p("ls -la d"), ls(true, true));
        assert_eq!(p("ls -al d"), ls(true, true));
        assert_eq!(p("ls -l -a d"), ls(true, true));
        assert!(
            parse_line("ls -lx")
                .unwrap_err()
                .contains("unknown option -x")
        );
        assert_eq!(
            p("rm -r x"),
            ShellCommand::Rm {
                path: "x".into(),
                recursive: true
            }
        );
    }

    #[test]
    fn df_and_lmkdir() {
        assert_eq!(p("df"), ShellCommand::Df);
        assert!(parse_line("df x").unwrap_err().starts_with("usage: df"));
        assert_eq!(
            p("lmkdir -p a/b"),
            ShellCommand::Lmkdir {
                path: "a/b".into(),
                parents: true
            }
        );
        assert!(
            parse_line("lmkdir")
                .unwrap_err()
                .starts_with("usage: lmkdir")
        );
        for name in COMMANDS {
            assert!(HELP.contains(name), "{name} is in help");
        }
    }

    #[test]
    fn blank_lines_and_comments_are_nothing() {
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("# a comment"), Ok(None));
    }

    #[test]
    fn mistakes_get_a_message() {
        assert!(parse_line("fly").unwrap_err().contains("unknown command"));
        assert!(parse_line("mv a").unwrap_err().starts_with("usage: mv"));
        assert!(
            parse_line("rm -x a")
                .unwrap_err()
                .contains("unknown option")
        );
        assert!(parse_line("ls 'open").unwrap_err().contains("quotes"));
    }

    #[test]
    fn exec_keeps_the_rest_of_the_line_and_runs_in_the_folder() {
        assert_eq!(
            p("exec  echo 'a  b' | wc -c "),
            ShellCommand::Exec("echo 'a  b' | wc -c".into())
        );
        assert!(parse_line("exec").unwrap_err().starts_with("usage: exec"));
        assert!(parse_line("execute").is_err());
        let mut cwd = RemoteCwd::new();
        assert_eq!(cwd.command_here("ls"), "ls");
        cwd.cd("my docs/it's").unwrap();
        assert_eq!(
            cwd.command_here("ls"),
            "cd './my docs/it'\\''s' || exit\nls"
        );
    }

    #[test]
    fn cwd_resolves_relative_paths_and_stays_in_the_home() {
        let mut cwd = RemoteCwd::new();
        assert_eq!(cwd.display(), "/");
        cwd.cd("docs/deep").unwrap();
        assert_eq!(cwd.resolve("f.txt").unwrap(), "/docs/deep/f.txt");
        assert_eq!(cwd.resolve("../x").unwrap(), "/docs/x");
        assert_eq!(cwd.resolve("/top").unwrap(), "/top");
        assert!(cwd.resolve("../../../etc").is_err());
    }
}
