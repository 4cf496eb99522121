//! Tab completion in the shell: the word under the cursor, whether it names a remote or a
//! local path (by its command and its place), and the candidates for it from a listing of its
//! folder. Pure: the caller lists the folder (through the client, or on this machine).

/// What the word under the cursor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A command name (the first word).
    Command,
    /// A path on the server.
    Remote,
    /// A path on this machine.
    Local,
    /// Nothing to complete: an option, an `exec` line, a command without paths.
    Neither,
}

/// The word under the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Where it starts in the line (a byte offset): a completion replaces the line from here
    /// to the cursor.
    pub start: usize,
    /// Its text up to the cursor, unquoted and unescaped (`my\ docs/` is `my docs/`).
    pub text: String,
    /// What it names.
    pub side: Side,
}

impl Word {
    /// The folder part as typed, up to and including the last `/` (empty: the current folder).
    pub fn folder(&self) -> &str {
        self.text.rfind('/').map_or("", |i| &self.text[..=i])
    }

    /// The part of a name typed so far, after the folder.
    pub fn prefix(&self) -> &str {
        &self.text[self.folder().len()..]
    }
}

/// The word that ends at byte `pos` of `line` (a new, empty one after a space), read the way
/// the shell's parser reads words: quotes group, a backslash escapes.
pub fn word_at(line: &str, pos: usize) -> Word {
    let head = line.get(..pos).unwrap_or(line);
    let mut done: Vec<String> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let (mut quote, mut escaped) = (None, false);
    for (i, c) in head.char_indices() {
        if escaped {
            escaped = false;
            current.get_or_insert((i, String::new())).1.push(c);
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => current.get_or_insert((i, String::new())).1.push(c),
            (_, '\\') => {
                escaped = true;
                current.get_or_insert((i, String::new()));
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                current.get_or_insert((i, String::new()));
            }
            (None, c) if c.is_whitespace() => done.extend(current.take().map(|(_, w)| w)),
            (_, c) => current.get_or_insert((i, String::new())).1.push(c),
        }
    }
    let (start, text) = current.unwrap_or((head.len(), String::new()));
    let side = side(&done, &text);
    Word { start, text, side }
}

/// What the word after `before` names.
fn side(before: &[String], word: &str) -> Side {
    let Some((command, args)) = before.split_first() else {
        return Side::Command;
    };
    if word.starts_with('-') {
        return Side::Neither;
    }
    let place = args.iter().filter(|a| !a.starts_with('-')).count();
    match (command.as_str(), place) {
        ("ls" | "dir" | "cd" | "mkdir" | "rm" | "stat" | "mv", _) => Side::Remote,
        ("get", 0) | ("put", 1) => Side::Remote,
        ("get", 1) | ("put", 0) => Side::Local,
        ("lcd" | "lls" | "lmkdir", _) => Side::Local,
        _ => Side::Neither,
    }
}

/// The replacements for `word` out of its folder's listing (each a name, and whether it is
/// a folder): the names that start with what was typed, folders with a `/`, escaped for the
/// shell's parser, sorted. Dot files only when the name typed starts with a dot.
pub fn candidates(word: &Word, listing: impl IntoIterator<Item = (String, bool)>) -> Vec<String> {
    let prefix = word.prefix();
    let mut found: Vec<String> = listing
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix) && name != "." && name != "..")
        .filter(|(name, _)| prefix.starts_with('.') || !name.starts_with('.'))
        .map(|(name, dir)| {
            let slash = if dir { "/" } else { "" };
            format!("{}{slash}", escape(&format!("{}{name}", word.folder())))
        })
        .collect();
    found.sort();
    found
}

/// `text` with a backslash before each character the shell's parser would split or unquote at.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_whitespace() || matches!(c, '\'' | '"' | '\\' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_end(line: &str) -> Word {
        word_at(line, line.len())
    }

    fn listing() -> Vec<(String, bool)> {
        [
            ("docs", true),
            ("downloads", true),
            ("dog.txt", false),
            (".hidden", false),
            ("my docs", true),
            ("a.pdf", false),
        ]
        .into_iter()
        .map(|(n, d)| (n.to_string(), d))
        .collect()
    }

    #[test]
    fn finds_the_word_and_what_it_names() {
        let w = at_end("get do");
        assert_eq!((w.start, w.text.as_str(), w.side), (4, "do", Side::Remote));
        assert_eq!(at_end("ge").side, Side::Command);
        assert_eq!(at_end("").side, Side::Command);
        assert_eq!(at_end("get a.pdf ").side, Side::Local);
        assert_eq!(at_end("get --resume a.pdf l").side, Side::Local);
        assert_eq!(at_end("put ").side, Side::Local);
        assert_eq!(at_end("put a.pdf d").side, Side::Remote);
        assert_eq!(at_end("mv a b").side, Side::Remote);
        assert_eq!(at_end("lcd /tm").side, Side::Local);
        assert_eq!(at_end("ls -").side, Side::Neither);
        assert_eq!(at_end("exec ca").side, Side::Neither);
        assert_eq!(at_end("df ").side, Side::Neither);
        // The cursor in the middle: only what is before it counts.
        let w = word_at("get docs/a more", 8);
        assert_eq!((w.start, w.text.as_str()), (4, "docs"));
    }

    #[test]
    fn escapes_and_quotes_are_read_as_the_parser_reads_them() {
        let w = at_end(r"cd my\ do");
        assert_eq!(
            (w.start, w.text.as_str(), w.side),
            (3, "my do", Side::Remote)
        );
        let w = at_end("cd 'my do");
        assert_eq!((w.start, w.text.as_str()), (3, "my do"));
        let w = at_end("get \"my docs/a");
        assert_eq!((w.folder(), w.prefix()), ("my docs/", "a"));
    }

    #[test]
    fn candidates_complete_names_and_mark_folders() {
        assert_eq!(
            candidates(&at_end("get do"), listing()),
            ["docs/", "dog.txt", "downloads/"]
        );
        assert_eq!(candidates(&at_end("get doc"), listing()), ["docs/"]);
        assert_eq!(candidates(&at_end("cd my"), listing()), [r"my\ docs/"]);
        assert_eq!(
            candidates(&at_end("get docs/sub/a"), listing()),
            ["docs/sub/a.pdf"]
        );
        assert!(candidates(&at_end("get x"), listing()).is_empty());
    }

    #[test]
    fn dot_files_only_when_asked_for() {
        assert!(!candidates(&at_end("get "), listing()).contains(&".hidden".to_string()));
        assert_eq!(candidates(&at_end("get ."), listing()), [".hidden"]);
    }

    #[test]
    fn escaping_round_trips_through_the_parser() {
        for name in ["my docs/a b", "it's", "say \"hi\"", r"back\slash", "#tag"] {
            let words = shlex::split(&format!("get {}", escape(name))).unwrap();
            assert_eq!(words, ["get", name]);
        }
    }
}
