//! `http-reuse`: an HTTP handler whose state lives in its instance's globals, so what
//! one request leaves there is seen by the next only when the route reuses
//! instances (`reuse = N`).
//!
//! By the last segment of the path (so routes with any prefix reach it):
//! - `/count`: adds 1 to the instance's request counter and answers `200` with the
//!   counter and the instance's pid, `"<count> <pid>\n"` (a fresh instance answers
//!   `1`);
//! - `/trap`: traps (a panic, built with `panic = "abort"`) before answering;
//! - `/spin`: loops forever without answering (until its deadline);
//! - `/hoard?KIB`: keeps `KIB` KiB more of linear memory in a global, touched page by
//!   page, and answers `200` with the KiB kept in all;
//! - `/wait`: calls the actor registered as `gate` (tag 1, empty body) and answers
//!   `200 released\n` once it replies (`502` when there is no `gate` or no reply
//!   within 30 s), holding its instance meanwhile without running;
//! - `/keep`: answers `200 kept\n`, then keeps the request beyond its call (leaked
//!   out of the guest's reach, never dropped);
//! - anything else: `404`.

use std::cell::RefCell;
use std::time::Duration;

use rusm_guest::http::{IncomingRequest, ResponseOutparam, respond};

thread_local! {
    /// Requests this instance has served at `/count`.
    static COUNT: RefCell<u64> = const { RefCell::new(0) };
    /// The memory `/hoard` keeps.
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

const TEXT: [(&str, &[u8]); 1] = [("content-type", b"text/plain")];

fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let target = request.path_with_query().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    match path.rsplit('/').next().unwrap_or_default() {
        "count" => {
            let count = COUNT.with(|c| {
                *c.borrow_mut() += 1;
                *c.borrow()
            });
            let pid = rusm_guest::self_pid();
            respond(out, 200, &TEXT, format!("{count} {pid}\n").as_bytes());
        }
        "trap" => panic!("http-reuse: trapping as asked"),
        "spin" => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "hoard" => {
            let kib: usize = query.parse().unwrap_or(0);
            let kept = HOARD.with(|h| {
                let mut h = h.borrow_mut();
                // Every page written, so the memory is really there.
                h.push(vec![0xa5; kib * 1024]);
                h.iter().map(|v| v.len() / 1024).sum::<usize>()
            });
            respond(out, 200, &TEXT, format!("{kept}\n").as_bytes());
        }
        "wait" => {
            let released = rusm_guest::whereis("gate")
                .ok_or_else(|| "no gate".to_owned())
                .and_then(|gate| {
                    rusm_guest::call(gate, 1, [], Duration::from_secs(30))
                        .map_err(|e| e.to_string())
                });
            match released {
                Ok(_) => respond(out, 200, &TEXT, b"released\n"),
                Err(e) => respond(out, 502, &TEXT, format!("{e}\n").as_bytes()),
            }
        }
        "keep" => {
            respond(out, 200, &TEXT, b"kept\n");
            std::mem::forget(request);
        }
        _ => respond(out, 404, &TEXT, b"not found\n"),
    }
}

rusm_guest::http_handler!(handle);
