//! The `kv` scenario: `wasi:keyvalue` get, set and increment rates from an actor,
//! beside the same operations on redb's own API in the same run; then the same from
//! an actor whose bucket is shared through a JetStream KV bucket, beside async-nats's
//! own KV API on the same server in the same run.
//!
//! A run does `n` sets or increments, or `20 n` gets (a get costs about a hundredth of
//! a durable commit, so the same count would be over too soon to time), and then
//! [`CROWD`] actors at once each do `n / 200` (at least 1) increments of one key,
//! beside as many blocking tasks doing the same on redb.
//!
//! The rusm side is one `kv-probe` actor on a node whose store is a redb file in a
//! temporary directory, under a policy granting bucket `bench` (`rw`). A run sends it
//! one message, `gets n k VALUE` (or `repeat n set k VALUE`, `repeat n inc c 1`), and
//! is timed from the send to the answer: `n` operations in a loop inside the guest,
//! each a host call through the grant's checks into the store (a get reads the
//! store's shared snapshot, opened again only after a commit; a write transaction,
//! committed durably, per set and increment, on a blocking thread). For gets the
//! probe parses its command once and only compares each value with `VALUE`, as the
//! baseline does; `repeat` parses and formats every one, which is a few hundred
//! nanoseconds against a durable commit's milliseconds.
//!
//! The baseline opens another redb file in the same directory and does the same `n`
//! operations from one blocking thread: a read transaction, `open_table` and `get` per
//! get, comparing the value; a write transaction with `insert` and a durable `commit`
//! per set; and per increment a write transaction that reads, parses, adds and writes
//! the decimal number back. One unit is one operation; the target for gets is at least
//! 0.7 of the baseline's rate.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use rusm_otp::{Message, Pid, Runtime};
use rusm_wasm::{WasmConfig, WasmNode, WasmSpawnOptions};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::harness::{Contender, interleaved};
use crate::native::Params;
use crate::report::{Figure, Sample, Side};

/// The value every get reads and every set writes.
const VALUE: &str = "0123456789abcdef";

/// The baseline's one table, as rusm names a bucket's.
const TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("bucket:bench");

/// How many actors (and baseline tasks) increment at once in the crowd figure.
const CROWD: usize = 100;

/// A temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The actor and the native process that receives its answers.
struct Probe {
    rt: Runtime,
    actor: Pid,
    me: Pid,
    answers: tokio::sync::Mutex<UnboundedReceiver<Vec<u8>>>,
}

impl Probe {
    async fn ask(&self, command: &str) -> Result<String> {
        let mut payload = self.me.as_raw().to_le_bytes().to_vec();
        payload.extend(command.as_bytes());
        let mut answers = self.answers.lock().await;
        self.rt.send_tagged(self.actor, 1, payload);
        let answer = answers.recv().await.context("the kv-probe actor ended")?;
        Ok(String::from_utf8(answer)?)
    }
}

/// [`CROWD`] `kv-probe` actors with bucket `bench` open, and the native process that
/// receives their answers.
struct Crowd {
    rt: Runtime,
    actors: Vec<Pid>,
    me: Pid,
    answers: tokio::sync::Mutex<UnboundedReceiver<Vec<u8>>>,
}

impl Crowd {
    /// Send `command` to every actor at once; every answer must be `ok`.
    async fn ask_all(&self, command: &str) -> Result<()> {
        let mut payload = self.me.as_raw().to_le_bytes().to_vec();
        payload.extend(command.as_bytes());
        let mut answers = self.answers.lock().await;
        for &actor in &self.actors {
            self.rt.send_tagged(actor, 1, payload.clone());
        }
        for _ in &self.actors {
            let answer = answers.recv().await.context("a kv-probe actor ended")?;
            ensure!(answer.starts_with(b"ok"), "kv-probe answered {answer:?}");
        }
        Ok(())
    }
}

/// One operation of the scenario.
#[derive(Clone, Copy)]
enum Op {
    Get,
    /// A get, with the baseline on one read transaction and table for the whole run.
    GetHeld,
    Set,
    Increment,
}

impl Op {
    fn command(self, n: u64) -> String {
        match self {
            Op::Get | Op::GetHeld => format!("gets {n} k {VALUE}"),
            Op::Set => format!("repeat {n} set k {VALUE}"),
            Op::Increment => format!("repeat {n} inc c 1"),
        }
    }

    /// `n` of this operation on redb's own API.
    fn on_redb(self, db: &Database, n: u64) -> Result<()> {
        if let Op::GetHeld = self {
            let txn = db.begin_read()?;
            let table = txn.open_table(TABLE)?;
            for _ in 0..n {
                let value = table.get("k")?.context("k is missing")?;
                ensure!(value.value() == VALUE.as_bytes(), "k holds something else");
            }
            return Ok(());
        }
        for _ in 0..n {
            match self {
                // (a held get returned above)
                Op::Get | Op::GetHeld => {
                    let txn = db.begin_read()?;
                    let table = txn.open_table(TABLE)?;
                    let value = table.get("k")?.context("k is missing")?;
                    ensure!(value.value() == VALUE.as_bytes(), "k holds something else");
                }
                Op::Set => {
                    let txn = db.begin_write()?;
                    txn.open_table(TABLE)?.insert("k", VALUE.as_bytes())?;
                    txn.commit()?;
                }
                Op::Increment => {
                    let txn = db.begin_write()?;
                    {
                        let mut table = txn.open_table(TABLE)?;
                        let current = match table.get("c")? {
                            Some(v) => std::str::from_utf8(v.value())?.parse::<u64>()?,
                            None => 0,
                        };
                        let next = (current + 1).to_string();
                        table.insert("c", next.as_bytes())?;
                    }
                    txn.commit()?;
                }
            }
        }
        Ok(())
    }
}

/// `kv`: `n` gets, sets and increments per run from one actor, vs redb's own API.
pub async fn kv(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    ensure!(n > 0, "kv: n must be at least 1");
    let dir = Scratch(std::env::temp_dir().join(format!("rusm-bench-kv-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0)?;
    let (probe, crowd) = start_probe(&dir.0, &p).await?;
    let probe = std::sync::Arc::new(probe);
    let db = std::sync::Arc::new(Database::create(dir.0.join("baseline.redb"))?);
    {
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?.insert("k", VALUE.as_bytes())?;
        txn.commit()?;
    }

    let mut figures = Vec::new();
    for (op, name, target, count) in [
        (Op::Get, "get of a 16-byte value", Some(0.7), 20 * n),
        (
            Op::GetHeld,
            "get of a 16-byte value, baseline on one held read transaction",
            None,
            20 * n,
        ),
        (Op::Set, "set of a 16-byte value (durable commit)", None, n),
        (Op::Increment, "increment (durable commit)", None, n),
    ] {
        let n = count;
        let rusm_probe = probe.clone();
        let redb = db.clone();
        let sides = vec![
            Contender::new("rusm wasi:keyvalue", move || {
                let probe = rusm_probe.clone();
                async move {
                    let start = Instant::now();
                    let answer = probe.ask(&op.command(n)).await?;
                    let elapsed = start.elapsed();
                    if !answer.starts_with("ok") {
                        bail!("kv-probe answered {answer:?}");
                    }
                    Ok(Sample {
                        units: n,
                        elapsed,
                        latencies: Vec::new(),
                    })
                }
            }),
            Contender::new("redb API", move || {
                let db = redb.clone();
                async move {
                    let start = Instant::now();
                    tokio::task::spawn_blocking(move || op.on_redb(&db, n)).await??;
                    Ok(Sample {
                        units: n,
                        elapsed: start.elapsed(),
                        latencies: Vec::new(),
                    })
                }
            }),
        ];
        let series = interleaved(p.repeats, p.rusm_only, sides).await?;
        let rusm_us = 1e6 / series[0].median();
        let redb_us = 1e6 / series[1].median();
        figures.push(
            Figure::new(
                "kv",
                name,
                "ops",
                format!("n={n}"),
                Side::new("rusm", &series[0], None),
                Side::new("redb", &series[1], None),
                target,
            )
            .with_note(format!(
                "{rusm_us:.1} us vs {redb_us:.1} us per op (medians), one actor vs one thread"
            )),
        );
    }
    figures.push(crowd_increments(crowd, db, n, &p).await?);
    figures.extend(jetstream_figures(n, &p).await?);
    Ok(figures)
}

/// One operation on a JetStream bucket, as async-nats's own KV API does it.
async fn on_jetstream(op: Op, kv: &async_nats::jetstream::kv::Store, n: u64) -> Result<()> {
    for _ in 0..n {
        match op {
            Op::Get | Op::GetHeld => {
                let value = kv.get("k").await?.context("k is missing")?;
                ensure!(value == VALUE.as_bytes(), "k holds something else");
            }
            Op::Set => {
                kv.put("k", VALUE.into()).await?;
            }
            Op::Increment => loop {
                // The same revision-checked update the shared bucket's increment makes.
                let entry = kv.entry("c").await?;
                let (current, revision) = match &entry {
                    Some(e) => (
                        std::str::from_utf8(&e.value)?.parse::<u64>()?,
                        Some(e.revision),
                    ),
                    None => (0, None),
                };
                let next = bytes::Bytes::from((current + 1).to_string());
                let written = match revision {
                    Some(revision) => kv.update("c", next, revision).await.is_ok(),
                    None => kv.create("c", next).await.is_ok(),
                };
                if written {
                    break;
                }
            },
        }
    }
    Ok(())
}

/// The JetStream figures: one `kv-probe` actor on a node whose bucket `bench` is
/// shared through a JetStream KV bucket on a `nats-server` started for the run, doing
/// `n / 4` gets, sets and increments (each a round trip to the server, so far fewer
/// than the file's), vs async-nats's KV API on another bucket of the same server.
async fn jetstream_figures(n: u64, p: &Params) -> Result<Vec<Figure>> {
    let n = (n / 4).max(1);
    let server = rusm_cluster::testing::NatsServer::start().map_err(anyhow::Error::msg)?;
    let client = async_nats::connect(server.url()).await?;
    let store = rusm_wasm::JetStreamStore::open(
        client.clone(),
        [("bench".to_owned(), "rusm_bench_kv_bench".to_owned())],
        rusm_wasm::SHARED_TIMEOUT,
    )
    .await?;
    let config = WasmConfig {
        cache_dir: Some(crate::wasm::cache_dir()),
        preemption: p.preemption,
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config)?;
    node.share_buckets(["bench".to_owned()], std::sync::Arc::new(store))?;
    node.load_file("kv-probe", crate::wasm::component_path("kv-probe")?)?;
    let probe = std::sync::Arc::new(spawn_probe(&node, "bench").await?);
    // The baseline's bucket, made as the shared one is.
    let baseline = rusm_wasm::JetStreamStore::open(
        client.clone(),
        [("baseline".to_owned(), "rusm_bench_kv_baseline".to_owned())],
        rusm_wasm::SHARED_TIMEOUT,
    )
    .await?;
    drop(baseline);
    let kv = std::sync::Arc::new(
        async_nats::jetstream::new(client)
            .get_key_value("rusm_bench_kv_baseline")
            .await?,
    );
    kv.put("k", VALUE.into()).await?;

    let mut figures = Vec::new();
    for (op, name) in [
        (Op::Get, "JetStream bucket: get of a 16-byte value"),
        (Op::Set, "JetStream bucket: set of a 16-byte value"),
        (Op::Increment, "JetStream bucket: increment"),
    ] {
        let rusm_probe = probe.clone();
        let baseline = kv.clone();
        let sides = vec![
            Contender::new("rusm wasi:keyvalue on JetStream", move || {
                let probe = rusm_probe.clone();
                async move {
                    let start = Instant::now();
                    let answer = probe.ask(&op.command(n)).await?;
                    let elapsed = start.elapsed();
                    if !answer.starts_with("ok") {
                        bail!("kv-probe answered {answer:?}");
                    }
                    Ok(Sample {
                        units: n,
                        elapsed,
                        latencies: Vec::new(),
                    })
                }
            }),
            Contender::new("async-nats KV API", move || {
                let kv = baseline.clone();
                async move {
                    let start = Instant::now();
                    on_jetstream(op, &kv, n).await?;
                    Ok(Sample {
                        units: n,
                        elapsed: start.elapsed(),
                        latencies: Vec::new(),
                    })
                }
            }),
        ];
        let series = interleaved(p.repeats, p.rusm_only, sides).await?;
        let rusm_us = 1e6 / series[0].median();
        let nats_us = 1e6 / series[1].median();
        figures.push(
            Figure::new(
                "kv",
                name,
                "ops",
                format!("n={n}"),
                Side::new("rusm", &series[0], None),
                Side::new("async-nats", &series[1], None),
                None,
            )
            .with_note(format!(
                "{rusm_us:.1} us vs {nats_us:.1} us per op (medians), one actor vs one task, \
                 nats-server on loopback"
            )),
        );
    }
    drop(node);
    drop(server);
    Ok(figures)
}

/// A `kv-probe` actor on `node` with `bucket` open (granted `rw`) and `k` set.
async fn spawn_probe(node: &WasmNode, bucket: &str) -> Result<Probe> {
    let policy = rusm_policy::Policy::parse(
        &format!("[keyvalue]\nbuckets = [{{ name = \"{bucket}\", mode = \"rw\" }}]\n"),
        Path::new("kv-bench.toml"),
    )?;
    let rt = node.runtime().clone();
    let (tx, rx) = unbounded_channel();
    let me = rt.spawn(move |ctx| async move {
        loop {
            if let Message::Data(d) = ctx.recv().await
                && let Ok(bytes) = d.payload.downcast::<Vec<u8>>()
                && tx.send(bytes).is_err()
            {
                return;
            }
        }
    });
    let options = WasmSpawnOptions {
        policy: Some(std::sync::Arc::new(policy)),
        ..Default::default()
    };
    let actor = node.spawn_with(None, "kv-probe", options)?.pid;
    let probe = Probe {
        rt,
        actor,
        me,
        answers: tokio::sync::Mutex::new(rx),
    };
    for setup in [format!("open {bucket}"), format!("set k {VALUE}")] {
        let answer = probe.ask(&setup).await?;
        ensure!(answer == "ok", "kv-probe: {setup} answered {answer:?}");
    }
    Ok(probe)
}

/// [`CROWD`] actors each doing `n / 200` increments of one key at once, vs as many
/// blocking tasks on redb's API.
async fn crowd_increments(
    crowd: Crowd,
    db: std::sync::Arc<Database>,
    n: u64,
    p: &Params,
) -> Result<Figure> {
    let each = (n / 200).max(1);
    let units = each * CROWD as u64;
    let crowd = std::sync::Arc::new(crowd);
    let sides = vec![
        Contender::new("rusm wasi:keyvalue", move || {
            let crowd = crowd.clone();
            async move {
                let start = Instant::now();
                crowd.ask_all(&format!("repeat {each} inc crowd 1")).await?;
                Ok(Sample {
                    units,
                    elapsed: start.elapsed(),
                    latencies: Vec::new(),
                })
            }
        }),
        Contender::new("redb API", move || {
            let db = db.clone();
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..CROWD)
                    .map(|_| {
                        let db = db.clone();
                        tokio::task::spawn_blocking(move || Op::Increment.on_redb(&db, each))
                    })
                    .collect();
                for task in tasks {
                    task.await??;
                }
                Ok(Sample {
                    units,
                    elapsed: start.elapsed(),
                    latencies: Vec::new(),
                })
            }
        }),
    ];
    let series = interleaved(p.repeats, p.rusm_only, sides).await?;
    Ok(Figure::new(
        "kv",
        &format!("increment from {CROWD} actors at once (durable commit)"),
        "ops",
        format!("n={units}"),
        Side::new("rusm", &series[0], None),
        Side::new("redb", &series[1], None),
        None,
    )
    .with_note(format!(
        "{CROWD} actors vs {CROWD} blocking tasks, {each} increments each; redb commits one write transaction at a time"
    )))
}

/// A node on a redb file in `dir`, a `kv-probe` with bucket `bench` open and `k` set,
/// and a [`Crowd`] on the same node.
async fn start_probe(dir: &Path, p: &Params) -> Result<(Probe, Crowd)> {
    let config = WasmConfig {
        cache_dir: Some(crate::wasm::cache_dir()),
        preemption: p.preemption,
        kv_path: Some(dir.join("node.redb")),
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config)?;
    node.load_file("kv-probe", crate::wasm::component_path("kv-probe")?)?;
    let policy = rusm_policy::Policy::parse(
        "[keyvalue]\nbuckets = [{ name = \"bench\", mode = \"rw\" }]\n",
        Path::new("kv-bench.toml"),
    )?;
    let rt = node.runtime().clone();
    let (tx, rx) = unbounded_channel();
    let me = rt.spawn(move |ctx| async move {
        loop {
            if let Message::Data(d) = ctx.recv().await
                && let Ok(bytes) = d.payload.downcast::<Vec<u8>>()
                && tx.send(bytes).is_err()
            {
                return;
            }
        }
    });
    let policy = std::sync::Arc::new(policy);
    let options = WasmSpawnOptions {
        policy: Some(policy.clone()),
        ..Default::default()
    };
    let actor = node.spawn_with(None, "kv-probe", options)?.pid;
    let (crowd_tx, crowd_rx) = unbounded_channel();
    let crowd_me = rt.spawn(move |ctx| async move {
        loop {
            if let Message::Data(d) = ctx.recv().await
                && let Ok(bytes) = d.payload.downcast::<Vec<u8>>()
                && crowd_tx.send(bytes).is_err()
            {
                return;
            }
        }
    });
    let mut crowd = Vec::with_capacity(CROWD);
    for _ in 0..CROWD {
        let options = WasmSpawnOptions {
            policy: Some(policy.clone()),
            init: b"open bench".to_vec(),
            ..Default::default()
        };
        crowd.push(node.spawn_with(None, "kv-probe", options)?.pid);
    }
    let crowd = Crowd {
        rt: rt.clone(),
        actors: crowd,
        me: crowd_me,
        answers: tokio::sync::Mutex::new(crowd_rx),
    };
    let probe = Probe {
        rt,
        actor,
        me,
        answers: tokio::sync::Mutex::new(rx),
    };
    for setup in ["open bench", &format!("set k {VALUE}")] {
        let answer = probe.ask(setup).await?;
        ensure!(answer == "ok", "kv-probe: {setup} answered {answer:?}");
    }
    // The node lives as long as its processes: the actors keep it.
    drop(node);
    Ok((probe, crowd))
}
