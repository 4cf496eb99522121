//! The web page at `/` of the HTTP door, as a person uses it in a real browser (headless
//! Chromium driven over WebDriver by chromedriver): log in, upload by the file picker with
//! the progress reaching 100%, download, rename, delete, a wrong password refused; and the
//! page's API as curl meets it: the session cookie, other sites refused, chunked resume.
//!
//! Needs `chromium`, `chromedriver` and `curl` (scripts/test.sh installs them); without them
//! the tests fail and say what is missing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::door_http::{Door, random_bytes};
use crate::webdriver::Browser;

#[test]
fn door_web_a_browser_logs_in_uploads_downloads_renames_and_deletes() {
    let door = Door::start();
    let work = door.dir.path();
    let (downloads, profile) = (work.join("downloads"), work.join("profile"));
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::start(&downloads, &profile);
    let page = format!("https://127.0.0.1:{}/", door.port);
    browser.open(&page);

    // A wrong password is refused, and says so.
    browser.wait_for(
        "the login form",
        "return !document.getElementById('login-view').hidden",
    );
    browser.type_into("#user", "bob");
    browser.type_into("#password", "not-bobs");
    browser.click("#login-button");
    browser.wait_for(
        "the refusal",
        "return document.getElementById('login-error').textContent.includes('wrong')",
    );
    let shown = browser.script("return document.getElementById('files-view').hidden");
    assert_eq!(
        shown,
        Value::Bool(true),
        "no files shown after a wrong password"
    );

    browser.type_into("#password", "bob-pw");
    browser.click("#login-button");
    browser.wait_for(
        "the file list",
        "return !document.getElementById('files-view').hidden",
    );

    // Upload by the file picker: 6 MB, two chunks.
    let bytes = random_bytes(6_000_000, 11);
    let local = work.join("picked.bin");
    std::fs::write(&local, &bytes).unwrap();
    let picker = browser.element("#picker");
    browser.session_call(
        "POST",
        &format!("/element/{picker}/value"),
        Some(json!({ "text": local.to_str().unwrap() })),
    );
    browser.wait_for(
        "the progress to reach 100%",
        "const p = document.querySelector('#uploads li[data-name=\"picked.bin\"] .pct'); \
         return !!p && p.textContent === '100%'",
    );
    browser.wait_for(
        "the file in the list",
        "return !!document.querySelector('#list tr[data-name=\"picked.bin\"]')",
    );
    assert!(std::fs::read(door.home("bob").join("picked.bin")).unwrap() == bytes);
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-page.png");
    browser.screenshot(&shot);

    // Download by its link, as a person clicks it.
    browser.click("#list tr[data-name=\"picked.bin\"] a.download");
    let saved = downloads.join("picked.bin");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read(&saved).ok().as_ref() != Some(&bytes) {
        assert!(
            Instant::now() < deadline,
            "the download never arrived whole"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Rename, through the page's prompt.
    browser.click("#list tr[data-name=\"picked.bin\"] button.rename");
    browser.accept_dialog(Some("renamed.bin"));
    browser.wait_for(
        "the renamed file",
        "return !!document.querySelector('#list tr[data-name=\"renamed.bin\"]') && \
         !document.querySelector('#list tr[data-name=\"picked.bin\"]')",
    );
    assert!(!door.home("bob").join("picked.bin").exists());
    assert!(std::fs::read(door.home("bob").join("renamed.bin")).unwrap() == bytes);

    // Delete, through the page's confirmation.
    browser.click("#list tr[data-name=\"renamed.bin\"] button.delete");
    browser.accept_dialog(None);
    browser.wait_for(
        "the file gone from the list",
        "return !document.querySelector('#list tr[data-name=\"renamed.bin\"]')",
    );
    assert!(!door.home("bob").join("renamed.bin").exists());
}

/// curl with a cookie jar against the door: (status, body).
fn curl(door: &Door, jar: &Path, args: &[&str]) -> (u16, String) {
    let mut all: Vec<String> = vec!["-sS".into(), "-b".into(), jar.display().to_string()];
    all.extend(["-c".into(), jar.display().to_string()]);
    all.extend(door.tls_args());
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["-w".into(), "\n%{http_code}".into()]);
    let out = Command::new("curl")
        .args(&all)
        .output()
        .unwrap_or_else(|e| {
            panic!("curl is needed for this test (scripts/test.sh installs it): {e}")
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn door_web_api_session_cookie_other_sites_and_a_resumed_upload() {
    let door = Door::start();
    let jar = door.dir.path().join("jar");
    let login = door.https("/api/login");
    let headers = door.dir.path().join("headers");
    let (code, _) = curl(
        &door,
        &jar,
        &[
            "-D",
            headers.to_str().unwrap(),
            "-H",
            "X-Sockit: 1",
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"user":"bob","password":"bob-pw"}"#,
            &login,
        ],
    );
    assert_eq!(code, 200);
    let headers = std::fs::read_to_string(&headers).unwrap();
    let cookie = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    std::fs::write(door.home("bob").join("keep"), b"kept").unwrap();

    // Another site's request, with the browser's cookie: refused, nothing done.
    let delete = door.https("/api/delete");
    for extra in [
        vec!["-H", "Origin: https://evil.example", "-H", "X-Sockit: 1"],
        vec![],
    ] {
        let mut args = extra.clone();
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"path":"/keep"}"#,
            delete.as_str(),
        ]);
        let (code, body) = curl(&door, &jar, &args);
        assert_eq!(code, 403, "{body}");
    }
    assert!(door.home("bob").join("keep").exists());

    // An upload in two chunks, with a wrong offset between: resumes from the server's.
    let bytes = random_bytes(100_000, 13);
    let (first, rest) = (door.dir.path().join("first"), door.dir.path().join("rest"));
    std::fs::write(&first, &bytes[..30_000]).unwrap();
    std::fs::write(&rest, &bytes[30_000..]).unwrap();
    let url = |offset: Option<u64>| {
        let mut url = door.https("/api/upload?path=/up.bin&size=100000");
        if let Some(o) = offset {
            url.push_str(&format!("&offset={o}"));
        }
        url
    };
    let put = |file: &Path, offset: u64| {
        curl(
            &door,
            &jar,
            &[
                "-X",
                "PUT",
                "-H",
                "X-Sockit: 1",
                "--data-binary",
                &format!("@{}", file.display()),
                &url(Some(offset)),
            ],
        )
    };
    assert_eq!(
        put(&first, 0),
        (200, r#"{"offset":30000,"done":false}"#.into())
    );
    assert!(
        !door.home("bob").join("up.bin").exists(),
        "visible before its end"
    );
    assert_eq!(
        curl(&door, &jar, &[&url(None)]),
        (200, r#"{"offset":30000,"done":false}"#.into())
    );
    assert_eq!(put(&rest, 20_000).0, 409);
    assert_eq!(
        put(&rest, 30_000),
        (200, r#"{"offset":100000,"done":true}"#.into())
    );
    assert!(std::fs::read(door.home("bob").join("up.bin")).unwrap() == bytes);

    // Logged out: the session's token no longer works, even sent again by hand.
    let token = cookie
        .split(';')
        .next()
        .and_then(|c| c.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap();
    let list = door.https("/api/list?path=/");
    let by_hand = format!("Cookie: {token}");
    assert_eq!(curl(&door, &jar, &["-H", &by_hand, &list]).0, 200);
    let (code, _) = curl(
        &door,
        &jar,
        &[
            "-X",
            "POST",
            "-H",
            "X-Sockit: 1",
            &door.https("/api/logout"),
        ],
    );
    assert_eq!(code, 200);
    assert_eq!(curl(&door, &jar, &["-H", &by_hand, &list]).0, 401);
}
