//! `rusm kv`: an operator's reads and writes of a node's key-value database. The
//! database is an app manifest's (`[node] kv_path`, `.rusm/kv.redb` beside it by
//! default, `.rusm/<node name>/kv.redb` for a node of a cluster) or a file named
//! directly. While an app runs on it, its node holds the file
//! locked and `rusm kv` asks that node, through the operator socket beside the file
//! (`crate::operator`); otherwise it opens the file itself. A file locked with no node
//! answering on its socket is an error naming both. A bucket the manifest shares through
//! the cluster (`[cluster] kv_buckets`) is reached through the running node only (its
//! keys are in JetStream); with no node running, `rusm kv` says so.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use rusm_wasm::{KvBackend, RedbStore, WriteLimits};

use crate::manifest;
use crate::operator::{self, Reply, Request};

/// `rusm kv`'s arguments: which node's database, and what to do with it.
#[derive(clap::Args)]
pub struct KvArgs {
    /// The node of a cluster whose database to use, for a manifest whose nodes each
    /// keep their own (`.rusm/<node name>/kv.redb`); by default the manifest's
    /// `[cluster] node_name`, or the host name when it joins a cluster without one.
    #[arg(long, global = true, value_name = "NAME")]
    pub node: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: KvCommand,
}

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
    /// Remove KEY from BUCKET (nothing to do when it is not there).
    Delete {
        /// An app manifest (.toml), for its database, or the database file itself.
        db: PathBuf,
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// List the buckets with their sizes, or with BUCKET its keys, one per line.
    List {
        /// An app manifest (.toml), for its database, or the database file itself.
        db: PathBuf,
        /// The bucket whose keys to list.
        bucket: Option<String>,
    },
}

/// The database file `target` names: an app manifest's (that of the node `node`, or of
/// the node the manifest's `[cluster]` makes it), or `target` itself; and the buckets the
/// manifest shares through the cluster (`[cluster] kv_buckets`).
fn database(target: &Path, node: Option<&str>) -> anyhow::Result<(PathBuf, Vec<String>)> {
    if target
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
    {
        let manifest = manifest::load(target)?;
        let node = match (node, &manifest.cluster) {
            (Some(name), _) => {
                rusm_cluster::check_node_name(name)
                    .map_err(|why| anyhow::anyhow!("--node: {why}"))?;
                Some(name.to_owned())
            }
            (None, Some(table)) if table.url.is_some() => {
                Some(crate::cluster::node_name_or_host(table.node_name.clone())?)
            }
            (None, _) => None,
        };
        let shared = manifest.cluster.map(|c| c.kv_buckets).unwrap_or_default();
        let path = manifest
            .node
            .kv_path_for(node.as_deref())
            .unwrap_or_else(|| PathBuf::from(".rusm/kv.redb"));
        return Ok((path, shared));
    }
    if node.is_some() {
        bail!(
            "--node picks a node's database from an app manifest; {} is a database file, so give it without --node",
            target.display()
        );
    }
    Ok((target.to_owned(), Vec::new()))
}

/// Where `rusm kv` finds the buckets: the running node's socket, or the file.
enum Store {
    Node(PathBuf),
    File(Box<RedbStore>),
}

/// The running node on `target`'s database, or the file itself (created when `create`
/// and missing).
fn open(
    target: &Path,
    node: Option<&str>,
    bucket: Option<&str>,
    create: bool,
) -> anyhow::Result<Store> {
    let (path, shared) = database(target, node)?;
    let socket = operator::socket_path(&path);
    if operator::ask(&socket, &Request::Buckets)?.is_some() {
        return Ok(Store::Node(socket));
    }
    if let Some(bucket) = bucket.filter(|b| shared.iter().any(|s| s == b)) {
        bail!(
            "bucket {bucket:?} is shared through the cluster ([cluster] kv_buckets in {}): \
             its keys are in the cluster's JetStream bucket, not in {}, and rusm kv \
             reaches them only through a running node of this app (none answers on {})",
            target.display(),
            path.display(),
            socket.display()
        );
    }
    if !create && !path.exists() {
        bail!(
            "no key-value database at {}; a node creates it when it starts",
            path.display()
        );
    }
    match RedbStore::open(&path, rusm_wasm::DEFAULT_KV_MAX_BYTES) {
        Ok(store) => Ok(Store::File(Box::new(store))),
        Err(e) if e.locked => bail!(
            "cannot open the key-value database {}: another process holds it locked, and no node answers on its operator socket {} (a node that is still starting, or one that is not rusm run)",
            path.display(),
            socket.display()
        ),
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Do `request` on the node or on the file.
    fn ask(&self, request: Request) -> anyhow::Result<Reply> {
        match self {
            Store::Node(socket) => match operator::ask(socket, &request)? {
                Some(Reply::Error(e)) => bail!("{e}"),
                Some(reply) => Ok(reply),
                None => bail!(
                    "the node on {} stopped answering; ask again",
                    socket.display()
                ),
            },
            Store::File(store) => Ok(match request {
                Request::Get { bucket, key } => Reply::Value(store.get(&bucket, &key)?),
                Request::Set { bucket, key, value } => {
                    store.set_many(&bucket, &[(key, value)], WriteLimits::NONE)?;
                    Reply::Done
                }
                Request::Delete { bucket, key } => {
                    store.delete_many(&bucket, &[key])?;
                    Reply::Done
                }
                Request::Buckets => Reply::Buckets(store.buckets()?),
                Request::Keys { bucket, skip } => {
                    let (keys, more) = store.list(&bucket, skip, rusm_wasm::LIST_PAGE)?;
                    Reply::Keys { keys, more }
                }
            }),
        }
    }
}

fn unexpected(reply: Reply) -> anyhow::Error {
    anyhow::anyhow!("the node answered {reply:?}, which does not fit the request")
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
pub fn run(args: KvArgs) -> anyhow::Result<ExitCode> {
    let node = args.node.as_deref();
    match args.command {
        KvCommand::Get { db, bucket, key } => {
            check_bucket(&bucket)?;
            let store = open(&db, node, Some(&bucket), false)?;
            let request = Request::Get {
                bucket: bucket.clone(),
                key: key.clone(),
            };
            match store.ask(request)? {
                Reply::Value(Some(value)) => outln!("{}", String::from_utf8_lossy(&value)),
                Reply::Value(None) => bail!("bucket {bucket:?} has no key {key:?}"),
                other => return Err(unexpected(other)),
            }
        }
        KvCommand::Set {
            db,
            bucket,
            key,
            value,
        } => {
            check_bucket(&bucket)?;
            let store = open(&db, node, Some(&bucket), true)?;
            let value = value.into_bytes();
            match store.ask(Request::Set { bucket, key, value })? {
                Reply::Done => {}
                other => return Err(unexpected(other)),
            }
        }
        KvCommand::Delete { db, bucket, key } => {
            check_bucket(&bucket)?;
            let store = open(&db, node, Some(&bucket), false)?;
            match store.ask(Request::Delete { bucket, key })? {
                Reply::Done => {}
                other => return Err(unexpected(other)),
            }
        }
        KvCommand::List { db, bucket: None } => {
            let store = open(&db, node, None, false)?;
            match store.ask(Request::Buckets)? {
                Reply::Buckets(buckets) => {
                    for (bucket, bytes) in buckets {
                        outln!("{bucket}\t{bytes} bytes");
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
        KvCommand::List {
            db,
            bucket: Some(bucket),
        } => {
            check_bucket(&bucket)?;
            let store = open(&db, node, Some(&bucket), false)?;
            let mut skip = 0;
            loop {
                let request = Request::Keys {
                    bucket: bucket.clone(),
                    skip,
                };
                let Reply::Keys { keys, more } = store.ask(request)? else {
                    bail!("the node answered a list of keys with something else");
                };
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
