//! The process rights a policy grants besides WASI: ending other processes (`kill`,
//! `exit`, and `link`, which can end the other side), registering names, and the size
//! of what the process may send. Each check returns the error the guest sees.

use rusm_otp::{Context, Pid};
use rusm_policy::Policy;

use crate::bindings::WitError;
use crate::limits::Limits;

/// May the process of `ctx` end `target`? Itself always; others as its policy's kill
/// right says (its own children, or anyone).
pub(crate) fn check_kill(policy: &Policy, ctx: &Context, target: Pid) -> Result<(), WitError> {
    let me = ctx.pid();
    if target == me {
        return Ok(());
    }
    let is_child = ctx.runtime().parent_of(target) == Some(me);
    if policy.process.may_kill(is_child) {
        Ok(())
    } else {
        Err(WitError::NotPermitted(format!(
            "the policy does not allow ending {target}"
        )))
    }
}

/// The longest name a guest may pass for a registered name, a component or a policy,
/// in bytes. Names are kept by the node (the registry) and echoed in the errors a
/// refused call returns, so a guest must not choose their size.
pub(crate) const MAX_NAME: usize = 255;

/// Refuse a name longer than [`MAX_NAME`], saying what it names.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), WitError> {
    if name.len() > MAX_NAME {
        Err(WitError::Invalid(format!(
            "a {what} of {} bytes is longer than the {MAX_NAME} allowed",
            name.len()
        )))
    } else {
        Ok(())
    }
}

/// May the process register `name`?
pub(crate) fn check_register(policy: &Policy, name: &str) -> Result<(), WitError> {
    if policy.process.may_register(name) {
        Ok(())
    } else {
        Err(WitError::NotPermitted(format!(
            "the policy does not allow registering {name:?}"
        )))
    }
}

/// May the process send a payload of `len` bytes?
pub(crate) fn check_message_size(limits: &Limits, len: usize) -> Result<(), WitError> {
    match limits.message_size {
        Some(max) if len > max => Err(WitError::Invalid(format!(
            "message of {len} bytes is larger than the {max} bytes allowed"
        ))),
        _ => Ok(()),
    }
}

/// May the process set one more timer, with `waiting` of its timers not yet fired?
pub(crate) fn check_timers(limits: &Limits, waiting: usize) -> Result<(), WitError> {
    if waiting >= limits.timers {
        Err(WitError::NotPermitted(format!(
            "the policy allows at most {} waiting timers",
            limits.timers
        )))
    } else {
        Ok(())
    }
}

/// May the process link to one more process, linked to `linked` already?
pub(crate) fn check_links(limits: &Limits, linked: usize) -> Result<(), WitError> {
    if linked >= limits.links {
        Err(WitError::NotPermitted(format!(
            "the policy allows at most {} links",
            limits.links
        )))
    } else {
        Ok(())
    }
}

/// May the process make one more monitor, holding `held` already? `monitor` has no
/// error channel, so past the limit the guest traps with this reason.
pub(crate) fn check_monitors(limits: &Limits, held: usize) -> wasmtime::Result<()> {
    if held >= limits.monitors {
        Err(wasmtime::Error::msg(format!(
            "the policy allows at most {} monitors (down messages waiting count too)",
            limits.monitors
        )))
    } else {
        Ok(())
    }
}

/// May the process set one more timer holding `len` payload bytes, with `held` bytes
/// in its waiting timers already?
pub(crate) fn check_timer_bytes(limits: &Limits, held: usize, len: usize) -> Result<(), WitError> {
    if held.saturating_add(len) > limits.mailbox_bytes {
        Err(WitError::NotPermitted(format!(
            "the policy allows at most {} bytes in waiting timers",
            limits.mailbox_bytes
        )))
    } else {
        Ok(())
    }
}
