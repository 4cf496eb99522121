//! Which digest checks a transfer, between sockit peers (BLAKE3) and peers that know only
//! the seeds' md5, and what happens when a client lies about it.

use serde_json::json;
use sockit::filecopy::Quiet;
use sockit::protocol::ErrorCode;

use crate::files::{Fixture, code, md5_hex, part_of, pattern, raw_upload};

#[tokio::test]
async fn a_client_that_checks_md5_gets_it_for_a_file_stored_by_blake3() {
    // A sockit upload is checked by BLAKE3 and never hashed with md5; a peer that knows
    // only the seeds' md5 must still get the right one, computed while the file is sent.
    let fx = Fixture::new().await;
    let mut c = fx.client("bob").await;
    let bytes = pattern(300_000, 9);
    let local = fx.local("b3only.bin", &bytes);
    let put = c
        .put(&local, "b3only.bin", false, &mut Quiet)
        .await
        .unwrap();
    assert_eq!(put.md5, None);
    let md5 = md5_hex(&bytes);
    for _ in 0..2 {
        let (ready, body) = c
            .call(&json!({"op": "get", "path": "b3only.bin"}), b"")
            .await
            .unwrap();
        assert_eq!(ready["size"], bytes.len());
        assert_eq!(&body[..], &bytes[..]);
        let (trailer, _) = c.read_reply().await.unwrap();
        assert_eq!(trailer["md5"], md5);
    }

    // The other way round: stored by md5 (as a peer without BLAKE3 uploads), fetched by a
    // sockit client, which then checks a BLAKE3 the server computes while sending.
    raw_upload(&mut c, "md5.bin", &bytes, json!({"op": "data"})).await;
    let (stored, _) = c
        .call(&json!({"op": "done", "md5": md5}), b"")
        .await
        .unwrap();
    assert_eq!(stored["md5"], md5);
    let down = fx.dir.path().join("md5-down.bin");
    let got = c.get("md5.bin", &down, false, &mut Quiet).await.unwrap();
    let blake3 = blake3::hash(&bytes).to_hex().to_string();
    assert_eq!(got.digest(), ("BLAKE3", blake3.as_str()));
    assert_eq!(std::fs::read(&down).unwrap(), bytes);
}

#[tokio::test]
async fn a_done_frame_without_the_announced_digest_is_refused_and_resumable() {
    let fx = Fixture::new().await;
    let mut c = fx.client("bob").await;
    let bytes = pattern(50_000, 5);
    let blake3 = json!({"op": "data", "digest": "blake3"});
    raw_upload(&mut c, "half", &bytes, blake3).await;
    let md5_only = json!({"op": "done", "md5": "0".repeat(32)});
    assert_eq!(code(c.call(&md5_only, b"").await), ErrorCode::BadRequest);
    assert!(!fx.home("bob").join("half").exists());
    // The bytes are kept: a resume sends nothing again and finishes with the right digest.
    let local = fx.local("half.bin", &bytes);
    let put = c.put(&local, "half", true, &mut Quiet).await.unwrap();
    assert_eq!(put.resumed_from, bytes.len() as u64);
    assert_eq!(std::fs::read(fx.home("bob").join("half")).unwrap(), bytes);

    // A digest this server does not know is refused by name.
    raw_upload(&mut c, "sha", b"x", json!({"op": "data", "digest": "sha1"})).await;
    c.connection().flush().await.unwrap();
    assert_eq!(code(c.read_reply().await), ErrorCode::BadRequest);

    // An unchecked md5 next to a right BLAKE3 is recorded only when it is one: junk is
    // dropped, and a peer asking for md5 later gets the file's real one.
    let blake3 = blake3::hash(&bytes).to_hex().to_string();
    raw_upload(
        &mut c,
        "junk",
        &bytes,
        json!({"op": "data", "digest": "blake3"}),
    )
    .await;
    let done = json!({"op": "done", "blake3": blake3, "md5": "not an md5 at all"});
    let (stored, _) = c.call(&done, b"").await.unwrap();
    assert_eq!(stored["blake3"], blake3);
    assert!(stored.get("md5").is_none(), "{stored:?}");
    c.call(&json!({"op": "get", "path": "junk"}), b"")
        .await
        .unwrap();
    let (trailer, _) = c.read_reply().await.unwrap();
    let md5 = md5_hex(&bytes);
    assert_eq!(trailer["md5"], md5);
}

#[tokio::test]
async fn a_wrong_blake3_is_refused_even_with_the_right_md5() {
    // Between sockit peers the server checks BLAKE3 and takes the md5 as told: a right md5
    // must not carry bytes whose BLAKE3 is wrong.
    let fx = Fixture::new().await;
    let mut c = fx.client("bob").await;
    let bytes = pattern(100_000, 4);
    raw_upload(
        &mut c,
        "b3",
        &bytes,
        json!({"op": "data", "digest": "blake3"}),
    )
    .await;
    let md5 = md5_hex(&bytes);
    let wrong = "0".repeat(64);
    let done = json!({"op": "done", "md5": md5, "blake3": wrong});
    assert_eq!(code(c.call(&done, b"").await), ErrorCode::DigestMismatch);
    assert!(!fx.home("bob").join("b3").exists());
    assert!(!part_of(&fx.home("bob"), "b3").exists());
}

#[tokio::test]
async fn a_lying_upload_leaves_nothing_and_a_busy_name_refuses_a_second_writer() {
    let fx = Fixture::new().await;
    let mut c = fx.client("bob").await;
    let bytes = pattern(100_000, 3);
    raw_upload(&mut c, "lie", &bytes, json!({"op": "data"})).await;
    let wrong = "0".repeat(32);
    assert_eq!(
        code(c.call(&json!({"op": "done", "md5": wrong}), b"").await),
        ErrorCode::DigestMismatch
    );
    assert!(!fx.home("bob").join("lie").exists());
    assert!(!part_of(&fx.home("bob"), "lie").exists());

    // One writer per name: the second put of a name in progress is refused.
    let mut first = fx.client("bob").await;
    first
        .call(&json!({"op": "put", "path": "same", "size": 10}), b"")
        .await
        .unwrap();
    let local = fx.local("same", b"0123456789");
    assert_eq!(
        code(c.put(&local, "same", false, &mut Quiet).await),
        ErrorCode::Busy
    );
    drop(first);
}
