//! The policy library and the shipped `capabilities/` directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rusm_policy::{
    DEFAULT_POLICY_SOURCE, LibraryError, LibraryProblem, Policy, PolicyLibrary, SpawnGrant,
    SpawnRefusal, StdioMode,
};

fn capabilities_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../capabilities")
}

/// A fresh, empty directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "rusm-policy-library-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

#[test]
fn every_shipped_policy_file_is_valid() {
    let mut files = Vec::new();
    toml_files(&capabilities_dir(), &mut files);
    assert!(
        files.len() >= 3,
        "capabilities/ should hold the default and examples: {files:?}"
    );
    for file in files {
        if let Err(e) = Policy::from_file(&file) {
            panic!("{e}");
        }
    }
}

#[test]
fn the_shipped_library_loads_and_its_spawns_attenuate() {
    let lib = PolicyLibrary::load_dir(capabilities_dir()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = lib.names().collect();
    assert_eq!(
        names,
        [
            "counter",
            "crasher",
            "default",
            "http-counter",
            "http-proxy",
            "worker"
        ]
    );
    let proxy = lib.get("http-proxy").unwrap();
    let worker = lib
        .policy_for_spawn(proxy, "proxy-worker", Some("worker"))
        .unwrap();
    assert_eq!(
        worker,
        SpawnGrant::Named(lib.get("worker").unwrap().clone())
    );
    assert!(lib.get("worker").unwrap().is_subset_of(proxy).is_ok());
    assert!(lib.get("counter").unwrap().process.may_register("counter"));
}

#[test]
fn the_embedded_default_is_the_shipped_default() {
    let shipped = std::fs::read_to_string(capabilities_dir().join("default.toml")).unwrap();
    assert_eq!(shipped, DEFAULT_POLICY_SOURCE);
    let default = Policy::embedded_default();
    assert_eq!(default.stdio.stdout, StdioMode::Log);
    assert_eq!(default.stdio.stderr, StdioMode::Log);
    assert_eq!(default.stdio.stdin, StdioMode::Null);
    assert_eq!(default.limits.memory, Some(64 << 20));
    let mut granting_nothing_else = default.clone();
    granting_nothing_else.stdio = Policy::deny_all().stdio;
    granting_nothing_else.limits = Policy::deny_all().limits;
    assert_eq!(granting_nothing_else, Policy::deny_all());
    // A library without a default.toml still has the embedded one.
    let dir = TempDir::new();
    let lib = PolicyLibrary::load_dir(&dir.0).unwrap();
    assert_eq!(**lib.get("default").unwrap(), default);
}

#[test]
fn lookups_of_unknown_names_list_the_known_ones() {
    let dir = TempDir::new();
    dir.write("worker.toml", "[clocks]\nmonotonic = true\n");
    let lib = PolicyLibrary::load_dir(&dir.0).unwrap();
    let err = lib.get("wrker").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no policy named \"wrker\"; known policies: default, worker"
    );
}

#[test]
fn every_problem_in_a_directory_is_listed() {
    let dir = TempDir::new();
    dir.write("good.toml", "[process]\nspawn = [\n  { component = \"a\", policy = \"good\" },\n  { component = \"b\", policy = \"missing\" },\n]\n");
    dir.write("broken.toml", "[net]\ntcp_conect = []\n");
    dir.write("Bad Name.toml", "");
    dir.write("self.toml", "");
    dir.write("notes.txt", "not a policy");
    std::fs::create_dir(dir.0.join("nested.toml")).unwrap();
    let err = PolicyLibrary::load_dir(&dir.0).unwrap_err();
    let LibraryError::Invalid { problems, .. } = &err else {
        panic!("expected Invalid, got {err}");
    };
    assert_eq!(problems.len(), 4, "{err}");
    assert!(matches!(problems[0], LibraryProblem::BadName { .. }));
    assert!(matches!(problems[1], LibraryProblem::Policy(_)));
    assert!(matches!(problems[2], LibraryProblem::ReservedName { .. }));
    assert!(matches!(
        problems[3],
        LibraryProblem::UnknownSpawnPolicy { .. }
    ));
    let d = dir.0.display();
    assert_eq!(
        err.to_string(),
        format!(
            "{d}: 4 problems in the policy library:\n  \
             {d}/Bad Name.toml: \"Bad Name\" is not a valid policy name; use lowercase letters, digits, - and _, starting with a letter or digit\n  \
             {d}/broken.toml:2:1: unknown key \"tcp_conect\" in [net]; expected one of: tcp_connect, tcp_bind, udp_bind, udp_connect, dns\n  \
             {d}/self.toml: the name \"self\" is reserved for the spawning process's own policy; rename the file\n  \
             {d}/good.toml:4:3: spawn rule names policy \"missing\", which is not in the library; known policies: default, good"
        )
    );
}

#[test]
fn a_missing_directory_is_a_read_error() {
    let dir = TempDir::new();
    let missing = dir.0.join("nope");
    let err = PolicyLibrary::load_dir(&missing).unwrap_err();
    assert!(matches!(err, LibraryError::ReadDir { .. }));
    assert!(
        err.to_string().starts_with(&format!(
            "{}: cannot read policy directory: ",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn spawn_requests_are_decided_by_rules_names_and_attenuation() {
    let parse = |s: &str| Policy::parse(s, Path::new("t.toml")).unwrap();
    let mut lib = PolicyLibrary::new();
    lib.insert("narrow", parse("[clocks]\nmonotonic = true\n"))
        .unwrap();
    lib.insert("wide", parse("[clocks]\nwall = true\n"))
        .unwrap();
    assert!(matches!(
        lib.insert("Not Valid", Policy::deny_all()),
        Err(LibraryError::BadName { .. })
    ));
    assert!(lib.insert("self", Policy::deny_all()).is_err());

    let parent = parse(
        "[clocks]\nmonotonic = true\n[process]\nspawn = [{ component = \"w\", policy = \"narrow\" }, { component = \"w\", policy = \"wide\" }, { component = \"w\", policy = \"ghost\" }, { component = \"*\" }]\n",
    );
    assert_eq!(
        lib.policy_for_spawn(&parent, "w", Some("narrow")).unwrap(),
        SpawnGrant::Named(lib.get("narrow").unwrap().clone())
    );
    assert_eq!(
        lib.policy_for_spawn(&parent, "anything", None).unwrap(),
        SpawnGrant::Own
    );
    assert_eq!(
        lib.policy_for_spawn(&parent, "anything", Some("self"))
            .unwrap(),
        SpawnGrant::Own
    );

    let refusal = lib
        .policy_for_spawn(&parent, "x", Some("narrow"))
        .unwrap_err();
    assert!(matches!(refusal, SpawnRefusal::NotPermitted { .. }));
    assert_eq!(
        refusal.to_string(),
        "the policy does not allow spawning component \"x\" under policy \"narrow\""
    );
    let refusal = lib
        .policy_for_spawn(&parent, "w", Some("wide"))
        .unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "policy \"wide\" grants more than the spawning process holds: the wall clock is granted but the parent denies it"
    );
    let refusal = lib
        .policy_for_spawn(&parent, "w", Some("ghost"))
        .unwrap_err();
    assert_eq!(
        refusal.to_string(),
        "no policy named \"ghost\"; known policies: default, narrow, wide"
    );
}
