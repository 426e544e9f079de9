//! A row of the process table: a process's identity, and under one mutex its mailbox,
//! links, monitors, watchers, name and timers. The table (`table.rs`) holds the rows;
//! the runtime (`runtime.rs`) is what changes them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::oneshot;

use crate::mailbox::{Mailbox, MailboxConfig};
use crate::message::Message;
use crate::reason::ExitReason;
use crate::{MonitorRef, Pid};

/// One row of the process table.
pub(crate) struct Slot {
    pub(crate) pid: Pid,
    pub(crate) parent: Option<Pid>,
    pub(crate) label: Option<Arc<str>>,
    pub(crate) state: Mutex<SlotState>,
    pub(crate) exiting: AtomicBool,
    pub(crate) task_waker: AtomicWaker,
}

pub(crate) struct SlotState {
    pub(crate) mailbox: Mailbox,
    pub(crate) recv_waker: Option<Waker>,
    pub(crate) alive: bool,
    pub(crate) trap_exit: bool,
    pub(crate) links: FxHashSet<Pid>,
    pub(crate) monitored_by: Vec<(MonitorRef, Pid)>,
    pub(crate) monitoring: FxHashMap<MonitorRef, Pid>,
    pub(crate) watchers: Vec<oneshot::Sender<ExitReason>>,
    pub(crate) pending_exit: Option<ExitReason>,
    pub(crate) name: Option<Arc<str>>,
    /// Timers this process set that have not fired (and their payload bytes), and
    /// timers set for it.
    pub(crate) timers: FxHashSet<u64>,
    pub(crate) timer_bytes: usize,
    pub(crate) timers_in: FxHashSet<u64>,
}

impl SlotState {
    pub(crate) fn new(mailbox: MailboxConfig, trap_exit: bool) -> SlotState {
        SlotState {
            mailbox: Mailbox::new(mailbox),
            recv_waker: None,
            alive: true,
            trap_exit,
            links: FxHashSet::default(),
            monitored_by: Vec::new(),
            monitoring: FxHashMap::default(),
            watchers: Vec::new(),
            pending_exit: None,
            name: None,
            timers: FxHashSet::default(),
            timer_bytes: 0,
            timers_in: FxHashSet::default(),
        }
    }

    /// Queue a message and hand back the waker to call once the lock is released.
    pub(crate) fn deliver(&mut self, msg: Message) -> Result<Option<Waker>, Message> {
        self.mailbox.push(msg)?;
        Ok(self.recv_waker.take())
    }
}

impl Slot {
    pub(crate) fn new(
        pid: Pid,
        parent: Option<Pid>,
        label: Option<Arc<str>>,
        state: SlotState,
    ) -> Slot {
        Slot {
            pid,
            parent,
            label,
            state: Mutex::new(state),
            exiting: AtomicBool::new(false),
            task_waker: AtomicWaker::new(),
        }
    }

    /// Mark the process to end with `reason` at its next poll; the caller wakes its task
    /// once the lock is released.
    pub(crate) fn set_exit(&self, st: &mut SlotState, reason: ExitReason) {
        if st.pending_exit.is_none() || reason == ExitReason::Killed {
            st.pending_exit = Some(reason);
        }
        self.exiting.store(true, Ordering::Release);
    }
}
