//! Each section grants exactly what it names and nothing adjacent.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rusm_policy::{FsMode, KillRight, MailboxOverflow, Policy, StdioMode};

use crate::policy;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn the_empty_policy_grants_nothing() {
    for p in [
        policy(""),
        policy("# only a comment\n\n"),
        Policy::deny_all(),
    ] {
        assert_eq!(p, Policy::deny_all());
        assert!(p.fs.preopens.is_empty());
        for a in ["127.0.0.1:80", "[::1]:443", "0.0.0.0:0", "10.0.0.1:1"] {
            assert!(!p.net.allows_tcp_connect(addr(a)));
            assert!(!p.net.allows_tcp_bind(addr(a)));
            assert!(!p.net.allows_udp_bind(addr(a)));
            assert!(!p.net.allows_udp_connect(addr(a)));
        }
        assert!(!p.net.dns);
        assert!(!p.http.allows("https", "example.com", None));
        assert!(!p.clocks.wall && !p.clocks.monotonic);
        assert!(p.env.resolve(|_| Some("x".into())).is_empty());
        assert!(p.env.args.is_empty());
        assert_eq!(p.stdio.stdin, StdioMode::Null);
        assert_eq!(p.stdio.stdout, StdioMode::Null);
        assert_eq!(p.stdio.stderr, StdioMode::Null);
        assert!(p.limits.is_empty());
        assert!(!p.process.may_spawn("worker", None));
        assert!(!p.process.may_kill(true));
        assert!(!p.process.may_register("counter"));
    }
    // Empty sections grant nothing either.
    let empty_sections = "[net]\n[http]\n[clocks]\n[env]\n[stdio]\n[limits]\n[process]\n[fs]\n";
    assert_eq!(policy(empty_sections), Policy::deny_all());
}

#[test]
fn preopens_keep_the_written_and_resolved_host_path() {
    let p = Policy::parse(
        "[[fs.preopen]]\nhost = \"data\"\nguest = \"/data/\"\n\n\
         [[fs.preopen]]\nhost = \"../shared/./tmp\"\nguest = \"/tmp\"\nmode = \"rw\"\n\n\
         [[fs.preopen]]\nhost = \"/srv/www\"\nguest = \"/\"\nmode = \"ro\"\n",
        Path::new("/etc/rusm/capabilities/web.toml"),
    )
    .unwrap();
    let [data, tmp, www] = &p.fs.preopens[..] else {
        panic!("three preopens expected: {:?}", p.fs.preopens)
    };
    assert_eq!(data.host, Path::new("data"));
    assert_eq!(data.host_resolved, Path::new("/etc/rusm/capabilities/data"));
    assert_eq!(data.guest, "/data");
    assert_eq!(data.mode, FsMode::ReadOnly);
    assert_eq!(tmp.host, Path::new("../shared/./tmp"));
    assert_eq!(tmp.host_resolved, Path::new("/etc/rusm/shared/tmp"));
    assert_eq!(tmp.mode, FsMode::ReadWrite);
    assert_eq!(www.host_resolved, Path::new("/srv/www"));
    assert_eq!(www.guest, "/");
    assert_eq!(
        p.fs.preopen_at("/tmp").map(|p| p.mode),
        Some(FsMode::ReadWrite)
    );
    assert!(p.fs.preopen_at("/etc").is_none());
}

#[test]
fn guest_names_may_be_relative_as_wasmtime_takes_them() {
    let p = Policy::parse(
        "[[fs.preopen]]\nhost = \"work\"\nguest = \"./\"\nmode = \"rw\"\n\n\
         [[fs.preopen]]\nhost = \"ro\"\nguest = \"./readonly/\"\n\n\
         [[fs.preopen]]\nhost = \"deep\"\nguest = \"a//b/./c\"\n\n\
         [[fs.preopen]]\nhost = \"abs\"\nguest = \"/readonly\"\n",
        Path::new("/etc/rusm/capabilities/p.toml"),
    )
    .unwrap();
    let guests: Vec<&str> = p.fs.preopens.iter().map(|p| p.guest.as_str()).collect();
    assert_eq!(guests, [".", "readonly", "a/b/c", "/readonly"]);
    assert_eq!(
        p.fs.preopens[0].host_resolved,
        Path::new("/etc/rusm/capabilities/work")
    );
    assert_eq!(
        p.fs.preopen_at(".").map(|p| p.mode),
        Some(FsMode::ReadWrite)
    );
    assert_eq!(
        p.fs.preopen_at("readonly/").map(|p| p.mode),
        Some(FsMode::ReadOnly)
    );

    // The same name twice is refused, whichever way it is written.
    let err = Policy::parse(
        "[[fs.preopen]]\nhost = \"a\"\nguest = \".\"\n\n[[fs.preopen]]\nhost = \"b\"\nguest = \"./\"\n",
        Path::new("p.toml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "p.toml:7:9: duplicate guest path \".\" in [[fs.preopen]]; it is already preopened at line 3"
    );
    // `..` stays refused in relative names too.
    let err = Policy::parse(
        "[[fs.preopen]]\nhost = \"a\"\nguest = \"../etc\"\n",
        Path::new("p.toml"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("contains \"..\""), "{err}");
}

#[test]
fn the_working_directory_is_a_normalised_guest_path() {
    let p = policy("[env]\ncwd = \"/data/./work/\"\n");
    assert_eq!(p.env.cwd.as_deref(), Some("/data/work"));
    assert!(!p.env.is_empty());
    assert_eq!(policy("[env]\ncwd = \".\"\n").env.cwd.as_deref(), Some("."));
    assert_eq!(policy("").env.cwd, None);
    for (source, expected) in [
        (
            "[env]\ncwd = \"\"\n",
            "p.toml:2:7: empty working directory in [env] cwd; give a guest path, e.g. cwd = \"/data\"",
        ),
        (
            "[env]\ncwd = \"/a/../b\"\n",
            "p.toml:2:7: working directory \"/a/../b\" in [env] cwd contains \"..\"; write the path without \"..\" components",
        ),
        (
            "[env]\ncwd = 1\n",
            "p.toml:2:7: wrong type for \"cwd\" in [env]: expected a string (a guest path), found an integer",
        ),
    ] {
        let err = Policy::parse(source, Path::new("p.toml")).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
}

#[test]
fn from_file_resolves_relative_hosts_against_the_file_directory() {
    let dir = std::env::temp_dir().join(format!("rusm-policy-fromfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.toml");
    std::fs::write(
        &file,
        "[[fs.preopen]]\nhost = \"data\"\nguest = \"/data\"\n",
    )
    .unwrap();
    let p = Policy::from_file(&file).unwrap();
    assert_eq!(p.fs.preopens[0].host_resolved, dir.join("data"));
    assert!(p.fs.preopens[0].host_resolved.is_absolute());

    std::fs::write(&file, b"[env]\nargs = [\"ok\"]\nvars = { A = \"\xff\" }\n").unwrap();
    let err = Policy::from_file(&file).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3:15: the file is not valid UTF-8; policy files are UTF-8 text",
            file.display()
        )
    );

    let missing = dir.join("missing.toml");
    let err = Policy::from_file(&missing).unwrap_err();
    assert!(err.location().is_none());
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read policy file: ", missing.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tcp_connect_grants_exactly_the_named_sockets() {
    let p = policy(
        "[net]\ntcp_connect = [\"127.0.0.1:8080\", \"10.0.0.0/8:1-1024\", \"localhost:*\", \"[::1]:443\", \"[fd00::/16]:53\"]\n",
    );
    let net = &p.net;
    assert!(net.allows_tcp_connect(addr("127.0.0.1:8080")));
    assert!(
        net.allows_tcp_connect(addr("127.0.0.1:9")),
        "localhost:* covers the loopback block"
    );
    assert!(net.allows_tcp_connect(addr("127.9.9.9:65535")));
    assert!(!net.allows_tcp_connect(addr("128.0.0.1:8080")));
    assert!(net.allows_tcp_connect(addr("10.0.0.1:1")));
    assert!(net.allows_tcp_connect(addr("10.255.255.255:1024")));
    assert!(!net.allows_tcp_connect(addr("10.0.0.1:1025")));
    assert!(!net.allows_tcp_connect(addr("10.0.0.1:0")));
    assert!(!net.allows_tcp_connect(addr("11.0.0.1:80")));
    assert!(!net.allows_tcp_connect(addr("9.255.255.255:80")));
    assert!(net.allows_tcp_connect(addr("[::1]:443")));
    assert!(
        net.allows_tcp_connect(addr("[::1]:22")),
        "localhost:* covers ::1 on any port"
    );
    assert!(!net.allows_tcp_connect(addr("[::2]:443")));
    assert!(net.allows_tcp_connect(addr("[fd00:1::1]:53")));
    assert!(!net.allows_tcp_connect(addr("[fd01::1]:53")));
    assert!(!net.allows_tcp_connect(addr("[fd00::1]:54")));
    // A mapped address is its IPv4 address: inside 10/8, outside IPv6 grants.
    assert!(net.allows_tcp_connect(addr("[::ffff:10.1.1.1]:80")));
    assert!(!net.allows_tcp_connect(addr("[::ffff:11.1.1.1]:80")));
    // The other kinds are untouched.
    assert!(!net.allows_tcp_bind(addr("127.0.0.1:8080")));
    assert!(!net.allows_udp_bind(addr("127.0.0.1:8080")));
    assert!(!net.allows_udp_connect(addr("127.0.0.1:8080")));
    assert!(!net.dns);
}

#[test]
fn bind_and_udp_grants_are_separate() {
    let p = policy(
        "[net]\ntcp_bind = [\"127.0.0.1:0-0\", \"0.0.0.0:8080\"]\nudp_bind = [\"[::]:5353\"]\nudp_connect = [\"192.168.1.0/24:53\"]\ndns = true\n",
    );
    let net = &p.net;
    assert!(net.allows_tcp_bind(addr("127.0.0.1:0")));
    assert!(!net.allows_tcp_bind(addr("127.0.0.1:1")));
    assert!(net.allows_tcp_bind(addr("0.0.0.0:8080")));
    assert!(
        !net.allows_tcp_bind(addr("1.2.3.4:8080")),
        "0.0.0.0 is one address, not a range"
    );
    assert!(!net.allows_tcp_bind(addr("[::]:8080")));
    assert!(net.allows_udp_bind(addr("[::]:5353")));
    assert!(!net.allows_udp_bind(addr("0.0.0.0:5353")));
    assert!(!net.allows_tcp_bind(addr("[::]:5353")));
    assert!(net.allows_udp_connect(addr("192.168.1.255:53")));
    assert!(!net.allows_udp_connect(addr("192.168.2.1:53")));
    assert!(!net.allows_tcp_connect(addr("192.168.1.1:53")));
    assert!(net.dns);
}

#[test]
fn http_outbound_grants_exactly_the_named_origins() {
    let p = policy(
        "[http]\noutbound = [\"https://api.example.com\", \"http://127.0.0.1:8080\", \"https://*.example.org:443\", \"http://[::1]:*\"]\n",
    );
    let http = &p.http;
    assert!(http.allows("https", "api.example.com", None));
    assert!(http.allows("https", "api.example.com", Some(443)));
    assert!(!http.allows("https", "api.example.com", Some(444)));
    assert!(!http.allows("http", "api.example.com", None));
    assert!(!http.allows("https", "www.example.com", None));
    assert!(!http.allows("https", "example.com", None));
    assert!(!http.allows("https", "api.example.com.attacker.net", None));
    assert!(http.allows("http", "127.0.0.1", Some(8080)));
    assert!(!http.allows("http", "127.0.0.1", None));
    assert!(!http.allows("https", "127.0.0.1", Some(8080)));
    assert!(!http.allows("http", "localhost", Some(8080)));
    assert!(http.allows("https", "a.example.org", None));
    assert!(http.allows("https", "a.b.example.org", Some(443)));
    assert!(!http.allows("https", "example.org", None));
    assert!(!http.allows("https", "evilexample.org", None));
    assert!(!http.allows("https", "a.example.org", Some(80)));
    assert!(http.allows("http", "[::1]", Some(1)));
    assert!(http.allows("http", "::1", None));
    assert!(!http.allows("https", "[::1]", None));
    assert!(!http.allows("gopher", "api.example.com", None));
}

#[test]
fn clocks_are_granted_one_by_one() {
    let p = policy("[clocks]\nmonotonic = true\n");
    assert!(p.clocks.monotonic);
    assert!(!p.clocks.wall);
    let p = policy("[clocks]\nwall = true\nmonotonic = false\n");
    assert!(p.clocks.wall);
    assert!(!p.clocks.monotonic);
}

#[test]
fn env_resolves_explicit_and_inherited_variables_only() {
    let p = policy(
        "[env]\nvars = { LOG_LEVEL = \"info\", EMPTY = \"\" }\ninherit = [\"HOME\", \"LANG\", \"HOME\"]\nargs = [\"--port\", \"8080\"]\n",
    );
    let host = |name: &str| match name {
        "HOME" => Some("/home/rusm".to_string()),
        "PATH" | "LOG_LEVEL" => Some("host value".to_string()),
        _ => None,
    };
    assert_eq!(
        p.env.resolve(host),
        vec![
            ("EMPTY".to_string(), String::new()),
            ("HOME".to_string(), "/home/rusm".to_string()),
            ("LOG_LEVEL".to_string(), "info".to_string()),
        ]
    );
    assert_eq!(p.env.inherit, ["HOME", "LANG"]);
    assert_eq!(p.env.args, ["--port", "8080"]);
}

#[test]
fn stdio_modes_are_read_per_stream() {
    let p = policy("[stdio]\nstdin = \"inherit\"\nstdout = \"log\"\n");
    assert_eq!(p.stdio.stdin, StdioMode::Inherit);
    assert_eq!(p.stdio.stdout, StdioMode::Log);
    assert_eq!(p.stdio.stderr, StdioMode::Null);
}

#[test]
fn limits_accept_integers_sizes_and_durations() {
    let p = policy(
        "[limits]\nmemory = \"64MiB\"\ntable_elements = 10_000\nfuel = 0x10000\ndeadline = \"1m30s\"\nmailbox = 100\nmessage_size = 65536\nchildren = 8\n",
    );
    let l = p.limits;
    assert_eq!(l.memory, Some(64 << 20));
    assert_eq!(l.table_elements, Some(10_000));
    assert_eq!(l.fuel, Some(0x10000));
    assert_eq!(l.deadline, Some(Duration::from_secs(90)));
    assert_eq!(l.mailbox, Some(100));
    assert_eq!(l.message_size, Some(65536));
    assert_eq!(l.children, Some(8));
    let p = policy("[limits]\nmemory = 1048576\nmessage_size = \"1 GiB\"\n");
    assert_eq!(p.limits.memory, Some(1 << 20));
    assert_eq!(p.limits.message_size, Some(1 << 30));
    assert_eq!(
        p.limits.deadline, None,
        "absent limits are the node's default"
    );
    assert_eq!(p.limits.mailbox, None);
}

#[test]
fn limits_on_component_counts_and_the_mailbox_overflow_choice() {
    let p = policy(
        "[limits]\nmemories = 2\ntables = 4\ninstances = 8\nmailbox_overflow = \"refuse\"\n",
    );
    assert_eq!(
        (p.limits.memories, p.limits.tables, p.limits.instances),
        (Some(2), Some(4), Some(8))
    );
    assert_eq!(p.limits.mailbox_overflow, Some(MailboxOverflow::Refuse));
    let drop = policy("[limits]\nmailbox_overflow = \"drop\"\n");
    assert_eq!(drop.limits.mailbox_overflow, Some(MailboxOverflow::Drop));
    assert_eq!(policy("").limits.mailbox_overflow, None);
    assert_eq!(
        crate::error("[limits]\nmailbox_overflow = \"block\"\n"),
        "capabilities/test.toml:2:20: invalid value \"block\" for \"mailbox_overflow\" in [limits]; expected one of: drop, refuse"
    );
    assert!(
        crate::error("[limits]\nmemories = 0\n").starts_with("capabilities/test.toml:2:12: "),
        "{}",
        crate::error("[limits]\nmemories = 0\n")
    );
    // A child may not leave a count its parent caps to the node's default, and the
    // overflow choice grants nothing.
    let parent = policy("[limits]\ntables = 4\nmailbox_overflow = \"refuse\"\n");
    assert!(
        policy("[limits]\ntables = 4\n")
            .is_subset_of(&parent)
            .is_ok()
    );
    assert!(
        policy("[limits]\ntables = 5\n")
            .is_subset_of(&parent)
            .is_err()
    );
    assert!(policy("").is_subset_of(&parent).is_err());
}

#[test]
fn process_rights_grant_exactly_the_named_spawns_kills_and_names() {
    let p = policy(
        "[process]\nspawn = [{ component = \"worker\", policy = \"worker\" }, { component = \"tool-*\" }, { component = \"*\", policy = \"sandbox\" }]\nkill = \"children\"\nregister = [\"counter\", \"cache-*\"]\n",
    );
    let pr = &p.process;
    assert!(pr.may_spawn("worker", Some("worker")));
    assert!(
        !pr.may_spawn("worker", None),
        "worker under self is not granted"
    );
    assert!(!pr.may_spawn("worker2", Some("worker")));
    assert!(pr.may_spawn("tool-a", None));
    assert!(pr.may_spawn("tool-a", Some("self")));
    assert!(!pr.may_spawn("tool-a", Some("worker")));
    assert!(!pr.may_spawn("tool", None));
    assert!(pr.may_spawn("anything", Some("sandbox")));
    assert!(!pr.may_spawn("anything", Some("admin")));
    assert_eq!(pr.kill, KillRight::Children);
    assert!(pr.may_kill(true));
    assert!(!pr.may_kill(false));
    assert!(pr.may_register("counter"));
    assert!(!pr.may_register("counters"));
    assert!(!pr.may_register("count"));
    assert!(pr.may_register("cache-users"));
    assert!(!pr.may_register("cache"));
    assert!(
        policy("[process]\nkill = \"any\"\n")
            .process
            .may_kill(false)
    );
    assert!(
        !policy("[process]\nkill = \"none\"\n")
            .process
            .may_kill(true)
    );
}

#[test]
fn spawn_rules_remember_where_they_were_written() {
    let p = policy("[process]\nspawn = [\n  { component = \"a\" },\n  { component = \"b\" },\n]\n");
    let lines: Vec<_> = p
        .process
        .spawn
        .iter()
        .map(|r| r.location.map(|l| (l.line, l.column)))
        .collect();
    assert_eq!(lines, [Some((3, 3)), Some((4, 3))]);
}

#[test]
fn array_of_tables_and_inline_forms_are_the_same_policy() {
    let a = policy("[[process.spawn]]\ncomponent = \"w\"\npolicy = \"w\"\n");
    let b = policy("process = { spawn = [{ component = \"w\", policy = \"w\" }] }\n");
    assert_eq!(a, b);
    let c = policy("fs.preopen = [{ host = \"d\", guest = \"/d\" }]\n");
    let d = policy("[[fs.preopen]]\nhost = \"d\"\nguest = \"/d\"\nmode = \"ro\"\n");
    assert_eq!(c, d);
}
