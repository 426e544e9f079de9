//! The `[keyvalue]` and `[config]` sections: parsing, errors, attenuation, explain.

use rusm_policy::{
    BucketMode, ConfigValue, DEFAULT_BUCKET_BYTES, DEFAULT_VALUE_BYTES, Escalation, Policy,
};

use crate::{error, policy};

#[test]
fn buckets_are_granted_by_name_and_mode_with_default_limits() {
    let p = policy(
        r#"
[keyvalue]
buckets = [
  { name = "sessions", mode = "rw", max_bytes = "1MiB", max_value = 512 },
  { name = "catalog" },
]
"#,
    );
    let sessions = p.keyvalue.bucket("sessions").expect("sessions granted");
    assert_eq!(sessions.mode, BucketMode::ReadWrite);
    assert_eq!(sessions.bucket_limit(), 1 << 20);
    assert_eq!(sessions.value_limit(), 512);
    let catalog = p.keyvalue.bucket("catalog").expect("catalog granted");
    assert_eq!(catalog.mode, BucketMode::ReadOnly, "ro is the default mode");
    assert_eq!(catalog.bucket_limit(), DEFAULT_BUCKET_BYTES);
    assert_eq!(catalog.value_limit(), DEFAULT_VALUE_BYTES);
    assert!(p.keyvalue.bucket("other").is_none());
    assert!(
        Policy::deny_all().keyvalue.is_empty(),
        "no section, no bucket"
    );
}

#[test]
fn bad_bucket_entries_name_the_file_and_line() {
    assert_eq!(
        error("[keyvalue]\nbuckets = [{ name = \"a\", mode = \"rwx\" }]\n"),
        "capabilities/test.toml:2:33: invalid value \"rwx\" for \"mode\" in [keyvalue] buckets; expected one of: ro, rw"
    );
    assert_eq!(
        error("[keyvalue]\nbuckets = [{ mode = \"rw\" }]\n"),
        "capabilities/test.toml:2:12: missing key \"name\" in [keyvalue] buckets; name the bucket, e.g. name = \"sessions\""
    );
    assert_eq!(
        error(
            "[keyvalue]\nbuckets = [\n  { name = \"a\" },\n  { name = \"a\", mode = \"rw\" },\n]\n"
        ),
        "capabilities/test.toml:4:12: duplicate bucket \"a\" in [keyvalue] buckets; it is already granted at line 3"
    );
    assert!(
        error("[keyvalue]\nbuckets = [{ name = \"a/b\" }]\n")
            .starts_with("capabilities/test.toml:2:21: invalid bucket name \"a/b\"")
    );
    assert_eq!(
        error("[keyvalue]\nbuckets = [{ name = \"a\", size = 1 }]\n"),
        "capabilities/test.toml:2:26: unknown key \"size\" in [keyvalue] buckets; expected one of: name, mode, max_bytes, max_value"
    );
    assert_eq!(
        error("[keyvalue]\nbucket = []\n"),
        "capabilities/test.toml:2:1: unknown key \"bucket\" in [keyvalue]; expected one of: buckets"
    );
}

#[test]
fn config_values_are_literals_or_host_variables() {
    let p = policy(
        r#"
[config.vars]
mode = "fast"
db_password = { env = "DB_PASSWORD" }
"#,
    );
    assert_eq!(
        p.config.vars.get("mode"),
        Some(&ConfigValue::Literal("fast".into()))
    );
    assert_eq!(
        p.config.vars.get("db_password"),
        Some(&ConfigValue::Env("DB_PASSWORD".into()))
    );
    assert_eq!(
        error("[config.vars]\nx = { file = \"a\" }\n"),
        "capabilities/test.toml:2:7: unknown key \"file\" in [config.vars]; expected one of: env"
    );
    assert_eq!(
        error("[config.vars]\nx = 3\n"),
        "capabilities/test.toml:2:5: wrong type for \"x\" in [config.vars]: expected a string or a table such as { env = \"DB_PASSWORD\" }, found an integer"
    );
}

#[test]
fn a_child_may_not_widen_a_bucket_or_its_limits() {
    let parent = policy(
        r#"
[keyvalue]
buckets = [{ name = "catalog", mode = "ro" }, { name = "sessions", mode = "rw", max_value = "4KiB" }]
"#,
    );
    let ok =
        policy("[keyvalue]\nbuckets = [{ name = \"sessions\", mode = \"ro\", max_value = 100 }]\n");
    assert_eq!(ok.is_subset_of(&parent), Ok(()));

    let rw_under_ro = policy("[keyvalue]\nbuckets = [{ name = \"catalog\", mode = \"rw\" }]\n");
    assert_eq!(
        rw_under_ro.is_subset_of(&parent),
        Err(Escalation::Bucket {
            name: "catalog".into(),
            mode: BucketMode::ReadWrite,
            parent: Some(BucketMode::ReadOnly),
        })
    );
    let other = policy("[keyvalue]\nbuckets = [{ name = \"secrets\" }]\n");
    assert_eq!(
        other.is_subset_of(&parent).unwrap_err().to_string(),
        "keyvalue bucket \"secrets\" (ro) is not granted to the parent"
    );
    // Leaving max_value to the default (1 MiB) is more than the parent's 4 KiB.
    let bigger = policy("[keyvalue]\nbuckets = [{ name = \"sessions\", mode = \"rw\" }]\n");
    assert_eq!(
        bigger.is_subset_of(&parent).unwrap_err().to_string(),
        "keyvalue bucket \"sessions\" max_value 1048576 exceeds the parent's 4096"
    );
}

#[test]
fn a_child_sees_only_config_its_parent_holds() {
    let parent = policy("[config.vars]\nmode = \"fast\"\npw = { env = \"PW\" }\n");
    assert_eq!(
        policy("[config.vars]\npw = { env = \"PW\" }\n").is_subset_of(&parent),
        Ok(())
    );
    assert_eq!(
        policy("[config.vars]\nmode = \"slow\"\n").is_subset_of(&parent),
        Err(Escalation::ConfigVar {
            name: "mode".into()
        })
    );
    assert_eq!(
        policy("[config.vars]\npw = { env = \"HOME\" }\n").is_subset_of(&parent),
        Err(Escalation::ConfigVar { name: "pw".into() })
    );
}

#[test]
fn explain_lists_buckets_and_config() {
    let text = policy(
        r#"
[keyvalue]
buckets = [{ name = "sessions", mode = "rw", max_bytes = "2MiB" }, { name = "catalog" }]
[config.vars]
mode = "fast"
pw = { env = "PW" }
"#,
    )
    .explain();
    for line in [
        "keyvalue: bucket \"sessions\" (read-write), at most 2 MiB in all, values up to 1 MiB\n",
        "keyvalue: bucket \"catalog\" (read-only), at most 64 MiB in all, values up to 1 MiB\n",
        "config: mode = \"fast\"\n",
        "config: pw from the host variable PW when set there\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}
