//! Buckets shared through a cluster: each a JetStream KV bucket on the cluster's NATS
//! server, so every node of the cluster reads and writes the same keys.
//!
//! [`JetStreamStore`] is a [`KvStore`]: every operation is a request to the server,
//! awaited on the calling process's task (never a blocking thread), and bounded by a
//! timeout ([`SHARED_TIMEOUT`] by default), so a server that does not answer gives the
//! guest the interface's `other` error instead of a hang. The store is handed in by
//! whoever holds the NATS connection (the CLI's clustered node, an embedder): this
//! crate knows nothing of the cluster itself.
//!
//! What JetStream gives, and so what a shared bucket promises:
//! - one key's write is atomic, and `increment` and compare-and-swap are built on the
//!   server's revision check (a write that expects the key's last revision), retried
//!   when another writer got there first: concurrent increments from any nodes lose
//!   nothing;
//! - a batch (`set-many`, `delete-many`) is checked whole before anything is sent
//!   (count, key and value sizes, the bucket's `max_bytes`), then written key by key in
//!   order: it is not atomic, and a failure part-way (the server gone) leaves the keys
//!   before it written;
//! - the bucket's size is what the server reports storing for it (keys, values and
//!   each message's headers), which the writer's `max_bytes` is checked against before
//!   a write that adds bytes; two nodes writing at once may each pass the check, so the
//!   bucket can pass its limit by the writes in flight.
//!
//! Keys are free text in `wasi:keyvalue` but JetStream's are not: a key is escaped
//! (letters, digits, `-`, `_` and `/` as they are, every other byte `=` and two
//! upper-case hex digits, the empty key `=`) and must fit [`MAX_SHARED_KEY_BYTES`]
//! escaped, so the subject it is written under fits the server's protocol line.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::TryStreamExt as _;

use super::{
    KvError, KvFuture, KvStore, MAX_BATCH_BYTES, MAX_BATCH_KEYS, ValueVersion, WriteLimits,
    check_key, check_value, entry_size,
};

/// How long one request to the server may take by default before the guest is told
/// the bucket did not answer.
pub const SHARED_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest key of a shared bucket, in bytes once escaped (see the module docs):
/// the subject it is written under must fit the server's 4 KiB protocol line.
pub const MAX_SHARED_KEY_BYTES: usize = 3072;

/// The most times one `increment` retries after losing a race to another writer.
const RACE_RETRIES: usize = 10_000;

/// Bytes of a value's message that are not the value (its headers), kept free under
/// the server's `max_payload`.
const HEADER_ROOM: usize = 512;

/// Buckets shared through a cluster, each a JetStream KV bucket. See the module docs
/// for what a shared bucket promises.
#[derive(Clone)]
pub struct JetStreamStore {
    inner: Arc<Inner>,
}

struct Inner {
    buckets: HashMap<String, Shared>,
    /// The largest message the server takes.
    max_payload: usize,
    timeout: Duration,
}

/// One shared bucket: its KV view and the stream behind it (for its size and for
/// removing keys).
struct Shared {
    kv: kv::Store,
    stream: jetstream::stream::Stream,
    /// The subject prefix of its keys (`$KV.<bucket>.`).
    prefix: String,
    /// The JetStream bucket's name.
    name: String,
}

impl std::fmt::Debug for JetStreamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamStore")
            .field("buckets", &self.inner.buckets.keys().collect::<Vec<_>>())
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// Escape a guest's key into a JetStream key (see the module docs).
fn encode_key(key: &str) -> Result<String, KvError> {
    check_key(key)?;
    if key.is_empty() {
        return Ok("=".into());
    }
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'/') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "={byte:02X}");
        }
    }
    if out.len() > MAX_SHARED_KEY_BYTES {
        return Err(KvError::SharedKeyTooLong {
            len: key.len(),
            escaped: out.len(),
        });
    }
    Ok(out)
}

/// The guest's key a JetStream key stands for; `None` for one this store did not
/// write (put there by another client).
fn decode_key(key: &str) -> Option<String> {
    if key == "=" {
        return Some(String::new());
    }
    let mut out = Vec::with_capacity(key.len());
    let bytes = key.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = key.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    // Only the one escape this store makes of it, so every key listed can be read.
    String::from_utf8(out)
        .ok()
        .filter(|k| encode_key(k).ok().as_deref() == Some(key))
}

impl JetStreamStore {
    /// Open (creating them when missing) the JetStream KV buckets `buckets` names,
    /// each a pair of the bucket's name as guests open it and the JetStream bucket
    /// that backs it (letters, digits, `-` and `_`), on the server `client` is
    /// connected to. Every request waits at most `timeout`.
    ///
    /// The buckets are made the way a 2.9 server takes them: one value per key
    /// (no history), direct reads, new writes refused rather than old values dropped
    /// when the server's limits are reached.
    ///
    /// # Errors
    /// When the server has no JetStream, refuses a bucket, or does not answer.
    pub async fn open(
        client: async_nats::Client,
        buckets: impl IntoIterator<Item = (String, String)>,
        timeout: Duration,
    ) -> Result<JetStreamStore, KvError> {
        let max_payload = client.server_info().max_payload;
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let mut open = HashMap::new();
        for (bucket, name) in buckets {
            let fail = |what: &str, e: &dyn std::fmt::Display| {
                KvError::Backend(format!(
                    "{what} the JetStream bucket {name} (for bucket {bucket:?}): {e}"
                ))
            };
            let config = jetstream::stream::Config {
                name: format!("KV_{name}"),
                subjects: vec![format!("$KV.{name}.>")],
                max_messages_per_subject: 1,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            };
            // Another node may create it meanwhile: the same config is taken again.
            let stream = within(timeout, js.get_or_create_stream(config))
                .await
                .map_err(|e| fail("creating", &e))?
                .map_err(|e| fail("creating", &e))?;
            let kv = within(timeout, js.get_key_value(name.clone()))
                .await
                .map_err(|e| fail("opening", &e))?
                .map_err(|e| fail("opening", &e))?;
            open.insert(
                bucket,
                Shared {
                    kv,
                    stream,
                    prefix: format!("$KV.{name}."),
                    name,
                },
            );
        }
        Ok(JetStreamStore {
            inner: Arc::new(Inner {
                buckets: open,
                max_payload,
                timeout,
            }),
        })
    }

    /// The guests' names of the buckets this store backs.
    pub fn bucket_names(&self) -> impl Iterator<Item = &str> {
        self.inner.buckets.keys().map(String::as_str)
    }
}

/// `fut`, or an error once `timeout` has passed.
async fn within<T>(timeout: Duration, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        format!(
            "the cluster's NATS server did not answer within {}",
            rusm_policy::format_duration(timeout)
        )
    })
}

impl Inner {
    fn bucket(&self, bucket: &str) -> Result<&Shared, KvError> {
        self.buckets.get(bucket).ok_or_else(|| {
            KvError::Backend(format!(
                "bucket {bucket:?} is not shared through the cluster"
            ))
        })
    }

    /// Run one request against `bucket`, within the timeout, its error in words.
    async fn ask<T, E: std::fmt::Display>(
        &self,
        bucket: &Shared,
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, KvError> {
        match within(self.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(KvError::Backend(format!(
                "{what} in the JetStream bucket {}: {e}",
                bucket.name
            ))),
            Err(late) => Err(KvError::Backend(format!(
                "{what} in the JetStream bucket {}: {late}",
                bucket.name
            ))),
        }
    }

    /// The largest value the server takes in one message.
    fn value_room(&self) -> usize {
        self.max_payload.saturating_sub(HEADER_ROOM)
    }

    /// `len` fits the writer's `max_value` and the server's `max_payload`.
    fn check_value(&self, len: usize, limits: WriteLimits) -> Result<(), KvError> {
        check_value(len, limits)?;
        let room = self.value_room();
        if len > room {
            return Err(KvError::ValueTooLarge {
                size: len as u64,
                limit: room as u64,
            });
        }
        Ok(())
    }

    /// What the server stores for `bucket` now, in bytes.
    async fn size(&self, bucket: &Shared) -> Result<u64, KvError> {
        let info = self
            .ask(bucket, "reading the size", bucket.stream.get_info())
            .await?;
        Ok(info.state.bytes)
    }

    /// Refuse a write adding `adding` bytes to `bucket` past the writer's limit.
    async fn check_room(
        &self,
        name: &str,
        bucket: &Shared,
        adding: u64,
        limits: WriteLimits,
    ) -> Result<(), KvError> {
        if limits.max_bytes == u64::MAX {
            return Ok(());
        }
        let needed = self.size(bucket).await?.saturating_add(adding);
        if needed > limits.max_bytes {
            return Err(KvError::BucketFull {
                bucket: name.to_owned(),
                needed,
                limit: limits.max_bytes,
            });
        }
        Ok(())
    }

    /// The value at `key` (escaped) and its revision, if it holds one.
    async fn entry(&self, bucket: &Shared, key: &str) -> Result<Option<(Bytes, u64)>, KvError> {
        let entry = self.ask(bucket, "reading", bucket.kv.entry(key)).await?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| (e.value, e.revision)))
    }

    /// Store `value` at `key` (escaped) if it still has `revision` (`None`: if it is
    /// still missing). `Ok(false)` when another writer changed it first.
    async fn put_if(
        &self,
        bucket: &Shared,
        key: &str,
        value: Bytes,
        revision: Option<u64>,
    ) -> Result<bool, KvError> {
        let written = match revision {
            Some(revision) => {
                let r = within(self.timeout, bucket.kv.update(key, value, revision)).await;
                match r {
                    Ok(Ok(_)) => Ok(true),
                    Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(late) => Err(late),
                }
            }
            None => {
                let r = within(self.timeout, bucket.kv.create(key, value)).await;
                match r {
                    Ok(Ok(_)) => Ok(true),
                    Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(late) => Err(late),
                }
            }
        };
        written.map_err(|e| {
            KvError::Backend(format!(
                "writing in the JetStream bucket {}: {e}",
                bucket.name
            ))
        })
    }

    async fn get(&self, name: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let bucket = self.bucket(name)?;
        let key = encode_key(key)?;
        Ok(self.entry(bucket, &key).await?.map(|(v, _)| v.to_vec()))
    }

    async fn get_many(
        &self,
        name: &str,
        keys: Vec<String>,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        if keys.len() > MAX_BATCH_KEYS {
            return Err(KvError::BatchTooLarge);
        }
        let bucket = self.bucket(name)?;
        let escaped = keys
            .iter()
            .map(|k| encode_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let mut total = 0u64;
        let mut out = Vec::with_capacity(keys.len());
        for key in &escaped {
            let value = self.entry(bucket, key).await?.map(|(v, _)| v.to_vec());
            total += value.as_ref().map_or(0, |v| v.len() as u64);
            if total > MAX_BATCH_BYTES {
                return Err(KvError::BatchTooLarge);
            }
            out.push(value);
        }
        Ok(out)
    }

    async fn list(
        &self,
        name: &str,
        skip: u64,
        max: usize,
    ) -> Result<(Vec<String>, bool), KvError> {
        let bucket = self.bucket(name)?;
        let keys = self
            .ask(bucket, "listing the keys", async {
                bucket
                    .kv
                    .keys()
                    .await?
                    .try_collect::<Vec<String>>()
                    .await
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
            })
            .await?;
        let mut keys: Vec<String> = keys.iter().filter_map(|k| decode_key(k)).collect();
        keys.sort();
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        let rest = keys.len().saturating_sub(skip);
        let more = rest > max;
        Ok((keys.into_iter().skip(skip).take(max).collect(), more))
    }

    async fn buckets(&self) -> Result<Vec<(String, u64)>, KvError> {
        let mut out = Vec::new();
        for (name, bucket) in &self.buckets {
            let size = self.size(bucket).await?;
            if size > 0 {
                out.push((name.clone(), size));
            }
        }
        out.sort();
        Ok(out)
    }

    async fn set_many(
        &self,
        name: &str,
        entries: Vec<(String, Vec<u8>)>,
        limits: WriteLimits,
    ) -> Result<(), KvError> {
        if entries.len() > MAX_BATCH_KEYS {
            return Err(KvError::BatchTooLarge);
        }
        let bucket = self.bucket(name)?;
        let mut escaped = Vec::with_capacity(entries.len());
        let mut adding = 0u64;
        for (key, value) in &entries {
            escaped.push(encode_key(key)?);
            self.check_value(value.len(), limits)?;
            adding += entry_size(key, value.len());
        }
        self.check_room(name, bucket, adding, limits).await?;
        for (key, (_, value)) in escaped.iter().zip(entries) {
            self.ask(bucket, "writing", bucket.kv.put(key, Bytes::from(value)))
                .await?;
        }
        Ok(())
    }

    /// Remove each key that is there: its message is purged from the stream, so a
    /// removed key leaves nothing behind (a delete marker would count against the
    /// bucket for ever, and a guest deleting keys that were never there could fill it).
    async fn delete_many(&self, name: &str, keys: Vec<String>) -> Result<(), KvError> {
        if keys.len() > MAX_BATCH_KEYS {
            return Err(KvError::BatchTooLarge);
        }
        let bucket = self.bucket(name)?;
        let escaped = keys
            .iter()
            .map(|k| encode_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        for key in &escaped {
            if self.entry(bucket, key).await?.is_none() {
                continue;
            }
            let subject = format!("{}{key}", bucket.prefix);
            self.ask(bucket, "removing a key", async {
                bucket.stream.purge().filter(subject).await
            })
            .await?;
        }
        Ok(())
    }

    async fn increment(
        &self,
        name: &str,
        key: String,
        delta: i128,
        range: std::ops::RangeInclusive<i128>,
        limits: WriteLimits,
    ) -> Result<i128, KvError> {
        let bucket = self.bucket(name)?;
        let escaped = encode_key(&key)?;
        for _ in 0..RACE_RETRIES {
            let current = self.entry(bucket, &escaped).await?;
            let (number, revision) = match &current {
                None => (0, None),
                Some((value, revision)) => {
                    let n = std::str::from_utf8(value)
                        .ok()
                        .and_then(|t| t.parse::<i128>().ok())
                        .ok_or_else(|| KvError::NotANumber(key.clone()))?;
                    (n, Some(*revision))
                }
            };
            let sum = number
                .checked_add(delta)
                .filter(|sum| range.contains(sum))
                .ok_or_else(|| KvError::Overflow(key.clone()))?;
            let text = sum.to_string();
            self.check_value(text.len(), limits)?;
            let old_len = current.as_ref().map_or(0, |(v, _)| v.len());
            if revision.is_none() || text.len() > old_len {
                let adding = entry_size(&key, text.len()) - entry_size(&key, old_len);
                self.check_room(name, bucket, adding, limits).await?;
            }
            if self
                .put_if(bucket, &escaped, Bytes::from(text), revision)
                .await?
            {
                return Ok(sum);
            }
        }
        Err(KvError::Backend(format!(
            "incrementing {key:?} lost the race to other writers {RACE_RETRIES} times"
        )))
    }

    async fn swap(
        &self,
        name: &str,
        key: String,
        expected: ValueVersion,
        value: Vec<u8>,
        limits: WriteLimits,
    ) -> Result<Result<(), ValueVersion>, KvError> {
        let bucket = self.bucket(name)?;
        let escaped = encode_key(&key)?;
        self.check_value(value.len(), limits)?;
        let current = self.entry(bucket, &escaped).await?;
        let now = ValueVersion::of(current.as_ref().map(|(v, _)| v.as_ref()));
        if now != expected {
            return Ok(Err(now));
        }
        let old_len = current.as_ref().map_or(0, |(v, _)| v.len());
        if current.is_none() || value.len() > old_len {
            let adding = entry_size(&key, value.len()) - entry_size(&key, old_len);
            self.check_room(name, bucket, adding, limits).await?;
        }
        let revision = current.map(|(_, r)| r);
        if self
            .put_if(bucket, &escaped, Bytes::from(value), revision)
            .await?
        {
            return Ok(Ok(()));
        }
        // Another writer got there between the read and the write: what it holds now.
        let after = self.entry(bucket, &escaped).await?;
        Ok(Err(ValueVersion::of(
            after.as_ref().map(|(v, _)| v.as_ref()),
        )))
    }
}

impl KvStore for JetStreamStore {
    fn get(&self, bucket: &str, key: &str) -> KvFuture<Option<Vec<u8>>> {
        let (inner, bucket, key) = (self.inner.clone(), bucket.to_owned(), key.to_owned());
        Box::pin(async move { inner.get(&bucket, &key).await })
    }

    fn get_many(&self, bucket: &str, keys: Vec<String>) -> KvFuture<Vec<Option<Vec<u8>>>> {
        let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
        Box::pin(async move { inner.get_many(&bucket, keys).await })
    }

    fn exists(&self, bucket: &str, key: &str) -> KvFuture<bool> {
        let (inner, bucket, key) = (self.inner.clone(), bucket.to_owned(), key.to_owned());
        Box::pin(async move { Ok(inner.get(&bucket, &key).await?.is_some()) })
    }

    fn list(&self, bucket: &str, skip: u64, max: usize) -> KvFuture<(Vec<String>, bool)> {
        let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
        Box::pin(async move { inner.list(&bucket, skip, max).await })
    }

    fn buckets(&self) -> KvFuture<Vec<(String, u64)>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.buckets().await })
    }

    fn set_many(
        &self,
        bucket: &str,
        entries: Vec<(String, Vec<u8>)>,
        limits: WriteLimits,
    ) -> KvFuture<()> {
        let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
        Box::pin(async move { inner.set_many(&bucket, entries, limits).await })
    }

    fn delete_many(&self, bucket: &str, keys: Vec<String>) -> KvFuture<()> {
        let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
        Box::pin(async move { inner.delete_many(&bucket, keys).await })
    }

    fn increment(
        &self,
        bucket: &str,
        key: String,
        delta: i128,
        range: std::ops::RangeInclusive<i128>,
        limits: WriteLimits,
    ) -> KvFuture<i128> {
        let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
        Box::pin(async move { inner.increment(&bucket, key, delta, range, limits).await })
    }

    fn swap(
        &self,
        bucket: &str,
        key: String,
        expected: ValueVersion,
        value: Vec<u8>,
        limits: WriteLimits,
    ) -> KvFuture<Result<(), ValueVersion>> {
        let (inner, bucket) = (self.inner.clone(), bucket.to_owned());
        Box::pin(async move { inner.swap(&bucket, key, expected, value, limits).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_to_what_jetstream_takes_and_back() {
        for key in [
            "", "user", "a.b", "..", "x y", "=", "=2E", "é/ü", "a*b>c", "-_/",
        ] {
            let escaped = encode_key(key).unwrap();
            assert!(
                escaped
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'=')),
                "{key:?} escaped to {escaped:?}"
            );
            assert_eq!(decode_key(&escaped).as_deref(), Some(key), "{escaped:?}");
        }
        // Two keys never share an escape.
        assert_ne!(encode_key("=").unwrap(), encode_key("").unwrap());
        assert_ne!(encode_key("=2E").unwrap(), encode_key(".").unwrap());
        // A key that fits the guest's limit but not the subject's once escaped.
        let dots = ".".repeat(MAX_SHARED_KEY_BYTES / 3 + 1);
        assert!(matches!(
            encode_key(&dots),
            Err(KvError::SharedKeyTooLong { .. })
        ));
        // Keys another client wrote that this store would never: not a guest's key.
        assert_eq!(decode_key("a=Z1"), None);
        assert_eq!(decode_key("a="), None);
        assert_eq!(decode_key("a.b"), None);
        assert_eq!(decode_key("=2e"), None);
    }
}
