//! `wasi:keyvalue` and `wasi:config` as the policy grants them: bucket modes and
//! default deny, size limits, atomic increments from many actors, batches, persistence
//! across a node restart, bad database files, and configuration values. The guests are
//! `components/kv-probe` and `components/kv-counter`; the store is a real redb file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusm_otp::{Pid, Runtime};
use rusm_policy::Policy;
use rusm_wasm::{WasmConfig, WasmNode, WasmSpawnOptions};

use crate::{Probe, cache_dir, components, pid_bytes, policy, probe};

/// A fresh directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("state")
            .join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("kv.redb")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(db: Option<&Path>) -> WasmConfig {
    WasmConfig {
        cache_dir: Some(cache_dir()),
        kv_path: db.map(Path::to_owned),
        ..WasmConfig::default()
    }
}

/// A node keeping its buckets in `db`, with the key-value components loaded.
fn kv_node(db: Option<&Path>) -> WasmNode {
    let node = WasmNode::new(Runtime::new(), config(db)).expect("the wasm node starts");
    for component in [
        components::KV_PROBE,
        components::KV_COUNTER,
        components::KV_DRAFT_COUNTER,
    ] {
        node.load_file(component.name(), component.path()).unwrap();
    }
    node
}

/// A `kv-probe` under `policy` and a native process that receives its answers.
struct KvProbe {
    rt: Runtime,
    pid: Pid,
    me: Pid,
    answers: Probe,
}

impl KvProbe {
    fn spawn(node: &WasmNode, policy: &Arc<Policy>) -> KvProbe {
        let rt = node.runtime().clone();
        let (me, answers) = probe(&rt);
        let options = WasmSpawnOptions {
            policy: Some(policy.clone()),
            ..Default::default()
        };
        let (pid, _) = node.spawn_watched("kv-probe", options).unwrap();
        KvProbe {
            rt,
            pid,
            me,
            answers,
        }
    }

    /// Runs one command and returns the probe's answer.
    async fn ask(&mut self, command: &str) -> String {
        let mut payload = pid_bytes(self.me);
        payload.extend(command.as_bytes());
        self.rt.send_tagged(self.pid, 7, payload);
        let (tag, answer) = self.answers.data().await;
        assert_eq!(tag, 7);
        String::from_utf8(answer).unwrap()
    }
}

const GRANTS: &str = r#"
[keyvalue]
buckets = [{ name = "sessions", mode = "rw" }, { name = "catalog", mode = "ro" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rw_bucket_is_read_and_written() {
    let node = kv_node(None);
    let mut p = KvProbe::spawn(&node, &policy(GRANTS));
    assert_eq!(p.ask("open sessions").await, "ok");
    assert_eq!(p.ask("get user").await, "ok none");
    assert_eq!(p.ask("exists user").await, "ok false");
    assert_eq!(p.ask("set user ada").await, "ok");
    assert_eq!(p.ask("get user").await, "ok ada");
    assert_eq!(p.ask("exists user").await, "ok true");
    assert_eq!(p.ask("set theme dark").await, "ok");
    assert_eq!(p.ask("list -").await, "ok theme,user end");
    assert_eq!(p.ask("del user").await, "ok");
    assert_eq!(p.ask("get user").await, "ok none");
    assert_eq!(p.ask("inc visits 5").await, "ok 5");
    assert_eq!(p.ask("inc visits 2").await, "ok 7");
    assert_eq!(p.ask("get visits").await, "ok 7");
    assert_eq!(p.ask("repeat 3 inc visits 1").await, "ok 10");
    assert_eq!(
        p.ask("repeat 2 inc theme 1")
            .await
            .split_once(" other ")
            .unwrap()
            .0,
        "err"
    );
    assert_eq!(
        p.ask("inc theme 1").await.split_once(" other ").unwrap().0,
        "err"
    );
    // The host sees what the guest stored.
    assert_eq!(
        node.kv_store().get("sessions", "visits").unwrap(),
        Some(b"10".to_vec())
    );
}

/// A hostile guest under a policy granting `catalog` read-only and nothing else tries
/// to write it and to open what it was not granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_ro_bucket_and_ungranted_buckets_are_denied() {
    let node = kv_node(None);
    node.kv_store()
        .set_many(
            "catalog",
            &[("item".into(), b"book".to_vec())],
            rusm_wasm::WriteLimits::NONE,
        )
        .unwrap();
    let mut p = KvProbe::spawn(&node, &policy(GRANTS));
    assert_eq!(p.ask("open secrets").await, "err access-denied");
    assert_eq!(p.ask("open catalog").await, "ok");
    assert_eq!(p.ask("get item").await, "ok book");
    assert_eq!(p.ask("getmany item,none").await, "ok item=book,-");
    for write in [
        "set item stolen",
        "fill item 10",
        "del item",
        "inc item 1",
        "setmany item=x,new=y",
        "delmany item",
        "cas item",
    ] {
        assert_eq!(p.ask(write).await, "err access-denied", "{write}");
    }
    assert_eq!(p.ask("get item").await, "ok book");
    assert_eq!(p.ask("exists new").await, "ok false");

    // No [keyvalue] section: no bucket at all.
    let mut bare = KvProbe::spawn(&node, &policy(""));
    for bucket in ["sessions", "catalog", ""] {
        assert_eq!(
            bare.ask(&format!("open {bucket}")).await,
            "err access-denied"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_persist_across_a_node_restart() {
    let dir = Scratch::new("restart");
    {
        let node = kv_node(Some(&dir.db()));
        let mut p = KvProbe::spawn(&node, &policy(GRANTS));
        assert_eq!(p.ask("open sessions").await, "ok");
        assert_eq!(p.ask("set user grace").await, "ok");
        assert_eq!(p.ask("inc visits 3").await, "ok 3");
        node.runtime().shutdown(Duration::from_secs(5)).await;
    }
    // The first node has let go of the file: a new one on it sees the values.
    let node = kv_node(Some(&dir.db()));
    let mut p = KvProbe::spawn(&node, &policy(GRANTS));
    assert_eq!(p.ask("open sessions").await, "ok");
    assert_eq!(p.ask("get user").await, "ok grace");
    assert_eq!(p.ask("inc visits 1").await, "ok 4");
}

/// 100 actors increment one key 100 times each: every increment returns a different
/// value and none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_100_actors_lose_none() {
    let dir = Scratch::new("atomics");
    let node = kv_node(Some(&dir.db()));
    let rt = node.runtime().clone();
    let (me, mut replies) = probe(&rt);
    let grant = policy("[keyvalue]\nbuckets = [{ name = \"counters\", mode = \"rw\" }]\n");
    let counters: Vec<Pid> = (0..100)
        .map(|_| {
            let options = WasmSpawnOptions {
                policy: Some(grant.clone()),
                ..Default::default()
            };
            node.spawn_with(None, "kv-counter", options).unwrap().pid
        })
        .collect();
    for _ in 0..100 {
        for &counter in &counters {
            rt.send_tagged(counter, 1, pid_bytes(me));
        }
    }
    let mut seen = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let (_, payload) = replies.data().await;
        seen.push(u64::from_le_bytes(payload.try_into().unwrap()));
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=10_000).collect::<Vec<u64>>());
    assert_eq!(
        node.kv_store().get("counters", "hits").unwrap(),
        Some(b"10000".to_vec())
    );
}

/// A swap stores its value only over the value the handle expects: the one its key
/// held when the handle was made, or last returned by `current`. A stale handle's swap
/// stores nothing, fails with `cas-failed` and hands back a handle expecting what the
/// key holds now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_stores_only_over_the_value_it_expects() {
    let node = kv_node(None);
    let mut a = KvProbe::spawn(&node, &policy(GRANTS));
    let mut b = KvProbe::spawn(&node, &policy(GRANTS));
    for p in [&mut a, &mut b] {
        assert_eq!(p.ask("open sessions").await, "ok");
    }
    // A missing key: the handle expects it missing.
    assert_eq!(a.ask("cas k").await, "ok");
    assert_eq!(a.ask("current").await, "ok none");
    assert_eq!(a.ask("swap one").await, "ok");
    assert_eq!(b.ask("get k").await, "ok one");
    assert_eq!(
        a.ask("swap again").await,
        "bad swap again",
        "a swap uses its handle up"
    );

    // Another process writes between the handle and the swap.
    assert_eq!(a.ask("cas k").await, "ok");
    assert_eq!(b.ask("set k two").await, "ok");
    assert_eq!(a.ask("swap three").await, "err cas-failed");
    assert_eq!(
        b.ask("get k").await,
        "ok two",
        "a failed swap stores nothing"
    );
    // The handle it returned expects what the key holds now.
    assert_eq!(a.ask("current").await, "ok two");
    assert_eq!(a.ask("swap three").await, "ok");
    assert_eq!(b.ask("get k").await, "ok three");

    // `current` moves what the handle expects to what it returned.
    assert_eq!(a.ask("cas k").await, "ok");
    assert_eq!(b.ask("set k four").await, "ok");
    assert_eq!(a.ask("current").await, "ok four");
    assert_eq!(a.ask("swap five").await, "ok");
    // A delete is a change too, and so is a write after the handle's `current`.
    assert_eq!(a.ask("cas k").await, "ok");
    assert_eq!(b.ask("del k").await, "ok");
    assert_eq!(a.ask("swap six").await, "err cas-failed");
    assert_eq!(a.ask("current").await, "ok none");
    assert_eq!(b.ask("set k five").await, "ok");
    assert_eq!(a.ask("swap six").await, "err cas-failed");
    assert_eq!(b.ask("get k").await, "ok five");
    assert_eq!(
        node.kv_store().get("sessions", "k").unwrap(),
        Some(b"five".to_vec())
    );
}

/// 20 actors each add 1 to one number 25 times by compare-and-swap (read, add, swap,
/// again on `cas-failed`): every one of the 500 additions is there at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_from_many_actors_loses_no_update() {
    let dir = Scratch::new("cas");
    let node = kv_node(Some(&dir.db()));
    let rt = node.runtime().clone();
    let (me, mut answers) = probe(&rt);
    let grant = policy(GRANTS);
    let probes: Vec<Pid> = (0..20)
        .map(|_| {
            let options = WasmSpawnOptions {
                policy: Some(grant.clone()),
                init: b"open sessions".to_vec(),
                ..Default::default()
            };
            node.spawn_with(None, "kv-probe", options).unwrap().pid
        })
        .collect();
    for &p in &probes {
        let mut payload = pid_bytes(me);
        payload.extend(b"casinc n 25");
        rt.send_tagged(p, 1, payload);
    }
    let mut retries = 0;
    for _ in &probes {
        let (_, answer) = answers.data().await;
        let answer = String::from_utf8(answer).unwrap();
        let taken = answer
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("{answer}"));
        retries += taken.parse::<u64>().unwrap();
    }
    assert_eq!(
        node.kv_store().get("sessions", "n").unwrap(),
        Some(b"500".to_vec()),
        "{retries} swaps were retried"
    );
}

/// A hostile guest tries compare-and-swap where its grant does not reach, past the
/// bucket's value limit, and holds handle after handle: each is an error it can read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_keeps_to_the_grant_and_its_bounds() {
    let node = kv_node(None);
    let grant = policy(
        "[keyvalue]\nbuckets = [{ name = \"s\", mode = \"rw\", max_value = 4 }, { name = \"catalog\", mode = \"ro\" }]\n",
    );
    let mut p = KvProbe::spawn(&node, &grant);
    assert_eq!(p.ask("open catalog").await, "ok");
    assert_eq!(p.ask("cas item").await, "err access-denied");
    assert_eq!(p.ask("hoardcas 1 item").await, "err access-denied");
    assert_eq!(p.ask("open s").await, "ok");
    assert_eq!(p.ask("cas k").await, "ok");
    let big = p.ask("swap toolong").await;
    assert!(
        big.starts_with("err other value of 7 bytes is larger"),
        "{big}"
    );
    assert_eq!(node.kv_store().get("s", "k").unwrap(), None);
    let long = p.ask(&format!("cas {}", "k".repeat(5000))).await;
    assert!(long.starts_with("err other key of 5000 bytes"), "{long}");
    assert_eq!(
        p.ask(&format!("hoardcas {} k", rusm_wasm::MAX_OPEN_CAS))
            .await,
        "ok"
    );
    let hoard = p
        .ask(&format!("hoardcas {} k", rusm_wasm::MAX_OPEN_CAS + 1))
        .await;
    assert_eq!(
        hoard,
        format!(
            "err other too many compare-and-swap handles: a process holds at most {}",
            rusm_wasm::MAX_OPEN_CAS
        )
    );
    // The handles of the command before were dropped with it: the count came back.
    assert_eq!(p.ask("cas k").await, "ok");
    assert_eq!(p.ask("swap ok").await, "ok");
}

/// A component built against the first draft (`kv-draft-counter`) and one built
/// against the second (`kv-counter`) count in the same bucket; without the grant, or
/// with it read-only, the first draft's calls are refused as the second's are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_of_both_drafts_share_buckets_under_the_same_grants() {
    let node = kv_node(None);
    let rt = node.runtime().clone();
    let (me, mut replies) = probe(&rt);
    let spawn = |name: &str, grant: &str| {
        let options = WasmSpawnOptions {
            policy: Some(policy(grant)),
            ..Default::default()
        };
        node.spawn_watched(name, options).unwrap()
    };
    let rw = "[keyvalue]\nbuckets = [{ name = \"counters\", mode = \"rw\" }]\n";
    let (first, _) = spawn("kv-draft-counter", rw);
    let (second, _) = spawn("kv-counter", rw);
    for (pid, want) in [(first, 1u64), (second, 2), (first, 3), (second, 4)] {
        rt.send_tagged(pid, 1, pid_bytes(me));
        assert_eq!(replies.data().await.1, want.to_le_bytes());
    }
    for (grant, reason) in [
        ("", "Error::AccessDenied"),
        (
            "[keyvalue]\nbuckets = [{ name = \"counters\", mode = \"ro\" }]\n",
            "Error::AccessDenied",
        ),
    ] {
        let (pid, end) = spawn("kv-draft-counter", grant);
        rt.send_tagged(pid, 1, pid_bytes(me));
        let ended = tokio::time::timeout(Duration::from_secs(30), end)
            .await
            .unwrap();
        assert_eq!(ended.to_string(), reason, "under {grant:?}");
    }
    assert_eq!(
        node.kv_store().get("counters", "hits").unwrap(),
        Some(b"4".to_vec())
    );
}

/// A hostile guest stores a value over its limit, fills its bucket, and uses a key
/// too long: each is an error it can read, nothing is stored, and it goes on running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_values_and_full_buckets_are_errors_not_traps() {
    let node = kv_node(None);
    let small = policy(
        "[keyvalue]\nbuckets = [{ name = \"s\", mode = \"rw\", max_bytes = 1000, max_value = 600 }]\n",
    );
    let mut p = KvProbe::spawn(&node, &small);
    assert_eq!(p.ask("open s").await, "ok");
    assert_eq!(
        p.ask("fill big 601").await,
        "err other value of 601 bytes is larger than the bucket's max_value of 600 bytes"
    );
    assert_eq!(p.ask("exists big").await, "ok false");
    assert_eq!(p.ask("fill a 500").await, "ok");
    assert_eq!(
        p.ask("fill b 500").await,
        "err other bucket \"s\" is full: the write needs 1002 bytes and max_bytes is 1000 bytes"
    );
    assert_eq!(p.ask("exists b").await, "ok false");
    // Overwriting counts the old value out: a smaller value fits, and then more.
    assert_eq!(p.ask("fill a 100").await, "ok");
    assert_eq!(p.ask("fill b 500").await, "ok");
    // Deleting frees the room again.
    assert_eq!(p.ask("del b").await, "ok");
    assert_eq!(p.ask("fill c 600").await, "ok");
    // Holding buckets open costs the host memory: a process holds at most 256.
    assert_eq!(
        p.ask("hoard 300 s").await,
        "err other too many open buckets: a process holds at most 256"
    );
    // Those it held are released: 255 more beside the one it keeps open fit.
    assert_eq!(p.ask("hoard 255 s").await, "ok");
    let long = "k".repeat(5000);
    assert_eq!(
        p.ask(&format!("set {long} v")).await,
        "err other key of 5000 bytes is longer than the most, 4096"
    );

    // The node's own limit holds whatever the policy allows.
    let node = WasmNode::new(
        Runtime::new(),
        WasmConfig {
            kv_max_bytes: 2000,
            ..config(None)
        },
    )
    .unwrap();
    node.load_file("kv-probe", components::KV_PROBE.path())
        .unwrap();
    let mut p = KvProbe::spawn(&node, &policy(GRANTS));
    assert_eq!(p.ask("open sessions").await, "ok");
    assert_eq!(p.ask("fill a 1500").await, "ok");
    assert_eq!(
        p.ask("fill b 1500").await,
        "err other the node's key-value store is full: it holds at most 2000 bytes"
    );
    assert_eq!(p.ask("get a").await.len(), "ok ".len() + 1500);
}

/// A batch that fails part-way (its last value too large, or the bucket full after
/// its first entries) stores none of it; one that fits is stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_stored_whole_or_not_at_all() {
    let dir = Scratch::new("batch");
    let node = kv_node(Some(&dir.db()));
    let grant = policy(
        "[keyvalue]\nbuckets = [{ name = \"b\", mode = \"rw\", max_bytes = 40, max_value = 8 }]\n",
    );
    let mut p = KvProbe::spawn(&node, &grant);
    assert_eq!(p.ask("open b").await, "ok");
    assert_eq!(p.ask("setmany x=1,y=2").await, "ok");
    assert_eq!(p.ask("getmany x,y").await, "ok x=1,y=2");
    assert!(
        p.ask("setmany x=9,c=3,d=too-long-value")
            .await
            .starts_with("err other value of 14 bytes")
    );
    // 5 entries of 2 + 8 bytes after x and y (4 bytes): the fourth goes past 40.
    assert!(
        p.ask("setmany e=12345678,f=12345678,g=12345678,h=12345678,i=12345678")
            .await
            .starts_with("err other bucket \"b\" is full")
    );
    assert_eq!(p.ask("getmany x,c,d,e,f,g").await, "ok x=1,-,-,-,-,-");
    assert_eq!(p.ask("list -").await, "ok x,y end");
    assert_eq!(p.ask("delmany x,y,absent").await, "ok");
    assert_eq!(p.ask("list -").await, "ok  end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_keys_pages_with_its_cursor() {
    let node = kv_node(None);
    let keys: Vec<(String, Vec<u8>)> = (0..1001).map(|i| (format!("k{i:04}"), vec![])).collect();
    let limits = rusm_wasm::WriteLimits::NONE;
    node.kv_store()
        .set_many("sessions", &keys[..1000], limits)
        .unwrap();
    node.kv_store()
        .set_many("sessions", &keys[1000..], limits)
        .unwrap();
    let mut p = KvProbe::spawn(&node, &policy(GRANTS));
    assert_eq!(p.ask("open sessions").await, "ok");
    let first = p.ask("list -").await;
    let (listed, next) = first.strip_prefix("ok ").unwrap().rsplit_once(' ').unwrap();
    assert_eq!(listed.split(',').count(), 1000);
    assert!(listed.starts_with("k0000,k0001,"));
    assert_eq!(next, "next=1000");
    assert_eq!(p.ask("list 1000").await, "ok k1000 end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_locked_database_is_a_clear_error_at_start() {
    let dir = Scratch::new("bad-db");
    let damaged = dir.0.join("damaged.redb");
    std::fs::write(&damaged, vec![0x5a; 64 << 10]).unwrap();
    let err = WasmNode::new(Runtime::new(), config(Some(&damaged)))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "cannot open the key-value database {}: ",
            damaged.display()
        )),
        "{err}"
    );

    let held = kv_node(Some(&dir.db()));
    let err = WasmNode::new(Runtime::new(), config(Some(&dir.db())))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "cannot open the key-value database {}: it is locked by another open database (a running node holds it; stop it first)",
            dir.db().display()
        )
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_values_are_seen_only_by_processes_granted_them() {
    let node = kv_node(None);
    let granted = policy(
        "[config.vars]\nmode = \"fast\"\npath = { env = \"PATH\" }\nmissing = { env = \"RUSM_TEST_UNSET_VARIABLE\" }\n",
    );
    let path = std::env::var("PATH").unwrap();
    let mut p = KvProbe::spawn(&node, &granted);
    assert_eq!(p.ask("config mode").await, "ok fast");
    assert_eq!(p.ask("config path").await, format!("ok {path}"));
    assert_eq!(p.ask("config missing").await, "ok none");
    assert_eq!(p.ask("config HOME").await, "ok none");
    assert_eq!(
        p.ask("configall").await,
        format!("ok mode=fast,path={path}")
    );

    // Another process, without the grant, asks for the same keys.
    let mut other = KvProbe::spawn(&node, &policy("[config.vars]\nlevel = \"debug\"\n"));
    assert_eq!(other.ask("config mode").await, "ok none");
    assert_eq!(other.ask("config path").await, "ok none");
    assert_eq!(other.ask("configall").await, "ok level=debug");
    let mut bare = KvProbe::spawn(&node, &policy(""));
    assert_eq!(bare.ask("configall").await, "ok ");
}

/// The key-value actor shown in the README is `components/kv-counter`, word for word;
/// its count goes on across a restart of the actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_key_value_actor_counts_across_restarts() {
    crate::assert_readme_shows("kv-counter");
    let node = kv_node(None);
    let rt = node.runtime().clone();
    let (me, mut replies) = probe(&rt);
    let grant = policy("[keyvalue]\nbuckets = [{ name = \"counters\", mode = \"rw\" }]\n");
    let options = || WasmSpawnOptions {
        policy: Some(grant.clone()),
        ..Default::default()
    };
    let (first, end) = node.spawn_watched("kv-counter", options()).unwrap();
    rt.send_tagged(first, 1, pid_bytes(me));
    rt.send_tagged(first, 1, pid_bytes(me));
    assert_eq!(replies.data().await.1, 1u64.to_le_bytes());
    assert_eq!(replies.data().await.1, 2u64.to_le_bytes());
    rt.kill(first);
    tokio::time::timeout(Duration::from_secs(30), end)
        .await
        .unwrap();
    let second = node.spawn_with(None, "kv-counter", options()).unwrap().pid;
    rt.send_tagged(second, 1, pid_bytes(me));
    assert_eq!(replies.data().await.1, 3u64.to_le_bytes());

    // Without the grant it cannot open its bucket and ends saying so.
    let (_, end) = node
        .spawn_watched(
            "kv-counter",
            WasmSpawnOptions {
                policy: Some(policy("")),
                ..Default::default()
            },
        )
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(30), end)
        .await
        .unwrap();
    assert_eq!(reason.to_string(), "Error::AccessDenied");
}
