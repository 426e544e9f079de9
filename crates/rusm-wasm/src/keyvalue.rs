//! The `wasi:keyvalue` grant: the node's store ([`KvBackend`], with [`RedbStore`], one
//! redb database file per node), and the host side of `store`, `atomics` and `batch`,
//! which opens only the buckets the policy's `[keyvalue]` section grants and writes
//! only to those granted `rw`, within their size limits.
//!
//! Two drafts of the interfaces are linked, so a component built against either runs:
//! `wasi:keyvalue@0.2.0-draft` and `@0.2.0-draft2`, which adds compare-and-swap
//! (`atomics.cas` and `atomics.swap`), takes a signed delta in `increment` and makes
//! `list-keys`'s cursor a string. Both reach the same buckets through the same checks:
//! the trait impls of each draft only convert types around the shared operations of
//! [`KvView`].
//!
//! Every write is one redb write transaction (a batch included, so it is stored whole
//! or not at all) and runs on a blocking thread: a commit waits for the disk, and a
//! tokio worker must not. Reads run on the caller's thread (a read transaction is a
//! snapshot and waits for nothing) against a snapshot the store keeps open between
//! writes: a read opens a redb read transaction and a bucket's table only when no
//! write has committed since the last read opened them, and every commit drops the
//! snapshot before the write returns, so a read that follows a write sees it and no
//! snapshot outlives the next commit (one kept longer would keep redb from reusing
//! the pages later commits free).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::RwLock;

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

#[cfg(feature = "jetstream")]
pub(crate) mod jetstream;

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit/rusm-runtime",
        world: "wasi:keyvalue/imports@0.2.0-draft",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::keyvalue::OpenBucket,
        },
    });
}

pub(crate) mod generated2 {
    wasmtime::component::bindgen!({
        path: "../../wit/rusm-runtime",
        world: "wasi:keyvalue/imports@0.2.0-draft2",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::keyvalue::OpenBucket,
            "wasi:keyvalue/atomics.cas": crate::keyvalue::Cas,
        },
    });
}

use generated::wasi::keyvalue0_2_0_draft as draft1;
use generated2::wasi::keyvalue0_2_0_draft2 as draft2;

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
    /// A key of a bucket shared through a cluster that is longer than
    /// `MAX_SHARED_KEY_BYTES` once escaped for JetStream.
    #[error(
        "key of {len} bytes is {escaped} bytes escaped for the cluster's JetStream bucket, \
         more than the most, 3072"
    )]
    SharedKeyTooLong {
        /// The key's length.
        len: usize,
        /// Its length escaped.
        escaped: usize,
    },
    /// A batch of more than [`MAX_BATCH_KEYS`] keys, or a `get-many` whose values add
    /// up to more than [`MAX_BATCH_BYTES`].
    #[error("the batch is too large: at most {MAX_BATCH_KEYS} keys and {MAX_BATCH_BYTES} bytes")]
    BatchTooLarge,
    /// `increment` of a value that is not a decimal `u64`.
    #[error("the value of {0:?} is not a decimal number, so it cannot be incremented")]
    NotANumber(String),
    /// `increment` to a sum outside the caller's integer type (`u64` for the first
    /// draft, `s64` for the second).
    #[error("incrementing {0:?} goes outside the range of the caller's integer type")]
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
    /// The buckets that hold something, sorted, with their sizes in bytes.
    fn buckets(&self) -> Result<Vec<(String, u64)>, KvError>;
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
    /// Add `delta` to the decimal integer at `key` (0 when missing) and return the sum,
    /// refusing a sum outside `range` (the caller's integer type).
    fn increment(
        &self,
        bucket: &str,
        key: &str,
        delta: i128,
        range: std::ops::RangeInclusive<i128>,
        limits: WriteLimits,
    ) -> Result<i128, KvError>;
    /// Store `value` at `key` if what `key` holds still has the version `expected`;
    /// otherwise store nothing and return the version it has now.
    fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: &ValueVersion,
        value: &[u8],
        limits: WriteLimits,
    ) -> Result<Result<(), ValueVersion>, KvError>;
}

/// What a compare-and-swap compares: a SHA-256 digest of a key's value, or the key's
/// absence. A handle holds this, not the value, so what it makes the host keep is the
/// same small size whatever the value's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueVersion(Option<[u8; 32]>);

impl ValueVersion {
    /// The version of `value` (`None`: the key is missing).
    pub fn of(value: Option<&[u8]>) -> ValueVersion {
        use sha2::Digest as _;
        ValueVersion(value.map(|v| sha2::Sha256::digest(v).into()))
    }
}

/// What a [`KvStore`] operation returns: a future the host awaits on the calling
/// process's task, never on a blocking thread of its own making.
pub type KvFuture<T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'static>>;

/// The buckets as the host calls them for `wasi:keyvalue`: every operation a future,
/// so a store across the network (JetStream, [`JetStreamStore`]) never blocks a
/// scheduler thread. The node's own is [`NodeBuckets`], which sends each bucket to
/// the store that backs it: the node's file ([`LocalStore`] over a [`KvBackend`]) or
/// one handed in for buckets shared through a cluster ([`WasmNode::share_buckets`]).
///
/// Every write is held to `limits` (the writer's grant) and checks the value's size
/// (and the key's) before it sends or stores anything.
///
/// [`WasmNode::share_buckets`]: crate::WasmNode::share_buckets
pub trait KvStore: Send + Sync + 'static {
    /// The value of `key` in `bucket`.
    fn get(&self, bucket: &str, key: &str) -> KvFuture<Option<Vec<u8>>>;
    /// The values of `keys`, in order (at most [`MAX_BATCH_BYTES`] in all).
    fn get_many(&self, bucket: &str, keys: Vec<String>) -> KvFuture<Vec<Option<Vec<u8>>>>;
    /// Whether `key` is in `bucket`.
    fn exists(&self, bucket: &str, key: &str) -> KvFuture<bool>;
    /// Up to `max` keys of `bucket` in key order, after skipping `skip`; and whether
    /// more follow.
    fn list(&self, bucket: &str, skip: u64, max: usize) -> KvFuture<(Vec<String>, bool)>;
    /// The buckets that hold something, sorted, with their sizes in bytes.
    fn buckets(&self) -> KvFuture<Vec<(String, u64)>>;
    /// Store every entry (all or none for the node's file; see the store's docs).
    fn set_many(
        &self,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
        limits: WriteLimits,
    ) -> KvFuture<()>;
    /// Remove every key that is there.
    fn delete_many(&self, bucket: &str, keys: Vec<String>) -> KvFuture<()>;
    /// Add `delta` to the decimal integer at `key` (0 when missing) and return the sum,
    /// refusing a sum outside `range`; no increment is lost to a concurrent one.
    fn increment(
        &self,
        bucket: &str,
        key: String,
        delta: i128,
        range: std::ops::RangeInclusive<i128>,
        limits: WriteLimits,
    ) -> KvFuture<i128>;
    /// Store `value` at `key` if its value still has the version `expected`;
    /// otherwise store nothing and return the version it has now.
    fn swap(
        &self,
        bucket: &str,
        key: String,
        expected: ValueVersion,
        value: Vec<u8>,
        limits: WriteLimits,
    ) -> KvFuture<Result<(), ValueVersion>>;
}

/// A [`KvBackend`] (the node's redb file) as a [`KvStore`]: reads answer at once on
/// the caller's thread (a snapshot read waits for nothing), writes run on a blocking
/// thread (a commit waits for the disk, and a tokio worker must not).
#[derive(Clone)]
pub struct LocalStore(pub Arc<dyn KvBackend>);

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalStore")
    }
}

impl LocalStore {
    fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn KvBackend) -> Result<R, KvError> + Send + 'static,
    ) -> KvFuture<R> {
        let store = Arc::clone(&self.0);
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || f(&*store)).await {
                Ok(result) => result,
                Err(e) => Err(KvError::Backend(e.to_string())),
            }
        })
    }
}

fn ready<T: Send + 'static>(result: Result<T, KvError>) -> KvFuture<T> {
    Box::pin(std::future::ready(result))
}

impl KvStore for LocalStore {
    fn get(&self, bucket: &str, key: &str) -> KvFuture<Option<Vec<u8>>> {
        ready(self.0.get(bucket, key))
    }

    fn get_many(&self, bucket: &str, keys: Vec<String>) -> KvFuture<Vec<Option<Vec<u8>>>> {
        ready(self.0.get_many(bucket, &keys))
    }

    fn exists(&self, bucket: &str, key: &str) -> KvFuture<bool> {
        ready(self.0.exists(bucket, key))
    }

    fn list(&self, bucket: &str, skip: u64, max: usize) -> KvFuture<(Vec<String>, bool)> {
        ready(self.0.list(bucket, skip, max))
    }

    fn buckets(&self) -> KvFuture<Vec<(String, u64)>> {
        ready(self.0.buckets())
    }

    fn set_many(
        &self,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
        limits: WriteLimits,
    ) -> KvFuture<()> {
        let bucket = bucket.to_owned();
        self.blocking(move |s| s.set_many(&bucket, &entries, limits))
    }

    fn delete_many(&self, bucket: &str, keys: Vec<String>) -> KvFuture<()> {
        let bucket = bucket.to_owned();
        self.blocking(move |s| s.delete_many(&bucket, &keys))
    }

    fn increment(
        &self,
        bucket: &str,
        key: String,
        delta: i128,
        range: std::ops::RangeInclusive<i128>,
        limits: WriteLimits,
    ) -> KvFuture<i128> {
        let bucket = bucket.to_owned();
        self.blocking(move |s| s.increment(&bucket, &key, delta, range, limits))
    }

    fn swap(
        &self,
        bucket: &str,
        key: String,
        expected: ValueVersion,
        value: Vec<u8>,
        limits: WriteLimits,
    ) -> KvFuture<Result<(), ValueVersion>> {
        let bucket = bucket.to_owned();
        self.blocking(move |s| s.swap(&bucket, &key, &expected, &value, limits))
    }
}

/// The buckets of a node: each in the node's file unless it is one of those
/// [`WasmNode::share_buckets`] handed to another store (JetStream, shared through the
/// cluster). The set is fixed once handed in, before the node spawns anything that
/// could open a bucket.
///
/// [`WasmNode::share_buckets`]: crate::WasmNode::share_buckets
pub struct NodeBuckets {
    local: LocalStore,
    shared: std::sync::OnceLock<SharedBuckets>,
}

struct SharedBuckets {
    names: std::collections::BTreeSet<String>,
    store: Arc<dyn KvStore>,
}

impl std::fmt::Debug for NodeBuckets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuckets")
            .field("shared", &self.shared.get().map(|s| &s.names))
            .finish_non_exhaustive()
    }
}

impl NodeBuckets {
    pub(crate) fn new(local: Arc<dyn KvBackend>) -> NodeBuckets {
        NodeBuckets {
            local: LocalStore(local),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Back the buckets `names` by `store` from now on; `false` when buckets were
    /// already shared (the set is fixed once).
    pub(crate) fn share(
        &self,
        names: std::collections::BTreeSet<String>,
        store: Arc<dyn KvStore>,
    ) -> bool {
        self.shared.set(SharedBuckets { names, store }).is_ok()
    }

    /// Whether `bucket` is one of the shared ones.
    pub fn is_shared(&self, bucket: &str) -> bool {
        self.shared.get().is_some_and(|s| s.names.contains(bucket))
    }

    /// The store backing `bucket`.
    fn route(&self, bucket: &str) -> &dyn KvStore {
        match self.shared.get() {
            Some(shared) if shared.names.contains(bucket) => &*shared.store,
            _ => &self.local,
        }
    }
}

impl KvStore for NodeBuckets {
    fn get(&self, bucket: &str, key: &str) -> KvFuture<Option<Vec<u8>>> {
        self.route(bucket).get(bucket, key)
    }

    fn get_many(&self, bucket: &str, keys: Vec<String>) -> KvFuture<Vec<Option<Vec<u8>>>> {
        self.route(bucket).get_many(bucket, keys)
    }

    fn exists(&self, bucket: &str, key: &str) -> KvFuture<bool> {
        self.route(bucket).exists(bucket, key)
    }

    fn list(&self, bucket: &str, skip: u64, max: usize) -> KvFuture<(Vec<String>, bool)> {
        self.route(bucket).list(bucket, skip, max)
    }

    /// The node file's buckets and the shared ones together, sorted by name (a shared
    /// bucket's size is what its store reports).
    fn buckets(&self) -> KvFuture<Vec<(String, u64)>> {
        let local = self.local.buckets();
        let shared = self.shared.get().map(|s| s.store.buckets());
        let names = self
            .shared
            .get()
            .map(|s| s.names.clone())
            .unwrap_or_default();
        Box::pin(async move {
            let mut all: Vec<(String, u64)> = local
                .await?
                .into_iter()
                .filter(|(name, _)| !names.contains(name))
                .collect();
            if let Some(shared) = shared {
                all.extend(shared.await?);
            }
            all.sort();
            Ok(all)
        })
    }

    fn set_many(
        &self,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
        limits: WriteLimits,
    ) -> KvFuture<()> {
        self.route(bucket).set_many(bucket, entries, limits)
    }

    fn delete_many(&self, bucket: &str, keys: Vec<String>) -> KvFuture<()> {
        self.route(bucket).delete_many(bucket, keys)
    }

    fn increment(
        &self,
        bucket: &str,
        key: String,
        delta: i128,
        range: std::ops::RangeInclusive<i128>,
        limits: WriteLimits,
    ) -> KvFuture<i128> {
        self.route(bucket)
            .increment(bucket, key, delta, range, limits)
    }

    fn swap(
        &self,
        bucket: &str,
        key: String,
        expected: ValueVersion,
        value: Vec<u8>,
        limits: WriteLimits,
    ) -> KvFuture<Result<(), ValueVersion>> {
        self.route(bucket)
            .swap(bucket, key, expected, value, limits)
    }
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
    /// The snapshot reads share until the next commit (declared first, so it ends
    /// before the database).
    snapshot: RwLock<Snapshot>,
    db: Database,
    max_bytes: u64,
}

/// The most buckets' tables one [`Snapshot`] keeps open (past it, it starts again).
const SNAPSHOT_TABLES: usize = 1024;

/// A read transaction opened after the last commit, and the tables of the buckets
/// read in it (`None` for a bucket never written).
#[derive(Default)]
struct Snapshot {
    txn: Option<redb::ReadTransaction>,
    tables: HashMap<String, Option<BucketTable>>,
}

type BucketTable = redb::ReadOnlyTable<&'static str, &'static [u8]>;

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
        let store = RedbStore::with(db, max_bytes);
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
        let store = RedbStore::with(db, max_bytes);
        store.init()?;
        Ok(store)
    }

    fn with(db: Database, max_bytes: u64) -> RedbStore {
        RedbStore {
            snapshot: RwLock::new(Snapshot::default()),
            db,
            max_bytes,
        }
    }

    /// Make sure the sizes table exists, so reads of it never miss.
    fn init(&self) -> Result<(), KvError> {
        let txn = self.db.begin_write().map_err(KvError::backend)?;
        txn.open_table(SIZES).map_err(KvError::backend)?;
        txn.commit().map_err(KvError::backend)
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
    /// transaction) past the bucket's or the store's limit. `f` reports no change
    /// (`None`) when it wrote nothing, and the transaction is dropped uncommitted.
    fn write<R>(
        &self,
        bucket: &str,
        limits: WriteLimits,
        f: impl FnOnce(&mut redb::Table<'_, &str, &[u8]>) -> Result<(R, Option<(u64, u64)>), KvError>,
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
            match f(&mut table)? {
                (result, Some((added, removed))) => (result, added, removed),
                (result, None) => return Ok(result),
            }
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
        // Under the lock a snapshot is opened with, so one opened before the commit is
        // gone before the write returns, and none opened after it misses the write.
        *self.snapshot.write() = Snapshot::default();
        Ok(result)
    }

    /// Run `f` over `bucket` in the current snapshot (opening it, or the bucket's table
    /// in it, if no read has since the last commit); a bucket never written is empty.
    fn read<R>(
        &self,
        bucket: &str,
        empty: R,
        f: impl FnOnce(&BucketTable) -> Result<R, KvError>,
    ) -> Result<R, KvError> {
        {
            let snapshot = self.snapshot.read();
            if let Some(table) = snapshot.tables.get(bucket) {
                return match table {
                    Some(table) => f(table),
                    None => Ok(empty),
                };
            }
        }
        let mut snapshot = self.snapshot.write();
        if snapshot.tables.len() >= SNAPSHOT_TABLES {
            snapshot.tables.clear();
        }
        let txn = match snapshot.txn.take() {
            Some(txn) => txn,
            None => self.db.begin_read().map_err(KvError::backend)?,
        };
        let opened = txn.open_table(TableDefinition::<&str, &[u8]>::new(&bucket_table(bucket)));
        snapshot.txn = Some(txn);
        let table = match opened {
            Ok(table) => Some(table),
            Err(TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(KvError::backend(e)),
        };
        let result = match &table {
            Some(table) => f(table),
            None => Ok(empty),
        };
        snapshot.tables.insert(bucket.to_owned(), table);
        result
    }
}

pub(crate) fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLong(key.len()));
    }
    Ok(())
}

/// A value of `len` bytes fits the bucket's `max_value`.
pub(crate) fn check_value(len: usize, limits: WriteLimits) -> Result<(), KvError> {
    if len as u64 > limits.max_value {
        return Err(KvError::ValueTooLarge {
            size: len as u64,
            limit: limits.max_value,
        });
    }
    Ok(())
}

pub(crate) fn entry_size(key: &str, value: usize) -> u64 {
    (key.len() + value) as u64
}

impl KvBackend for RedbStore {
    fn buckets(&self) -> Result<Vec<(String, u64)>, KvError> {
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
            check_value(value.len(), limits)?;
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
            Ok(((), Some((added, removed))))
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
            Ok(((), Some((0, removed))))
        })
    }

    fn increment(
        &self,
        bucket: &str,
        key: &str,
        delta: i128,
        range: std::ops::RangeInclusive<i128>,
        limits: WriteLimits,
    ) -> Result<i128, KvError> {
        check_key(key)?;
        self.write(bucket, limits, |table| {
            let old = table.get(key).map_err(KvError::backend)?.map(|v| {
                let bytes = v.value();
                (
                    std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|t| t.parse::<i128>().ok()),
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
                .filter(|sum| range.contains(sum))
                .ok_or_else(|| KvError::Overflow(key.to_owned()))?;
            let text = new.to_string();
            check_value(text.len(), limits)?;
            table
                .insert(key, text.as_bytes())
                .map_err(KvError::backend)?;
            let removed = old_len.map_or(0, |len| entry_size(key, len));
            Ok((new, Some((entry_size(key, text.len()), removed))))
        })
    }

    fn swap(
        &self,
        bucket: &str,
        key: &str,
        expected: &ValueVersion,
        value: &[u8],
        limits: WriteLimits,
    ) -> Result<Result<(), ValueVersion>, KvError> {
        check_key(key)?;
        check_value(value.len(), limits)?;
        self.write(bucket, limits, |table| {
            let old = table.get(key).map_err(KvError::backend)?;
            let now = ValueVersion::of(old.as_ref().map(|v| v.value()));
            let old_len = old.map(|v| v.value().len());
            if now != *expected {
                return Ok((Err(now), None));
            }
            table.insert(key, value).map_err(KvError::backend)?;
            let removed = old_len.map_or(0, |len| entry_size(key, len));
            Ok((Ok(()), Some((entry_size(key, value.len()), removed))))
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

/// A compare-and-swap a guest has begun (`atomics.cas`, second draft): the bucket
/// (granted `rw`), the key, and the version of the value the guest last saw through
/// it, which `swap` requires the key still to have.
#[derive(Debug, Clone)]
pub struct Cas {
    bucket: String,
    limits: WriteLimits,
    key: String,
    expected: ValueVersion,
}

/// The most compare-and-swap handles a process holds at once.
pub const MAX_OPEN_CAS: usize = 256;

/// What the host side of `wasi:keyvalue` reaches of a process: its resource table,
/// its policy's `[keyvalue]` section and the node's store.
pub(crate) struct KvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) policy: &'a KeyValuePolicy,
    pub(crate) store: &'a Arc<NodeBuckets>,
    /// How many buckets the process holds open (at most [`MAX_OPEN_BUCKETS`]).
    pub(crate) open: &'a mut usize,
    /// How many compare-and-swap handles it holds (at most [`MAX_OPEN_CAS`]).
    pub(crate) open_cas: &'a mut usize,
}

/// The [`HasData`] of [`KvView`].
pub(crate) struct KvData;

impl HasData for KvData {
    type Data<'a> = KvView<'a>;
}

/// Add `wasi:keyvalue` (`store`, `atomics`, `batch`, of both drafts) to `linker`,
/// reaching each process's view through `view`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    draft1::store::add_to_linker::<T, KvData>(linker, view)?;
    draft1::atomics::add_to_linker::<T, KvData>(linker, view)?;
    draft1::batch::add_to_linker::<T, KvData>(linker, view)?;
    draft2::store::add_to_linker::<T, KvData>(linker, view)?;
    draft2::atomics::add_to_linker::<T, KvData>(linker, view)?;
    draft2::batch::add_to_linker::<T, KvData>(linker, view)?;
    Ok(())
}

/// Why an operation failed, as both drafts' `error` say it.
#[derive(Debug)]
enum Refused {
    /// `access-denied`: the policy does not grant it.
    Denied,
    /// `other`, with the reason.
    Other(String),
}

impl From<KvError> for Refused {
    fn from(e: KvError) -> Refused {
        Refused::Other(e.to_string())
    }
}

impl From<Refused> for draft1::store::Error {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Denied => Self::AccessDenied,
            Refused::Other(why) => Self::Other(why),
        }
    }
}

impl From<Refused> for draft2::store::Error {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Denied => Self::AccessDenied,
            Refused::Other(why) => Self::Other(why),
        }
    }
}

/// The result a host call hands the guest: a trap (`Err`, for a handle that is not
/// the process's), or the operation's own result in the draft's error type.
type Answer<T, E> = wasmtime::Result<Result<T, E>>;

/// A key and its value, as `get-many` returns them.
type Entry = (String, Vec<u8>);

/// A shared operation's result: a trap, or the operation's own in [`Refused`] terms.
type Outcome<T> = wasmtime::Result<Result<T, Refused>>;

fn answer<T, E: From<Refused>>(r: Outcome<T>) -> Answer<T, E> {
    r.map(|r| r.map_err(E::from))
}

/// The shared operations both drafts' impls convert around.
impl KvView<'_> {
    /// The bucket, if its grant allows writing.
    fn writable(&self, bucket: &Resource<OpenBucket>) -> wasmtime::Result<Option<OpenBucket>> {
        let bucket = self.table.get(bucket)?;
        Ok((bucket.mode == BucketMode::ReadWrite).then(|| bucket.clone()))
    }

    fn open_bucket(&mut self, identifier: String) -> Outcome<Resource<OpenBucket>> {
        let Some(grant) = self.policy.bucket(&identifier) else {
            return Ok(Err(Refused::Denied));
        };
        if *self.open >= MAX_OPEN_BUCKETS {
            return Ok(Err(Refused::Other(format!(
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

    fn drop_bucket(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        *self.open -= 1;
        Ok(())
    }

    async fn get_value(
        &mut self,
        bucket: &Resource<OpenBucket>,
        key: &str,
    ) -> Outcome<Option<Vec<u8>>> {
        let bucket = self.table.get(bucket)?;
        let read = self.store.get(&bucket.name, key);
        Ok(read.await.map_err(Refused::from))
    }

    async fn key_exists(&mut self, bucket: &Resource<OpenBucket>, key: &str) -> Outcome<bool> {
        let bucket = self.table.get(bucket)?;
        let read = self.store.exists(&bucket.name, key);
        Ok(read.await.map_err(Refused::from))
    }

    /// A page of keys after skipping `skip`, and the skip of the next page if any.
    async fn list_page(
        &mut self,
        bucket: &Resource<OpenBucket>,
        skip: u64,
    ) -> Outcome<(Vec<String>, Option<u64>)> {
        let bucket = self.table.get(bucket)?;
        let read = self.store.list(&bucket.name, skip, LIST_PAGE);
        Ok(read
            .await
            .map(|(keys, more)| {
                let next = more.then(|| skip + keys.len() as u64);
                (keys, next)
            })
            .map_err(Refused::from))
    }

    async fn set_entries(
        &mut self,
        bucket: &Resource<OpenBucket>,
        entries: Vec<(String, Vec<u8>)>,
    ) -> Outcome<()> {
        let Some(bucket) = self.writable(bucket)? else {
            return Ok(Err(Refused::Denied));
        };
        let write = self.store.set_many(&bucket.name, entries, bucket.limits);
        Ok(write.await.map_err(Refused::from))
    }

    async fn delete_keys(
        &mut self,
        bucket: &Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Outcome<()> {
        let Some(bucket) = self.writable(bucket)? else {
            return Ok(Err(Refused::Denied));
        };
        let write = self.store.delete_many(&bucket.name, keys);
        Ok(write.await.map_err(Refused::from))
    }

    async fn add(
        &mut self,
        bucket: &Resource<OpenBucket>,
        key: String,
        delta: i128,
        range: std::ops::RangeInclusive<i128>,
    ) -> Outcome<i128> {
        let Some(bucket) = self.writable(bucket)? else {
            return Ok(Err(Refused::Denied));
        };
        let write = self
            .store
            .increment(&bucket.name, key, delta, range, bucket.limits);
        Ok(write.await.map_err(Refused::from))
    }

    async fn get_entries(
        &mut self,
        bucket: &Resource<OpenBucket>,
        keys: Vec<String>,
    ) -> Outcome<Vec<Option<Entry>>> {
        let bucket = self.table.get(bucket)?;
        let read = self.store.get_many(&bucket.name, keys.clone());
        Ok(read
            .await
            .map(|values| {
                keys.into_iter()
                    .zip(values)
                    .map(|(k, v)| v.map(|v| (k, v)))
                    .collect()
            })
            .map_err(Refused::from))
    }

    /// A new compare-and-swap handle on `key`, expecting the value it holds now.
    fn push_cas(
        &mut self,
        bucket: &OpenBucket,
        key: String,
        expected: ValueVersion,
    ) -> Outcome<Resource<Cas>> {
        if *self.open_cas >= MAX_OPEN_CAS {
            return Ok(Err(Refused::Other(format!(
                "too many compare-and-swap handles: a process holds at most {MAX_OPEN_CAS}"
            ))));
        }
        let cas = self.table.push(Cas {
            bucket: bucket.name.clone(),
            limits: bucket.limits,
            key,
            expected,
        })?;
        *self.open_cas += 1;
        Ok(Ok(cas))
    }

    async fn begin_cas(
        &mut self,
        bucket: &Resource<OpenBucket>,
        key: String,
    ) -> Outcome<Resource<Cas>> {
        let Some(bucket) = self.writable(bucket)? else {
            return Ok(Err(Refused::Denied));
        };
        if let Err(e) = check_key(&key) {
            return Ok(Err(e.into()));
        }
        let value = match self.store.get(&bucket.name, &key).await {
            Ok(value) => value,
            Err(e) => return Ok(Err(e.into())),
        };
        self.push_cas(&bucket, key, ValueVersion::of(value.as_deref()))
    }

    /// The value `cas`'s key holds now, which from here on is what its swap expects.
    async fn cas_current(&mut self, cas: &Resource<Cas>) -> Outcome<Option<Vec<u8>>> {
        let read = {
            let cas = self.table.get(cas)?;
            self.store.get(&cas.bucket, &cas.key)
        };
        let value = read.await;
        // The handle is the caller's: it cannot have gone while the read ran.
        let cas = self.table.get_mut(cas)?;
        Ok(match value {
            Ok(value) => {
                cas.expected = ValueVersion::of(value.as_deref());
                Ok(value)
            }
            Err(e) => Err(e.into()),
        })
    }

    fn drop_cas(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        *self.open_cas -= 1;
        Ok(())
    }
}

/// What both drafts share word for word, but for their types: `store.open`, the
/// bucket's `get`, `set`, `delete`, `exists` and `drop` (inside the draft's
/// `HostBucket` impl), and all of `batch`.
macro_rules! shared_by_both_drafts {
    (bucket $draft:ident) => {
        async fn get(
            &mut self,
            bucket: Resource<OpenBucket>,
            key: String,
        ) -> Answer<Option<Vec<u8>>, $draft::store::Error> {
            answer(self.get_value(&bucket, &key).await)
        }

        async fn set(
            &mut self,
            bucket: Resource<OpenBucket>,
            key: String,
            value: Vec<u8>,
        ) -> Answer<(), $draft::store::Error> {
            answer(self.set_entries(&bucket, vec![(key, value)]).await)
        }

        async fn delete(
            &mut self,
            bucket: Resource<OpenBucket>,
            key: String,
        ) -> Answer<(), $draft::store::Error> {
            answer(self.delete_keys(&bucket, vec![key]).await)
        }

        async fn exists(
            &mut self,
            bucket: Resource<OpenBucket>,
            key: String,
        ) -> Answer<bool, $draft::store::Error> {
            answer(self.key_exists(&bucket, &key).await)
        }

        async fn drop(&mut self, bucket: Resource<OpenBucket>) -> wasmtime::Result<()> {
            self.drop_bucket(bucket)
        }
    };
    (store and batch $draft:ident) => {
        impl $draft::store::Host for KvView<'_> {
            async fn open(
                &mut self,
                identifier: String,
            ) -> Answer<Resource<OpenBucket>, $draft::store::Error> {
                answer(self.open_bucket(identifier))
            }
        }

        impl $draft::batch::Host for KvView<'_> {
            async fn get_many(
                &mut self,
                bucket: Resource<OpenBucket>,
                keys: Vec<String>,
            ) -> Answer<Vec<Option<Entry>>, $draft::store::Error> {
                answer(self.get_entries(&bucket, keys).await)
            }

            async fn set_many(
                &mut self,
                bucket: Resource<OpenBucket>,
                key_values: Vec<Entry>,
            ) -> Answer<(), $draft::store::Error> {
                answer(self.set_entries(&bucket, key_values).await)
            }

            async fn delete_many(
                &mut self,
                bucket: Resource<OpenBucket>,
                keys: Vec<String>,
            ) -> Answer<(), $draft::store::Error> {
                answer(self.delete_keys(&bucket, keys).await)
            }
        }
    };
}

shared_by_both_drafts!(store and batch draft1);
shared_by_both_drafts!(store and batch draft2);

impl draft1::store::HostBucket for KvView<'_> {
    shared_by_both_drafts!(bucket draft1);

    async fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<u64>,
    ) -> Answer<draft1::store::KeyResponse, draft1::store::Error> {
        answer(
            self.list_page(&bucket, cursor.unwrap_or(0))
                .await
                .map(|r| r.map(|(keys, cursor)| draft1::store::KeyResponse { keys, cursor })),
        )
    }
}

impl draft1::atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: u64,
    ) -> Answer<u64, draft1::store::Error> {
        let range = 0..=i128::from(u64::MAX);
        answer(
            self.add(&bucket, key, i128::from(delta), range)
                .await
                .map(|r| r.map(|sum| sum as u64)),
        )
    }
}

impl draft2::store::HostBucket for KvView<'_> {
    shared_by_both_drafts!(bucket draft2);

    /// The cursor is the decimal count of keys before the next page.
    async fn list_keys(
        &mut self,
        bucket: Resource<OpenBucket>,
        cursor: Option<String>,
    ) -> Answer<draft2::store::KeyResponse, draft2::store::Error> {
        let skip = match cursor.as_deref().map(str::parse::<u64>) {
            None => 0,
            Some(Ok(skip)) => skip,
            Some(Err(_)) => {
                return Ok(Err(draft2::store::Error::Other(format!(
                    "invalid cursor {:?}: pass back the one list-keys returned",
                    cursor.unwrap_or_default()
                ))));
            }
        };
        answer(self.list_page(&bucket, skip).await.map(|r| {
            r.map(|(keys, next)| draft2::store::KeyResponse {
                keys,
                cursor: next.map(|n| n.to_string()),
            })
        }))
    }
}

impl draft2::atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
    ) -> Answer<Resource<Cas>, draft2::store::Error> {
        answer(self.begin_cas(&bucket, key).await)
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> Answer<Option<Vec<u8>>, draft2::store::Error> {
        answer(self.cas_current(&cas).await)
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.drop_cas(cas)
    }
}

impl draft2::atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<OpenBucket>,
        key: String,
        delta: i64,
    ) -> Answer<i64, draft2::store::Error> {
        let range = i128::from(i64::MIN)..=i128::from(i64::MAX);
        answer(
            self.add(&bucket, key, i128::from(delta), range)
                .await
                .map(|r| r.map(|sum| sum as i64)),
        )
    }

    /// Store `value` if the key still holds what the handle expects; otherwise a new
    /// handle expecting what it holds now (`cas-failed`).
    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> Answer<(), draft2::atomics::CasError> {
        use draft2::atomics::CasError;
        let cas = self.table.delete(cas)?;
        *self.open_cas -= 1;
        let (bucket, limits, key, expected) = (cas.bucket, cas.limits, cas.key, cas.expected);
        let key_for_retry = key.clone();
        let bucket_for_retry = bucket.clone();
        let swapped = self
            .store
            .swap(&bucket, key, expected, value, limits)
            .await
            .map_err(Refused::from);
        Ok(match swapped {
            Ok(Ok(())) => Ok(()),
            Ok(Err(now)) => {
                let retry = OpenBucket {
                    name: bucket_for_retry,
                    mode: BucketMode::ReadWrite,
                    limits,
                };
                match self.push_cas(&retry, key_for_retry, now)? {
                    Ok(cas) => Err(CasError::CasFailed(cas)),
                    Err(refused) => Err(CasError::StoreError(refused.into())),
                }
            }
            Err(refused) => Err(CasError::StoreError(refused.into())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(store: &RedbStore, bucket: &str, key: &str, value: &[u8]) {
        store
            .set_many(bucket, &[(key.into(), value.to_vec())], WriteLimits::NONE)
            .unwrap();
    }

    /// Every write drops the snapshot reads share, so a read after it sees it: a
    /// bucket first read while it did not exist, a set, an increment, a delete.
    #[test]
    fn a_read_after_a_write_sees_it_through_the_shared_snapshot() {
        let store = RedbStore::in_memory(1 << 20).unwrap();
        assert_eq!(store.get("b", "k").unwrap(), None);
        set(&store, "b", "k", b"1");
        assert_eq!(store.get("b", "k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get("b", "k").unwrap(), Some(b"1".to_vec()));
        let u64s = 0..=i128::from(u64::MAX);
        assert_eq!(
            store
                .increment("b", "n", 5, u64s.clone(), WriteLimits::NONE)
                .unwrap(),
            5
        );
        assert_eq!(store.list("b", 0, 10).unwrap().0, ["k", "n"]);
        store.delete_many("b", &["k".into()]).unwrap();
        assert_eq!(store.get("b", "k").unwrap(), None);
        assert!(!store.exists("b", "k").unwrap());
        // A refused write commits nothing, and reads go on seeing what is there.
        let tight = WriteLimits {
            max_bytes: 4,
            max_value: 1,
        };
        assert!(
            store
                .set_many("b", &[("k".into(), b"22".to_vec())], tight)
                .is_err()
        );
        assert_eq!(store.get("b", "n").unwrap(), Some(b"5".to_vec()));
        // The first draft's range refuses what the second's takes, and the reverse.
        let s64s = i128::from(i64::MIN)..=i128::from(i64::MAX);
        assert_eq!(
            store.increment("b", "n", -6, u64s, WriteLimits::NONE),
            Err(KvError::Overflow("n".into()))
        );
        assert_eq!(
            store.increment("b", "n", -6, s64s.clone(), WriteLimits::NONE),
            Ok(-1)
        );
        set(&store, "b", "big", u64::MAX.to_string().as_bytes());
        assert_eq!(
            store.increment("b", "big", 0, s64s, WriteLimits::NONE),
            Err(KvError::Overflow("big".into()))
        );
    }

    /// Readers on other threads while a writer increments: no reader ever sees the
    /// number go back, and the writer reads each sum it stored (or a later one).
    #[test]
    fn reads_beside_writes_never_go_back_and_see_their_own_writes() {
        let store = Arc::new(RedbStore::in_memory(1 << 20).unwrap());
        let number = |store: &RedbStore| -> u64 {
            store
                .get("b", "n")
                .unwrap()
                .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
        };
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, done) = (store.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut last = 0;
                    let mut reads = 0u64;
                    while !done.load(std::sync::atomic::Ordering::Acquire) || reads == 0 {
                        let now = number(&store);
                        assert!(now >= last, "read {now} after {last}");
                        last = now;
                        reads += 1;
                    }
                })
            })
            .collect();
        for i in 1..=300u64 {
            let sum = store
                .increment("b", "n", 1, 0..=i128::from(u64::MAX), WriteLimits::NONE)
                .unwrap();
            assert_eq!(sum, i128::from(i));
            assert!(number(&store) >= i, "the writer reads its own write");
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        for reader in readers {
            reader.join().unwrap();
        }
        assert_eq!(number(&store), 300);
    }

    #[test]
    fn a_swap_stores_only_over_the_version_it_expects() {
        let store = RedbStore::in_memory(1 << 20).unwrap();
        let missing = ValueVersion::of(None);
        assert_eq!(
            store.swap("b", "k", &missing, b"one", WriteLimits::NONE),
            Ok(Ok(()))
        );
        assert_eq!(store.get("b", "k").unwrap(), Some(b"one".to_vec()));
        // Expecting it missing again is stale: nothing stored, the version it has.
        assert_eq!(
            store.swap("b", "k", &missing, b"two", WriteLimits::NONE),
            Ok(Err(ValueVersion::of(Some(b"one"))))
        );
        assert_eq!(store.get("b", "k").unwrap(), Some(b"one".to_vec()));
        let one = ValueVersion::of(Some(b"one"));
        assert_eq!(
            store.swap("b", "k", &one, b"two", WriteLimits::NONE),
            Ok(Ok(()))
        );
        assert_eq!(store.get("b", "k").unwrap(), Some(b"two".to_vec()));
        assert_eq!(store.bucket_bytes("b").unwrap(), 4);
        // Held to the bucket's limits as a set is.
        let tight = WriteLimits {
            max_bytes: 1 << 20,
            max_value: 2,
        };
        let two = ValueVersion::of(Some(b"two"));
        assert!(matches!(
            store.swap("b", "k", &two, b"three", tight),
            Err(KvError::ValueTooLarge { size: 5, limit: 2 })
        ));
        assert_eq!(store.get("b", "k").unwrap(), Some(b"two".to_vec()));
    }
}
