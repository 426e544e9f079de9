//! Readable lifecycle logs: every spawn, exit (with its reason) and supervisor restart
//! of a node, one line each, through `tracing` (target `rusm::app`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusm_otp::{Event, ExitReason, Pid, Runtime};

/// What the logger remembers about live processes.
#[derive(Default)]
struct Names {
    labels: HashMap<Pid, Arc<str>>,
}

fn lock(names: &Mutex<Names>) -> MutexGuard<'_, Names> {
    names.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Log the lifecycle of `rt`'s processes. Processes labelled with one of `quiet` (the
/// components that serve HTTP requests, one short-lived process per request) are
/// logged at debug level unless they end abnormally.
pub fn log_lifecycle(rt: &Runtime, quiet: HashSet<String>) {
    let names: Arc<Mutex<Names>> = Arc::default();
    rt.add_observer(move |event| match *event {
        Event::Spawned { pid, parent, label } => {
            let label: Arc<str> = label.unwrap_or("process").into();
            let mut names = lock(&names);
            let parent = parent.map(|p| describe(&names.labels, p));
            let is_quiet = quiet.contains(&*label);
            names.labels.insert(pid, label.clone());
            drop(names);
            match (parent, is_quiet) {
                (Some(parent), false) => {
                    tracing::info!(target: "rusm::app", "spawn   {pid} {label} (child of {parent})")
                }
                (None, false) => tracing::info!(target: "rusm::app", "spawn   {pid} {label}"),
                (_, true) => tracing::debug!(target: "rusm::app", "spawn   {pid} {label}"),
            }
        }
        Event::Exited { pid, label, reason } => {
            let label = label.unwrap_or("process");
            lock(&names).labels.remove(&pid);
            if reason.to_string().contains('\n') {
                tracing::debug!(target: "rusm::app", "exit    {pid} {label}: {reason}");
            }
            let reason = first_line(reason);
            let quiet = quiet.contains(label);
            match reason_level(event_reason(event)) {
                Level::Clean if quiet => {
                    tracing::debug!(target: "rusm::app", "exit    {pid} {label}: {reason}")
                }
                Level::Clean => {
                    tracing::info!(target: "rusm::app", "exit    {pid} {label}: {reason}")
                }
                Level::Abnormal => {
                    tracing::warn!(target: "rusm::app", "exit    {pid} {label}: {reason}")
                }
            }
        }
        Event::Restarted {
            supervisor,
            child,
            pid,
        } => {
            let names = lock(&names);
            let supervisor = describe(&names.labels, supervisor);
            drop(names);
            tracing::info!(target: "rusm::app", "restart {child} as {pid} (by {supervisor})");
        }
        _ => {}
    });
}

enum Level {
    Clean,
    Abnormal,
}

fn event_reason<'a>(event: &Event<'a>) -> Option<&'a ExitReason> {
    match *event {
        Event::Exited { reason, .. } => Some(reason),
        _ => None,
    }
}

fn reason_level(reason: Option<&ExitReason>) -> Level {
    match reason {
        Some(reason) if !reason.is_clean_stop() => Level::Abnormal,
        _ => Level::Clean,
    }
}

fn describe(labels: &HashMap<Pid, Arc<str>>, pid: Pid) -> String {
    match labels.get(&pid) {
        Some(label) => format!("{pid} {label}"),
        None => pid.to_string(),
    }
}

/// The first line of an exit reason (crash reasons carry a wasm backtrace after it).
pub fn first_line(reason: &ExitReason) -> String {
    let text = reason.to_string();
    match text.split_once('\n') {
        Some((first, _)) => format!("{first} (backtrace with RUST_LOG=debug)"),
        None => text,
    }
}
