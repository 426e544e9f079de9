//! The chat app in a real browser: `rusm run apps/chat/app.toml` serving its page,
//! and two headless Chromium pages driven over WebDriver (Debian's `chromedriver`,
//! through `fantoccini`): what is typed in one appears in the other.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::{lines, rusm, temp_dir};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long the app may take to come up (it builds its components first).
const APP_LIMIT: Duration = Duration::from_secs(600);
/// How long any one browser step may take.
const STEP: Duration = Duration::from_secs(30);

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fails, naming the packages, unless `path` exists.
fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "the browser test needs headless Chromium and its WebDriver: {path} is missing; \
         install Debian's packages `chromium` and `chromium-driver` \
         (apt-get install -y chromium chromium-driver), as .ci/run does"
    );
}

/// The address in the first line of `log` that has `marker` before it, waiting at
/// most `limit` for it.
fn address_after(log: &mpsc::Receiver<String>, marker: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => {
                if let Some((_, rest)) = line.split_once(marker) {
                    return rest.split('/').next().unwrap_or_default().to_owned();
                }
                seen.push(line);
            }
            Err(_) => panic!(
                "no {marker:?} line within {limit:?}; the log so far:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// A port nothing listens on now (the kernel's pick, released at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `chromedriver` on a free port, once it accepts connections.
fn chromedriver() -> (Killed, u16) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Killed(child);
    let deadline = Instant::now() + STEP;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port} within {STEP:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (driver, port)
}

/// A headless Chromium session with its own profile in `profile`.
async fn browser(driver: u16, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": CHROMIUM, "args": args }),
    );
    tokio::time::timeout(
        STEP,
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{driver}")),
    )
    .await
    .expect("a browser session within the step limit")
    .expect("chromedriver starts a Chromium session")
}

/// The text of the element with id `id`.
async fn text_of(page: &Client, id: &str) -> String {
    page.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("the page has #{id}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("#{id} has text: {e}"))
}

/// Poll until #`id`'s text satisfies `done`, failing after [`STEP`].
async fn until_text(page: &Client, id: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let text = text_of(page, id).await;
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: #{id} still reads {text:?} after {STEP:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Type `message` into the page's box and press its send button.
async fn post(page: &Client, message: &str) {
    let input = page.find(Locator::Id("text")).await.expect("the text box");
    input.send_keys(message).await.expect("typing");
    page.find(Locator::Id("send"))
        .await
        .expect("the send button")
        .click()
        .await
        .expect("clicking send");
}

fn profile(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let _ = std::fs::remove_dir_all(&path);
    std::fs::create_dir_all(&path).expect("a fresh profile directory");
    path
}

#[test]
fn a_message_typed_in_one_chat_page_appears_in_the_other() {
    require(CHROMIUM);
    require(CHROMEDRIVER);
    let app = rusm()
        .args([
            "run",
            "apps/chat/app.toml",
            "--listen",
            "127.0.0.1:0",
            "--keep-running",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rusm starts");
    let mut app = Killed(app);
    let log = lines(app.0.stderr.take().expect("stderr is piped"));
    let addr = address_after(&log, "serving GET http://", APP_LIMIT);
    let page_url = format!("http://{addr}/");
    let (_driver, port) = chromedriver();
    let dir = temp_dir("browser-chat");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let first = browser(port, &profile(&dir, "first")).await;
        let second = browser(port, &profile(&dir, "second")).await;
        for page in [&first, &second] {
            page.goto(&page_url).await.expect("the chat page loads");
            until_text(page, "status", "the page's WebSocket", |t| t == "connected").await;
        }
        // The first page's member joined before the second's: the room has told both.
        until_text(&second, "log", "the second page joining", |t| {
            t.contains("joined")
        })
        .await;

        post(&first, "hello from the first page").await;
        until_text(&second, "log", "the first page's message", |t| {
            t.contains("hello from the first page")
        })
        .await;
        post(&second, "and back from the second").await;
        until_text(&first, "log", "the second page's answer", |t| {
            t.contains("and back from the second")
        })
        .await;
        // Each page saw its own post too (the room sends every post to every member).
        let log = until_text(&first, "log", "the first page's own post", |t| {
            t.contains("hello from the first page")
        })
        .await;
        assert!(
            log.find("hello from the first page") < log.find("and back from the second"),
            "in order: {log:?}"
        );
        first.close().await.expect("the first session closes");
        second.close().await.expect("the second session closes");
    });
    let _ = app.0.kill();
}
