//! The rules of a home that the file system alone does not enforce, over real sockets: only
//! regular files are read or written (a FIFO never blocks a thread), nothing nests past the
//! path limits, one name limit for every op, and file-system refusals get a clear code.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{CWD, Mode, OFlags};
use sockit::Error;
use sockit::filecopy::Quiet;
use sockit::protocol::ErrorCode;
use sockit::storage::EntryKind;

use crate::files::{Fixture, code, pattern};

/// How long an op may take before the test calls it hung. Not a timing assertion: every op
/// here answers at once when it works; this only turns a hang (the bug) into a failure.
const HANG: Duration = Duration::from_secs(60);

/// Awaits `op`; if it hangs, runs `unstick` (so the server's stuck thread can end and the
/// runtime can shut down) and fails.
async fn unhung<T>(what: &str, op: impl Future<Output = T>, unstick: impl FnOnce()) -> T {
    match tokio::time::timeout(HANG, op).await {
        Ok(done) => done,
        Err(_) => {
            unstick();
            panic!("{what} hung");
        }
    }
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        CWD,
        path,
        rustix::fs::FileType::Fifo,
        Mode::RUSR | Mode::WUSR,
        0,
    )
    .unwrap();
}

/// Asserts an error reply with `want` whose message contains `words`.
fn refused<T: std::fmt::Debug>(got: Result<T, Error>, want: ErrorCode, words: &str) {
    match got {
        Err(Error::Remote { code, message }) => {
            assert_eq!(code, want, "{message}");
            assert!(message.contains(words), "{message:?} lacks {words:?}");
        }
        other => panic!("expected {want} ({words}), got {other:?}"),
    }
}

#[tokio::test]
async fn get_of_a_fifo_is_refused_at_once_and_the_server_goes_on() {
    let fx = Fixture::new().await;
    let fifo = fx.home("bob").join("pipe");
    mkfifo(&fifo);
    std::os::unix::fs::symlink("pipe", fx.home("bob").join("to-pipe")).unwrap();
    let mut c = fx.client("bob").await;
    let out = fx.dir.path().join("pipe.out");
    for path in ["pipe", "to-pipe"] {
        let fifo = fifo.clone();
        let got = unhung(
            "get of a FIFO",
            c.get(path, &out, false, &mut Quiet),
            move || {
                // A writer lets the server's open of the FIFO return.
                std::thread::spawn(move || std::fs::OpenOptions::new().write(true).open(fifo));
            },
        )
        .await;
        refused(got, ErrorCode::BadRequest, "not a regular file");
        assert!(!out.exists());
    }
    // The FIFO is still listed for what it is, and the server serves on.
    assert_eq!(c.stat("pipe").await.unwrap().kind, EntryKind::Other);
    let local = fx.local("after", b"still here");
    c.put(&local, "after", false, &mut Quiet).await.unwrap();
    let mut other = fx.client("alice").await;
    assert_eq!(&other.echo(b"ok").await.unwrap()[..], b"ok");
}

#[tokio::test]
async fn an_upload_replaces_a_fifo_planted_at_its_partial_name() {
    let fx = Fixture::new().await;
    // More than a pipe holds, so writing into the FIFO would block.
    let bytes = pattern(300_000, 8);
    let local = fx.local("big.bin", &bytes);
    let fifo = fx.home("bob").join(".big.bin.sockit-part");
    mkfifo(&fifo);
    let mut c = fx.client("bob").await;
    let mut quiet = Quiet;
    let put = c.put(&local, "big.bin", true, &mut quiet);
    let stuck = fifo.clone();
    let got = unhung("put over a FIFO", put, move || {
        // A reader that drains the FIFO lets the server's writes go through.
        std::thread::spawn(move || {
            let mut reader = std::fs::File::open(stuck)?;
            std::io::copy(&mut reader, &mut std::io::sink())
        });
    })
    .await;
    let put = got.unwrap();
    assert_eq!((put.size, put.resumed_from), (bytes.len() as u64, 0));
    assert_eq!(
        std::fs::read(fx.home("bob").join("big.bin")).unwrap(),
        bytes
    );
    assert!(!fifo.exists(), "the FIFO was replaced, then committed");
}

/// `/TOP` and `levels` folders of 200-byte names below it, as a wire path.
fn deep_path(top: &str, levels: usize) -> String {
    let name = "n".repeat(200);
    let mut path = format!("/{top}");
    for _ in 0..levels {
        path.push('/');
        path.push_str(&name);
    }
    path
}

#[tokio::test]
async fn mv_that_would_nest_past_the_limits_is_refused() {
    let fx = Fixture::new().await;
    let mut c = fx.client("bob").await;
    // Each is fine on its own: 19 levels of 200 bytes, about 3.8 KB of path.
    let (a, b) = (deep_path("a", 19), deep_path("b", 19));
    assert!(a.len() < 4096);
    c.mkdir(&a, true).await.unwrap();
    c.mkdir(&b, true).await.unwrap();
    let local = fx.local("leaf", b"leaf");
    c.put(&local, &format!("{a}/leaf"), false, &mut Quiet)
        .await
        .unwrap();
    // Moving one under the other would put its leaf about 7.6 KB deep.
    let inside = format!("{b}/a");
    refused(c.mv("/a", &inside).await, ErrorCode::BadRequest, "4096");
    assert_eq!(c.stat(&format!("{a}/leaf")).await.unwrap().size, 4);
    assert_eq!(
        code(c.stat(&inside).await),
        ErrorCode::NotFound,
        "nothing moved"
    );
    // Depth counts too, not only bytes: 200 levels moved under 100 others.
    let levels = |top: &str, n: usize| format!("/{top}{}", "/x".repeat(n));
    c.mkdir(&levels("c", 199), true).await.unwrap();
    c.mkdir(&levels("d", 99), true).await.unwrap();
    let under = format!("{}/c", levels("d", 99));
    refused(c.mv("/c", &under).await, ErrorCode::BadRequest, "256");
    // A move that keeps within the limits still works.
    c.mv("/a", "/moved").await.unwrap();
    c.mv(
        &format!("/moved{}", "/".to_owned() + &"n".repeat(200)),
        "/b/up",
    )
    .await
    .unwrap();
    c.stat(&format!("/b{}/leaf", deep_path("up", 18)))
        .await
        .unwrap();
}

/// Makes `top` in `dir` and a chain of folders named by `names` inside it, then a file at
/// the bottom, as a program on the server could (the wire refuses such depths): each made
/// and entered relative to the one above, so no path string is ever longer than a name.
fn build_chain(dir: &Path, top: &str, names: impl Iterator<Item = String>) {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = rustix::fs::openat(CWD, dir, flags, Mode::empty()).unwrap();
    for name in std::iter::once(top.to_owned()).chain(names) {
        rustix::fs::mkdirat(&fd, name.as_str(), Mode::RWXU).unwrap();
        fd = rustix::fs::openat(&fd, name.as_str(), flags, Mode::empty()).unwrap();
    }
    let create = OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC;
    rustix::fs::openat(&fd, "bottom", create, Mode::RUSR | Mode::WUSR).unwrap();
}

/// Removes a tree of any depth, whatever the test left (`rm -rf` walks it without a handle
/// per level; `TempDir`'s cleanup recurses once per level and would overflow the stack).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::process::Command::new("rm")
                .arg("-rf")
                .arg(&self.0)
                .status();
        }
    }
}

#[tokio::test]
async fn rm_r_removes_a_tree_deeper_than_the_server_allows() {
    use nix::sys::resource::{Resource, getrlimit};
    let fx = Fixture::new().await;
    let mut bob = fx.client("bob").await;
    let mut other = fx.client("user0").await;
    // 30 levels of 200-byte names (past PATH_MAX for any path string), then more one-byte
    // levels than this process may have files open: a walk that holds a handle per level
    // cannot finish it.
    let (open_files, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let levels = usize::try_from(open_files)
        .unwrap_or(usize::MAX)
        .saturating_add(100)
        .min(100_000);
    let _cleanup = RemoveOnDrop(fx.dir.path().to_owned());
    let home = fx.home("bob");
    let wide = (0..30).map(|i| format!("{i:0>200}"));
    build_chain(&home, "deep", wide.chain((0..levels).map(|_| "d".into())));

    // No move can take it anywhere: it is too deep wherever it goes.
    refused(bob.mv("/deep", "/x").await, ErrorCode::BadRequest, "4096");
    // Other users are not affected.
    let local = fx.local("small", &pattern(10_000, 1));
    other.put(&local, "f", false, &mut Quiet).await.unwrap();
    fx.client("user1").await;

    bob.rm("/deep", true).await.unwrap();
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 0);
    // The owner logs in and uploads again, and so do the others.
    let mut again = fx.client("bob").await;
    again.put(&local, "f", false, &mut Quiet).await.unwrap();
    other.put(&local, "g", false, &mut Quiet).await.unwrap();
    assert_eq!(bob.ls("/").await.unwrap().len(), 1);
}

#[tokio::test]
async fn one_name_limit_for_put_mkdir_and_mv() {
    // 242 bytes: the longest name whose partial file `.NAME.sockit-part` fits in 255.
    let fx = Fixture::new().await;
    let mut c = fx.client("bob").await;
    let (longest, over) = ("L".repeat(242), "O".repeat(243));
    let local = fx.local("named", b"named");
    c.put(&local, &longest, false, &mut Quiet).await.unwrap();
    c.mkdir(&format!("d{}", &longest[1..]), false)
        .await
        .unwrap();
    assert_eq!(c.stat(&longest).await.unwrap().size, 5);

    refused(
        c.put(&local, &over, false, &mut Quiet).await,
        ErrorCode::BadRequest,
        "242",
    );
    refused(c.mkdir(&over, false).await, ErrorCode::BadRequest, "242");
    refused(c.mkdir(&over, true).await, ErrorCode::BadRequest, "242");
    refused(c.mv(&longest, &over).await, ErrorCode::BadRequest, "242");
    let in_folder = format!("d{}/{over}", &longest[1..]);
    refused(
        c.mkdir(&in_folder, false).await,
        ErrorCode::BadRequest,
        "242",
    );
    assert_eq!(c.ls("/").await.unwrap().len(), 2, "nothing else was made");
}

#[tokio::test]
async fn a_symlink_loop_or_a_folder_moved_into_itself_is_a_clear_error() {
    let fx = Fixture::new().await;
    let home = fx.home("bob");
    std::os::unix::fs::symlink("b", home.join("a")).unwrap();
    std::os::unix::fs::symlink("a", home.join("b")).unwrap();
    let mut c = fx.client("bob").await;
    let out = fx.dir.path().join("loop.out");
    refused(c.stat("a").await, ErrorCode::BadRequest, "/a");
    refused(c.ls("a").await, ErrorCode::BadRequest, "/a");
    refused(
        c.get("a", &out, false, &mut Quiet).await,
        ErrorCode::BadRequest,
        "/a",
    );
    let local = fx.local("x", b"x");
    refused(
        c.put(&local, "a/x", false, &mut Quiet).await,
        ErrorCode::BadRequest,
        "/a",
    );
    // The links themselves are listed and removable.
    assert_eq!(c.ls("/").await.unwrap().len(), 2);

    // A folder moved into itself through a link to it: the kernel says EINVAL.
    c.mkdir("d", false).await.unwrap();
    std::os::unix::fs::symlink("d", home.join("l")).unwrap();
    refused(
        c.mv("d", "l/inside").await,
        ErrorCode::BadRequest,
        "/l/inside",
    );
    c.rm("a", false).await.unwrap();
    assert_eq!(c.stat("d").await.unwrap().kind, EntryKind::Dir);
}
