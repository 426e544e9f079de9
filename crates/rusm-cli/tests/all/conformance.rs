//! WASI conformance: each case of `components/wasi-conformance` (a plain WASI
//! preview 2 program, Rust std only) run under `rusm run` with the grants that
//! `wasmtime run` would need for it, spelled as its flags where it has them, and its
//! whole output compared with the exact text. Each grant is also left out, and the
//! case must then fail the way `capabilities/README.md` documents.
//!
//! The one grant `wasmtime run` needs no flag for is stdio: it hands a program its
//! own streams, rusm the host log unless a policy says `inherit`; every case runs
//! under such a policy (`stdio.toml`), plus whatever the case needs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::{Output, components, finish, rusm, temp_dir};

/// A policy giving the program rusm's own stdin, stdout and stderr, as
/// `wasmtime run` does.
const STDIO: &str = "[stdio]\nstdin = \"inherit\"\nstdout = \"inherit\"\nstderr = \"inherit\"\n";

/// A fresh directory for one test holding `stdio.toml`.
fn case_dir(name: &str) -> PathBuf {
    let dir = temp_dir(&format!("conformance-{name}"));
    std::fs::write(dir.join("stdio.toml"), STDIO).unwrap();
    dir
}

/// `rusm run wasi-conformance.wasm --policy POLICY FLAGS -- CASE...` started in
/// `dir`, with `stdin` as its standard input.
fn conformance(
    dir: &Path,
    policy: &str,
    flags: &[&str],
    case: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    let wasm = components::WASI_CONFORMANCE.path().to_str().unwrap();
    let mut command = rusm();
    command
        .current_dir(dir)
        .args(["run", wasm, "--policy", policy])
        .args(flags)
        .arg("--")
        .args(case);
    let Some(input) = stdin else {
        return finish(&mut command, Duration::from_secs(120));
    };
    command.stdin(Stdio::piped());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&input));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = crate::wait(child, Duration::from_secs(120));
    writer.join().unwrap().unwrap();
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Asserts a case passed with exactly `lines` (and `ok`) on stdout.
fn passes(out: &Output, lines: &[&str]) {
    let mut expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
    expected.push_str("ok\n");
    assert_eq!(out.stdout, expected, "stderr:\n{}", out.stderr);
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// Asserts a case failed (exit code 1) with exactly `lines` on stdout.
fn fails(out: &Output, lines: &[&str]) {
    let expected: String = lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(out.stdout, expected, "stderr:\n{}", out.stderr);
    assert_eq!(out.code(), 1, "{}", out.stderr);
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn files_in_a_read_write_preopen_named_dot() {
    // wasmtime run --dir work::. wasi-conformance.wasm fs-rw
    let dir = case_dir("fs-rw");
    std::fs::create_dir(dir.join("work")).unwrap();
    let out = conformance(&dir, "stdio.toml", &["--dir", "work::."], &["fs-rw"], None);
    passes(
        &out,
        &[
            "read ./a.txt: \"hello\"",
            "read /a.txt: \"hello world\"",
            "read a.txt: \"hello\"",
            "read a.txt: \"hey\"",
            "read a.txt after the rename refused: NotFound: No such file or directory (os error 44)",
            "read b.txt: \"hey!\"",
            "read d/./e/f.txt: \"deep\"",
            "list .: [\"b.txt\", \"c.txt\", \"d\"]",
            "size of b.txt: 4",
            "read b.txt: \"hey!\"",
            "remove d while it holds files refused: Uncategorized: Directory not empty (os error 55)",
            "read d/e/f.txt after removal refused: NotFound: No such file or directory (os error 44)",
        ],
    );
    // What the guest did is on the host, in the preopened directory only.
    assert_eq!(names(&dir.join("work")), ["b.txt"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("work/b.txt")).unwrap(),
        "hey!"
    );
    assert_eq!(names(&dir), ["stdio.toml", "work"]);

    // No preopen, no files.
    let out = conformance(&dir, "stdio.toml", &[], &["fs-rw"], None);
    fails(
        &out,
        &["write a.txt failed: NotFound: No such file or directory (os error 44)"],
    );
}

/// `ro/fixture.txt` (`fixture`) and `ro/sub/inner.txt` (`inner`) in `dir`.
fn fixtures(dir: &Path) {
    std::fs::create_dir_all(dir.join("ro/sub")).unwrap();
    std::fs::write(dir.join("ro/fixture.txt"), "fixture").unwrap();
    std::fs::write(dir.join("ro/sub/inner.txt"), "inner").unwrap();
}

#[test]
fn a_read_only_preopen_named_readonly_refuses_every_change() {
    // wasmtime run --dir ro::readonly (with read-only permissions)
    let dir = case_dir("fs-ro");
    fixtures(&dir);
    std::fs::write(
        dir.join("ro.toml"),
        format!("[[fs.preopen]]\nhost = \"ro\"\nguest = \"readonly\"\nmode = \"ro\"\n\n{STDIO}"),
    )
    .unwrap();
    let denied = "PermissionDenied: Operation not permitted (os error 63)";
    let out = conformance(&dir, "ro.toml", &[], &["fs-ro"], None);
    passes(
        &out,
        &[
            "read readonly/fixture.txt: \"fixture\"",
            "read /readonly/sub/inner.txt: \"inner\"",
            "list readonly: [\"fixture.txt\", \"sub\"]",
            &format!("create readonly/new.txt refused: {denied}"),
            &format!("open readonly/fixture.txt to append refused: {denied}"),
            &format!("open readonly/fixture.txt to truncate refused: {denied}"),
            &format!("rename readonly/fixture.txt refused: {denied}"),
            &format!("hard link readonly/fixture.txt refused: {denied}"),
            &format!("remove readonly/fixture.txt refused: {denied}"),
            &format!("create readonly/dir refused: {denied}"),
            "read readonly/fixture.txt: \"fixture\"",
        ],
    );
    assert_eq!(names(&dir.join("ro")), ["fixture.txt", "sub"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("ro/fixture.txt")).unwrap(),
        "fixture"
    );

    // The same directory granted read-write by --dir: the changes go through, so the
    // refusals above are the mode's doing.
    let out = conformance(
        &dir,
        "stdio.toml",
        &["--dir", "ro::readonly"],
        &["fs-ro"],
        None,
    );
    fails(
        &out,
        &[
            "read readonly/fixture.txt: \"fixture\"",
            "read /readonly/sub/inner.txt: \"inner\"",
            "list readonly: [\"fixture.txt\", \"sub\"]",
            "create readonly/new.txt failed: it was allowed",
        ],
    );
}

#[test]
fn several_preopens_and_names_that_lead_out_of_them() {
    // wasmtime run --dir ro::readonly --dir out::/out --dir scratch/tmp::scratch/tmp
    let dir = case_dir("fs-multi");
    fixtures(&dir);
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::create_dir_all(dir.join("scratch/tmp")).unwrap();
    std::fs::write(dir.join("outside.txt"), "outside").unwrap();
    std::fs::write(
        dir.join("multi.toml"),
        format!("[[fs.preopen]]\nhost = \"ro\"\nguest = \"readonly\"\n\n{STDIO}"),
    )
    .unwrap();
    let out = conformance(
        &dir,
        "multi.toml",
        &["--dir", "out::/out", "--dir", "scratch/tmp"],
        &["fs-multi"],
        None,
    );
    let escape = "PermissionDenied: Operation not permitted (os error 63)";
    passes(
        &out,
        &[
            "copied 7 bytes",
            "read /out/copy.txt: \"fixture\"",
            "read /out/t.txt: \"moving\"",
            "read scratch/tmp/t.txt after the move refused: NotFound: No such file or directory (os error 44)",
            &format!("move readonly/fixture.txt out refused: {escape}"),
            "read readonly/fixture.txt: \"fixture\"",
            &format!("read readonly/../../outside.txt refused: {escape}"),
            &format!("read /out/../outside.txt refused: {escape}"),
            "read /outside.txt refused: NotFound: No such file or directory (os error 44)",
            "write ../outside.txt refused: NotFound: No such file or directory (os error 44)",
        ],
    );
    assert_eq!(names(&dir.join("out")), ["copy.txt", "t.txt"]);
    assert!(names(&dir.join("scratch/tmp")).is_empty());
    assert_eq!(names(&dir.join("ro")), ["fixture.txt", "sub"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("outside.txt")).unwrap(),
        "outside"
    );
}

#[test]
fn arguments_environment_and_working_directory() {
    let dir = case_dir("cli");
    fixtures(&dir);
    // wasmtime run wasi-conformance.wasm args one "two words" ""
    let out = conformance(
        &dir,
        "stdio.toml",
        &[],
        &["args", "one", "two words", ""],
        None,
    );
    passes(&out, &["args: [\"one\", \"two words\", \"\"]"]);

    // wasmtime run --env GREETING=hi --env CONFORMANCE_HOME --env UNSET_HERE ...
    let wasm = components::WASI_CONFORMANCE.path().to_str().unwrap();
    let mut command = rusm();
    command
        .current_dir(&dir)
        .env("CONFORMANCE_HOME", "/home/conformance")
        .env_remove("UNSET_HERE")
        .args(["run", wasm, "--policy", "stdio.toml"])
        .args(["--env", "GREETING=hi", "--env", "CONFORMANCE_HOME"])
        .args(["--env", "UNSET_HERE", "--", "env"]);
    let out = finish(&mut command, Duration::from_secs(120));
    passes(
        &out,
        &[
            "env: CONFORMANCE_HOME=/home/conformance",
            "env: GREETING=hi",
        ],
    );
    // Without the flags the program sees no variable at all, rusm's included.
    let out = conformance(&dir, "stdio.toml", &[], &["env"], None);
    passes(&out, &[]);

    // The policy's [env] cwd is the program's initial working directory.
    std::fs::write(
        dir.join("cwd.toml"),
        format!("[[fs.preopen]]\nhost = \"ro\"\nguest = \"/data\"\n\n[env]\ncwd = \"/data/sub\"\n\n{STDIO}"),
    )
    .unwrap();
    let out = conformance(&dir, "cwd.toml", &[], &["cwd", "inner.txt"], None);
    passes(
        &out,
        &[
            "initial cwd: Some(\"/data/sub\")",
            "cwd: /data/sub",
            "read inner.txt: \"inner\"",
        ],
    );
    // Without it there is none, and relative names start at `/`.
    let out = conformance(
        &dir,
        "stdio.toml",
        &["--dir", "ro::/data"],
        &["cwd", "data/fixture.txt"],
        None,
    );
    passes(
        &out,
        &[
            "initial cwd: None",
            "cwd: /",
            "read data/fixture.txt: \"fixture\"",
        ],
    );
}

/// What `stdout-large N` writes: lines of 63 letters and a newline.
fn large_text(n: usize) -> String {
    (0..n)
        .map(|i| {
            if i % 64 == 63 {
                '\n'
            } else {
                char::from(b'a' + ((i / 64 + i % 64) % 26) as u8)
            }
        })
        .collect()
}

#[test]
fn standard_streams_carry_large_data_whole() {
    let dir = case_dir("stdio");
    let input = "first line\n".to_owned() + &large_text(256 * 1024);
    let out = conformance(&dir, "stdio.toml", &[], &["stdin"], Some(input.as_bytes()));
    passes(
        &out,
        &[
            &format!("stdin: {} bytes", input.len()),
            &format!("stdin: {} lines", input.lines().count()),
            "stdin: first line \"first line\"",
        ],
    );

    let mib = 1024 * 1024;
    let out = conformance(
        &dir,
        "stdio.toml",
        &[],
        &["stdout-large", &mib.to_string()],
        None,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.len(), mib + "ok\n".len());
    assert!(
        out.stdout == large_text(mib) + "ok\n",
        "1 MiB on stdout differs"
    );

    let out = conformance(
        &dir,
        "stdio.toml",
        &[],
        &["stderr-large", &mib.to_string()],
        None,
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, "ok\n");
    assert!(
        out.stderr.contains(&large_text(mib)),
        "1 MiB on stderr is not whole"
    );

    // Under the default policy the streams are not the program's: stdin is empty.
    let wasm = components::WASI_CONFORMANCE.path().to_str().unwrap();
    let out = finish(
        rusm().current_dir(&dir).args(["run", wasm, "--", "stdin"]),
        Duration::from_secs(120),
    );
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("stdin: 0 bytes"), "{}", out.stderr);
}

#[test]
fn clocks_random_and_sleep() {
    let dir = case_dir("clocks");
    // wasmtime run wasi-conformance.wasm clocks (wasmtime grants both clocks).
    let out = conformance(
        &dir,
        "stdio.toml",
        &["--wall-clock", "--monotonic-clock"],
        &["clocks"],
        None,
    );
    passes(
        &out,
        &[
            "wall clock: after 2020",
            "monotonic clock: measured a 20 ms sleep",
        ],
    );
    // A clock not granted ends the program at its first reading.
    let out = conformance(&dir, "stdio.toml", &[], &["clocks"], None);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("ended: capability denied: wasi:clocks/wall-clock"),
        "{}",
        out.stderr
    );
    let out = conformance(&dir, "stdio.toml", &["--wall-clock"], &["clocks"], None);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert_eq!(out.stdout, "wall clock: after 2020\n");
    assert!(
        out.stderr
            .contains("ended: capability denied: wasi:clocks/monotonic-clock"),
        "{}",
        out.stderr
    );

    // Sleeping and random numbers need no grant.
    let out = conformance(&dir, "stdio.toml", &[], &["sleep", "30"], None);
    passes(&out, &["slept 30 ms"]);
    let out = conformance(&dir, "stdio.toml", &[], &["random"], None);
    passes(&out, &["random: two 32-byte draws differ"]);
}

#[test]
fn sockets_and_dns_on_loopback_with_and_without_the_network() {
    let dir = case_dir("net");
    // wasmtime run -S inherit-network -S allow-ip-name-lookup ...
    let network = ["--inherit-network"];
    let out = conformance(&dir, "stdio.toml", &network, &["tcp-loopback"], None);
    passes(&out, &["tcp: echoed \"ping\" over 127.0.0.1"]);
    let out = conformance(&dir, "stdio.toml", &network, &["udp"], None);
    passes(&out, &["udp: received \"datagram\""]);
    let out = conformance(&dir, "stdio.toml", &network, &["dns"], None);
    passes(&out, &["dns: localhost is loopback"]);

    // A host listener the program connects to.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let denied = "PermissionDenied: Permission denied (os error 2)";
    let out = conformance(&dir, "stdio.toml", &[], &["tcp-connect", &addr], None);
    fails(&out, &[&format!("tcp connect to {addr} failed: {denied}")]);
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).unwrap();
        stream.write_all(b"pong").unwrap();
        got
    });
    let out = conformance(&dir, "stdio.toml", &network, &["tcp-connect", &addr], None);
    passes(&out, &[&format!("tcp: {addr} answered \"pong\"")]);
    assert_eq!(server.join().unwrap(), "ping");

    // Without the network: sockets are refused with access-denied, lookups fail.
    let out = conformance(&dir, "stdio.toml", &[], &["tcp-loopback"], None);
    fails(&out, &[&format!("tcp bind 127.0.0.1:0 failed: {denied}")]);
    let out = conformance(&dir, "stdio.toml", &[], &["udp"], None);
    fails(&out, &[&format!("udp bind 127.0.0.1:0 failed: {denied}")]);
    let out = conformance(&dir, "stdio.toml", &[], &["dns"], None);
    fails(
        &out,
        &[
            "resolve localhost failed: Uncategorized: failed to lookup address information: Non-recoverable error",
        ],
    );
}

#[test]
fn wasmtime_s_options_grant_what_they_grant_there() {
    let dir = case_dir("wasi-options");
    // `-S inherit-network` as wasmtime users type it; `tcp` and `udp` grant nothing
    // of their own.
    let out = conformance(
        &dir,
        "stdio.toml",
        &["-S", "inherit-network", "-S", "tcp,udp", "-v"],
        &["tcp-loopback"],
        None,
    );
    passes(&out, &["tcp: echoed \"ping\" over 127.0.0.1"]);
    assert!(
        out.stderr.contains(
            "rusm: -S inherit-network grants: [net] tcp_connect = [\"0.0.0.0/0:*\", \"[::/0]:*\"]"
        ),
        "{}",
        out.stderr
    );
    // As in wasmtime, `inherit-network` alone grants no name lookups, and
    // `allow-ip-name-lookup` alone grants lookups, not sockets.
    let out = conformance(
        &dir,
        "stdio.toml",
        &["-S", "inherit-network"],
        &["dns"],
        None,
    );
    fails(
        &out,
        &[
            "resolve localhost failed: Uncategorized: failed to lookup address information: Non-recoverable error",
        ],
    );
    let out = conformance(
        &dir,
        "stdio.toml",
        &["-S", "inherit-network,allow-ip-name-lookup"],
        &["dns"],
        None,
    );
    passes(&out, &["dns: localhost is loopback"]);
    let lookups = ["-S", "allow-ip-name-lookup"];
    let out = conformance(&dir, "stdio.toml", &lookups, &["dns"], None);
    passes(&out, &["dns: localhost is loopback"]);
    let out = conformance(&dir, "stdio.toml", &lookups, &["udp"], None);
    fails(
        &out,
        &["udp bind 127.0.0.1:0 failed: PermissionDenied: Permission denied (os error 2)"],
    );
    // `KEY=n` grants nothing, and neither do the interfaces rusm always links.
    for flags in [
        ["-S", "inherit-network=n"],
        ["-S", "cli-exit-with-code,tcp,udp,cli"],
    ] {
        let out = conformance(&dir, "stdio.toml", &flags, &["tcp-loopback"], None);
        fails(
            &out,
            &["tcp bind 127.0.0.1:0 failed: PermissionDenied: Permission denied (os error 2)"],
        );
    }

    // `inherit-env`: every variable of rusm's own.
    let wasm = components::WASI_CONFORMANCE.path().to_str().unwrap();
    let out = finish(
        rusm()
            .current_dir(&dir)
            .env_clear()
            .env("ONLY_THIS", "one")
            .args([
                "run",
                wasm,
                "--policy",
                "stdio.toml",
                "-S",
                "inherit-env",
                "--",
                "env",
            ]),
        Duration::from_secs(120),
    );
    passes(&out, &["env: ONLY_THIS=one"]);

    // What rusm cannot honour is refused, naming the option.
    let out = conformance(&dir, "stdio.toml", &["-S", "threads"], &["env"], None);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.errors()[0].starts_with(
            "rusm: error: -S threads: rusm does not take the WASI option \"threads\"; it takes inherit-network,"
        ),
        "{}",
        out.stderr
    );
    let out = conformance(&dir, "stdio.toml", &["-S", "tcp=maybe"], &["env"], None);
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert_eq!(
        out.errors(),
        ["rusm: error: -S tcp=maybe: expected tcp, tcp=y or tcp=n, got the value \"maybe\""]
    );
}

#[test]
fn a_policy_grants_each_socket_use_on_its_own() {
    // Where wasmtime grants the whole network, a policy grants each use by address:
    // the same cases pass with just what they use, and fail at the first use left out.
    let dir = case_dir("net-policy");
    let write = |name: &str, net: &str| {
        std::fs::write(dir.join(name), format!("[net]\n{net}\n{STDIO}")).unwrap();
    };
    write(
        "tcp.toml",
        "tcp_bind = [\"127.0.0.1:*\"]\ntcp_connect = [\"127.0.0.1:*\"]",
    );
    write("tcp-bind.toml", "tcp_bind = [\"127.0.0.1:*\"]");
    write(
        "tcp-elsewhere.toml",
        "tcp_bind = [\"127.0.0.1:*\"]\ntcp_connect = [\"127.0.0.2:*\"]",
    );
    write(
        "udp.toml",
        "udp_bind = [\"127.0.0.1:0\"]\nudp_connect = [\"127.0.0.1:*\"]",
    );
    write("udp-bind.toml", "udp_bind = [\"127.0.0.1:0\"]");
    write("dns.toml", "dns = true");
    let denied = "PermissionDenied: Permission denied (os error 2)";

    let out = conformance(&dir, "tcp.toml", &[], &["tcp-loopback"], None);
    passes(&out, &["tcp: echoed \"ping\" over 127.0.0.1"]);
    for policy in ["tcp-bind.toml", "tcp-elsewhere.toml"] {
        let out = conformance(&dir, policy, &[], &["tcp-loopback"], None);
        fails(
            &out,
            &[&format!("tcp connect to the listener failed: {denied}")],
        );
    }
    let out = conformance(&dir, "udp.toml", &[], &["udp"], None);
    passes(&out, &["udp: received \"datagram\""]);
    let out = conformance(&dir, "udp-bind.toml", &[], &["udp"], None);
    fails(&out, &[&format!("udp send failed: {denied}")]);
    let out = conformance(&dir, "dns.toml", &[], &["dns"], None);
    passes(&out, &["dns: localhost is loopback"]);
    let out = conformance(&dir, "dns.toml", &[], &["udp"], None);
    fails(&out, &[&format!("udp bind 127.0.0.1:0 failed: {denied}")]);
}
