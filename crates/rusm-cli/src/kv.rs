//! `rusm kv`: an operator's reads and writes of a node's key-value database, offline.
//! The database is an app manifest's (`[node] kv_path`, `.rusm/kv.redb` beside it by
//! default) or a file named directly; a running node holds it locked, which is an
//! error naming the file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use rusm_wasm::{KvBackend, RedbStore, WriteLimits};

use crate::manifest;

/// What `rusm kv` does.
#[derive(clap::Subcommand)]
pub enum KvCommand {
    /// Print the value of KEY in BUCKET (as stored, then a newline).
    Get {
        /// An app manifest (.toml), for its database, or the database file itself.
        db: PathBuf,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// Store VALUE (UTF-8 text) under KEY in BUCKET.
    Set {
        /// An app manifest (.toml), for its database, or the database file itself.
        db: PathBuf,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// List the buckets with their sizes, or with BUCKET its keys, one per line.
    List {
        /// An app manifest (.toml), for its database, or the database file itself.
        db: PathBuf,
        /// The bucket whose keys to list.
        bucket: Option<String>,
    },
}

/// The database file `target` names: an app manifest's, or `target` itself.
fn database(target: &Path) -> anyhow::Result<PathBuf> {
    if target
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
    {
        let manifest = manifest::load(target)?;
        return Ok(manifest
            .node
            .kv_path
            .unwrap_or_else(|| PathBuf::from(".rusm/kv.redb")));
    }
    Ok(target.to_owned())
}

fn open(target: &Path, create: bool) -> anyhow::Result<RedbStore> {
    let path = database(target)?;
    if !create && !path.exists() {
        bail!(
            "no key-value database at {}; a node creates it when it starts",
            path.display()
        );
    }
    Ok(RedbStore::open(&path, rusm_wasm::DEFAULT_KV_MAX_BYTES)?)
}

fn check_bucket(bucket: &str) -> anyhow::Result<()> {
    if !rusm_policy::is_bucket_name(bucket) {
        bail!(
            "invalid bucket name {bucket:?}; names are 1 to 64 ASCII letters, digits, '-', '_' or '.'"
        );
    }
    Ok(())
}

/// Run one `rusm kv` command.
///
/// # Errors
/// A database that cannot be opened (missing, locked by a running node, damaged), a bad
/// bucket name, a missing key, or a write the store refuses.
pub fn run(command: KvCommand) -> anyhow::Result<ExitCode> {
    match command {
        KvCommand::Get { db, bucket, key } => {
            check_bucket(&bucket)?;
            let store = open(&db, false)?;
            match store.get(&bucket, &key)? {
                Some(value) => outln!("{}", String::from_utf8_lossy(&value)),
                None => bail!("bucket {bucket:?} has no key {key:?}"),
            }
        }
        KvCommand::Set {
            db,
            bucket,
            key,
            value,
        } => {
            check_bucket(&bucket)?;
            let store = open(&db, true)?;
            store.set_many(&bucket, &[(key, value.into_bytes())], WriteLimits::NONE)?;
        }
        KvCommand::List { db, bucket: None } => {
            let store = open(&db, false)?;
            for (bucket, bytes) in store.buckets()? {
                outln!("{bucket}\t{bytes} bytes");
            }
        }
        KvCommand::List {
            db,
            bucket: Some(bucket),
        } => {
            check_bucket(&bucket)?;
            let store = open(&db, false)?;
            let mut skip = 0;
            loop {
                let (keys, more) = store.list(&bucket, skip, rusm_wasm::LIST_PAGE)?;
                for key in &keys {
                    outln!("{key}");
                }
                if !more {
                    break;
                }
                skip += keys.len() as u64;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
