//! `sockit user …`: the users of a data folder, managed on the server's machine.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use sockit::config::parse_size;
use sockit::keys::PublicKey;
use sockit::users::{HashCost, Password, UserRates, Users, UsersUrl};

/// `sockit user …`: manage the users of a data folder (run on the server's machine).
#[derive(Debug, Args)]
pub struct UserArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: UserAction,
    /// The server's data folder.
    #[arg(long, global = true, default_value = "./sockit-data")]
    pub data: PathBuf,
    /// The users in PostgreSQL, as `serve --users` keeps them:
    /// postgres://USER:PASSWORD@HOST:PORT/DB [default: SQLite DATA/users.db].
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "SOCKIT_USERS",
        hide_env_values = true
    )]
    pub users: Option<UsersUrl>,
}

/// The `user` actions.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user (and their home folder).
    Add {
        /// The login name: 1-32 of A-Z a-z 0-9 _ . - (not starting with a dot).
        name: String,
        /// Storage quota, e.g. 500MB or 2GiB (default: unlimited).
        #[arg(long, value_parser = parse_size)]
        quota: Option<u64>,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users.
    List,
    /// Remove a user (their files stay unless --purge).
    Del {
        /// The login name.
        name: String,
        /// Also delete their home folder and everything in it.
        #[arg(long)]
        purge: bool,
    },
    /// Change a user's password.
    Passwd {
        /// The login name.
        name: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Manage a user's login keys (public keys from `sockit key gen`).
    Key {
        /// What to do.
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Change a user's quota (`none` for unlimited).
    Quota {
        /// The login name.
        name: String,
        /// The new quota, e.g. 1GiB, or `none`.
        quota: String,
    },
    /// Limit a user's bandwidth, all their sessions together, in bytes per second (a flag
    /// left out keeps its value; `none` removes it). Applies from their next login.
    Limit {
        /// The login name.
        name: String,
        /// What they may send the server per second, e.g. 10MB, or `none`.
        #[arg(long, value_name = "RATE")]
        up: Option<String>,
        /// What they may receive per second, e.g. 10MB, or `none`.
        #[arg(long, value_name = "RATE")]
        down: Option<String>,
    },
}

/// The `user key` actions.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Let NAME log in with the public key in PUBFILE (a `.pub` file of `sockit key gen`).
    Add {
        /// The login name.
        name: String,
        /// The public key file.
        pubfile: PathBuf,
    },
    /// List NAME's keys: fingerprint, date added, comment.
    List {
        /// The login name.
        name: String,
    },
    /// Remove NAME's key with FINGERPRINT (SHA256:…, as `key list` shows it).
    Del {
        /// The login name.
        name: String,
        /// The key's fingerprint.
        fingerprint: String,
    },
}

/// Runs a `user` action.
///
/// # Errors
/// Bad names, duplicates, unknown users, database errors.
pub fn user(args: UserArgs) -> Result<()> {
    let users = Users::open_url(&args.data, args.users.as_ref(), HashCost::Standard).with_context(
        || match &args.users {
            Some(url) => format!("opening the users in {url}"),
            None => format!("opening the users of {}", args.data.display()),
        },
    )?;
    match args.action {
        UserAction::Add {
            name,
            quota,
            password_stdin,
        } => {
            let password = new_password(&name, password_stdin)?;
            users.add(&name, &password, quota)?;
            out!("added {name} ({})", quota_text(quota));
        }
        UserAction::List => {
            for u in users.list()? {
                let created = chrono::DateTime::from_timestamp(u.created, 0)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                let rates = users.rates(&u.name)?;
                let limits = match rates == UserRates::default() {
                    true => String::new(),
                    false => format!("  {}", rates_text(rates)),
                };
                out!(
                    "{:<32} {:>14}  added {created}{limits}",
                    u.name,
                    quota_text(u.quota)
                );
            }
        }
        UserAction::Del { name, purge } => {
            users.remove(&name, purge)?;
            out!(
                "removed {name}{}",
                if purge { " and their files" } else { "" }
            );
        }
        UserAction::Passwd {
            name,
            password_stdin,
        } => {
            users.get(&name)?;
            let password = new_password(&name, password_stdin)?;
            users.set_password(&name, &password)?;
            out!("password of {name} changed");
        }
        UserAction::Key { action } => key(&users, action)?,
        UserAction::Quota { name, quota } => {
            let quota = match quota.as_str() {
                "none" | "unlimited" => None,
                q => Some(parse_size(q).map_err(anyhow::Error::msg)?),
            };
            users.set_quota(&name, quota)?;
            out!("quota of {name}: {}", quota_text(quota));
        }
        UserAction::Limit { name, up, down } => {
            users.get(&name)?;
            let mut rates = users.rates(&name)?;
            let parse = |text: &str| match text {
                "none" | "unlimited" => Ok(None),
                r => parse_size(r).map(Some).map_err(anyhow::Error::msg),
            };
            if let Some(up) = up {
                rates.up = parse(&up)?;
            }
            if let Some(down) = down {
                rates.down = parse(&down)?;
            }
            users.set_rates(&name, rates)?;
            out!("limits of {name}: {}", rates_text(rates));
        }
    }
    Ok(())
}

/// Runs a `user key` action.
fn key(users: &Users, action: KeyAction) -> Result<()> {
    match action {
        KeyAction::Add { name, pubfile } => {
            let text = std::fs::read_to_string(&pubfile)
                .with_context(|| format!("reading {}", pubfile.display()))?;
            let (key, comment) = PublicKey::parse_line(&text)
                .with_context(|| format!("reading {}", pubfile.display()))?;
            let info = users.add_key(&name, &key, &comment)?;
            out!("added key {} to {name}", info.fingerprint);
        }
        KeyAction::List { name } => {
            for k in users.keys(&name)? {
                out!("{}  added {}  {}", k.fingerprint, date(k.added), k.comment);
            }
        }
        KeyAction::Del { name, fingerprint } => {
            users.remove_key(&name, &fingerprint)?;
            out!("removed key {fingerprint} of {name}");
        }
    }
    Ok(())
}

fn date(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// `up 10 MB/s, down unlimited`.
fn rates_text(rates: UserRates) -> String {
    let rate = |r: Option<u64>| {
        r.map_or("unlimited".into(), |r| {
            format!("{}/s", sockit::quota::format_size(r))
        })
    };
    format!("up {}, down {}", rate(rates.up), rate(rates.down))
}

fn quota_text(quota: Option<u64>) -> String {
    quota.map_or("unlimited".into(), |q| {
        format!("quota {}", sockit::quota::format_size(q))
    })
}

/// A new password: the first stdin line, or typed twice at a hidden prompt.
fn new_password(name: &str, from_stdin: bool) -> Result<Password> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            bail!("no password on stdin");
        }
        return Ok(Password::new(line));
    }
    let first = rpassword::prompt_password(format!("new password for {name}: "))?;
    let again = rpassword::prompt_password("again: ")?;
    if first != again {
        bail!("the passwords differ");
    }
    if first.is_empty() {
        bail!("empty password");
    }
    Ok(Password::new(first))
}
