//! Tests of `Users` on a real SQLite file in a temp dir (cheap hashes: `HashCost::Minimal`).

use super::*;

fn store() -> (tempfile::TempDir, Users) {
    let tmp = tempfile::tempdir().unwrap();
    let users = Users::open_with(tmp.path(), HashCost::Minimal).unwrap();
    (tmp, users)
}

fn pw(s: &str) -> Password {
    Password::new(s)
}

#[test]
fn users_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Users>();
    assert_send_sync::<AuthThrottle>();
}

#[test]
fn add_list_get_remove() {
    let (tmp, users) = store();
    let ann = users.add("ann", &pw("s3cret"), Some(1 << 20)).unwrap();
    users.add("bob.smith-2_x", &pw("pw"), None).unwrap();
    assert!(tmp.path().join("homes/ann").is_dir());
    assert_eq!(users.home("ann").unwrap(), tmp.path().join("homes/ann"));
    assert_eq!(users.get("ann").unwrap(), ann);
    assert!(ann.created > 1_600_000_000);
    let names: Vec<_> = users.list().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["ann", "bob.smith-2_x"]);

    std::fs::write(tmp.path().join("homes/ann/f"), "x").unwrap();
    users.remove("ann", false).unwrap();
    assert!(
        tmp.path().join("homes/ann/f").exists(),
        "home kept unless asked"
    );
    assert!(matches!(users.get("ann"), Err(Error::NotFound(_))));
    users.remove("bob.smith-2_x", true).unwrap();
    assert!(!tmp.path().join("homes/bob.smith-2_x").exists());
    assert!(users.list().unwrap().is_empty());
    assert!(matches!(users.remove("ann", true), Err(Error::NotFound(_))));
}

#[test]
fn passwd_and_quota_changes() {
    let (_tmp, users) = store();
    users.add("ann", &pw("old"), None).unwrap();
    users.set_password("ann", &pw("new")).unwrap();
    assert!(users.verify("ann", &pw("old")).unwrap().is_none());
    assert!(users.verify("ann", &pw("new")).unwrap().is_some());
    users.set_quota("ann", Some(10)).unwrap();
    assert_eq!(users.get("ann").unwrap().quota, Some(10));
    users.set_quota("ann", None).unwrap();
    assert_eq!(users.get("ann").unwrap().quota, None);
    assert!(matches!(
        users.set_quota("ann", Some(u64::MAX)),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        users.set_password("zed", &pw("x")),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        users.set_quota("zed", None),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        users.set_password("ann", &pw("")),
        Err(Error::BadRequest(_))
    ));
}

#[test]
fn duplicate_names_are_refused_in_any_case() {
    let (_tmp, users) = store();
    users.add("ann", &pw("a"), None).unwrap();
    for name in ["ann", "ANN", "Ann"] {
        let err = users.add(name, &pw("b"), None).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{name}: {err}");
        assert_eq!(err.to_string(), format!("user `{name}` already exists"));
    }
    // The first one is untouched.
    assert!(users.verify("ann", &pw("a")).unwrap().is_some());
}

#[test]
fn invalid_names_are_refused() {
    let (tmp, users) = store();
    let long = "a".repeat(MAX_NAME_LEN + 1);
    for name in [
        "", ".hidden", "..", "a/b", "../x", "a b", "é", "a\0b", &long,
    ] {
        let err = users.add(name, &pw("p"), None).unwrap_err();
        assert!(matches!(err, Error::BadRequest(_)), "{name:?}: {err}");
        assert!(users.home(name).is_err(), "{name:?}");
    }
    users
        .add(&"a".repeat(MAX_NAME_LEN), &pw("p"), None)
        .unwrap();
    // Nothing but the one valid home was created.
    assert_eq!(
        std::fs::read_dir(tmp.path().join("homes")).unwrap().count(),
        1
    );
}

#[test]
fn wrong_password_and_unknown_user_both_fail_the_same_way() {
    let (_tmp, users) = store();
    let ann = users.add("ann", &pw("right"), Some(5)).unwrap();
    assert_eq!(
        users.verify("ann", &pw("right")).unwrap().map(|(u, _)| u),
        Some(ann)
    );
    assert_eq!(users.verify("ann", &pw("wrong")).unwrap(), None);
    assert_eq!(users.verify("ann", &pw("")).unwrap(), None);
    assert_eq!(users.verify("ANN", &pw("right")).unwrap(), None);
    assert_eq!(users.verify("nobody", &pw("right")).unwrap(), None);
    assert_eq!(users.verify("../etc", &pw("right")).unwrap(), None);
    // The unknown-user path really hashed against the dummy.
    assert!(
        users
            .dummy
            .get()
            .is_some_and(|d| d.starts_with("$argon2id$"))
    );
}

#[test]
fn the_database_holds_an_argon2id_hash_not_the_password() {
    let (tmp, users) = store();
    users.add("ann", &pw("hunter2-password"), None).unwrap();
    users.add("bob", &pw("hunter2-password"), None).unwrap();
    drop(users);
    let conn = Connection::open(tmp.path().join("users.db")).unwrap();
    let hashes: Vec<String> = conn
        .prepare("SELECT hash FROM users ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for hash in &hashes {
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains("hunter2"), "{hash}");
    }
    assert_ne!(hashes[0], hashes[1], "each hash has its own random salt");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn standard_cost_uses_the_default_argon2id_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let users = Users::open(tmp.path()).unwrap();
    let hash = users
        .hasher
        .hash_password_with_salt(b"p", b"saltsaltsalt")
        .unwrap();
    assert!(
        hash.to_string()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
}

#[test]
fn users_survive_a_reopen() {
    let (tmp, users) = store();
    users.add("ann", &pw("pw"), Some(7)).unwrap();
    drop(users);
    let users = Users::open_with(tmp.path(), HashCost::Minimal).unwrap();
    assert_eq!(
        users.verify("ann", &pw("pw")).unwrap().unwrap().0.quota,
        Some(7)
    );
}

#[test]
fn passwords_never_show_in_debug_output() {
    let p = pw("hunter2");
    assert_eq!(format!("{p:?}"), "***");
    assert_eq!(format!("{:?}", Some(&p)), "Some(***)");
    let (_tmp, users) = store();
    users.add("ann", &p, None).unwrap();
    let shown = format!("{users:?} {:?}", users.get("ann").unwrap());
    assert!(
        !shown.contains("hunter2") && !shown.contains("argon2"),
        "{shown}"
    );
}

#[test]
fn concurrent_logins_from_threads() {
    let (_tmp, users) = store();
    users.add("ann", &pw("pw"), None).unwrap();
    std::thread::scope(|s| {
        for i in 0..4 {
            let users = &users;
            s.spawn(move || {
                let password = if i % 2 == 0 { "pw" } else { "nope" };
                let ok = users.verify("ann", &pw(password)).unwrap().is_some();
                assert_eq!(ok, i % 2 == 0);
            });
        }
    });
}

#[test]
fn checks_reuse_their_memory_and_agree_with_the_argon2_crate() {
    use argon2::password_hash::PasswordVerifier;
    let (_tmp, users) = store();
    users.add("ann", &pw("right"), None).unwrap();
    for _ in 0..5 {
        assert!(users.verify("ann", &pw("right")).unwrap().is_some());
        assert!(users.verify("ann", &pw("wrong")).unwrap().is_none());
    }
    assert_eq!(users.memory.pooled(), 1, "one check at a time: one block");
    let (_, hash) = users.lookup("ann").unwrap().unwrap();
    assert!(
        users
            .hasher
            .verify_password(b"right", hash.as_str())
            .is_ok()
    );
    // A hash of standard cost, made by the crate, is checked the same way.
    let standard = Argon2::default().hash_password(b"pw").unwrap().to_string();
    assert!(users.memory.verify(b"pw", &standard));
    assert!(!users.memory.verify(b"pW", &standard));
    assert!(!users.memory.verify(b"pw", "$argon2id$garbage"));
}

#[test]
fn another_connections_changes_are_noticed_and_stamps_follow_the_password() {
    let (tmp, users) = store();
    users.add("ann", &pw("one"), None).unwrap();
    let (_, stamp) = users.verify("ann", &pw("one")).unwrap().unwrap();
    let before = users.data_version().unwrap();
    assert_eq!(users.data_version().unwrap(), before, "nothing changed");
    let admin = Users::open_with(tmp.path(), HashCost::Minimal).unwrap();
    admin.set_quota("ann", Some(9)).unwrap();
    let after = users.data_version().unwrap();
    assert_ne!(after, before);
    let (info, same) = users.current("ann").unwrap().unwrap();
    assert_eq!((info.quota, same), (Some(9), stamp));
    admin.set_password("ann", &pw("two")).unwrap();
    assert_ne!(users.current("ann").unwrap().unwrap().1, stamp);
    admin.remove("ann", false).unwrap();
    assert!(users.current("ann").unwrap().is_none());
}

#[test]
fn keys_belong_to_one_user_and_go_with_them() {
    let (tmp, users) = store();
    users.add("ann", &pw("pw"), None).unwrap();
    users.add("bob", &pw("pw"), None).unwrap();
    let key = crate::keys::KeyPair::generate_into(&tmp.path().join("id"), "c").unwrap();
    let info = users.add_key("ann", &key, "laptop").unwrap();
    assert_eq!(info.fingerprint, key.fingerprint());
    assert!(matches!(
        users.add_key("bob", &key, ""),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        users.add_key("nobody", &key, ""),
        Err(Error::NotFound(_))
    ));
    assert!(users.verify_key("ann", &key).unwrap().is_some());
    assert!(users.verify_key("bob", &key).unwrap().is_none());
    assert_eq!(users.keys("ann").unwrap(), [info]);

    users.remove("ann", false).unwrap();
    users.add("ann", &pw("pw"), None).unwrap();
    assert!(
        users.keys("ann").unwrap().is_empty(),
        "a new ann inherited a key"
    );
    assert!(users.verify_key("ann", &key).unwrap().is_none());
    users.add_key("bob", &key, "").unwrap();
    users.remove_key("bob", &key.fingerprint()).unwrap();
    assert!(matches!(
        users.remove_key("bob", &key.fingerprint()),
        Err(Error::NotFound(_))
    ));
}
