//! The `wasi:keyvalue` grant: the node's store ([`KvBackend`], with [`RedbStore`], one
//! redb database file per node), and the host side of `store`, `atomics` and `batch`,
//! which opens only the buckets the policy's `[keyvalue]` section grants and writes
//! only to those granted `rw`, within their size limits.
//!
//! Every write is one redb write transaction (a batch included, so it is stored whole
//! or not at all) and runs on a blocking thread: a commit waits for the disk, and a
//! tokio worker must not. Reads run on the caller's thread (a read transaction is a
//! snapshot and waits for nothing).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction,
};
use rusm_policy::{BucketMode, KeyValuePolicy};
use wasmtime::component::{HasData, Resource, ResourceTable};

/// The longest key a guest may use, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// The most keys one `get-many`, `set-many` or `delete-many` takes.
pub const MAX_BATCH_KEYS: usize = 1000;
/// The most bytes of values one `get-many` returns.
pub const MAX_BATCH_BYTES: u64 = 16 << 20;
/// The most buckets a process holds open at once.
pub const MAX_OPEN_BUCKETS: usize = 256;
/// The most keys one `list-keys` call returns.
pub const LIST_PAGE: usize = 1000;

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/rusm-runtime",
        world: "wasi:keyvalue/imports",
        imports: {
            "wasi:keyvalue/store.[method]bucket.set": async | trappable,
            "wasi:keyvalue/store.[method]bucket.delete": async | trappable,
            "wasi:keyvalue/atomics.increment": async | trappable,
            "wasi:keyvalue/batch.set-many": async | trappable,
            "wasi:keyvalue/batch.delete-many": async | trappable,
            default: trappable,
        },
        with: {
            "wasi:keyvalue/store.bucket": crate::keyvalue::OpenBucket,
        },
    });
}

use generated::wasi::keyvalue::{atomics, batch, store};
use store::Error as WitKvError;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A value larger than the bucket's `max_value`.
    #[error("value of {size} bytes is larger than the bucket's max_value of {limit} bytes")]
    ValueTooLarge {
        /// The value's size.
        size: u64,
        /// The bucket's limit.
        limit: u64,
    },
    /// A write that would take the bucket past its `max_bytes`.
    #[error(
        "bucket {bucket:?} is full: the write needs {needed} bytes and max_bytes is {limit} bytes"
    )]
    BucketFull {
        /// The bucket.
        bucket: String,
        /// What the bucket would hold after the write.
        needed: u64,
        /// The bucket's limit.
        limit: u64,
    },
    /// A write that would take the node's whole store past its size limit.
    #[error("the node's key-value store is full: it holds at most {limit} bytes")]
    StoreFull {
        /// The store's limit.
        limit: u64,
    },
    /// A key longer than [`MAX_KEY_BYTES`].
    #[error("key of {0} bytes is longer than the most, {MAX_KEY_BYTES}")]
    KeyTooLong(usize),
    /// A batch of more than [`MAX_BATCH_KEYS`] keys, or a `get-many` whose values add
    /// up to more than [`MAX_BATCH_BYTES`].
    #[error("the batch is too large: at most {MAX_BATCH_KEYS} keys and {MAX_BATCH_BYTES} bytes")]
    BatchTooLarge,
    /// `increment` of a value that is not a decimal `u64`.
    #[error("the value of {0:?} is not a decimal number, so it cannot be incremented")]
    NotANumber(String),
    /// `increment` past `u64::MAX`.
    #[error("incrementing {0:?} overflows a u64")]
    Overflow(String),
    /// A bucket name that is not valid (see `rusm_policy::is_bucket_name`).
    #[error("invalid bucket name {0:?}")]
    InvalidBucket(String),
    /// The database failed (I/O, say).
    #[error("key-value store: {0}")]
    Backend(String),
}

impl KvError {
    fn backend(e: impl std::fmt::Display) -> KvError {
        KvError::Backend(e.to_string())
    }
}

/// The limits a write is held to: the writer's grant for the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteLimits {
    /// The most the bucket may hold, keys and values together.
    pub max_bytes: u64,
    /// The largest value one write stores.
    pub max_value: u64,
}

impl WriteLimits {
    /// No limit but the store's own.
    pub const NONE: WriteLimits = WriteLimits {
        max_bytes: u64::MAX,
        max_value: u64::MAX,
    };
}

/// Where a node keeps its buckets. [`RedbStore`] is the embedded implementation; the
/// trait is the seam for other backends (a clustered one, say). Every method is
/// blocking; each write is atomic on its own (a batch as a whole).
pub trait KvBackend: Send + Sync + 'static {
    /// The value of `key` in `bucket`.
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// The values of `keys`, in order (at most [`MAX_BATCH_BYTES`] in all).
    fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError>;
    /// Whether `key` is in `bucket`.
    fn exists(&self, bucket: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(bucket, key)?.is_some())
    }
    /// Up to `max` keys of `bucket` in key order, after skipping `skip`; and whether
    /// more follow.
    fn list(&self, bucket: &str, skip: u64, max: usize) -> Result<(Vec<String>, bool), KvError>;
    /// Store every entry, or none of them.
    fn set_many(
        &self,
        bucket: &str,
        entries: &[(String, Vec<u8>)],
        limits: WriteLimits,
    ) -> Result<(), KvError>;
    /// Remove every key that is there, or none of them.
    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError>;
    /// Add `delta` to the decimal number at `key` (0 when missing) and return the sum.
    fn increment(
        &self,
        bucket: &str,
        key: &str,
        delta: u64,
        limits: WriteLimits,
    ) -> Result<u64, KvError>;
}

/// Per-bucket sizes (keys and values together); the store's total under [`TOTAL`].
const SIZES: TableDefinition<'static, &str, u64> = TableDefinition::new("rusm:sizes");
/// The key of the whole store's size in [`SIZES`] (not a valid bucket name).
const TOTAL: &str = "*";

fn bucket_table(bucket: &str) -> String {
    format!("bucket:{bucket}")
}

/// Why a key-value database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the key-value database {}: {why}", path.display())]
pub struct KvOpenError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong, in words.
    pub why: String,
    /// Whether another open database holds the file (a running node, say).
    pub locked: bool,
}

/// The embedded store: every bucket a table in one redb database (a file, or memory),
/// with each bucket's size and the total kept in a table of their own, updated in the
/// same transaction as the write.
pub struct RedbStore {
    db: Database,
    max_bytes: u64,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Open (or create, with its directory) the database file at `path`, holding at
    /// most `max_bytes`.
    ///
    /// # Errors
    /// When the file cannot be created or read, is not a redb database or is damaged,
    /// or is open in another process (redb locks it while a node runs).
    pub fn open(path: &Path, max_bytes: u64) -> Result<RedbStore, KvOpenError> {
        let fail = |why: String, locked: bool| KvOpenError {
            path: path.to_owned(),
            why,
            locked,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string(), false))?;
        }
        let db = Database::create(path).map_err(|e| {
            match e {
            redb::DatabaseError::DatabaseAlreadyOpen => fail(
                "it is locked by another open database (a running node holds it; stop it first)"
                    .into(),
                true,
            ),
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock =>
            {
                fail(
                    "it is locked by another open database (a running node holds it; stop it first)"
                        .into(),
                    true,
                )
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => fail(io.to_string(), false),
            other => fail(
                format!("{other} (it is not a redb database, or it is damaged)"),
                false,
            ),
        }
        })?;
        let store = RedbStore { db, max_bytes };
        store.init().map_err(|e| fail(e.to_string(), false))?;
        Ok(store)
    }

    /// A database in memory, holding at most `max_bytes`: nothing outlives it.
    ///
    /// # Errors
    /// When redb cannot set it up.
    pub fn in_memory(max_bytes: u64) -> Result<RedbStore, KvError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(KvError::backend)?;
        let store = RedbStore { db, max_bytes };
        store.init()?;
        Ok(store)
    }

    /// Make sure the sizes table exists, so reads of it never miss.
    fn init(&self) -> Result<(), KvError> {
        let txn = self.db.begin_write().map_err(KvError::backend)?;
        txn.open_table(SIZES).map_err(KvError::backend)?;
        txn.commit().map_err(KvError::backend)
    }

    /// The buckets that hold something, sorted, with their sizes in bytes.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn buckets(&self) -> Result<Vec<(String, u64)>, KvError> {
        let txn = self.db.begin_read().map_err(KvError::backend)?;
        let sizes = txn.open_table(SIZES).map_err(KvError::backend)?;
        let mut out = Vec::new();
        for entry in sizes.iter().map_err(KvError::backend)? {
            let (k, v) = entry.map_err(KvError::backend)?;
            if k.value() != TOTAL && v.value() > 0 {
                out.push((k.value().to_owned(), v.value()));
            }
        }
        Ok(out)
    }

    /// The bytes `bucket` holds, keys and values together.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub fn bucket_bytes(&self, bucket: &str) -> Result<u64, KvError> {
        let txn = self.db.begin_read().map_err(KvError::backend)?;
        let sizes = txn.open_table(SIZES).map_err(KvError::backend)?;
        let size = sizes.get(bucket).map_err(KvError::backend)?;
        Ok(size.map_or(0, |s| s.value()))
    }

    /// Run `f` over `bucket` in one write transaction, then account for the change in
    /// size it reports (bytes added, bytes removed), refusing it (and so the whole
    /// transaction) past the bucket's or the store's limit.
    fn write<R>(
        &self,
        bucket: &str,
        limits: WriteLimits,
        f: impl FnOnce(&mut redb::Table<'_, &str, &[u8]>) -> Result<(R, u64, u64), KvError>,
    ) -> Result<R, KvError> {
        if !rusm_policy::is_bucket_name(bucket) {
            return Err(KvError::InvalidBucket(bucket.to_owned()));
        }
        let name = bucket_table(bucket);
        let txn: WriteTransaction = self.db.begin_write().map_err(KvError::backend)?;
        let (result, added, removed) = {
            let mut table = txn
                .open_table(TableDefinition::<&str, &[u8]>::new(&name))
                .map_err(KvError::backend)?;
            f(&mut table)?
        };
        if added != removed {
            let mut sizes = txn.open_table(SIZES).map_err(KvError::backend)?;
            let before = sizes
                .get(bucket)
                .map_err(KvError::backend)?
                .map_or(0, |v| v.value());
            let total = sizes
                .get(TOTAL)
                .map_err(KvError::backend)?
                .map_or(0, |v| v.value());
            let after = (before + added).saturating_sub(removed);
            let new_total = (total + added).saturating_sub(removed);
            if added > removed {
                if after > limits.max_bytes {
                    return Err(KvError::BucketFull {
                        bucket: bucket.to_owned(),
                        needed: after,
                        limit: limits.max_bytes,
                    });
                }
                if new_total > self.max_bytes {
                    return Err(KvError::StoreFull {
                        limit: self.max_bytes,
                    });
                }
            }
            sizes.insert(bucket, after).map_err(KvError::backend)?;
            sizes.insert(TOTAL, new_total).map_err(KvError::backend)?;
        }
        txn.commit().map_err(KvError::backend)?;
        Ok(result)
    }

    /// Run `f` over `bucket` in a read transaction; a bucket never written is empty.
    fn read<R>(
        &self,
        bucket: &str,
        empty: R,
        f: impl FnOnce(&redb::ReadOnlyTable<&str, &[u8]>) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        let name = bucket_table(bucket);
        let txn = self.db.begin_read().map_err(KvError::backend)?;
        match txn.open_table(TableDefinition::<&str, &[u8]>::new(&name)) {
            Ok(table) => f(&table),
            Err(TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(KvError::backend(e)),
        }
    }
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLong(key.len()));
    }
    Ok(())
}

fn entry_size(key: &str, value: usize) -> u64 {
    (key.len() + value) as u64
}

impl KvBackend for RedbStore {
    fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.read(bucket, None, |table| {
            Ok(table
                .get(key)
                .map_err(KvError::backend)?
                .map(|v| v.value().to_vec()))
        })
    }

    fn get_many(&self, bucket: &str, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        if keys.len() > MAX_BATCH_KEYS {
            return Err(KvError::BatchTooLarge);
        }
        self.read(bucket, vec![None; keys.len()], |table| {
            let mut total = 0u64;
            let mut out = Vec::with_capacity(keys.len());
            for key in keys {
                let value = table
                    .get(key.as_str())
                    .map_err(KvError::backend)?
                    .map(|v| v.value().to_vec());
                total += value.as_ref().map_or(0, |v| v.len() as u64);
                if total > MAX_BATCH_BYTES {
                    return Err(KvError::BatchTooLarge);
                }
                out.push(value);
            }
            Ok(out)
        })
    }

    fn list(&self, bucket: &str, skip: u64, max: usize) -> Result<(Vec<String>, bool), KvError> {
        self.read(bucket, (Vec::new(), false), |table| {
            let mut keys = Vec::new();
            let skip = usize::try_from(skip).unwrap_or(usize::MAX);
            let mut iter = table.iter().map_err(KvError::backend)?.skip(skip);
            for entry in iter.by_ref().take(max) {
                let (k, _) = entry.map_err(KvError::backend)?;
                keys.push(k.value().to_owned());
            }
            Ok((keys, iter.next().is_some()))
        })
    }

    fn set_many(
        &self,
        bucket: &str,
        entries: &[(String, Vec<u8>)],
        limits: WriteLimits,
    ) -> Result<(), KvError> {
        if entries.len() > MAX_BATCH_KEYS {
            return Err(KvError::BatchTooLarge);
        }
        for (key, value) in entries {
            check_key(key)?;
            if value.len() as u64 > limits.max_value {
                return Err(KvError::ValueTooLarge {
                    size: value.len() as u64,
                    limit: limits.max_value,
                });
            }
        }
        self.write(bucket, limits, |table| {
            let (mut added, mut removed) = (0, 0);
            for (key, value) in entries {
                if let Some(old) = table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(KvError::backend)?
                {
                    removed += entry_size(key, old.value().len());
                }
                added += entry_size(key, value.len());
            }
            Ok(((), added, removed))
        })
    }

    fn delete_many(&self, bucket: &str, keys: &[String]) -> Result<(), KvError> {
        if keys.len() > MAX_BATCH_KEYS {
            return Err(KvError::BatchTooLarge);
        }
        self.write(bucket, WriteLimits::NONE, |table| {
            let mut removed = 0;
            for key in keys {
                if let Some(old) = table.remove(key.as_str()).map_err(KvError::backend)? {
                    removed += entry_size(key, old.value().len());
                }
            }
            Ok(((), 0, removed))
        })
    }

    fn increment(
        &self,
        bucket: &str,
        key: &str,
        delta: u64,
        limits: WriteLimits,
    ) -> Result<u64, KvError> {
        check_key(key)?;
        self.write(bucket, limits, |table| {
            let old = table.get(key).map_err(KvError::backend)?.map(|v| {
                let bytes = v.value();
                (
                    std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|t| t.parse::<u64>().ok()),
                    bytes.len(),
                )
            });
            let (current, old_len) = match old {
                None => (0, None),
                Some((Some(n), len)) => (n, Some(len)),
                Some((None, _)) => return Err(KvError::NotANumber(key.to_owned())),
            };
            let new = current
                .checked_add(delta)
                .ok_or_else(|| KvError::Overflow(key.to_owned()))?;
            let text = new.to_string();
            if text.len() as u64 > limits.max_value {
                return Err(KvError::ValueTooLarge {
                    size: text.len() as u64,
                    limit: limits.max_value,
                });
            }
            table
                .insert(key, text.as_bytes())
                .map_err(KvError::backend)?;
            let removed = old_len.map_or(0, |len| entry_size(key, len));
            Ok((new, entry_size(key, text.len()), removed))
        })
    }
}

/// The store `config` names: its database file, or memory.
pub(crate) fn open_store(config: &crate::engine::WasmConfig) -> anyhow::Result<Arc<dyn KvBackend>> {
    Ok(match &config.kv_path {
        Some(path) => Arc::new(RedbStore::open(path, config.kv_max_bytes)?),
        None => Arc::new(RedbStore::in_memory(config.kv_max_bytes)?),
    })
}

/// A bucket a guest has opened: its name and what its grant allows.
#[derive(Debug, Clone)]
pub struct OpenBucket {
    name: String,
    mode: BucketMode,
    limits: WriteLimits,
}

/// What the host side of `wasi:keyvalue` reaches of a process: its resource table,
/// its policy's `[keyvalue]` section and the node's store.
pub(crate) struct KvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) policy: &'a KeyValuePolicy,
    pub(crate) store: &'a Arc<dyn KvBackend>,
    /// How many buckets the process holds open (at most [`MAX_OPEN_BUCKETS`]).
    pub(crate) open: &'a mut usize,
}

/// The [`HasData`] of [`KvView`].
pub(crate) struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

/// Add `wasi:keyvalue` (`store`, `atomics`, `batch`) to `linker`, reaching each
/// process's view through `view`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, KvData>(linker, view)?;
    atomics::add_to_linker::<T, KvData>(linker, view)?;
    batch::add_to_linker::<T, KvData>(linker, view)?;
    Ok(())
}

fn to_wit(e: KvError) -> WitKvError {
    WitKvError::Other(e.to_string())
}

fn denied() -> WitKvError {
    WitKvError::AccessDenied
}

impl KvView<'_> {
    fn bucket(&self, bucket: &Resource<OpenBucket>) -> wasmtime::Result<OpenBucket> {
        Ok(self.table.get(bucket)?.clone())
    }

    /// The bucket, if its grant allows writing.
    fn writable(&self, bucket: &Resource<OpenBucket>) -> wasmtime::Result<Option<OpenBucket>> {
        let bucket = self.bucket(bucket)?;
        Ok((bucket.mode == BucketMode::ReadWrite).then_some(bucket))
    }

    /// Run a write on a blocking thread.
    fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn KvBackend) -> Result<R, KvError> + Send + 'static,
    ) -> impl Future<Output = Result<R, WitKvError>> + Send + 'static {
        let store = Arc::clone(self.store);
        async move {
            match tokio::task::spawn_blocking(move || f(&*store)).await {
                Ok(result) => result.map_err(to_wit),
                Err(e) => Err(WitKvError::Other(format!("key-value store: {e}"))),
            }
        }
    }
}

impl store::Host for KvView<'_> {
    fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<OpenBucket>, WitKvError>> {
        let Some(grant) = self.policy.bucket(&identifier) else {
            return Ok(Err(denied()));
        };
        if *self.open >= MAX_OPEN_BUCKETS {
            return Ok(Err(WitKvError::Other(format!(
                "too many open buckets: a process holds at most {MAX_OPEN_BUCKETS}"
            ))));
        }
        let bucket = OpenBucket {
            name: identifier,
            mode: grant.mode,
            limits: WriteLimits {
                max_bytes: grant.bucket_limit(),
                max_value: grant.value_limit(),
            },
        };
        let bucket = self.table.push(bucket)?;
        *self.open += 1;
        Ok(Ok(bucket))
    }
}

impl store::HostBucket for KvView<'_> {
    fn get(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, WitKvError>> {
        let bucket = self.table.get(&bucket)?;
        Ok(self.store.get(&bucket.name, &key).map_err(to_wit))
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), WitKvError>> {
        let Some(bucket) = self.writable(&bucket)? else {
            return Ok(Err(denied()));
        };
        Ok(self
            .blocking(move |s| s.set_many(&bucket.name, &[(key, value)], bucket.limits))
            .await)
    }

    async fn delete(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), WitKvError>> {
        let Some(bucket) = self.writable(&bucket)? else {
            return Ok(Err(denied()));
        };
        Ok(self
            .blocking(move |s| s.delete_many(&bucket.name, &[key]))
            .await)
    }

    fn exists(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, WitKvError>> {
        let bucket = self.table.get(&bucket)?;
        Ok(self.store.exists(&bucket.name, &key).map_err(to_wit))
    }

    fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, WitKvError>> {
        let bucket = self.table.get(&bucket)?;
        let skip = cursor.unwrap_or(0);
        Ok(self
            .store
            .list(&bucket.name, skip, LIST_PAGE)
            .map(|(keys, more)| store::KeyResponse {
                cursor: more.then(|| skip + keys.len() as u64),
                keys,
            })
            .map_err(to_wit))
    }

    fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        *self.open -= 1;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, WitKvError>> {
        let Some(bucket) = self.writable(&bucket)? else {
            return Ok(Err(denied()));
        };
        Ok(self
            .blocking(move |s| s.increment(&bucket.name, &key, delta, bucket.limits))
            .await)
    }
}

impl batch::Host for KvView<'_> {
    fn get_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, WitKvError>> {
        let bucket = self.table.get(&bucket)?;
        Ok(self
            .store
            .get_many(&bucket.name, &keys)
            .map(|values| {
                keys.into_iter()
                    .zip(values)
                    .map(|(k, v)| v.map(|v| (k, v)))
                    .collect()
            })
            .map_err(to_wit))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), WitKvError>> {
        let Some(bucket) = self.writable(&bucket)? else {
            return Ok(Err(denied()));
        };
        Ok(self
            .blocking(move |s| s.set_many(&bucket.name, &key_values, bucket.limits))
            .await)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), WitKvError>> {
        let Some(bucket) = self.writable(&bucket)? else {
            return Ok(Err(denied()));
        };
        Ok(self
            .blocking(move |s| s.delete_many(&bucket.name, &keys))
            .await)
    }
}
