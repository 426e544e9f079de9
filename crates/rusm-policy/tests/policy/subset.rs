//! Attenuation: child ⊆ parent, and every kind of escalation is caught.

use std::path::Path;

use rusm_policy::{Escalation, Policy};

use crate::policy;

/// The escalations of `child` under `parent`, as displayed.
fn escalations(child: &str, parent: &str) -> Vec<String> {
    policy(child)
        .escalations(&policy(parent))
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn assert_subset(child: &str, parent: &str) {
    let e = escalations(child, parent);
    assert!(
        e.is_empty(),
        "expected a subset, got {e:?}\nchild:\n{child}\nparent:\n{parent}"
    );
}

fn assert_escalation(child: &str, parent: &str, expected: &str) {
    assert_eq!(
        escalations(child, parent),
        [expected],
        "child:\n{child}\nparent:\n{parent}"
    );
}

const RICH: &str = r#"
[[fs.preopen]]
host = "/srv/data"
guest = "/data"
mode = "rw"

[[fs.preopen]]
host = "/srv/config"
guest = "/config"

[net]
tcp_connect = ["10.0.0.0/8:1-1024", "localhost:*"]
tcp_bind = ["127.0.0.1:8080"]
udp_connect = ["[fd00::/8]:53"]
dns = true

[http]
outbound = ["https://*.example.com", "http://127.0.0.1:8000-8100"]

[clocks]
wall = true
monotonic = true

[env]
vars = { MODE = "prod" }
inherit = ["HOME"]
args = ["--serve"]

[stdio]
stdout = "log"
stderr = "inherit"

[limits]
memory = "128MiB"
deadline = "1h"
mailbox = 1000

[process]
spawn = [{ component = "worker-*", policy = "worker" }, { component = "*", policy = "self" }]
kill = "children"
register = ["cache-*", "front"]
"#;

#[test]
fn equal_policies_are_subsets_of_each_other() {
    assert_subset(RICH, RICH);
    assert_subset("", "");
    assert!(policy(RICH).is_subset_of(&policy(RICH)).is_ok());
}

#[test]
fn the_empty_policy_is_a_subset_of_anything_without_limits() {
    assert_subset("", "[net]\ndns = true\n");
    assert!(Policy::deny_all().is_subset_of(&Policy::deny_all()).is_ok());
    // A parent's limits bind the child even when the child is otherwise empty.
    assert_eq!(
        escalations("", RICH),
        [
            "limit memory is left to the node's default, but the parent limits it to 128 MiB",
            "limit deadline is left to the node's default, but the parent limits it to 1h",
            "limit mailbox is left to the node's default, but the parent limits it to 1000",
        ]
    );
}

#[test]
fn a_strictly_smaller_policy_is_a_subset() {
    let child = r#"
[[fs.preopen]]
host = "/srv/data/cache"
guest = "/cache"
mode = "ro"

[net]
tcp_connect = ["10.1.0.0/16:80-443", "127.0.0.1:9000", "[::1]:1"]
udp_connect = ["[fd12::1]:53"]

[http]
outbound = ["https://api.example.com", "https://*.cdn.example.com", "http://127.0.0.1:8050"]

[clocks]
monotonic = true

[env]
vars = { MODE = "prod" }
args = ["anything", "goes"]

[stdio]
stderr = "log"

[limits]
memory = "64MiB"
deadline = "30s"
mailbox = 1000
fuel = 1000000

[process]
spawn = [{ component = "worker-a", policy = "worker" }, { component = "tool", policy = "self" }]
kill = "none"
register = ["cache-users-*", "front"]
"#;
    assert_subset(child, RICH);
    // And not the other way round.
    assert!(!escalations(RICH, child).is_empty());
}

#[test]
fn preopen_escalations() {
    let parent = "[[fs.preopen]]\nhost = \"/srv/data\"\nguest = \"/data\"\nmode = \"ro\"\n";
    assert_subset(
        "[[fs.preopen]]\nhost = \"/srv/data/x\"\nguest = \"/anywhere\"\n",
        parent,
    );
    assert_escalation(
        "[[fs.preopen]]\nhost = \"/srv/data\"\nguest = \"/data\"\nmode = \"rw\"\n",
        parent,
        "preopen /srv/data (rw) at /data is not inside any of the parent's preopens with mode rw or stronger",
    );
    assert_escalation(
        "[[fs.preopen]]\nhost = \"/srv/database\"\nguest = \"/db\"\n",
        parent,
        "preopen /srv/database (ro) at /db is not inside any of the parent's preopens with mode ro or stronger",
    );
    assert_escalation(
        "[[fs.preopen]]\nhost = \"/srv/data/../secrets\"\nguest = \"/data\"\n",
        parent,
        "preopen /srv/secrets (ro) at /data is not inside any of the parent's preopens with mode ro or stronger",
    );
    // Relative paths compare after resolution against each file's directory.
    let child = Policy::parse(
        "[[fs.preopen]]\nhost = \"../data/in\"\nguest = \"/in\"\n",
        Path::new("/srv/caps/child.toml"),
    )
    .unwrap();
    assert!(child.is_subset_of(&policy(parent)).is_ok());
}

#[test]
fn relative_guest_names_are_labels_the_subset_rule_ignores() {
    let parent = "[[fs.preopen]]\nhost = \"/srv/data\"\nguest = \".\"\nmode = \"ro\"\n";
    // Inside the parent's host directory: covered, whatever name the guest sees.
    assert_subset(
        "[[fs.preopen]]\nhost = \"/srv/data/x\"\nguest = \"readonly\"\n",
        parent,
    );
    assert_subset(
        "[[fs.preopen]]\nhost = \"/srv/data\"\nguest = \"/data\"\n",
        parent,
    );
    // The same name for another host directory grants that directory: refused.
    assert_escalation(
        "[[fs.preopen]]\nhost = \"/srv/secrets\"\nguest = \".\"\n",
        parent,
        "preopen /srv/secrets (ro) at . is not inside any of the parent's preopens with mode ro or stronger",
    );
    assert_escalation(
        "[[fs.preopen]]\nhost = \"/srv/data\"\nguest = \"a/b\"\nmode = \"rw\"\n",
        parent,
        "preopen /srv/data (rw) at a/b is not inside any of the parent's preopens with mode rw or stronger",
    );
}

#[test]
fn the_working_directory_carries_no_authority() {
    // Like arguments, cwd is not compared: it names a path and opens nothing.
    assert_subset("[env]\ncwd = \"/etc\"\n", "");
    assert_subset("[env]\ncwd = \"/a\"\n", "[env]\ncwd = \"/b\"\n");
}

#[test]
fn socket_escalations() {
    let parent = "[net]\ntcp_connect = [\"10.0.0.0/8:1-1024\"]\nudp_bind = [\"127.0.0.1:5000\"]\n";
    assert_subset("[net]\ntcp_connect = [\"10.9.0.0/16:80\"]\n", parent);
    assert_escalation(
        "[net]\ntcp_connect = [\"10.0.0.0/8:*\"]\n",
        parent,
        "tcp_connect 10.0.0.0/8:* is not covered by the parent's grants",
    );
    assert_escalation(
        "[net]\ntcp_connect = [\"10.0.0.0/7:80\"]\n",
        parent,
        "tcp_connect 10.0.0.0/7:80 is not covered by the parent's grants",
    );
    assert_escalation(
        "[net]\ntcp_connect = [\"[::1]:80\"]\n",
        parent,
        "tcp_connect [::1]:80 is not covered by the parent's grants",
    );
    assert_escalation(
        "[net]\ntcp_connect = [\"localhost:80\"]\n",
        "[net]\ntcp_connect = [\"127.0.0.0/8:80\"]\n",
        "tcp_connect localhost:80 is not covered by the parent's grants",
    );
    // The same address under another kind is not covered.
    assert_escalation(
        "[net]\ntcp_bind = [\"127.0.0.1:5000\"]\n",
        parent,
        "tcp_bind 127.0.0.1:5000 is not covered by the parent's grants",
    );
    assert_escalation(
        "[net]\nudp_connect = [\"10.0.0.1:53\"]\n",
        parent,
        "udp_connect 10.0.0.1:53 is not covered by the parent's grants",
    );
    assert_escalation(
        "[net]\ndns = true\n",
        parent,
        "dns is granted but the parent denies it",
    );
}

#[test]
fn http_escalations() {
    let parent =
        "[http]\noutbound = [\"https://*.example.com\", \"http://api.example.net:8080\"]\n";
    assert_subset(
        "[http]\noutbound = [\"https://a.b.example.com\", \"https://*.x.example.com:443\"]\n",
        parent,
    );
    for (child, shown) in [
        ("https://example.com", "https://example.com"),
        ("https://evilexample.com", "https://evilexample.com"),
        ("http://a.example.com", "http://a.example.com"),
        ("https://a.example.com:8443", "https://a.example.com:8443"),
        ("http://api.example.net", "http://api.example.net"),
        ("http://api.example.net:*", "http://api.example.net:*"),
    ] {
        assert_escalation(
            &format!("[http]\noutbound = [\"{child}\"]\n"),
            parent,
            &format!("http outbound {shown} is not covered by the parent's grants"),
        );
    }
}

#[test]
fn clock_escalations() {
    let parent = "[clocks]\nmonotonic = true\n";
    assert_subset("[clocks]\nmonotonic = true\n", parent);
    assert_escalation(
        "[clocks]\nwall = true\n",
        parent,
        "the wall clock is granted but the parent denies it",
    );
    assert_escalation(
        "[clocks]\nmonotonic = true\n",
        "",
        "the monotonic clock is granted but the parent denies it",
    );
}

#[test]
fn env_escalations() {
    let parent = "[env]\nvars = { MODE = \"prod\" }\ninherit = [\"HOME\"]\nargs = [\"a\"]\n";
    assert_subset(
        "[env]\nvars = { MODE = \"prod\" }\nargs = [\"b\", \"c\"]\n",
        parent,
    );
    assert_escalation(
        "[env]\nvars = { MODE = \"dev\" }\n",
        parent,
        "env var MODE is not set by the parent to the same value",
    );
    assert_escalation(
        "[env]\nvars = { HOME = \"/root\" }\n",
        parent,
        "env var HOME is not set by the parent to the same value",
    );
    assert_escalation(
        "[env]\ninherit = [\"MODE\"]\n",
        parent,
        "env inherit MODE is not inherited by the parent",
    );
}

#[test]
fn stdio_escalations() {
    let parent = "[stdio]\nstdout = \"log\"\n";
    assert_subset("[stdio]\nstdout = \"null\"\n", parent);
    assert_subset("[stdio]\nstdout = \"log\"\n", parent);
    assert_escalation(
        "[stdio]\nstdout = \"inherit\"\n",
        parent,
        "stdout \"inherit\" exceeds the parent's \"log\"",
    );
    assert_escalation(
        "[stdio]\nstdin = \"inherit\"\n",
        parent,
        "stdin \"inherit\" exceeds the parent's \"null\"",
    );
    assert_escalation(
        "[stdio]\nstderr = \"log\"\n",
        parent,
        "stderr \"log\" exceeds the parent's \"null\"",
    );
}

#[test]
fn limit_escalations() {
    let parent = "[limits]\nmemory = \"64MiB\"\ndeadline = \"30s\"\n";
    assert_subset(
        "[limits]\nmemory = \"64MiB\"\ndeadline = \"29s\"\nmailbox = 5\n",
        parent,
    );
    assert_escalation(
        "[limits]\nmemory = 67108865\ndeadline = \"30s\"\n",
        parent,
        "limit memory 67108865 bytes exceeds the parent's 64 MiB",
    );
    assert_escalation(
        "[limits]\nmemory = \"1MiB\"\ndeadline = \"1m\"\n",
        parent,
        "limit deadline 1m exceeds the parent's 30s",
    );
    assert_escalation(
        "[limits]\nmemory = \"1MiB\"\n",
        parent,
        "limit deadline is left to the node's default, but the parent limits it to 30s",
    );
    // Where the parent sets nothing, the child may set anything.
    assert_subset(
        "[limits]\nmemory = \"1MiB\"\ndeadline = \"1s\"\nfuel = 99999999999\n",
        parent,
    );
}

#[test]
fn process_escalations() {
    let parent = "[process]\nspawn = [{ component = \"worker-*\", policy = \"worker\" }, { component = \"tool\" }]\nkill = \"children\"\nregister = [\"cache-*\"]\n";
    assert_subset(
        "[process]\nspawn = [{ component = \"worker-1\", policy = \"worker\" }, { component = \"tool\", policy = \"self\" }]\nkill = \"none\"\nregister = [\"cache-a\", \"cache-b-*\"]\n",
        parent,
    );
    assert_escalation(
        "[process]\nspawn = [{ component = \"worker-1\", policy = \"admin\" }]\n",
        parent,
        "spawn { component = \"worker-1\", policy = \"admin\" } is not covered by the parent's spawn rules",
    );
    assert_escalation(
        "[process]\nspawn = [{ component = \"*\", policy = \"worker\" }]\n",
        parent,
        "spawn { component = \"*\", policy = \"worker\" } is not covered by the parent's spawn rules",
    );
    assert_escalation(
        "[process]\nspawn = [{ component = \"worker-1\" }]\n",
        parent,
        "spawn { component = \"worker-1\", policy = \"self\" } is not covered by the parent's spawn rules",
    );
    assert_escalation(
        "[process]\nkill = \"any\"\n",
        parent,
        "kill \"any\" exceeds the parent's \"children\"",
    );
    assert_escalation(
        "[process]\nregister = [\"cache\"]\n",
        parent,
        "register \"cache\" is not covered by the parent's register names",
    );
    assert_escalation(
        "[process]\nregister = [\"*\"]\n",
        parent,
        "register \"*\" is not covered by the parent's register names",
    );
}

#[test]
fn is_subset_of_reports_the_first_escalation_in_section_order() {
    let child = "[net]\ndns = true\n[clocks]\nwall = true\n[process]\nkill = \"any\"\n";
    let err = policy(child).is_subset_of(&Policy::deny_all()).unwrap_err();
    assert_eq!(err, Escalation::Dns);
    assert_eq!(policy(child).escalations(&Policy::deny_all()).len(), 3);
}
