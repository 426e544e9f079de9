//! Builds every component of the `components/` workspace for `wasm32-wasip2` and
//! writes into `OUT_DIR`:
//! - `all.rs`: `ALL`, every component (package name and `.wasm` path), for the library;
//! - `constants-SUITE.rs`, one per test suite: a constant per component, those the
//!   suite must test without an `allow(dead_code)` (see `components!` in `src/lib.rs`);
//! - `macros.rs`: the `components!` macro that puts a suite's constants in a module.
//!
//! The components are found by reading the `members` of `components/Cargo.toml`. A
//! component is tested by the `e2e` suite (`tests/all`) unless its manifest names
//! another one in `[package.metadata.rusm-e2e] tested-by`.
//! The nested build runs with `$CARGO`, its own target directory under `OUT_DIR`, and
//! an environment cleaned of the settings the outer build hands to build scripts.
//! `RUSM_COMPONENT_JOBS` sets its job count (default 2). A missing `wasm32-wasip2`
//! target is installed with `rustup target add` first.

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";
const JOBS_VAR: &str = "RUSM_COMPONENT_JOBS";

/// The test suites that can own a component, with where they live.
const SUITES: &[(&str, &str)] = &[
    ("e2e", "tests/all"),
    ("plugin-host", "examples/plugin-host/tests/host.rs"),
    ("rusm-cli", "crates/rusm-cli/tests/all"),
];
const DEFAULT_SUITE: &str = "e2e";

/// One member of the components workspace.
struct Component {
    /// The package name, such as `ping-pong`.
    name: String,
    /// The package description, if it has one.
    description: Option<String>,
    /// The member's directory.
    dir: PathBuf,
    /// The test suite that must use its constant (`tested-by`).
    suite: String,
}

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("the rusm-e2e crate has no parent directory")?
        .to_path_buf();
    let components_dir = root.join("components");
    let components_dir = fs::canonicalize(&components_dir)
        .map_err(|e| format!("cannot find {}: {e}", components_dir.display()))?;
    let workspace_manifest = components_dir.join("Cargo.toml");
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);

    let components = read_members(&components_dir, &workspace_manifest)?;
    emit_rerun_triggers(&root, &components_dir, &components);
    ensure_target_installed()?;

    let target_dir = out_dir.join("components-target");
    let built = build(&workspace_manifest, &target_dir)?;

    // Each component's constant, with the suite that tests it.
    let mut constants: Vec<(&str, String)> = Vec::new();
    let mut all = String::new();
    for component in &components {
        let manifest = component.dir.join("Cargo.toml");
        let wasm = built.get(&manifest).ok_or_else(|| {
            format!(
                "building the components produced no .wasm file for `{}` ({})",
                component.name,
                manifest.display()
            )
        })?;
        let constant = constant_name(&component.name)?;
        let path = wasm
            .to_str()
            .ok_or_else(|| format!("{} is not valid utf-8", wasm.display()))?;
        let mut constant_source = String::new();
        let _ = writeln!(
            constant_source,
            "/// The `{}` component (`components/{}`), built for `{TARGET}` in release.",
            component.name,
            component
                .dir
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
        );
        if let Some(description) = &component.description {
            let _ = writeln!(constant_source, "///\n/// {description}.");
        }
        let _ = writeln!(
            constant_source,
            "///\n/// Tested by the `{}` suite.\n\
             pub const {constant}: Component = Component::new({:?}, {path:?});\n",
            component.suite, component.name
        );
        constants.push((&component.suite, constant_source));
        let _ = writeln!(all, "    Component::new({:?}, {path:?}),", component.name);
    }
    write(
        &out_dir.join("all.rs"),
        &format!(
            "/// Every component, sorted by package name.\n\
             pub const ALL: &[Component] = &[\n{all}];\n"
        ),
    )?;

    let mut arms = String::new();
    // One arm per suite, and `()` for a crate that tests none of them on its own.
    let suites: Vec<Option<&str>> = SUITES.iter().map(|(s, _)| Some(*s)).chain([None]).collect();
    for suite in suites {
        let mut text = String::new();
        for (owner, source) in &constants {
            if Some(*owner) != suite {
                text.push_str(
                    "#[allow(dead_code, reason = \"another suite tests this component\")]\n",
                );
            }
            text.push_str(source);
        }
        let file = out_dir.join(format!("constants-{}.rs", suite.unwrap_or("any")));
        write(&file, &text)?;
        let file = file
            .to_str()
            .ok_or_else(|| format!("{} is not valid utf-8", file.display()))?;
        let pattern = suite.map_or(String::new(), |s| s.replace('-', "_"));
        let _ = writeln!(
            arms,
            "    ({pattern}) => {{\n        \
             /// The components of `components/`, one constant each.\n        \
             #[deny(dead_code, reason = \"every component has a test that uses its constant \
             (a new component needs one)\")]\n        \
             mod components {{\n            \
             #[allow(unused_imports)]\n            \
             use $crate::Component;\n            \
             include!({file:?});\n        }}\n    }};"
        );
    }
    write(
        &out_dir.join("macros.rs"),
        &format!(
            "/// Declares `mod components`, a constant per component of `components/` \
             (`ping-pong` is `PING_PONG`).\n\
             ///\n\
             /// `components!(SUITE)` (`e2e`, `plugin_host`) makes it an error that a \
             component the\n\
             /// suite tests is not used by a test of the crate; `components!()` checks \
             nothing.\n\
             #[macro_export]\nmacro_rules! components {{\n{arms}}}\n"
        ),
    )
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

/// Reads the members of the components workspace, sorted by package name.
fn read_members(components_dir: &Path, manifest: &Path) -> Result<Vec<Component>, String> {
    let workspace = read_toml(manifest)?;
    let members = workspace
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .ok_or_else(|| format!("{} has no workspace.members list", manifest.display()))?;
    let mut components = Vec::new();
    for member in members {
        let member = member
            .as_str()
            .ok_or_else(|| format!("{} lists a member that is not a string", manifest.display()))?;
        if member.contains(['*', '?', '[']) {
            return Err(format!(
                "{} uses the glob {member:?}; list every component by name",
                manifest.display()
            ));
        }
        let dir = components_dir.join(member);
        let package_manifest = dir.join("Cargo.toml");
        let package = read_toml(&package_manifest)?;
        let package = package
            .get("package")
            .ok_or_else(|| format!("{} has no [package]", package_manifest.display()))?;
        let name = package
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| format!("{} has no package name", package_manifest.display()))?
            .to_owned();
        let description = package
            .get("description")
            .and_then(|d| d.as_str())
            .map(str::to_owned);
        let suite = match package
            .get("metadata")
            .and_then(|m| m.get("rusm-e2e"))
            .and_then(|m| m.get("tested-by"))
        {
            None => DEFAULT_SUITE.to_owned(),
            Some(toml::Value::String(suite)) if SUITES.iter().any(|(s, _)| s == suite) => {
                suite.clone()
            }
            Some(other) => {
                let known: Vec<String> = SUITES
                    .iter()
                    .map(|(suite, place)| format!("\"{suite}\" ({place})"))
                    .collect();
                return Err(format!(
                    "{}: package.metadata.rusm-e2e.tested-by is {other}; it names one of the \
                     test suites: {}",
                    package_manifest.display(),
                    known.join(", ")
                ));
            }
        };
        components.push(Component {
            name,
            description,
            dir,
            suite,
        });
    }
    components.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(components)
}

fn read_toml(path: &Path) -> Result<toml::Table, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse()
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))
}

fn emit_rerun_triggers(root: &Path, components_dir: &Path, components: &[Component]) {
    let mut paths = vec![
        components_dir.join("Cargo.toml"),
        components_dir.join("Cargo.lock"),
        root.join("wit"),
        // The plugin components take their WIT from the plugin-host example.
        root.join("examples/plugin-host/wit"),
        root.join("crates/rusm-cli/src/build/nested_env.rs"),
        root.join("crates/rusm-guest/Cargo.toml"),
        root.join("crates/rusm-guest/src"),
        // rusm-guest takes its dependencies from the root workspace.
        root.join("Cargo.toml"),
    ];
    for component in components {
        paths.push(component.dir.join("Cargo.toml"));
        paths.push(component.dir.join("src"));
    }
    for path in paths {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    println!("cargo::rerun-if-env-changed={JOBS_VAR}");
}

/// Makes sure the target's standard library is there, installing it with rustup (as
/// `rusm run` does) when it is missing.
fn ensure_target_installed() -> Result<(), String> {
    if target_installed()? {
        return Ok(());
    }
    eprintln!(
        "the {TARGET} target is not installed; installing it with `rustup target add {TARGET}`"
    );
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() && target_installed()? => {
            println!(
                "cargo::warning=installed the {TARGET} target with `rustup target add {TARGET}`"
            );
            Ok(())
        }
        Ok(status) => Err(format!(
            "the {TARGET} target is not installed, so the test components cannot be built, \
             and `rustup target add {TARGET}` failed ({status}); install the target and try again"
        )),
        Err(e) => Err(format!(
            "the {TARGET} target is not installed, so the test components cannot be built, \
             and rustup cannot be run ({e}); install the target for your Rust toolchain"
        )),
    }
}

fn target_installed() -> Result<bool, String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let installed = output.status.success()
        && fs::read_dir(&libdir).is_ok_and(|mut entries| entries.next().is_some());
    Ok(installed)
}

/// Runs the nested build and returns the `.wasm` file of each package, keyed by the
/// path of its manifest.
fn build(manifest: &Path, target_dir: &Path) -> Result<BTreeMap<PathBuf, PathBuf>, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let jobs = env::var(JOBS_VAR).unwrap_or_else(|_| "2".to_owned());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--release", "--workspace", "--target", TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--jobs",
            &jobs,
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if leaks_into_nested_build(key) {
            command.env_remove(key);
        }
    }

    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut built = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("cannot read the output of {cargo}: {e}"))?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(manifest_path) = message["manifest_path"].as_str() else {
            continue;
        };
        let wasm = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(".wasm"));
        if let Some(wasm) = wasm {
            let manifest_path =
                fs::canonicalize(manifest_path).unwrap_or_else(|_| PathBuf::from(manifest_path));
            built.insert(manifest_path, PathBuf::from(wasm));
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the components in {} for {TARGET} failed ({status}); see the output above",
            manifest.parent().unwrap_or(manifest).display()
        ));
    }
    Ok(built)
}

// `leaks_into_nested_build`, shared with the `rusm` command (which tests it).
include!("../crates/rusm-cli/src/build/nested_env.rs");

/// `ping-pong` becomes `PING_PONG`.
fn constant_name(package: &str) -> Result<String, String> {
    let constant: String = package
        .chars()
        .map(|c| match c {
            '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect();
    let valid = constant
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && constant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && constant != "ALL";
    if valid {
        Ok(constant)
    } else {
        Err(format!(
            "the component package name `{package}` does not make a Rust constant name"
        ))
    }
}
