//! `rusm new NAME`: a guest actor crate that builds with `cargo build --target
//! wasm32-wasip2` or `cargo component build` and runs with `rusm run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

/// Where this rusm's own guest SDK sources are.
fn bundled_guest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("rusm-guest")
}

/// Whether `name` can be a cargo package name and a directory name.
fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Create the crate `name` inside `dir`.
///
/// # Errors
/// A bad name, an existing directory, a missing guest SDK, or a file that cannot be
/// written.
pub fn new_crate(name: &str, dir: &Path, guest: Option<&Path>) -> anyhow::Result<ExitCode> {
    if !valid_name(name) {
        bail!(
            "{name:?} is not a valid crate name; use ASCII letters, digits, - and _, starting with a letter"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; choose another name or remove it",
            root.display()
        );
    }
    let guest = guest.map_or_else(bundled_guest, Path::to_path_buf);
    let guest = std::fs::canonicalize(&guest)
        .ok()
        .filter(|g| g.join("Cargo.toml").is_file())
        .with_context(|| {
            format!(
                "cannot find the rusm-guest crate at {}; pass --guest PATH/TO/crates/rusm-guest",
                guest.display()
            )
        })?;
    let guest_text = guest
        .to_str()
        .context("the rusm-guest path is not valid UTF-8")?;
    let files = [
        (PathBuf::from("Cargo.toml"), cargo_toml(name, guest_text)),
        (PathBuf::from("src/lib.rs"), lib_rs(name)),
        (PathBuf::from("README.md"), readme(name)),
        (PathBuf::from(".gitignore"), "/target\n".to_owned()),
    ];
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("cannot create {}", root.display()))?;
    for (file, text) in files {
        let path = root.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let snake = name.replace('-', "_");
    outln!("created the actor crate {}", root.display());
    outln!("build and run it:");
    outln!("  cd {}", root.display());
    outln!("  cargo build --release --target wasm32-wasip2");
    outln!("  rusm run target/wasm32-wasip2/release/{snake}.wasm --init world");
    Ok(ExitCode::SUCCESS)
}

fn cargo_toml(name: &str, guest: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A component is a cdylib; `cargo build --target wasm32-wasip2` and
# `cargo component build` both turn it into a WASI preview 2 component.
crate-type = ["cdylib"]

[dependencies]
rusm-guest = {{ path = {guest:?} }}

[profile.release]
opt-level = "s"
lto = true
strip = true
# A Rust panic becomes a wasm trap, which rusm reports as a crash.
panic = "abort"

# A workspace of its own, so the crate builds wherever it was created.
[workspace]
"#
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        r#"//! `{name}`: a rusm actor.
//!
//! Its init data is a name to greet. It prints a greeting (which goes to the host log
//! under the default policy), then answers messages for a while: a data message whose
//! payload starts with the sender's pid (8 bytes, little-endian) is sent back to it
//! with tag + 1. It returns, ending normally, after one second without messages.

use std::time::Duration;

use rusm_guest::{{Message, Pid, receive_timeout, self_pid, send}};

fn run(init: Vec<u8>) -> Result<(), String> {{
    let who = String::from_utf8(init).map_err(|_| "{name}: the init data is not UTF-8")?;
    let who = if who.is_empty() {{ "world" }} else {{ who.as_str() }};
    println!("hello, {{who}}, from {name} {{}}", self_pid());
    while let Some(message) = receive_timeout(Duration::from_secs(1)) {{
        if let Message::Data {{ tag, payload }} = message
            && let Some(from) = payload.get(..8).and_then(Pid::from_slice)
        {{
            send(from, tag + 1, &payload).map_err(|e| e.to_string())?;
        }}
    }}
    Ok(())
}}

rusm_guest::actor!(run);
"#
    )
}

fn readme(name: &str) -> String {
    let snake = name.replace('-', "_");
    format!(
        r#"# {name}

A [rusm](https://example.invalid/rusm) actor: a WASI preview 2 component that runs as
an isolated, preemptible, supervised process.

## Build

```sh
rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2   # target/wasm32-wasip2/release/{snake}.wasm
# or, with cargo-component installed:
cargo component build --release                # target/wasm32-wasip1/release/{snake}.wasm
```

## Run

```sh
rusm run target/wasm32-wasip2/release/{snake}.wasm --init world
```

It runs under rusm's default policy: no files, no network, no clocks, output to the
host log. Give it more with `--policy FILE` (see `rusm policy explain FILE`), check
what it imports with `rusm inspect`, and put it in a supervision tree with an app
manifest (`rusm run APP.toml`).
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("my-actor_2"));
        assert!(!valid_name("2fast"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(!valid_name("../x"));
    }

    #[test]
    fn bundled_guest_is_there() {
        assert!(bundled_guest().join("Cargo.toml").is_file());
    }
}
