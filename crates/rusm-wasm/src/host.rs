//! The host side of `rusm:runtime/process`: every import a guest calls, implemented
//! on [`ProcessState`] (the process's context, policy, limits and its narrow view of
//! the node), over the bindings generated in [`crate::bindings`].

use std::time::Duration;

use rusm_otp::{MonitorRef, Payload, Pid, SendError, SendErrorKind, TimerRef};

use crate::bindings::{
    Selector, SelfExit, WitError, WitExitReason, WitMessage, WitSpawnOptions, WitSpawned,
    message_to_wit, reason_from_wit, rusm,
};
use crate::rights;
use crate::state::ProcessState;
use crate::upgrade::{self, HandOver, UPGRADE_TAG};

/// The most tags and monitor references one selector may name. Each message a
/// selective receive examines is checked against all of them while the process's
/// mailbox is locked (senders to it wait), so a guest must not choose their number.
pub(crate) const MAX_SELECTOR: usize = 256;

/// Refuse a selector larger than [`MAX_SELECTOR`]: `receive` has no error channel, so
/// the guest traps with a reason that names the bound.
fn check_selector(selector: Option<&Selector>) -> wasmtime::Result<()> {
    match selector {
        Some(sel) if sel.tags.len() + sel.monitors.len() > MAX_SELECTOR => {
            Err(wasmtime::Error::msg(format!(
                "a selector of {} tags and {} monitors is larger than the {MAX_SELECTOR} allowed",
                sel.tags.len(),
                sel.monitors.len()
            )))
        }
        _ => Ok(()),
    }
}

fn selector_matches(selector: &Selector, msg: &rusm_otp::Message) -> bool {
    match msg {
        // An upgrade request waits for a receive without a selector.
        rusm_otp::Message::Data(data) => {
            selector.tags.contains(&data.tag) && upgrade::signal_of(msg).is_none()
        }
        rusm_otp::Message::Down(down) => selector.monitors.contains(&down.monitor.as_raw()),
        rusm_otp::Message::Exit(_) => selector.exits,
        _ => false,
    }
}

impl rusm::runtime::types::Host for ProcessState {}

/// The interface whose `spawn` [`spawn_paying_fuel`] replaces on a node that meters
/// fuel.
pub(crate) const PROCESS_INTERFACE: &str = "rusm:runtime/process@0.1.0";

/// `spawn` on a node that meters fuel, where the child's fuel comes out of its
/// parent's: it needs the store (the fuel a process has left lives there, not in its
/// state), so it is linked with the store in place of the generated binding. A parent
/// whose policy sets a fuel limit gives the child at most half of what it has left
/// (less when the child's own policy says less) and keeps the rest, so a tree never
/// burns more than its root was granted and a chain of successors ends. A parent
/// with no fuel limit gives what the child's policy says.
pub(crate) fn spawn_paying_fuel(
    mut store: wasmtime::StoreContextMut<'_, ProcessState>,
    (component, options): (String, WitSpawnOptions),
) -> wasmtime::Result<(Result<WitSpawned, WitError>,)> {
    let left = store.get_fuel()?;
    let state = store.data();
    let share = (state.limits.fuel != Some(u64::MAX)).then_some(left / 2);
    let spawner = state.node.spawner.clone();
    match spawner.spawn_from_guest(state, &component, options, share) {
        Ok((spawned, given)) => {
            if share.is_some() {
                store.set_fuel(left.saturating_sub(given))?;
            }
            Ok((Ok(spawned),))
        }
        Err(e) => Ok((Err(e),)),
    }
}

impl ProcessState {
    /// A guest's `spawn-on`: the caller's own checks here (names, its spawn right, its
    /// link and monitor limits, no bound on its children that another node could not
    /// keep), then the request, carrying the caller's policy, which the receiving node
    /// checks again against its own library.
    async fn spawn_remote(
        &mut self,
        node: String,
        component: String,
        options: WitSpawnOptions,
    ) -> Result<WitSpawned, WitError> {
        rights::check_name("node name", &node)?;
        rights::check_name("component name", &component)?;
        if let Some(named) = &options.policy {
            rights::check_name("policy name", named)?;
        }
        if !self
            .policy
            .process
            .may_spawn(&component, options.policy.as_deref())
        {
            return Err(WitError::NotPermitted(format!(
                "the policy has no spawn right for component {component:?} under {}",
                options
                    .policy
                    .as_deref()
                    .map_or("its own policy".to_string(), |p| format!("policy {p:?}"))
            )));
        }
        let limits = &self.policy.limits;
        for (key, bound) in [
            ("children", limits.children),
            ("descendants", limits.descendants),
            ("spawns", limits.spawns),
        ] {
            if bound.is_some() {
                return Err(WitError::NotPermitted(format!(
                    "the policy bounds its spawns (limit `{key}`), which a process on another node would escape"
                )));
            }
        }
        if options.link {
            rights::check_links(&self.limits, self.ctx.link_count())?;
        }
        if options.monitor
            && rights::check_monitors(&self.limits, self.ctx.monitor_count()).is_err()
        {
            return Err(WitError::NotPermitted(format!(
                "the policy allows at most {} monitors",
                self.limits.monitors
            )));
        }
        let spawn = rusm_otp::RemoteSpawn {
            component,
            policy: options.policy,
            holds: Some(self.policy.to_toml()),
            init: options.init,
            link: options.link,
            monitor: options.monitor,
        };
        match self.ctx.spawn_on(&node, spawn).await {
            Ok(spawned) => Ok(WitSpawned {
                pid: spawned.pid.as_raw(),
                monitor: spawned.monitor.map(|m| m.as_raw()),
            }),
            Err(rusm_otp::SpawnRefused::NotFound(why)) => Err(WitError::NotFound(why)),
            Err(rusm_otp::SpawnRefused::NotPermitted(why)) => Err(WitError::NotPermitted(why)),
            Err(rusm_otp::SpawnRefused::Invalid(why)) => Err(WitError::Invalid(why)),
            Err(other) => Err(WitError::Unavailable(other.to_string())),
        }
    }
}

/// The one tag a selector asks for, when it asks for nothing else (and not for
/// upgrade requests): such a receive uses the mailbox's tag index.
fn only_tag(sel: &Selector) -> Option<u64> {
    (sel.tags.len() == 1 && sel.tags[0] != UPGRADE_TAG && sel.monitors.is_empty() && !sel.exits)
        .then(|| sel.tags[0])
}

/// The next message `selector` lets through (any message when none), as the core
/// hands it over: upgrade requests and messages a guest cannot read included.
async fn next_message(ctx: &rusm_otp::Context, selector: Option<&Selector>) -> rusm_otp::Message {
    match selector {
        None => ctx.recv().await,
        Some(sel) => match only_tag(sel) {
            Some(tag) => rusm_otp::Message::Data(ctx.recv_tag(tag).await),
            None => ctx.recv_match(|m| selector_matches(sel, m)).await,
        },
    }
}

/// [`next_message`] without waiting: the message if one is queued now.
fn try_next_message(
    ctx: &rusm_otp::Context,
    selector: Option<&Selector>,
) -> Option<rusm_otp::Message> {
    match selector {
        None => ctx.try_recv(),
        Some(sel) => match only_tag(sel) {
            Some(tag) => ctx.try_recv_tag(tag).map(rusm_otp::Message::Data),
            None => ctx.try_recv_match(|m| selector_matches(sel, m)),
        },
    }
}

impl ProcessState {
    /// `receive`: the next message for the guest, waiting up to `timeout_ms`
    /// (forever when none); none on timeout.
    async fn receive_message(
        &mut self,
        timeout_ms: Option<u64>,
        selector: Option<&Selector>,
    ) -> Option<WitMessage> {
        let deadline = timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
        loop {
            let next = next_message(&self.ctx, selector);
            let msg = match deadline {
                None => next.await,
                Some(deadline) => tokio::time::timeout_at(deadline, next).await.ok()?,
            };
            if let Some(msg) = self.message_for_guest(msg) {
                return Some(msg);
            }
        }
    }

    /// A message taken from the mailbox as the guest sees it, or none when it is not
    /// for the guest: an upgrade request a hand-over already answered, or data that is
    /// not bytes (both dropped).
    fn message_for_guest(&self, msg: rusm_otp::Message) -> Option<WitMessage> {
        if let Some(signal) = upgrade::signal_of(&msg) {
            return self
                .node
                .upgrades
                .deliverable(self.ctx.pid(), signal)
                .map(WitMessage::Upgrade);
        }
        message_to_wit(msg)
    }

    fn check_message_size(&self, payload: &[u8]) -> Result<(), WitError> {
        rights::check_message_size(&self.limits, payload.len())
    }

    /// Queue a guest's message. A message to a process that has ended, or to a full
    /// mailbox, is dropped (as Erlang's send never fails), unless the receiver's
    /// policy has a full mailbox refuse it (`mailbox_overflow = "refuse"`: the send
    /// fails with `unavailable`); one larger than the receiver accepts is refused, so
    /// that what a process is sent cannot end it.
    fn deliver(&self, to: u64, tag: u64, payload: Vec<u8>) -> Result<(), WitError> {
        let to = Pid::from_raw(to);
        match self.ctx.try_send(to, tag, Payload::Bytes(payload)) {
            Err(SendError {
                kind: SendErrorKind::TooLarge { size, limit },
                ..
            }) => Err(WitError::Invalid(format!(
                "a message of {size} bytes is larger than the {limit} bytes {to} accepts"
            ))),
            // The receiver's policy says a full mailbox refuses rather than drops.
            Err(SendError {
                kind: SendErrorKind::Refused,
                ..
            }) => Err(WitError::Unavailable(format!(
                "the mailbox of {to} is full and refuses more messages"
            ))),
            Ok(()) | Err(_) => Ok(()),
        }
    }

    fn check_kill(&self, target: Pid) -> Result<(), WitError> {
        rights::check_kill(&self.policy, &self.ctx, target)
    }
}

impl rusm::runtime::process::Host for ProcessState {
    fn self_(&mut self) -> wasmtime::Result<u64> {
        Ok(self.ctx.pid().as_raw())
    }

    fn spawn(
        &mut self,
        component: String,
        options: WitSpawnOptions,
    ) -> wasmtime::Result<Result<WitSpawned, WitError>> {
        let spawner = self.node.spawner.clone();
        Ok(spawner
            .spawn_from_guest(self, &component, options, None)
            .map(|(spawned, _)| spawned))
    }

    fn send(
        &mut self,
        to: u64,
        tag: u64,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), WitError>> {
        if let Err(e) = self.check_message_size(&payload) {
            return Ok(Err(e));
        }
        Ok(self.deliver(to, tag, payload))
    }

    async fn receive(
        &mut self,
        timeout_ms: Option<u64>,
        selector: Option<Selector>,
    ) -> wasmtime::Result<Option<WitMessage>> {
        check_selector(selector.as_ref())?;
        Ok(self.receive_message(timeout_ms, selector.as_ref()).await)
    }

    async fn send_receive(
        &mut self,
        to: u64,
        tag: u64,
        payload: Vec<u8>,
        timeout_ms: Option<u64>,
        selector: Option<Selector>,
    ) -> wasmtime::Result<Result<Option<WitMessage>, WitError>> {
        check_selector(selector.as_ref())?;
        if let Err(e) = self.check_message_size(&payload) {
            return Ok(Err(e));
        }
        if let Err(e) = self.deliver(to, tag, payload) {
            return Ok(Err(e));
        }
        Ok(Ok(self
            .receive_message(timeout_ms, selector.as_ref())
            .await))
    }

    fn try_receive(&mut self, selector: Option<Selector>) -> wasmtime::Result<Option<WitMessage>> {
        check_selector(selector.as_ref())?;
        loop {
            let Some(msg) = try_next_message(&self.ctx, selector.as_ref()) else {
                return Ok(None);
            };
            if let Some(msg) = self.message_for_guest(msg) {
                return Ok(Some(msg));
            }
        }
    }

    fn link(&mut self, pid: u64) -> wasmtime::Result<Result<(), WitError>> {
        // A link carries exit signals both ways, so it can end the other process:
        // it needs the kill right over it.
        let target = Pid::from_raw(pid);
        if let Err(e) = self.check_kill(target) {
            return Ok(Err(e));
        }
        if let Err(e) = rights::check_links(&self.limits, self.ctx.link_count()) {
            return Ok(Err(e));
        }
        Ok(self.ctx.link(target).map_err(|_| WitError::Noproc))
    }

    fn unlink(&mut self, pid: u64) -> wasmtime::Result<()> {
        self.ctx.unlink(Pid::from_raw(pid));
        Ok(())
    }

    fn monitor(&mut self, pid: u64) -> wasmtime::Result<u64> {
        rights::check_monitors(&self.limits, self.ctx.monitor_count())?;
        Ok(self.ctx.monitor(Pid::from_raw(pid)).as_raw())
    }

    fn demonitor(&mut self, monitor: u64) -> wasmtime::Result<bool> {
        Ok(self.ctx.demonitor(MonitorRef::from_raw(monitor)))
    }

    fn trap_exit(&mut self, enabled: bool) -> wasmtime::Result<bool> {
        Ok(self.ctx.trap_exit(enabled))
    }

    fn exit(&mut self, pid: u64, reason: WitExitReason) -> wasmtime::Result<Result<(), WitError>> {
        let target = Pid::from_raw(pid);
        if let Err(e) = self.check_kill(target) {
            return Ok(Err(e));
        }
        let reason = reason_from_wit(reason);
        if target == self.ctx.pid() && !self.ctx.trap_exit(true) {
            // exit(self, reason) without trapping ends the process right here, as in
            // Erlang: unwind the guest with a trap that carries the reason.
            self.ctx.trap_exit(false);
            return Err(wasmtime::Error::new(SelfExit(reason)));
        } else if target == self.ctx.pid() {
            // Trapping: restore the setting; the signal arrives as a message.
        }
        self.ctx.exit(target, reason);
        Ok(Ok(()))
    }

    fn kill(&mut self, pid: u64) -> wasmtime::Result<Result<(), WitError>> {
        let target = Pid::from_raw(pid);
        if let Err(e) = self.check_kill(target) {
            return Ok(Err(e));
        }
        if target == self.ctx.pid() {
            return Err(wasmtime::Error::new(SelfExit(rusm_otp::ExitReason::Killed)));
        }
        self.ctx.kill(target);
        Ok(Ok(()))
    }

    fn register(&mut self, name: String) -> wasmtime::Result<Result<(), WitError>> {
        if let Err(e) = rights::check_name("name", &name) {
            return Ok(Err(e));
        }
        if let Err(e) = rights::check_register(&self.policy, &name) {
            return Ok(Err(e));
        }
        if self.ctx.whereis(&name) == Some(self.ctx.pid()) {
            // Already ours: a process restarted in place by an upgrade runs its
            // start-up code again.
            return Ok(Ok(()));
        }
        Ok(self
            .ctx
            .register(&name)
            .map_err(|e| WitError::AlreadyRegistered(e.to_string())))
    }

    fn unregister(&mut self, name: String) -> wasmtime::Result<Result<(), WitError>> {
        if let Err(e) = rights::check_name("name", &name) {
            return Ok(Err(e));
        }
        Ok(self
            .ctx
            .unregister(&name)
            .map_err(|e| WitError::NotFound(e.to_string())))
    }

    fn whereis(&mut self, name: String) -> wasmtime::Result<Option<u64>> {
        // No name that long is registered.
        if name.len() > rights::MAX_NAME {
            return Ok(None);
        }
        Ok(self.ctx.whereis(&name).map(Pid::as_raw))
    }

    async fn register_global(&mut self, name: String) -> wasmtime::Result<Result<(), WitError>> {
        if let Err(e) = rights::check_name("name", &name) {
            return Ok(Err(e));
        }
        if let Err(e) = rights::check_register(&self.policy, &name) {
            return Ok(Err(e));
        }
        let rt = self.ctx.runtime().clone();
        Ok(match rt.register_global(&name, self.ctx.pid()).await {
            Ok(()) => Ok(()),
            Err(e @ rusm_otp::Error::NameTaken { .. }) => {
                Err(WitError::AlreadyRegistered(e.to_string()))
            }
            Err(e) => Err(WitError::Unavailable(e.to_string())),
        })
    }

    async fn spawn_on(
        &mut self,
        node: String,
        component: String,
        options: WitSpawnOptions,
    ) -> wasmtime::Result<Result<WitSpawned, WitError>> {
        Ok(self.spawn_remote(node, component, options).await)
    }

    async fn whereis_global(&mut self, name: String) -> wasmtime::Result<Option<u64>> {
        // No name that long is registered.
        if name.len() > rights::MAX_NAME || name.is_empty() {
            return Ok(None);
        }
        let rt = self.ctx.runtime().clone();
        Ok(rt
            .whereis_global(&name)
            .await
            .ok()
            .flatten()
            .map(Pid::as_raw))
    }

    fn send_after(
        &mut self,
        to: u64,
        tag: u64,
        payload: Vec<u8>,
        delay_ms: u64,
    ) -> wasmtime::Result<Result<u64, WitError>> {
        if let Err(e) = self.check_message_size(&payload) {
            return Ok(Err(e));
        }
        if let Err(e) = rights::check_timers(&self.limits, self.ctx.timer_count()) {
            return Ok(Err(e));
        }
        if let Err(e) =
            rights::check_timer_bytes(&self.limits, self.ctx.timer_bytes(), payload.len())
        {
            return Ok(Err(e));
        }
        let delay = Duration::from_millis(delay_ms);
        let timer = self
            .ctx
            .send_after(Pid::from_raw(to), tag, Payload::Bytes(payload), delay);
        Ok(Ok(timer.as_raw()))
    }

    fn cancel_timer(&mut self, timer: u64) -> wasmtime::Result<bool> {
        Ok(self.ctx.cancel_timer(TimerRef::from_raw(timer)))
    }

    fn hand_over(&mut self, state: Vec<u8>) -> wasmtime::Result<Result<(), WitError>> {
        match self.node.upgrades.pending(self.ctx.pid()) {
            // Unwind the guest now; the process body starts the new version.
            Some(generation) => Err(wasmtime::Error::new(HandOver { state, generation })),
            None => Ok(Err(WitError::Invalid("no upgrade is pending".into()))),
        }
    }

    fn handed_over(&mut self) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.node.upgrades.handed_over(self.ctx.pid()))
    }
}
