//! Tab completion in `sockit shell` on a terminal: command names, remote paths (listed
//! through the shell's own connection while a line is typed) and local paths. Which word
//! names what, and the candidates, are `sockit::client::completion`'s; this is the I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustyline::completion::{Completer, Pair};
use rustyline::{Helper, Highlighter, Hinter, Validator};

use sockit::client::Client;
use sockit::client::completion::{Side, candidates, escape, word_at};
use sockit::client::shell::{COMMANDS, RemoteCwd};
use sockit::storage::EntryKind;

/// How long Tab waits for a folder's listing before it gives up (and the connection, whose
/// reply is then still on its way, is made again before the next command).
const LISTING_WAIT: Duration = Duration::from_secs(5);

/// A folder's names, each with whether it is a folder.
type Listing = Vec<(String, bool)>;

/// Tab completion: command names, then remote paths (listed through the shell's client, each
/// folder once until the next command runs) and local paths.
#[derive(Helper, Highlighter, Hinter, Validator)]
pub struct Completion {
    client: Arc<tokio::sync::Mutex<Client>>,
    /// The shell's remote folder, which relative paths start from.
    pub cwd: RemoteCwd,
    /// Remote folders listed since the last command.
    listed: Mutex<HashMap<String, Listing>>,
    /// A listing gave up waiting: its reply may still come, so the connection is spent.
    lost: AtomicBool,
}

impl Completion {
    /// Completion through `client`, from the home until [`Completion::cwd`] is set.
    pub fn new(client: Arc<tokio::sync::Mutex<Client>>) -> Completion {
        Completion {
            client,
            cwd: RemoteCwd::new(),
            listed: Mutex::new(HashMap::new()),
            lost: AtomicBool::new(false),
        }
    }

    /// Whether the connection must be made again; asking clears it.
    pub fn lost(&self) -> bool {
        self.lost.swap(false, Ordering::Relaxed)
    }

    /// Forgets every listing (after a command, which may have changed them).
    pub fn forget(&mut self) {
        self.listed
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The listing of `folder` (as typed, relative to the shell's folder) on the server.
    /// Runs on the shell's thread, inside `block_in_place`, so it may block on the runtime.
    fn remote(&self, folder: &str) -> Listing {
        let Ok(path) = self
            .cwd
            .resolve(if folder.is_empty() { "." } else { folder })
        else {
            return Listing::new();
        };
        let listed = || self.listed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(listing) = listed().get(&path) {
            return listing.clone();
        }
        if self.lost.load(Ordering::Relaxed) {
            return Listing::new();
        }
        let ls = async { self.client.lock().await.ls(&path).await };
        let runtime = tokio::runtime::Handle::current();
        let listing = match runtime.block_on(tokio::time::timeout(LISTING_WAIT, ls)) {
            Ok(Ok(entries)) => entries
                .into_iter()
                .map(|e| (e.name, e.kind == EntryKind::Dir))
                .collect(),
            // No such folder, say: nothing to offer (a broken connection shows at the next
            // command, which reconnects).
            Ok(Err(_)) => Listing::new(),
            Err(_) => {
                self.lost.store(true, Ordering::Relaxed);
                return Listing::new();
            }
        };
        listed().insert(path, listing.clone());
        listing
    }
}

/// The listing of a local folder (as typed; empty: the current one).
fn local(folder: &str) -> Listing {
    let dir = if folder.is_empty() { "." } else { folder };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Listing::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().is_dir(),
            )
        })
        .collect()
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let word = word_at(line, pos);
        let found = match word.side {
            Side::Command => {
                let names = COMMANDS
                    .iter()
                    .filter(|c| c.starts_with(word.text.as_str()));
                let pairs = names.map(|c| Pair {
                    display: c.to_string(),
                    replacement: format!("{c} "),
                });
                return Ok((word.start, pairs.collect()));
            }
            Side::Remote => candidates(&word, self.remote(word.folder())),
            Side::Local => candidates(&word, local(word.folder())),
            Side::Neither => Vec::new(),
        };
        // The list shows names; the line gets the whole path.
        let folder = escape(word.folder()).len();
        let pairs = found.into_iter().map(|replacement| Pair {
            display: replacement.get(folder..).unwrap_or_default().to_string(),
            replacement,
        });
        Ok((word.start, pairs.collect()))
    }
}
