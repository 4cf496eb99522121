//! Where each connection setting of a client command comes from, strongest first:
//!
//! | source | server | user | identity, trust, plaintext |
//! | --- | --- | --- | --- |
//! | a flag (`-s`, `-u`, `-i`, `--trust`, `--plaintext`) | yes | yes | yes |
//! | an address `sockit://USER@HOST:PORT/PATH` in place of a remote path | yes | yes | - |
//! | an environment variable (`SOCKIT_SERVER`, `SOCKIT_USER`, …) | yes | yes | yes |
//! | the configuration file ([`super::config`]) | yes | yes | yes |
//! | the built-in default | `127.0.0.1:9900` | none | none, by terminal, off |
//!
//! An address is typed for this one command, so it beats the variables a shell keeps for
//! every command; a flag that disagrees with it is an error, as the command line would say
//! two things at once. [`settle`] rewrites the parsed command line so that the commands
//! themselves see plain paths and final settings.

use std::fmt::Display;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;

use sockit::client::address::RemoteAddress;
use sockit::net::Endpoint;

use crate::cli::config::ClientConfig;
use crate::cli::files::LoginArgs;
use crate::cli::{Cli, ClientArgs, Command};

/// What the command line said about one setting, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given<T> {
    /// A flag on the command line.
    Flag(T),
    /// An environment variable.
    Env(T),
    /// Neither (a default value, if any, is not counted).
    Nothing,
}

impl<T> Given<T> {
    /// `value` as clap found it: `source` says whether a flag or a variable gave it.
    fn from(value: Option<T>, source: Option<ValueSource>) -> Given<T> {
        match (value, source) {
            (Some(v), Some(ValueSource::CommandLine)) => Given::Flag(v),
            (Some(v), Some(ValueSource::EnvVariable)) => Given::Env(v),
            _ => Given::Nothing,
        }
    }
}

/// The value of one setting (see the module's table): `None` when no source has one.
///
/// # Errors
/// A flag that disagrees (as `same` judges) with the address; `flag` and `address` name
/// them in the message.
pub fn choose<T: Display>(
    given: Given<T>,
    address: Option<(T, &dyn Display)>,
    file: Option<T>,
    (flag, same): (&str, fn(&T, &T) -> bool),
) -> Result<Option<T>> {
    Ok(match (given, address) {
        (Given::Flag(f), Some((a, shown))) if !same(&f, &a) => {
            bail!("{flag} {f} and {shown} disagree; leave out {flag}, or give the same on both")
        }
        (Given::Flag(f), _) => Some(f),
        (_, Some((a, _))) => Some(a),
        (Given::Env(e), None) => Some(e),
        (Given::Nothing, None) => file,
    })
}

fn same_server(a: &Endpoint, b: &Endpoint) -> bool {
    a.to_string().eq_ignore_ascii_case(&b.to_string())
}

/// Applies addresses and the configuration file to a parsed command line: a remote path
/// written as an address becomes its path, and its server and user join the settings.
///
/// # Errors
/// A malformed address (or one with a password), two addresses that name different servers
/// or users, a flag that disagrees with an address, and a bad configuration file.
pub fn settle(cli: &mut Cli, matches: &ArgMatches) -> Result<()> {
    let Some((_, m)) = matches.subcommand() else {
        return Ok(());
    };
    match &mut cli.command {
        Command::Put(args) => {
            let address = take_optional(&mut args.remote)?;
            // An address that names a folder (`sockit://h/` or `…/docs/`): LOCAL goes in it.
            if let (Some(_), Some(remote)) = (&address, &mut args.remote)
                && remote.ends_with('/')
            {
                remote.push_str(&file_name(&args.local)?);
            }
            login(&mut args.login, m, address)
        }
        Command::Get(args) => {
            let address = take(&mut args.remote)?;
            login(&mut args.login, m, address)
        }
        Command::Ls(args) | Command::Mkdir(args) | Command::Rm(args) | Command::Stat(args) => {
            let address = take_optional(&mut args.path)?;
            login(&mut args.login, m, address)
        }
        Command::Mv(args) => {
            let address = agree(take(&mut args.from)?, take(&mut args.to)?)?;
            login(&mut args.login, m, address)
        }
        Command::Shell(args) => {
            let address = take_optional(&mut args.remote)?;
            login(&mut args.login, m, address)
        }
        Command::Exec(args) => login(&mut args.login, m, None),
        Command::Echo(args) => connection(&mut args.client, m, None, &ClientConfig::load()?),
        _ => Ok(()),
    }
}

/// If `text` is an address: replaces it with the address's path, and returns the address.
fn take(text: &mut String) -> Result<Option<RemoteAddress>> {
    if !RemoteAddress::is_address(text) {
        return Ok(None);
    }
    // The message does not repeat the text: it may hold a password being refused.
    let address: RemoteAddress = text
        .parse()
        .map_err(|e| anyhow::anyhow!("a sockit:// address: {e}"))?;
    text.clone_from(&address.path);
    Ok(Some(address))
}

fn take_optional(text: &mut Option<String>) -> Result<Option<RemoteAddress>> {
    text.as_mut().map_or(Ok(None), take)
}

/// One address out of two (`mv FROM TO`): they must name the same server and user.
fn agree(a: Option<RemoteAddress>, b: Option<RemoteAddress>) -> Result<Option<RemoteAddress>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let users_differ = matches!((&a.user, &b.user), (Some(x), Some(y)) if x != y);
            if !same_server(&a.endpoint(), &b.endpoint()) || users_differ {
                bail!("FROM and TO name different servers or users: a move stays on one server");
            }
            Ok(Some(if a.user.is_some() { a } else { b }))
        }
        (a, b) => Ok(a.or(b)),
    }
}

/// Settles the connection and login settings of a file command.
fn login(args: &mut LoginArgs, m: &ArgMatches, address: Option<RemoteAddress>) -> Result<()> {
    let file = ClientConfig::load()?;
    // How a message shows the address: its server and user, not its path.
    let shown = address.as_ref().map_or(String::new(), |a| {
        let user = a.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        format!("sockit://{user}{}", a.endpoint())
    });
    let shown: &dyn Display = &shown;
    let server = address.as_ref().map(|a| (a.endpoint(), shown));
    connection(&mut args.client, m, server, &file)?;
    let given = Given::from(args.user.take(), m.value_source("user"));
    let user = address.and_then(|a| a.user).map(|u| (u, shown));
    args.user = choose(given, user, file.user.clone(), ("-u", |a, b| a == b))?;
    // The file's key is its user's: it logs in someone else only when the file names no user.
    if args.identity.is_none() && (file.user.is_none() || file.user == args.user) {
        args.identity = file.identity;
    }
    Ok(())
}

/// Settles the connection settings: server, trust, plaintext.
fn connection(
    client: &mut ClientArgs,
    m: &ArgMatches,
    address: Option<(Endpoint, &dyn Display)>,
    file: &ClientConfig,
) -> Result<()> {
    let given = Given::from(Some(client.server.clone()), m.value_source("server"));
    if let Some(server) = choose(given, address, file.server.clone(), ("-s", same_server))? {
        client.server = server;
    }
    if client.trust.is_none() {
        client.trust = file.trust;
    }
    let plaintext_given = matches!(
        m.value_source("plaintext"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    if !plaintext_given {
        client.plaintext = file.plaintext.unwrap_or(false);
    }
    Ok(())
}

fn file_name(local: &Path) -> Result<String> {
    local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} has no file name", local.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EQ: (&str, fn(&u16, &u16) -> bool) = ("-p", |a, b| a == b);

    #[test]
    fn each_source_beats_the_ones_below_it() {
        let shown: &dyn Display = &"sockit://h";
        assert_eq!(
            choose(Given::Flag(1), Some((1, shown)), Some(3), EQ).unwrap(),
            Some(1)
        );
        assert_eq!(choose(Given::Flag(1), None, Some(3), EQ).unwrap(), Some(1));
        assert_eq!(
            choose(Given::Env(2), Some((1, shown)), Some(3), EQ).unwrap(),
            Some(1)
        );
        assert_eq!(choose(Given::Env(2), None, Some(3), EQ).unwrap(), Some(2));
        assert_eq!(
            choose(Given::Nothing, Some((1, shown)), Some(3), EQ).unwrap(),
            Some(1)
        );
        assert_eq!(choose(Given::Nothing, None, Some(3), EQ).unwrap(), Some(3));
        assert_eq!(choose::<u16>(Given::Nothing, None, None, EQ).unwrap(), None);
    }

    #[test]
    fn a_flag_that_disagrees_with_the_address_is_an_error() {
        let shown: &dyn Display = &"sockit://h";
        let e = choose(Given::Flag(1), Some((2, shown)), None, EQ).unwrap_err();
        assert_eq!(
            e.to_string(),
            "-p 1 and sockit://h disagree; leave out -p, or give the same on both"
        );
        let (a, b) = (
            Endpoint::Tcp("Files.lan:9900".into()),
            "files.lan:9900".parse(),
        );
        assert!(same_server(&a, &b.unwrap()));
    }

    #[test]
    fn two_addresses_of_a_move_agree_or_fail() {
        let p = |s: &str| Some(s.parse::<RemoteAddress>().unwrap());
        let one = agree(p("sockit://h/a"), p("sockit://bob@h:9900/b"))
            .unwrap()
            .unwrap();
        assert_eq!(one.user.as_deref(), Some("bob"));
        assert!(agree(p("sockit://h/a"), p("sockit://g/b")).is_err());
        assert!(agree(p("sockit://ann@h/a"), p("sockit://bob@h/b")).is_err());
        assert_eq!(agree(None, p("sockit://h/b")).unwrap(), p("sockit://h/b"));
    }

    #[test]
    fn an_address_becomes_its_path() {
        let mut text = String::from("sockit://alice@[::1]:9901/my%20docs/a.pdf");
        let address = take(&mut text).unwrap().unwrap();
        assert_eq!(text, "/my docs/a.pdf");
        assert_eq!(address.endpoint().to_string(), "[::1]:9901");
        let mut plain = String::from("docs/a.pdf");
        assert_eq!(take(&mut plain).unwrap(), None);
        assert_eq!(plain, "docs/a.pdf");
        let mut secret = String::from("sockit://a:pw@h/x");
        assert!(
            take(&mut secret)
                .unwrap_err()
                .to_string()
                .contains("password")
        );
    }
}
