//! Building cargo packages into components: `cargo build --release --target
//! wasm32-wasip2`, with cargo's own progress shown on stderr.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

mod nested_env;
use nested_env::leaks_into_nested_build;

/// The target components are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Make sure the `wasm32-wasip2` standard library is installed, installing it with
/// rustup when it is missing and rustup is there.
///
/// # Errors
/// When it is missing and cannot be installed.
pub fn ensure_target() -> anyhow::Result<()> {
    if target_installed() {
        return Ok(());
    }
    note!(
        "rusm: the {TARGET} target is not installed; installing it with `rustup target add {TARGET}`"
    );
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() && target_installed() => Ok(()),
        Ok(status) => bail!(
            "`rustup target add {TARGET}` failed ({status}); install the target and try again"
        ),
        Err(e) => bail!(
            "the {TARGET} target is not installed and rustup cannot be run ({e}); install the target for your Rust toolchain and try again"
        ),
    }
}

fn target_installed() -> bool {
    let Ok(output) = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    output.status.success()
        && std::fs::read_dir(&libdir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Build the cargo package in `dir` for `wasm32-wasip2` in release and return its
/// `.wasm` file. Cargo's progress goes to stderr.
///
/// # Errors
/// When `dir` has no `Cargo.toml`, cargo cannot run or fails, or the package builds no
/// `.wasm` file (it is not a `cdylib` or a binary).
pub fn build_package(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml; build = names a cargo package directory",
            dir.display()
        );
    }
    let manifest = std::fs::canonicalize(&manifest)
        .with_context(|| format!("cannot resolve {}", manifest.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--release", "--target", TARGET])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(leaks_into_nested_build) {
            command.env_remove(key);
        }
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {cargo}; is Rust installed?"))?;
    let stdout = child.stdout.take().context("cargo's stdout is piped")?;
    let mut wasm = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo's output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let same_package = message["manifest_path"]
            .as_str()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .is_some_and(|p| p == manifest);
        if !same_package {
            continue;
        }
        if let Some(file) = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"))
        {
            wasm = Some(PathBuf::from(file));
        }
    }
    let status = child.wait().context("cannot wait for cargo")?;
    if !status.success() {
        bail!(
            "building {} for {TARGET} failed ({status}); see cargo's output above",
            dir.display()
        );
    }
    wasm.with_context(|| {
        format!(
            "building {} produced no .wasm file; a component package needs crate-type = [\"cdylib\"] (an actor) or a main function (a command)",
            dir.display()
        )
    })
}
