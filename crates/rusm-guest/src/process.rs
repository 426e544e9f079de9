//! The actor model seen from inside a process: a safe face over the
//! `rusm:runtime/process` imports.

use std::time::Duration;

use crate::bindings::rusm::runtime::process as imports;
use crate::bindings::rusm::runtime::types as raw;
use crate::{Error, ExitReason, Message, MonitorRef, Pid, Tag, TimerRef};

/// Converts a duration to the whole milliseconds the runtime takes, rounding any
/// fraction up so that a non-zero wait never becomes a poll.
pub(crate) fn millis(duration: Duration) -> u64 {
    let whole = duration.as_millis();
    let millis = if duration.subsec_nanos().is_multiple_of(1_000_000) {
        whole
    } else {
        whole + 1
    };
    u64::try_from(millis).unwrap_or(u64::MAX)
}

/// This process's own pid.
pub fn self_pid() -> Pid {
    Pid::from_raw(imports::self_())
}

/// Sends a data message. Never blocks.
///
/// A message to a process that no longer exists is dropped, as in Erlang; this fails
/// only when the message breaks the caller's limits.
pub fn send(to: Pid, tag: Tag, payload: impl AsRef<[u8]>) -> Result<(), Error> {
    imports::send(to.as_raw(), tag, payload.as_ref()).map_err(Error::from)
}

/// A message from the runtime as the actor sees it: `None` when the SDK consumed it
/// (an upgrade request it answered for the actor, see
/// [`handle_upgrades`](crate::handle_upgrades)).
fn for_actor(message: raw::Message) -> Option<Message> {
    crate::upgrade::intercept(message).map(Message::from)
}

fn raw_receive(timeout: Option<Duration>, selector: Option<&Selector>) -> Option<Message> {
    loop {
        let message = imports::receive(timeout.map(millis), selector.map(|s| &s.raw))?;
        match for_actor(message) {
            Some(message) => return Some(message),
            // A stale request the SDK answered for the actor: keep waiting. (A live
            // one never comes back: the hand-over ends this instance.)
            None => continue,
        }
    }
}

fn raw_send_receive(
    to: Pid,
    tag: Tag,
    payload: &[u8],
    timeout: Option<Duration>,
    selector: Option<&Selector>,
) -> Result<Option<Message>, Error> {
    let first = imports::send_receive(
        to.as_raw(),
        tag,
        payload,
        timeout.map(millis),
        selector.map(|s| &s.raw),
    )?;
    Ok(match first.map(for_actor) {
        None => None,
        Some(Some(message)) => Some(message),
        // The SDK answered a stale upgrade request: keep waiting, without sending
        // again.
        Some(None) => raw_receive(timeout, selector),
    })
}

fn raw_try_receive(selector: Option<&Selector>) -> Option<Message> {
    loop {
        let message = imports::try_receive(selector.map(|s| &s.raw))?;
        if let Some(message) = for_actor(message) {
            return Some(message);
        }
    }
}

/// Sends a data message, then takes the first message in the mailbox, waiting as long
/// as it takes: [`send`] and [`receive`] in one call into the runtime, which is
/// cheaper than the two. The natural step of a server that answers one request and
/// waits for the next (see also [`Request::reply_and_receive`](crate::Request::reply_and_receive)).
///
/// # Errors
/// When the message breaks this process's limits, as for [`send`]; nothing is
/// received then. A message to a process that no longer exists is dropped, as in
/// Erlang, and the wait goes on.
pub fn send_receive(to: Pid, tag: Tag, payload: impl AsRef<[u8]>) -> Result<Message, Error> {
    raw_send_receive(to, tag, payload.as_ref(), None, None).map(|message| {
        message.expect("the runtime returned no message from a receive without timeout")
    })
}

/// Like [`send_receive`], waiting up to `timeout` (rounded up to whole milliseconds):
/// `Ok(None)` when nothing arrived in time.
///
/// # Errors
/// As for [`send_receive`].
pub fn send_receive_timeout(
    to: Pid,
    tag: Tag,
    payload: impl AsRef<[u8]>,
    timeout: Duration,
) -> Result<Option<Message>, Error> {
    raw_send_receive(to, tag, payload.as_ref(), Some(timeout), None)
}

/// Takes the first message in the mailbox if there is one, without waiting: `None`
/// when the mailbox is empty. Upgrade requests are handled as by [`receive`].
pub fn try_receive() -> Option<Message> {
    raw_try_receive(None)
}

/// Takes the first message in the mailbox, waiting as long as it takes.
///
/// An upgrade request is answered by the SDK (handing over an empty state) unless the
/// actor called [`handle_upgrades`](crate::handle_upgrades)`(true)`; then it comes
/// back as [`Message::Upgrade`].
pub fn receive() -> Message {
    raw_receive(None, None).expect("the runtime returned no message from a receive without timeout")
}

/// Takes the first message in the mailbox, waiting up to `timeout`.
///
/// Returns `None` when nothing arrived in time. A zero timeout polls. Fractions of a
/// millisecond are rounded up.
pub fn receive_timeout(timeout: Duration) -> Option<Message> {
    raw_receive(Some(timeout), None)
}

/// Takes the first data message tagged `tag` and returns its payload, waiting as long as
/// it takes. Other messages keep their place in the mailbox.
pub fn receive_tag(tag: Tag) -> Vec<u8> {
    let message = Selector::new().tag(tag).receive();
    message
        .into_payload()
        .expect("the runtime returned a message the selector does not match")
}

/// Takes the first data message tagged `tag` and returns its payload, waiting up to
/// `timeout`. Other messages keep their place in the mailbox.
pub fn receive_tag_timeout(tag: Tag, timeout: Duration) -> Option<Vec<u8>> {
    let message = Selector::new().tag(tag).receive_timeout(timeout)?;
    Some(
        message
            .into_payload()
            .expect("the runtime returned a message the selector does not match"),
    )
}

/// Takes the first message `selector` matches, waiting as long as it takes.
pub fn receive_selected(selector: &Selector) -> Message {
    selector.receive()
}

/// Takes the first message `selector` matches, waiting up to `timeout`.
pub fn receive_selected_timeout(selector: &Selector, timeout: Duration) -> Option<Message> {
    selector.receive_timeout(timeout)
}

/// Which messages a selective receive may take.
///
/// A message matches if it matches any part: a data message with one of the tags, a
/// `Down` for one of the monitors, or any `Exit` when [`Selector::exits`] was set.
/// Messages that do not match keep their place and order in the mailbox. An empty
/// selector matches nothing.
///
/// ```no_run
/// use std::time::Duration;
/// use rusm_guest::{Message, Selector};
///
/// # let monitor = rusm_guest::MonitorRef::from_raw(1);
/// let selector = Selector::new().tag(7).monitor(monitor).exits();
/// match selector.receive_timeout(Duration::from_secs(1)) {
///     Some(Message::Data { payload, .. }) => println!("reply: {payload:?}"),
///     Some(other) => println!("signal: {other:?}"),
///     None => println!("timed out"),
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Selector {
    raw: raw::Selector,
}

impl Default for Selector {
    fn default() -> Self {
        Self::new()
    }
}

impl Selector {
    /// A selector that matches nothing yet.
    pub fn new() -> Self {
        Self {
            raw: raw::Selector {
                tags: Vec::new(),
                monitors: Vec::new(),
                exits: false,
            },
        }
    }

    /// Also match data messages tagged `tag`.
    pub fn tag(mut self, tag: Tag) -> Self {
        self.raw.tags.push(tag);
        self
    }

    /// Also match data messages with any of these tags.
    pub fn tags(mut self, tags: impl IntoIterator<Item = Tag>) -> Self {
        self.raw.tags.extend(tags);
        self
    }

    /// Also match the `Down` message of this monitor.
    pub fn monitor(mut self, monitor: MonitorRef) -> Self {
        self.raw.monitors.push(monitor.as_raw());
        self
    }

    /// Also match the `Down` messages of any of these monitors.
    pub fn monitors(mut self, monitors: impl IntoIterator<Item = MonitorRef>) -> Self {
        self.raw
            .monitors
            .extend(monitors.into_iter().map(MonitorRef::as_raw));
        self
    }

    /// Also match every `Exit` message.
    pub fn exits(mut self) -> Self {
        self.raw.exits = true;
        self
    }

    /// Takes the first matching message, waiting as long as it takes.
    pub fn receive(&self) -> Message {
        raw_receive(None, Some(self))
            .expect("the runtime returned no message from a receive without timeout")
    }

    /// Takes the first matching message, waiting up to `timeout`; `None` on timeout.
    pub fn receive_timeout(&self, timeout: Duration) -> Option<Message> {
        raw_receive(Some(timeout), Some(self))
    }

    /// Takes the first matching message if one is queued, without waiting.
    pub fn try_receive(&self) -> Option<Message> {
        raw_try_receive(Some(self))
    }

    /// Sends a data message, then takes the first matching message, waiting as long as
    /// it takes: [`send`] and [`Selector::receive`] in one call into the runtime. The
    /// step of a request/reply exchange (as [`call`](crate::call) does).
    ///
    /// # Errors
    /// When the message breaks this process's limits, as for [`send`]; nothing is
    /// received then.
    pub fn send_receive(
        &self,
        to: Pid,
        tag: Tag,
        payload: impl AsRef<[u8]>,
    ) -> Result<Message, Error> {
        raw_send_receive(to, tag, payload.as_ref(), None, Some(self)).map(|message| {
            message.expect("the runtime returned no message from a receive without timeout")
        })
    }

    /// Like [`Selector::send_receive`], waiting up to `timeout`: `Ok(None)` when no
    /// matching message arrived in time.
    ///
    /// # Errors
    /// As for [`Selector::send_receive`].
    pub fn send_receive_timeout(
        &self,
        to: Pid,
        tag: Tag,
        payload: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<Option<Message>, Error> {
        raw_send_receive(to, tag, payload.as_ref(), Some(timeout), Some(self))
    }
}

/// Options for [`spawn`], built step by step.
///
/// ```no_run
/// use rusm_guest::{spawn, SpawnOptions};
///
/// let child = spawn("worker", SpawnOptions::new().link(true).init(b"config".to_vec()))?;
/// println!("started {}", child.pid);
/// # Ok::<(), rusm_guest::Error>(())
/// ```
#[derive(Clone, Default, Debug)]
pub struct SpawnOptions {
    link: bool,
    monitor: bool,
    init: Vec<u8>,
    policy: Option<String>,
}

impl SpawnOptions {
    /// No link, no monitor, empty init, the caller's own policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Link the new process to the caller.
    pub fn link(mut self, link: bool) -> Self {
        self.link = link;
        self
    }

    /// Monitor the new process from the caller; [`Spawned::monitor`] then holds the
    /// reference.
    pub fn monitor(mut self, monitor: bool) -> Self {
        self.monitor = monitor;
        self
    }

    /// The bytes handed to the new process's entry point.
    pub fn init(mut self, init: impl Into<Vec<u8>>) -> Self {
        self.init = init.into();
        self
    }

    /// Run the child under the named policy, which must grant no more than the caller
    /// holds.
    pub fn policy(mut self, policy: impl Into<String>) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// Run the child under the caller's own policy (the default).
    pub fn inherit_policy(mut self) -> Self {
        self.policy = None;
        self
    }
}

/// What [`spawn`] returns.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Spawned {
    /// The new process.
    pub pid: Pid,
    /// The monitor reference, when [`SpawnOptions::monitor`] was set.
    pub monitor: Option<MonitorRef>,
}

/// Starts a new process running the named component.
pub fn spawn(component: &str, options: SpawnOptions) -> Result<Spawned, Error> {
    let options = raw::SpawnOptions {
        link: options.link,
        monitor: options.monitor,
        init: options.init,
        policy: options.policy,
    };
    let spawned = imports::spawn(component, &options)?;
    Ok(Spawned {
        pid: Pid::from_raw(spawned.pid),
        monitor: spawned.monitor.map(MonitorRef::from_raw),
    })
}

/// Starts a new process running the named component on the node named `node` of
/// this node's cluster, under the receiving node's policy `options.policy` (or the
/// caller's own): never more than the caller holds. A link or monitor asked for
/// crosses nodes (`noconnection` when the node goes down). Waits for the other node's
/// answer.
pub fn spawn_on(node: &str, component: &str, options: SpawnOptions) -> Result<Spawned, Error> {
    let options = raw::SpawnOptions {
        link: options.link,
        monitor: options.monitor,
        init: options.init,
        policy: options.policy,
    };
    let spawned = imports::spawn_on(node, component, &options)?;
    Ok(Spawned {
        pid: Pid::from_raw(spawned.pid),
        monitor: spawned.monitor.map(MonitorRef::from_raw),
    })
}

/// Links this process with `pid`: when either ends abnormally the other receives an
/// exit signal. Fails with [`Error::Noproc`] when `pid` does not exist.
pub fn link(pid: Pid) -> Result<(), Error> {
    imports::link(pid.as_raw()).map_err(Error::from)
}

/// Removes a link. Does nothing if there is none.
pub fn unlink(pid: Pid) {
    imports::unlink(pid.as_raw());
}

/// Monitors `pid`: a [`Message::Down`] arrives when it ends, at once (reason
/// `noproc`) if it does not exist.
pub fn monitor(pid: Pid) -> MonitorRef {
    MonitorRef::from_raw(imports::monitor(pid.as_raw()))
}

/// Stops monitoring and removes a `Down` message of this monitor already in the
/// mailbox. Returns true if the monitor was active.
pub fn demonitor(monitor: MonitorRef) -> bool {
    imports::demonitor(monitor.as_raw())
}

/// Turns exit signals into [`Message::Exit`] messages (`true`) or lets them end this
/// process (`false`). `killed` can never be trapped. Returns the previous setting.
pub fn trap_exit(enabled: bool) -> bool {
    imports::trap_exit(enabled)
}

/// Sends an exit signal to `pid`, as Erlang's `exit/2`. Subject to the policy's kill
/// right unless `pid` is this process.
pub fn exit(pid: Pid, reason: ExitReason) -> Result<(), Error> {
    imports::exit(pid.as_raw(), &reason.into_raw()).map_err(Error::from)
}

/// Ends `pid` at once with reason `killed`, which cannot be trapped. Subject to the
/// policy's kill right.
pub fn kill(pid: Pid) -> Result<(), Error> {
    imports::kill(pid.as_raw()).map_err(Error::from)
}

/// Registers this process under `name`. Subject to the policy's register right.
pub fn register(name: &str) -> Result<(), Error> {
    imports::register(name).map_err(Error::from)
}

/// Removes a registered name this process holds.
pub fn unregister(name: &str) -> Result<(), Error> {
    imports::unregister(name).map_err(Error::from)
}

/// Looks up a registered name.
pub fn whereis(name: &str) -> Option<Pid> {
    imports::whereis(name).map(Pid::from_raw)
}

/// Registers this process under `name` across its node's cluster. Subject to the
/// policy's register right. The name is released when this process ends, or when its
/// node is declared down.
///
/// # Errors
/// `already-registered` when a live process holds it; `unavailable` on a node in no
/// cluster, or when the cluster's registry cannot be reached.
pub fn register_global(name: &str) -> Result<(), Error> {
    imports::register_global(name).map_err(Error::from)
}

/// Looks up a name registered across the cluster (see [`register_global`]): `None`
/// on a node in no cluster, and when the holder's node is down.
pub fn whereis_global(name: &str) -> Option<Pid> {
    imports::whereis_global(name).map(Pid::from_raw)
}

/// Sends a data message to `to` after `delay` (rounded up to whole milliseconds).
///
/// # Errors
/// When the message breaks this process's limits (its size), as for [`send`].
pub fn send_after(
    to: Pid,
    tag: Tag,
    payload: impl AsRef<[u8]>,
    delay: Duration,
) -> Result<TimerRef, Error> {
    imports::send_after(to.as_raw(), tag, payload.as_ref(), millis(delay))
        .map(TimerRef::from_raw)
        .map_err(Error::from)
}

/// Cancels a timer. Returns true if it had not fired yet.
pub fn cancel_timer(timer: TimerRef) -> bool {
    imports::cancel_timer(timer.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(5)), 5);
        assert_eq!(millis(Duration::from_micros(5_001)), 6);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn selectors_collect_their_parts() {
        let selector = Selector::new()
            .tag(1)
            .tags([2, 3])
            .monitor(MonitorRef::from_raw(4))
            .monitors([MonitorRef::from_raw(5)])
            .exits();
        assert_eq!(selector.raw.tags, [1, 2, 3]);
        assert_eq!(selector.raw.monitors, [4, 5]);
        assert!(selector.raw.exits);
        assert!(!Selector::new().raw.exits);
    }
}
