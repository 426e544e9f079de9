//! Errors of the actor core.

use crate::{Pid, message::Payload};

/// Why a runtime operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The process does not exist (it never did, or it has ended).
    #[error("no such process {0}")]
    NoProc(Pid),
    /// The name is already registered to another process.
    #[error("the name {name:?} is already registered to {holder}")]
    NameTaken {
        /// The name asked for.
        name: String,
        /// The process holding it.
        holder: Pid,
    },
    /// The process already has a registered name (a process holds at most one).
    #[error("{pid} is already registered as {name:?}")]
    AlreadyNamed {
        /// The process.
        pid: Pid,
        /// The name it holds.
        name: String,
    },
    /// The name is not registered to the calling process.
    #[error("the name {0:?} is not registered to this process")]
    NotRegistered(String),
    /// The node cannot join a cluster as asked, or a cluster operation failed.
    #[error("cluster: {0}")]
    Cluster(String),
}

/// A message `try_send` could not deliver, handed back to the sender.
#[derive(Debug)]
pub struct SendError {
    /// The message that was not delivered.
    pub payload: Payload,
    /// Why.
    pub kind: SendErrorKind,
}

/// Why `try_send` could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// The receiver does not exist.
    NoProc,
    /// The receiver's bounded mailbox is full (in messages or in bytes).
    Full,
    /// The receiver's bounded mailbox is full and refuses what arrives
    /// ([`Overflow::Refuse`](crate::Overflow::Refuse)).
    Refused,
    /// The payload is larger than the receiver accepts
    /// ([`MailboxConfig::max_message`](crate::MailboxConfig::max_message)).
    TooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The most the receiver accepts.
        limit: usize,
    },
    /// The receiver is on another node and the payload cannot travel there: only
    /// bytes cross nodes.
    NotPortable,
    /// The receiver is on another node that this node is not connected to.
    NoConnection,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            SendErrorKind::NoProc => f.write_str("the receiver does not exist"),
            SendErrorKind::Full => f.write_str("the receiver's mailbox is full"),
            SendErrorKind::Refused => {
                f.write_str("the receiver's mailbox is full and refuses more messages")
            }
            SendErrorKind::TooLarge { size, limit } => write!(
                f,
                "a message of {size} bytes is larger than the {limit} bytes the receiver accepts"
            ),
            SendErrorKind::NotPortable => {
                f.write_str("only bytes can be sent to a process of another node")
            }
            SendErrorKind::NoConnection => f.write_str("the receiver's node is not connected"),
        }
    }
}

impl std::error::Error for SendError {}
