//! `rusm serve`, and HTTP listeners of an app.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use rusm_e2e::Component;

use crate::{components, lines, run, rusm, temp_dir, wait};

fn http(addr: &str, request_line: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{request_line} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn serve_answers_requests_with_the_component_and_counts_them() {
    let mut child = rusm()
        .args([
            "serve",
            components::HTTP_HELLO.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let (mut addr, mut metrics, mut seen) = (None, None, String::new());
    while addr.is_none() {
        let line = stderr
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("rusm serve did not come up:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("metrics at http://").nth(1) {
            metrics = Some(rest.trim_end_matches("/metrics").to_owned());
        }
        if let Some(rest) = line.split(" on http://").nth(1) {
            addr = Some(rest.split('/').next().unwrap().to_owned());
        }
    }
    let (addr, metrics) = (addr.unwrap(), metrics.expect("metrics come up first"));
    for _ in 0..3 {
        let answer = http(&addr, "GET /anything");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains("\r\n\r\n") && answer.contains("hello from rusm\n"),
            "{answer}"
        );
    }
    let text = http(&metrics, "GET /metrics");
    let listener = format!("listener=\"{addr}\"");
    assert!(
        text.contains(&format!(
            "rusm_http_requests_total{{{listener},status=\"200\"}} 3\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "rusm_http_request_duration_seconds_count{{{listener}}} 3\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "rusm_http_request_duration_seconds_bucket{{{listener},le=\"+Inf\"}} 3\n"
        )),
        "{text}"
    );
    assert!(
        text.contains("\nrusm_process_exits_total{reason=\"normal\"} 3\n"),
        "{text}"
    );

    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert_eq!(
        wait(child, Duration::from_secs(30)).code(),
        Some(0),
        "{seen}"
    );
}

#[test]
fn serve_refuses_a_component_that_is_not_an_http_handler() {
    let out = run(&[
        "serve",
        components::COUNTER.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    let errors = out.errors();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(errors[0].contains("not an HTTP handler"), "{}", errors[0]);
}

/// An app with a supervised counter and a listener on `listen` routing `/` to the
/// component `web`; returns its manifest's path.
fn listener_app(name: &str, listen: &str, web: Component) -> std::path::PathBuf {
    let dir = temp_dir(name);
    let file = dir.join("app.toml");
    let manifest = format!(
        r#"[components.counter]
path = {:?}

[components.web]
path = {:?}

[supervisor]
children = [{{ id = "counter", component = "counter" }}]

[[listeners]]
listen = "{listen}"
routes = [{{ path = "/", component = "web" }}]
"#,
        components::COUNTER.path(),
        web.path()
    );
    std::fs::write(&file, manifest).unwrap();
    file
}

#[test]
fn an_app_listener_on_a_port_in_use_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let file = listener_app("listener-in-use", &addr.to_string(), components::HTTP_HELLO);
    let out = run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    let errors = out.errors();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(
        errors[0].starts_with(&format!("rusm: error: cannot listen on {addr}: ")),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("another program uses that port"),
        "{}",
        errors[0]
    );
}

#[test]
fn an_http_handler_cannot_be_a_supervised_child() {
    let dir = temp_dir("http-child");
    let file = dir.join("app.toml");
    let manifest = format!(
        "[components.web]\npath = {:?}\n\n[supervisor]\nchildren = [{{ id = \"w\", component = \"web\" }}]\n",
        components::HTTP_HELLO.path()
    );
    std::fs::write(&file, manifest).unwrap();
    let out = run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.errors()[0].contains("an HTTP handler; HTTP handlers serve requests"),
        "{}",
        out.stderr
    );
}

/// Start `rusm serve COMPONENT --listen 127.0.0.1:0` and return it with the address it
/// serves on.
fn start_serving(component: &str) -> (std::process::Child, String) {
    let mut child = rusm()
        .args(["serve", component, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let Ok(line) = stderr.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rusm serve did not come up:\n{seen}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split(" on http://").nth(1) {
            return (child, rest.split('/').next().unwrap().to_owned());
        }
    }
}

#[test]
fn serve_serves_a_command_that_also_exports_the_http_handler() {
    // http-cli is a wasm32-wasip2 binary of the wasi:http/proxy world: it exports
    // wasi:cli/run too, which `rusm run` runs.
    let wasm = components::HTTP_CLI.path().to_str().unwrap();
    let (child, addr) = start_serving(wasm);
    let answer = http(&addr, "GET /");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("http-cli: served over http\n"), "{answer}");
    crate::interrupt(child);

    let out = run(&["run", wasm]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("http-cli: run as a command"),
        "{}",
        out.stderr
    );

    let out = run(&["inspect", wasm]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "runs in rusm: yes, as a command (rusm run) and as an HTTP handler (rusm serve)"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("world: wasi:http/proxy and wasi:cli/command"),
        "{}",
        out.stdout
    );
}

#[test]
fn an_app_listener_routes_to_a_command_that_also_exports_the_http_handler() {
    let file = listener_app("listener-http-cli", "127.0.0.1:0", components::HTTP_CLI);
    let mut child = rusm()
        .args(["run", file.to_str().unwrap(), "--keep-running"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    let addr = loop {
        let line = stderr
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the app did not come up:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    let answer = http(&addr, "GET /");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{seen}");
    assert!(answer.contains("http-cli: served over http\n"), "{answer}");
    crate::interrupt(child);
}

#[test]
fn an_app_runs_a_proxy_world_binary_as_a_worker_and_routes_to_it() {
    // One component, both roles: a temporary worker runs its main, a route serves it.
    let dir = temp_dir("app-http-cli-both");
    let file = dir.join("app.toml");
    std::fs::write(
        &file,
        format!(
            r#"[components.web]
path = {:?}

[supervisor]
children = [{{ id = "cli", component = "web", restart = "temporary" }}]

[[listeners]]
listen = "127.0.0.1:0"
routes = [{{ path = "/", component = "web" }}]
"#,
            components::HTTP_CLI.path()
        ),
    )
    .unwrap();
    let mut child = rusm()
        .args(["run", file.to_str().unwrap(), "--keep-running"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(child.stderr.take().unwrap());
    let mut seen = String::new();
    let (mut addr, mut ran) = (None, false);
    while addr.is_none() || !ran {
        let line = stderr
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the app did not come up:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        ran |= line.contains("http-cli: run as a command");
        if let Some(rest) = line.split("http://").nth(1) {
            addr = Some(rest.split('/').next().unwrap().to_owned());
        }
    }
    let answer = http(&addr.unwrap(), "GET /");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}\n{seen}");
    assert!(answer.contains("http-cli: served over http\n"), "{answer}");
    crate::interrupt(child);
}
