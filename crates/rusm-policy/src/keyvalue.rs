//! The `[keyvalue]` section: which `wasi:keyvalue` buckets a process may open, how,
//! and how much it may keep in them.

use std::fmt;

/// The most bytes one bucket holds (keys and values together) when its entry sets no
/// `max_bytes`: 64 MiB.
pub const DEFAULT_BUCKET_BYTES: u64 = 64 << 20;

/// The largest value one `set` stores when the bucket's entry sets no `max_value`:
/// 1 MiB.
pub const DEFAULT_VALUE_BYTES: u64 = 1 << 20;

/// How a process may use a bucket.
///
/// The order is by power: `ReadOnly < ReadWrite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum BucketMode {
    /// `ro`: `get`, `exists`, `list-keys` and `get-many`; every write is refused with
    /// `access-denied`. The default.
    #[default]
    ReadOnly,
    /// `rw`: reads, and `set`, `delete`, `increment`, `set-many`, `delete-many`.
    ReadWrite,
}

impl BucketMode {
    /// `ro` or `rw`, as written in a policy.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            BucketMode::ReadOnly => "ro",
            BucketMode::ReadWrite => "rw",
        }
    }
}

impl fmt::Display for BucketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One granted bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The bucket's name, as the guest passes it to `store.open`.
    pub name: String,
    /// What the process may do with it.
    pub mode: BucketMode,
    /// The most bytes the bucket may hold (every key and value together); a write that
    /// would go past it fails. `None` means [`DEFAULT_BUCKET_BYTES`].
    pub max_bytes: Option<u64>,
    /// The largest value a single write may store. `None` means
    /// [`DEFAULT_VALUE_BYTES`].
    pub max_value: Option<u64>,
}

impl Bucket {
    /// The bucket's size limit, with the default applied.
    #[must_use]
    pub fn bucket_limit(&self) -> u64 {
        self.max_bytes.unwrap_or(DEFAULT_BUCKET_BYTES)
    }

    /// The value size limit, with the default applied.
    #[must_use]
    pub fn value_limit(&self) -> u64 {
        self.max_value.unwrap_or(DEFAULT_VALUE_BYTES)
    }
}

/// The `[keyvalue]` section. With nothing set the process may open no bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValuePolicy {
    /// The granted buckets, each named once.
    pub buckets: Vec<Bucket>,
}

impl KeyValuePolicy {
    /// The grant for bucket `name`, if the policy has one.
    #[must_use]
    pub fn bucket(&self, name: &str) -> Option<&Bucket> {
        self.buckets.iter().find(|b| b.name == name)
    }

    /// Whether no bucket is granted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Whether `name` is a valid bucket name: 1 to 64 ASCII letters, digits, `-`, `_` or
/// `.`.
#[must_use]
pub fn is_bucket_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_ordered_and_limits_default() {
        assert!(BucketMode::ReadOnly < BucketMode::ReadWrite);
        let b = Bucket {
            name: "s".into(),
            mode: BucketMode::ReadWrite,
            max_bytes: None,
            max_value: Some(10),
        };
        assert_eq!(b.bucket_limit(), DEFAULT_BUCKET_BYTES);
        assert_eq!(b.value_limit(), 10);
    }

    #[test]
    fn bucket_names_are_short_and_plain() {
        assert!(is_bucket_name("sessions"));
        assert!(is_bucket_name("app.v2-cache_1"));
        assert!(!is_bucket_name(""));
        assert!(!is_bucket_name("a/b"));
        assert!(!is_bucket_name(&"x".repeat(65)));
    }
}
