//! A short, deterministic robustness run: thousands of mutated and random inputs.
//! The parser must never panic, every error must point inside its input, and
//! every policy that parses must behave sanely (it is a subset of itself, it
//! explains itself, its patterns print back to themselves).

use std::path::{Path, PathBuf};
use std::time::Instant;

use rusm_policy::{HttpPattern, NamePattern, Policy, PolicyError, SocketKind, SocketPattern};

/// SplitMix64: tiny, fast and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n.max(1) as u64)).unwrap_or(0)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments that steer mutations towards interesting TOML and policy syntax.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "\n",
    "#",
    ",",
    "{",
    "}",
    ".",
    "*",
    ":",
    "/",
    "-",
    "0",
    "65535",
    "65536",
    "-1",
    "0x",
    "1e9",
    "inf",
    "nan",
    "true",
    "\\u0000",
    "\\",
    "é",
    "\u{feff}",
    "\r\n",
    "\t",
    "[net]\n",
    "[[fs.preopen]]\n",
    "tcp_connect = [\"",
    "[::1]",
    "10.0.0.0/8",
    "localhost",
    "https://",
    "*.",
    "64MiB",
    "30s",
    "self",
    "guest = \"/\"",
    "host = \"..\"",
    "mode = \"rw\"",
    "spawn = [{",
    "component = \"*\"",
    "}]",
    "vars = {",
    "inherit = [\"HOME\"]",
    "memory = ",
    "deadline = ",
    "1979-05-27T07:32:00Z",
    "=\"\"",
];

/// A valid policy that uses every section, so mutations reach deep into each.
const RICH: &str = r#"
[[fs.preopen]]
host = "data"
guest = "/data"
mode = "rw"

[net]
tcp_connect = ["127.0.0.1:8080", "10.0.0.0/8:1-1024", "localhost:*", "[::1]:443"]
tcp_bind = ["0.0.0.0:80"]
udp_bind = ["[fd00::/8]:*"]
udp_connect = ["192.168.0.0/16:53"]
dns = true

[http]
outbound = ["https://api.example.com", "http://127.0.0.1:8080", "https://*.example.com:443"]

[clocks]
wall = true
monotonic = false

[env]
vars = { KEY = "value", OTHER = "x" }
inherit = ["HOME", "LANG"]
args = ["a", "b"]

[stdio]
stdin = "inherit"
stdout = "log"
stderr = "null"

[limits]
memory = "64MiB"
table_elements = 1000
fuel = 1_000_000
deadline = "1m30s"
mailbox = 100
message_size = 65536
children = 4

[process]
spawn = [{ component = "worker", policy = "worker" }, { component = "*", policy = "self" }]
kill = "children"
register = ["counter", "cache-*"]
"#;

/// The contents of every `.toml` file in `dir`, sorted by file name.
fn files_in(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect()
}

/// Valid seeds first (the shipped policies and [`RICH`]), then the golden inputs.
fn seeds() -> (Vec<String>, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut valid = files_in(&root.join("../../capabilities"));
    valid.push(RICH.to_string());
    (valid, files_in(&root.join("tests/golden")))
}

fn char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(rng: &mut Rng, input: &str, seeds: &[String]) -> String {
    let mut s = input.to_string();
    for _ in 0..=rng.below(4) {
        let at = char_boundary(&s, rng.below(s.len() + 1));
        match rng.below(6) {
            0 => {
                let token = rng.pick::<&str>(TOKENS);
                s.insert_str(at, token);
            }
            1 => {
                let end = char_boundary(&s, (at + rng.below(12)).min(s.len()));
                s.replace_range(at..end, "");
            }
            2 => {
                let end = char_boundary(&s, (at + rng.below(6)).min(s.len()));
                let token = *rng.pick(TOKENS);
                s.replace_range(at..end, token);
            }
            3 => {
                // Splice in a line of another seed.
                let other = rng.pick(seeds);
                let lines: Vec<&str> = other.lines().collect();
                if !lines.is_empty() {
                    let line = format!("{}\n", rng.pick(&lines));
                    s.insert_str(at, &line);
                }
            }
            4 => {
                let c = char::from(u8::try_from(rng.below(128)).unwrap_or(b'x'));
                s.insert(at, c);
            }
            _ => {
                // Duplicate a slice, which repeats keys and tables.
                let end = char_boundary(&s, (at + rng.below(40)).min(s.len()));
                let piece = s[at..end].to_string();
                s.insert_str(end, &piece);
            }
        }
    }
    s
}

fn random_text(rng: &mut Rng) -> String {
    let len = rng.below(80);
    let bytes: Vec<u8> = (0..len)
        .map(|_| u8::try_from(rng.below(256)).unwrap_or(0))
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn check_error(input: &str, err: &PolicyError) {
    let shown = err.to_string();
    assert!(
        !shown.contains('\n'),
        "multi-line error {shown:?} for {input:?}"
    );
    assert!(
        shown.starts_with("fuzz.toml:"),
        "unexpected origin in {shown:?}"
    );
    let location = err.location().expect("parse errors are located");
    let lines: Vec<&str> = input.split('\n').collect();
    assert!(
        location.line >= 1 && location.line <= lines.len(),
        "line {} outside the input ({} lines): {shown:?} for {input:?}",
        location.line,
        lines.len()
    );
    let width = lines[location.line - 1].chars().count();
    assert!(
        location.column >= 1 && location.column <= width + 1,
        "column {} outside line {} (width {width}): {shown:?} for {input:?}",
        location.column,
        location.line
    );
}

fn check_policy(input: &str, policy: &Policy) {
    assert!(
        policy.is_subset_of(policy).is_ok(),
        "not a subset of itself: {input:?}"
    );
    assert!(Policy::deny_all().is_subset_of(policy).is_ok() || !policy.limits.is_empty());
    assert!(policy.explain().ends_with('\n'));
    for kind in SocketKind::ALL {
        for p in policy.net.patterns(kind) {
            assert_eq!(p.to_string().parse::<SocketPattern>().as_ref(), Ok(p));
        }
    }
    for p in &policy.http.outbound {
        assert_eq!(p.to_string().parse::<HttpPattern>().as_ref(), Ok(p));
    }
    for p in &policy.process.register {
        assert_eq!(p.to_string().parse::<NamePattern>().as_ref(), Ok(p));
    }
}

/// How many inputs the robustness run tries: a fixed count, so every run (on any
/// machine, at any load) checks the same inputs.
const CASES: usize = 50_000;

#[test]
fn mutated_and_random_inputs_never_panic_and_errors_point_inside() {
    let (valid_seeds, invalid_seeds) = seeds();
    let seeds: Vec<String> = valid_seeds.iter().chain(&invalid_seeds).cloned().collect();
    let mut rng = Rng(0x5eed_2025);
    let started = Instant::now();
    let (mut valid, mut invalid) = (0usize, 0usize);
    let origin = Path::new("fuzz.toml");
    for _ in 0..CASES {
        let input = match rng.below(10) {
            0 => random_text(&mut rng),
            1..=5 => {
                let seed = rng.pick(&valid_seeds).clone();
                mutate(&mut rng, &seed, &seeds)
            }
            _ => {
                let seed = rng.pick(&invalid_seeds).clone();
                mutate(&mut rng, &seed, &seeds)
            }
        };
        let outcome = std::panic::catch_unwind(|| Policy::parse(&input, origin));
        match outcome {
            Err(_) => panic!("the parser panicked on {input:?}"),
            Ok(Ok(policy)) => {
                valid += 1;
                check_policy(&input, &policy);
            }
            Ok(Err(err)) => {
                invalid += 1;
                check_error(&input, &err);
            }
        }
    }
    eprintln!(
        "fuzz: {CASES} cases, {valid} valid, {invalid} invalid, {:?}",
        started.elapsed()
    );
    assert_eq!(valid + invalid, CASES);
    assert!(valid > 0 && invalid > 0, "valid {valid}, invalid {invalid}");
}

#[test]
fn the_rich_seed_is_valid() {
    let policy = Policy::parse(RICH, Path::new("fuzz.toml")).unwrap();
    assert!(!policy.limits.is_empty());
    check_policy(RICH, &policy);
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    let depth = 10_000;
    for input in [
        format!("a = {}", "[".repeat(depth)),
        format!("a = {}1{}", "[".repeat(depth), "]".repeat(depth)),
        format!("a = {}", "{ b = ".repeat(depth)),
        format!("{} = 1", vec!["a"; depth].join(".")),
        format!("[{}]", vec!["net"; depth].join(".")),
    ] {
        match Policy::parse(&input, Path::new("fuzz.toml")) {
            Ok(p) => panic!("nested input parsed as {p:?}"),
            Err(e) => check_error(&input, &e),
        }
    }
}

/// Found by the coverage-guided fuzz target (`fuzz/`): a pattern error quoted the
/// bad text as written, so a newline inside it (a TOML `\n` escape) split the
/// error over two lines. Every pattern error now escapes what it quotes.
#[test]
fn pattern_errors_escape_control_characters_and_stay_on_one_line() {
    let cases = [
        // (policy source, what the error must quote, escaped)
        (
            "[http]\noutbound = [\"https://a\\nb\"]",
            r#""a\nb" is not a valid host"#,
        ),
        (
            "[http]\noutbound = [\"ft\\np://a\"]",
            r#"unsupported scheme "ft\np""#,
        ),
        ("[http]\noutbound = [\"https://a/\\n\"]", r#"remove "/\n""#),
        (
            "[http]\noutbound = [\"https://a:8\\t\"]",
            r#""8\t" is not a port"#,
        ),
        (
            "[net]\ntcp_connect = [\"a\\nb:80\"]",
            r#""a\nb" is not an IP address"#,
        ),
        (
            "[net]\ntcp_connect = [\"10.0.0.0/8\\r:80\"]",
            r#""8\r" is not a prefix length"#,
        ),
        (
            "[net]\ntcp_bind = [\"127.0.0.1:8\\n\"]",
            r#""8\n" is not a port"#,
        ),
        (
            "[limits]\nmemory = \"1\\nMiB\"",
            r#""1\nMiB" is not a size"#,
        ),
        (
            "[limits]\ndeadline = \"1\\u2028s\"",
            r#""1\u{2028}s" is not a duration"#,
        ),
        (
            "[process]\nspawn = [{ component = \"a\", policy = \"x\\ny\" }]",
            r#""x\ny" is not a policy name"#,
        ),
    ];
    for (source, quoted) in cases {
        let err = Policy::parse(source, Path::new("fuzz.toml")).unwrap_err();
        check_error(source, &err);
        let shown = err.to_string();
        assert!(
            shown.contains(quoted),
            "{shown:?} does not contain {quoted:?}"
        );
    }
}
