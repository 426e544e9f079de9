//! Plain-words explanations.

use rusm_policy::Policy;

use crate::policy;

#[test]
fn the_empty_policy_explains_every_area_as_denied() {
    let text = Policy::deny_all().explain();
    let expected = "\
filesystem: no access (no preopened directories, so no paths at all)
network: no access
http: no outbound requests
clocks: no access (reading a clock ends the process with capability-denied)
env: no variables
env: no arguments
stdio: stdin null (reads see end of file)
stdio: stdout null (output is discarded)
stdio: stderr null (output is discarded)
limits: memory node default
limits: table_elements node default
limits: fuel node default
limits: deadline node default
limits: mailbox node default
limits: message_size node default
limits: children node default
limits: timers node default
limits: monitors node default
limits: links node default
limits: mailbox_bytes node default
limits: max_receive node default
limits: descendants node default
limits: spawns node default
limits: memories node default
limits: tables node default
limits: instances node default
limits: mailbox_overflow node default (drop)
process: may not spawn
process: may not kill or link to other processes
process: may not register names
process: may monitor any process (always allowed: monitors only observe)
keyvalue: no buckets
config: no values
";
    assert_eq!(text, expected);
}

#[test]
fn the_readme_shows_the_default_policy_explained() {
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../capabilities/README.md"
    ))
    .unwrap();
    let explained = Policy::embedded_default().explain();
    assert!(
        readme.contains(&format!("```text\n{explained}```")),
        "capabilities/README.md must show:\n{explained}"
    );
}

#[test]
fn a_rich_policy_has_one_line_per_grant() {
    let p = policy(
        r#"
[[fs.preopen]]
host = "/srv/data"
guest = "/data"
mode = "rw"

[[fs.preopen]]
host = "/srv/fixtures"
guest = "./readonly"

[net]
tcp_connect = ["127.0.0.1:8080", "10.0.0.0/8:1-1024", "localhost:*"]
udp_bind = ["[::1]:53"]

[http]
outbound = ["https://api.example.com", "https://*.example.org:8000-8100"]

[clocks]
monotonic = true

[env]
vars = { MODE = "prod" }
inherit = ["HOME"]
args = ["--port", "8080"]
cwd = "/data"

[stdio]
stdout = "log"
stderr = "inherit"

[limits]
memory = "64MiB"
deadline = "1m30s"
mailbox = 100
children = 4

[process]
spawn = [{ component = "worker", policy = "worker" }, { component = "tool-*" }, { component = "*", policy = "sandbox" }]
kill = "children"
register = ["counter", "cache-*"]
"#,
    );
    let text = p.explain();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "filesystem: /data is host directory /srv/data (read-write)",
        "filesystem: readonly is host directory /srv/fixtures (read-only)",
        "network: tcp connect to 127.0.0.1, port 8080",
        "network: tcp connect to 10.0.0.0/8, ports 1-1024",
        "network: tcp connect to localhost (127.0.0.0/8 and ::1), any port",
        "network: udp bind on [::1], port 53",
        "network: no dns lookups",
        "http: outbound requests to https://api.example.com (port 443)",
        "http: outbound requests to https://*.example.org:8000-8100 (ports 8000-8100)",
        "clocks: no wall clock",
        "clocks: monotonic clock (elapsed time and timers)",
        "env: variable MODE = \"prod\"",
        "env: variable HOME passed through from the host when set there",
        "env: arguments \"--port\", \"8080\"",
        "env: working directory /data",
        "stdio: stdin null (reads see end of file)",
        "stdio: stdout log (each line goes to the host log, tagged with the pid)",
        "stdio: stderr inherit (the host's own stream)",
        "limits: memory 64 MiB",
        "limits: deadline 1m30s",
        "limits: mailbox 100 messages",
        "limits: children 4 live children",
        "limits: fuel node default",
        "process: may spawn component \"worker\" under policy \"worker\"",
        "process: may spawn components starting with \"tool-\" under its own policy",
        "process: may spawn any component under policy \"sandbox\"",
        "process: may kill or link to its own children",
        "process: may register name \"counter\"",
        "process: may register names starting with \"cache-\"",
        "process: may monitor any process (always allowed: monitors only observe)",
    ] {
        assert!(
            lines.contains(&expected),
            "missing line {expected:?} in:\n{text}"
        );
    }
    for denied in [
        "network: no access",
        "http: no outbound requests",
        "process: may not spawn",
    ] {
        assert!(
            !lines.contains(&denied),
            "unexpected line {denied:?} in:\n{text}"
        );
    }
    let areas = [
        "filesystem:",
        "network:",
        "http:",
        "clocks:",
        "env:",
        "stdio:",
        "limits:",
        "process:",
        "keyvalue:",
        "config:",
    ];
    for line in &lines {
        assert!(
            areas.iter().any(|a| line.starts_with(a)),
            "line without an area: {line}"
        );
    }
}
