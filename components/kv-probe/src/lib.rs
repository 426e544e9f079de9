//! `kv-probe`: runs the `wasi:keyvalue` and `wasi:config` operation each message
//! names and answers with what it returned, so tests can drive every operation
//! through the real host.
//!
//! A request is a data message whose payload is the reply pid (8 bytes,
//! little-endian) and then a command in UTF-8, words separated by single spaces; the
//! answer goes to that pid under the same tag, as UTF-8: `ok` or `ok <result>` on
//! success, `err access-denied`, `err no-such-store` or `err other <message>` when the
//! operation returned an error.
//!
//! | command | operation | `ok` result |
//! | --- | --- | --- |
//! | `open B` | `store.open(B)`, kept as the current bucket | none |
//! | `get K` | `bucket.get(K)` | the value as text, or `none` |
//! | `set K V` | `bucket.set(K, V)` | none |
//! | `fill K N` | `bucket.set(K, N bytes of 'x')` | none |
//! | `del K` | `bucket.delete(K)` | none |
//! | `exists K` | `bucket.exists(K)` | `true` or `false` |
//! | `list C` | `bucket.list-keys(C)`, `C` a cursor or `-` for none | the keys joined by `,`, then ` next=C` or ` end` |
//! | `inc K D` | `atomics.increment(K, D)` | the new value |
//! | `cas K` | `atomics.cas.new(bucket, K)`, kept as the current handle | none |
//! | `current` | the current handle's `current()` | the value as text, or `none` |
//! | `swap V` | `atomics.swap(handle, V)`, consuming the current handle | none; `err cas-failed` keeps the handle it returns as the current one |
//! | `casinc K N` | `N` times: add 1 to the decimal number at `K` (0 when missing) by `cas`, `current` and `swap`, retrying on `cas-failed` with the handle it returns | the number of retries |
//! | `gets N K V` | `bucket.get(K)` `N` times, each checked to be `V` (the `kv` benchmark) | none; `err mismatch` at the first other value |
//! | `setmany K=V,K=V` | `batch.set-many` | none |
//! | `delmany K,K` | `batch.delete-many` | none |
//! | `getmany K,K` | `batch.get-many` | `K=V` or `-` per key, joined by `,` |
//! | `config K` | `wasi:config/store.get(K)` | the value, or `none` |
//! | `configall` | `wasi:config/store.get-all()` | `K=V` pairs joined by `,` |
//! | `batches N K` | `batch.set-many` `N` times, the `i`-th (from 1) storing `i` under the `K` new keys `bi-0` to `bi-(K-1)` | none |
//! | `hoardcas N K` | `atomics.cas.new(bucket, K)` `N` times, keeping every handle until the end of the command | none |
//! | `hoard N B` | `store.open(B)` `N` times, keeping every bucket open until the end of the command | none |
//! | `repeat N COMMAND` | `COMMAND`, `N` times in a row (the `kv` benchmark) | the last answer, or the first that is not `ok` |
//!
//! The init, when not empty, is commands too, one per line, run before the first
//! message (their answers are dropped; the first that is not `ok` ends the probe with
//! it as a `custom` reason).
//!
//! A command before any `open` that needs a bucket, or one it does not know, is
//! answered `bad <command>`. Runs until killed.

use rusm_guest::keyvalue::{Cas, CasError, Error, atomics, batch, store};
use rusm_guest::{Message, Pid, config, receive, send};

fn kv_err(e: Error) -> String {
    match e {
        Error::AccessDenied => "err access-denied".into(),
        Error::NoSuchStore => "err no-such-store".into(),
        Error::Other(text) => format!("err other {text}"),
    }
}

fn answer<T>(result: Result<T, Error>, ok: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(v) => ok(v),
        Err(e) => kv_err(e),
    }
}

fn done(_: ()) -> String {
    "ok".into()
}

/// What the probe holds between commands.
#[derive(Default)]
struct Held {
    bucket: Option<store::Bucket>,
    cas: Option<Cas>,
}

/// `times` increments of the number at `key` by compare-and-swap; the retries taken.
fn cas_increments(bucket: &store::Bucket, key: &str, times: u64) -> Result<u64, String> {
    let mut retries = 0;
    for _ in 0..times {
        let mut cas = Cas::new(bucket, key).map_err(kv_err)?;
        loop {
            let current = match cas.current().map_err(kv_err)? {
                None => 0,
                Some(v) => match String::from_utf8_lossy(&v).parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => return Err(format!("bad value at {key}")),
                },
            };
            match atomics::swap(cas, (current + 1).to_string().as_bytes()) {
                Ok(()) => break,
                Err(CasError::CasFailed(again)) => {
                    retries += 1;
                    cas = again;
                }
                Err(CasError::StoreError(e)) => return Err(kv_err(e)),
            }
        }
    }
    Ok(retries)
}

fn run_command(held: &mut Held, command: &str) -> String {
    if let Some(rest) = command.strip_prefix("repeat ") {
        let Some((Ok(times), inner)) = rest.split_once(' ').map(|(n, c)| (n.parse::<u64>(), c))
        else {
            return format!("bad {command}");
        };
        let mut last = format!("bad {command}");
        for _ in 0..times {
            last = run_command(held, inner);
            if !last.starts_with("ok") {
                break;
            }
        }
        return last;
    }
    let mut words = command.splitn(3, ' ');
    let verb = words.next().unwrap_or_default();
    let a = words.next().unwrap_or_default();
    let b = words.next().unwrap_or_default();
    match verb {
        "open" => {
            return match store::open(a) {
                Ok(opened) => {
                    held.bucket = Some(opened);
                    "ok".into()
                }
                Err(e) => kv_err(e),
            };
        }
        "hoard" => {
            let Ok(times) = a.parse::<usize>() else {
                return format!("bad {command}");
            };
            let mut held = Vec::new();
            for _ in 0..times {
                match store::open(b) {
                    Ok(opened) => held.push(opened),
                    Err(e) => return kv_err(e),
                }
            }
            return "ok".into();
        }
        "config" => {
            return match config::get(a) {
                Ok(Some(v)) => format!("ok {v}"),
                Ok(None) => "ok none".into(),
                Err(e) => format!("err config {e:?}"),
            };
        }
        "configall" => {
            return match config::get_all() {
                Ok(all) => {
                    let pairs: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("ok {}", pairs.join(","))
                }
                Err(e) => format!("err config {e:?}"),
            };
        }
        "current" => {
            let Some(cas) = held.cas.as_ref() else {
                return format!("bad {command}");
            };
            return answer(cas.current(), |v| match v {
                Some(v) => format!("ok {}", String::from_utf8_lossy(&v)),
                None => "ok none".into(),
            });
        }
        "swap" => {
            let Some(cas) = held.cas.take() else {
                return format!("bad {command}");
            };
            let value = command.strip_prefix("swap ").unwrap_or_default();
            return match atomics::swap(cas, value.as_bytes()) {
                Ok(()) => "ok".into(),
                Err(CasError::CasFailed(again)) => {
                    held.cas = Some(again);
                    "err cas-failed".into()
                }
                Err(CasError::StoreError(e)) => kv_err(e),
            };
        }
        _ => {}
    }
    let Some(bucket) = held.bucket.as_ref() else {
        return format!("bad {command}");
    };
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match verb {
        "get" => answer(bucket.get(a), |v| match v {
            Some(v) => format!("ok {}", String::from_utf8_lossy(&v)),
            None => "ok none".into(),
        }),
        "set" => answer(bucket.set(a, b.as_bytes()), done),
        "fill" => match b.parse::<usize>() {
            Ok(n) => answer(bucket.set(a, &vec![b'x'; n]), done),
            Err(_) => format!("bad {command}"),
        },
        "del" => answer(bucket.delete(a), done),
        "exists" => answer(bucket.exists(a), |e| format!("ok {e}")),
        "list" => {
            let cursor = (a != "-").then_some(a);
            answer(bucket.list_keys(cursor), |r| {
                let next = match r.cursor {
                    Some(c) => format!("next={c}"),
                    None => "end".into(),
                };
                format!("ok {} {next}", r.keys.join(","))
            })
        }
        "inc" => match b.parse::<i64>() {
            Ok(delta) => answer(atomics::increment(bucket, a, delta), |n| format!("ok {n}")),
            Err(_) => format!("bad {command}"),
        },
        "cas" => match Cas::new(bucket, a) {
            Ok(cas) => {
                held.cas = Some(cas);
                "ok".into()
            }
            Err(e) => kv_err(e),
        },
        "hoardcas" => {
            let Ok(times) = a.parse::<usize>() else {
                return format!("bad {command}");
            };
            let mut held = Vec::new();
            for _ in 0..times {
                match Cas::new(bucket, b) {
                    Ok(cas) => held.push(cas),
                    Err(e) => return kv_err(e),
                }
            }
            "ok".into()
        }
        "casinc" => match b.parse::<u64>() {
            Ok(times) => match cas_increments(bucket, a, times) {
                Ok(retries) => format!("ok {retries}"),
                Err(e) => e,
            },
            Err(_) => format!("bad {command}"),
        },
        "gets" => {
            let (Ok(times), Some((key, want))) = (a.parse::<u64>(), b.split_once(' ')) else {
                return format!("bad {command}");
            };
            for _ in 0..times {
                match bucket.get(key) {
                    Ok(Some(v)) if v == want.as_bytes() => {}
                    Ok(_) => return "err mismatch".into(),
                    Err(e) => return kv_err(e),
                }
            }
            "ok".into()
        }
        "setmany" => {
            let pairs: Vec<(String, Vec<u8>)> = list(a)
                .into_iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.as_bytes().to_vec()),
                    None => (kv, Vec::new()),
                })
                .collect();
            answer(batch::set_many(bucket, &pairs), done)
        }
        "delmany" => answer(batch::delete_many(bucket, &list(a)), done),
        "batches" => {
            let (Ok(times), Ok(keys)) = (a.parse::<u64>(), b.parse::<u64>()) else {
                return format!("bad {command}");
            };
            for i in 1..=times {
                let value = i.to_string().into_bytes();
                let pairs: Vec<(String, Vec<u8>)> = (0..keys)
                    .map(|k| (format!("b{i}-{k}"), value.clone()))
                    .collect();
                if let Err(e) = batch::set_many(bucket, &pairs) {
                    return kv_err(e);
                }
            }
            "ok".into()
        }
        "getmany" => answer(batch::get_many(bucket, &list(a)), |found| {
            let shown: Vec<String> = found
                .into_iter()
                .map(|entry| match entry {
                    Some((k, v)) => format!("{k}={}", String::from_utf8_lossy(&v)),
                    None => "-".into(),
                })
                .collect();
            format!("ok {}", shown.join(","))
        }),
        _ => format!("bad {command}"),
    }
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let mut held = Held::default();
    for command in String::from_utf8_lossy(&init).lines() {
        let answer = run_command(&mut held, command);
        if !answer.starts_with("ok") {
            return Err(answer);
        }
    }
    loop {
        if let Message::Data { tag, payload } = receive()
            && let Some(from) = payload.get(..8).and_then(Pid::from_slice)
        {
            let command = String::from_utf8_lossy(&payload[8..]).into_owned();
            let reply = run_command(&mut held, &command);
            send(from, tag, reply.as_bytes()).map_err(|e| e.to_string())?;
        }
    }
}

rusm_guest::actor!(run);
