//! Tests of `Root` on real folders in a temp dir; `wire_path.rs` tests the pure rules.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use super::*;
use crate::protocol::Kept;

/// Two homes side by side (`ann`, `bob`), with a `Root` on ann's.
struct Fixture {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    other: PathBuf,
    root: Root,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("homes/ann");
    let other = tmp.path().join("homes/bob");
    fs::create_dir_all(&home).unwrap();
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("secret"), "bob's").unwrap();
    let root = Root::open(&home).unwrap();
    Fixture {
        _tmp: tmp,
        home,
        other,
        root,
    }
}

fn p(wire: &str) -> WirePath {
    WirePath::root().resolve(wire).unwrap()
}

fn read(root: &Root, wire: &str) -> Result<String> {
    let (mut file, len) = root.open_read(&p(wire))?;
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text.len() as u64, len);
    Ok(text)
}

fn upload(root: &Root, wire: &str, data: &[u8]) -> Result<()> {
    let mut part = root.partial(&p(wire))?;
    part.open_at(0)?.write_all(data).unwrap();
    part.commit_verified(data.len() as u64, Kept::default(), false)
}

#[test]
fn absolute_paths_map_inside_the_home() {
    let f = fixture();
    assert!(matches!(
        read(&f.root, "/etc/passwd"),
        Err(Error::NotFound(_))
    ));
    fs::create_dir(f.home.join("etc")).unwrap();
    fs::write(f.home.join("etc/passwd"), "mine").unwrap();
    assert_eq!(read(&f.root, "/etc/passwd").unwrap(), "mine");
}

#[test]
fn symlinks_out_of_the_home_are_refused_by_the_sandbox() {
    let f = fixture();
    symlink("/etc", f.home.join("etc")).unwrap();
    symlink("../bob", f.home.join("sibling")).unwrap();
    symlink(f.other.join("secret"), f.home.join("abs-secret")).unwrap();
    let denied = |r: Result<()>, what: &str| match r {
        Err(Error::PermissionDenied(m)) => assert!(m.contains("outside your home"), "{m}"),
        other => panic!("{what}: expected PermissionDenied, got {other:?}"),
    };
    denied(read(&f.root, "etc/passwd").map(drop), "read /etc/passwd");
    denied(read(&f.root, "sibling/secret").map(drop), "read ../bob");
    denied(read(&f.root, "abs-secret").map(drop), "read absolute link");
    denied(f.root.list(&p("etc")).map(drop), "list");
    denied(f.root.stat(&p("sibling")).map(drop), "stat");
    denied(f.root.mkdir(&p("sibling/x"), false), "mkdir");
    denied(f.root.partial(&p("sibling/x")).map(drop), "upload");
    fs::write(f.home.join("f.txt"), "mine").unwrap();
    denied(f.root.rename(&p("f.txt"), &p("etc/x")), "rename into");
    denied(
        f.root.rename(&p("sibling/secret"), &p("stolen")),
        "rename out of",
    );
    // The links themselves are visible and removable; what they point at is untouched.
    let links = f.root.list(&WirePath::root()).unwrap();
    assert_eq!(
        links
            .iter()
            .filter(|e| e.kind == EntryKind::Symlink)
            .count(),
        3
    );
    f.root.remove(&p("sibling"), true).unwrap();
    assert_eq!(fs::read_to_string(f.other.join("secret")).unwrap(), "bob's");
}

#[test]
fn recursive_remove_deletes_links_not_what_they_point_at() {
    let f = fixture();
    fs::create_dir_all(f.home.join("d/e")).unwrap();
    symlink("../../../bob", f.home.join("d/e/to-bob")).unwrap();
    symlink(&f.other, f.home.join("d/abs-bob")).unwrap();
    f.root.remove(&p("d"), true).unwrap();
    assert!(!f.home.join("d").exists());
    assert_eq!(fs::read_to_string(f.other.join("secret")).unwrap(), "bob's");
}

#[test]
fn handles_can_move_to_the_blocking_pool() {
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_static::<Root>();
    assert_send_static::<PartialFile>();
    assert_send_static::<crate::quota::Reservation>();
}

#[test]
fn symlinks_that_stay_inside_are_followed() {
    let f = fixture();
    fs::create_dir(f.home.join("docs")).unwrap();
    fs::write(f.home.join("docs/a.txt"), "hi").unwrap();
    symlink("docs", f.home.join("link")).unwrap();
    assert_eq!(read(&f.root, "link/a.txt").unwrap(), "hi");
    assert_eq!(f.root.stat(&p("link")).unwrap().kind, EntryKind::Dir);
}

#[test]
fn errors_name_the_wire_path_not_the_server_path() {
    let f = fixture();
    let err = f.root.stat(&p("docs/missing.txt")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/docs/missing.txt"), "{text}");
    assert!(!text.contains(f.home.to_str().unwrap()), "{text}");
    assert_eq!(err.code(), crate::protocol::ErrorCode::NotFound);
}

#[test]
fn list_stat_mkdir_remove_rename() {
    let f = fixture();
    let r = &f.root;
    r.mkdir(&p("b/c/d"), true).unwrap();
    r.mkdir(&p("b/c/d"), true).unwrap();
    assert!(matches!(
        r.mkdir(&p("b"), false),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(r.mkdir(&p("x/y"), false), Err(Error::NotFound(_))));
    r.mkdir(&p("a"), false).unwrap();
    upload(r, "z.txt", b"hello").unwrap();

    let list = r.list(&WirePath::root()).unwrap();
    let names: Vec<_> = list.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        names,
        [
            ("a", EntryKind::Dir),
            ("b", EntryKind::Dir),
            ("z.txt", EntryKind::File)
        ]
    );
    let z = r.stat(&p("z.txt")).unwrap();
    assert_eq!((z.size, z.kind), (5, EntryKind::File));
    assert!(z.modified > 1_600_000_000);
    assert_eq!(r.list(&p("z.txt")).unwrap(), vec![z]);
    assert_eq!(r.stat(&WirePath::root()).unwrap().name, "/");

    r.rename(&p("z.txt"), &p("a/y.txt")).unwrap();
    assert_eq!(read(r, "a/y.txt").unwrap(), "hello");
    assert!(matches!(
        r.rename(&p("a/y.txt"), &p("b")),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        r.rename(&p("b"), &p("b/c/e")),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        r.rename(&p("nope"), &p("q")),
        Err(Error::NotFound(_))
    ));
    assert!(r.rename(&WirePath::root(), &p("q")).is_err());

    let err = r.remove(&p("b"), false).unwrap_err();
    assert!(err.to_string().contains("is a folder, use -r"), "{err}");
    r.remove(&p("b"), true).unwrap();
    r.remove(&p("a/y.txt"), false).unwrap();
    assert!(matches!(
        r.remove(&p("a/y.txt"), false),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        r.remove(&WirePath::root(), true),
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(r.open_read(&p("a")), Err(Error::BadRequest(_))));
    assert!(f.home.is_dir());
}

#[test]
fn partial_upload_resumes_after_a_restart() {
    let f = fixture();
    let data = b"0123456789abcdef";
    {
        let mut part = f.root.partial(&p("big.bin")).unwrap();
        assert_eq!(part.len().unwrap(), 0);
        part.open_at(0).unwrap().write_all(&data[..10]).unwrap();
        // Dropped without commit: the client went away.
    }
    drop(f.root);
    let root = Root::open(&f.home).unwrap();
    // Hidden from listings, and not readable under the final name yet.
    assert!(root.list(&WirePath::root()).unwrap().is_empty());
    assert!(matches!(read(&root, "big.bin"), Err(Error::NotFound(_))));

    let mut part = root.partial(&p("big.bin")).unwrap();
    assert_eq!(part.len().unwrap(), 10);
    assert!(matches!(part.open_at(11), Err(Error::BadRequest(_))));
    // Resuming a little earlier than the end cuts the tail off.
    let mut file = part.open_at(8).unwrap();
    assert_eq!(part.len().unwrap(), 8);
    file.write_all(&data[8..]).unwrap();
    drop(file);
    part.commit_verified(16, Kept::default(), false).unwrap();
    assert_eq!(read(&root, "big.bin").unwrap().as_bytes(), data);
    assert!(!f.home.join(".big.bin.sockit-part").exists());
}

#[test]
fn commit_with_a_wrong_digest_or_size_keeps_nothing() {
    let f = fixture();
    fs::write(f.home.join("keep.txt"), "old").unwrap();
    let mut part = f.root.partial(&p("keep.txt")).unwrap();
    part.open_at(0).unwrap().write_all(b"new data").unwrap();
    // The caller found the digest wrong.
    let err = part.reject("md5 of the received bytes is not the announced one");
    assert!(matches!(err, Error::DigestMismatch(_)), "{err}");
    assert_eq!(read(&f.root, "keep.txt").unwrap(), "old");
    assert!(!f.home.join(".keep.txt.sockit-part").exists());

    let mut part = f.root.partial(&p("new.txt")).unwrap();
    part.open_at(0).unwrap().write_all(b"short").unwrap();
    let err = part.commit_verified(6, Kept::default(), false).unwrap_err();
    assert!(err.to_string().contains("received 5 bytes but 6"), "{err}");
    assert!(matches!(read(&f.root, "new.txt"), Err(Error::NotFound(_))));
    assert_eq!(f.root.usage().unwrap().bytes, 3);
}

#[test]
fn a_file_written_whole_commits_after_a_group_sync_with_its_mode_and_time() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let f = fixture();
    let kept = Kept {
        mode: Some(0o640),
        modified: Some(1_577_880_000),
    };
    let mut part = f.root.partial(&p("a.txt")).unwrap();
    part.write_whole(b"whole", kept).unwrap();
    f.root.sync().unwrap();
    part.commit_verified(5, Kept::default(), true).unwrap();
    assert_eq!(read(&f.root, "a.txt").unwrap(), "whole");
    let meta = fs::metadata(f.home.join("a.txt")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(meta.mtime(), 1_577_880_000);

    // Bytes added behind the writer's back between the write and the commit: refused,
    // and nothing is left.
    let mut part = f.root.partial(&p("b.txt")).unwrap();
    part.write_whole(b"whole", kept).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(f.home.join(".b.txt.sockit-part"))
        .unwrap()
        .write_all(b" and more")
        .unwrap();
    let err = part.commit_verified(5, Kept::default(), true).unwrap_err();
    assert!(err.to_string().contains("received 14 bytes but 5"), "{err}");
    assert!(matches!(read(&f.root, "b.txt"), Err(Error::NotFound(_))));
    assert!(!f.home.join(".b.txt.sockit-part").exists());

    // A folder swapped into the partial's place: refused, the folder untouched.
    let mut part = f.root.partial(&p("c.txt")).unwrap();
    part.write_whole(b"whole", kept).unwrap();
    let swapped = f.home.join(".c.txt.sockit-part");
    fs::remove_file(&swapped).unwrap();
    fs::create_dir(&swapped).unwrap();
    assert!(part.commit_verified(5, Kept::default(), true).is_err());
    assert!(swapped.is_dir());
    assert!(matches!(read(&f.root, "c.txt"), Err(Error::NotFound(_))));
}

#[test]
fn empty_uploads_commit() {
    let f = fixture();
    let part = f.root.partial(&p("empty")).unwrap();
    part.commit_verified(0, Kept::default(), false).unwrap();
    assert_eq!(read(&f.root, "empty").unwrap(), "");
}

#[test]
fn a_second_writer_of_the_same_file_is_refused() {
    let f = fixture();
    fs::create_dir(f.home.join("d")).unwrap();
    symlink("d", f.home.join("alias")).unwrap();
    let first = f.root.partial(&p("d/f.bin")).unwrap();
    let other_root = Root::open(&f.home).unwrap();
    for wire in ["d/f.bin", "alias/f.bin"] {
        match other_root.partial(&p(wire)) {
            Err(Error::Busy(m)) => assert!(m.contains("another upload"), "{m}"),
            other => panic!("{wire}: expected Busy, got {other:?}"),
        }
    }
    // Another name in the same folder is independent.
    let _g = other_root.partial(&p("d/g.bin")).unwrap();
    drop(first);
    let second = other_root.partial(&p("d/f.bin")).unwrap();
    second.discard().unwrap();
}

#[test]
fn uploads_onto_folders_or_the_home_are_refused() {
    let f = fixture();
    fs::create_dir(f.home.join("d")).unwrap();
    assert!(matches!(
        f.root.partial(&p("d")),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        f.root.partial(&WirePath::root()),
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        f.root.partial(&p("missing/f")),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn usage_counts_files_recursively_without_following_symlinks() {
    let f = fixture();
    fs::create_dir_all(f.home.join("a/b")).unwrap();
    fs::write(f.home.join("one"), [0u8; 100]).unwrap();
    fs::write(f.home.join("a/b/two"), [0u8; 23]).unwrap();
    fs::write(f.home.join(".x.sockit-part"), [0u8; 7]).unwrap();
    symlink("/etc", f.home.join("etc")).unwrap();
    symlink("a", f.home.join("loop")).unwrap();
    let usage = f.root.usage().unwrap();
    // a, a/b, one, a/b/two, the partial file, and the two links.
    assert_eq!((usage.bytes, usage.entries), (130, 7));
    let a = f.root.measure(&p("a"), true).unwrap();
    assert_eq!((a.bytes, a.entries), (23, 3));
    let one = f.root.measure(&p("one"), true).unwrap();
    assert_eq!((one.bytes, one.entries), (100, 1));
}

#[test]
fn a_walk_inside_a_folder_with_an_upload_in_progress_is_busy() {
    let f = fixture();
    fs::create_dir_all(f.home.join("d/e")).unwrap();
    let part = f.root.partial(&p("d/e/x")).unwrap();
    assert!(matches!(f.root.measure(&p("d"), true), Err(Error::Busy(_))));
    assert!(f.root.usage().is_ok(), "the whole home is measured anyway");
    let probe = part.probe().unwrap();
    drop(part);
    assert!(
        matches!(f.root.measure(&p("d"), true), Err(Error::Busy(_))),
        "the probe holds it"
    );
    drop(probe);
    assert_eq!(f.root.measure(&p("d"), true).unwrap().entries, 2);
}

#[test]
fn a_listing_by_pages_gives_every_entry_once_in_name_order() {
    let f = fixture();
    let r = &f.root;
    for name in ["e", "c", "a", "d", "b"] {
        upload(r, name, name.as_bytes()).unwrap();
    }
    // An upload under way is not an entry yet.
    let mut part = r.partial(&p("f")).unwrap();
    part.open_at(0).unwrap().write_all(b"half").unwrap();
    fs::remove_file(f.home.join("d")).unwrap();

    let mut listing = r.open_list(&WirePath::root()).unwrap();
    let mut pages = Vec::new();
    loop {
        let (page, more) = listing.next_page(2).unwrap();
        pages.push(page.iter().map(|e| e.name.clone()).collect::<Vec<_>>());
        if !more {
            break;
        }
    }
    assert_eq!(pages, [vec!["a", "b"], vec!["c", "e"]]);

    // Named after the folder was read, gone before its page: left out, not an error.
    let mut listing = r.open_list(&WirePath::root()).unwrap();
    fs::remove_file(f.home.join("c")).unwrap();
    let (page, more) = listing.next_page(10).unwrap();
    let names: Vec<_> = page.iter().map(|e| e.name.as_str()).collect();
    assert_eq!((names, more), (vec!["a", "b", "e"], false));

    // A file lists as itself, once.
    let mut listing = r.open_list(&p("a")).unwrap();
    let (page, more) = listing.next_page(10).unwrap();
    assert_eq!((page.len(), page[0].size, more), (1, 1, false));
    assert_eq!(listing.next_page(10).unwrap(), (vec![], false));
}
