//! The web page at `/` of the HTTP door, as a person uses it in a real browser (headless
//! Chromium driven over WebDriver by chromedriver): log in, upload by the file picker with
//! the progress reaching 100%, download, rename, delete, a wrong password refused; and the
//! page's API as curl meets it: the session cookie, other sites refused, chunked resume.
//!
//! Needs `chromium`, `chromedriver` and `curl` (scripts/test.sh installs them); without them
//! the tests fail and say what is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::door_http::Door;

/// A chromedriver process and one browser session; both end on drop.
struct Browser {
    driver: Child,
    /// Its stdout, kept open so that its later lines do not meet a closed pipe.
    _output: BufReader<std::process::ChildStdout>,
    port: u16,
    session: String,
}

impl Browser {
    fn start(downloads: &Path, profile: &Path) -> Browser {
        // chromedriver takes a port number only; a port the kernel just gave out is free.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => panic!(
                "chromedriver is needed for this test (scripts/test.sh installs chromium-driver): {e}"
            ),
        };
        // It says so once it listens.
        let mut output = BufReader::new(driver.stdout.take().unwrap());
        let mut said = String::new();
        while !said.contains("started successfully") {
            let mut line = String::new();
            if output.read_line(&mut line).unwrap() == 0 {
                panic!("chromedriver ended before it listened: {said}");
            }
            said.push_str(&line);
        }
        let mut browser = Browser {
            driver,
            _output: output,
            port,
            session: String::new(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1000,700",
                         format!("--user-data-dir={}", profile.display())],
                "prefs": {
                    "download.default_directory": downloads.to_str().unwrap(),
                    "download.prompt_for_download": false
                }
            }
        }}});
        let created = browser.call("POST", "/session", Some(caps));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver call: its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // A stalled driver fails the test instead of hanging it.
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut reader = BufReader::new(stream);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut json = vec![0u8; length];
        reader.read_exact(&mut json).unwrap();
        let value: Value = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", String::from_utf8_lossy(&json)));
        value["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    fn element(&self, css: &str) -> String {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn script(&self, script: &str) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Polls `script` until it returns true (or fails after a deadline, showing `what`).
    fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.script(script) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "waited in vain for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Answers the open `prompt()` or `confirm()`, with `text` for a prompt.
    fn accept_dialog(&self, text: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.session_call("GET", "/alert/text", None).is_object() {
            assert!(Instant::now() < deadline, "no dialog opened");
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(text) = text {
            self.session_call("POST", "/alert/text", Some(json!({ "text": text })));
        }
        self.session_call("POST", "/alert/accept", Some(json!({})));
    }

    fn screenshot(&self, to: &Path) {
        use base64::Engine as _;
        let png = self.session_call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.session_call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

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
    let bytes = random_bytes(6_000_000);
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
    let bytes = random_bytes(100_000);
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
