//! Synchronous calls between processes, in the style of `gen_server:call`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::wire::{DecodeError, Reader, Writer};
use crate::{
    Error, ExitReason, Message, Pid, REPLY_TAG_BASE, Selector, Tag, demonitor, monitor, self_pid,
    send, send_receive,
};

/// The length of the envelope in front of a request body.
pub const REQUEST_HEADER_LEN: usize = 16;

static NEXT_REPLY_TAG: AtomicU64 = AtomicU64::new(REPLY_TAG_BASE);

/// A fresh tag for a reply: unique within this process, never below
/// [`REPLY_TAG_BASE`].
pub fn fresh_reply_tag() -> Tag {
    let tag = NEXT_REPLY_TAG.fetch_add(1, Ordering::Relaxed);
    // After 2^63 calls the counter would wrap into application tags; start over instead.
    if tag < REPLY_TAG_BASE {
        NEXT_REPLY_TAG.store(REPLY_TAG_BASE + 1, Ordering::Relaxed);
        REPLY_TAG_BASE
    } else {
        tag
    }
}

/// A request as the server sees it: who asked, which tag the reply must carry, and the
/// body.
///
/// [`call`] sends a data message with the server's request tag whose payload is this
/// envelope:
///
/// | bytes | field |
/// | --- | --- |
/// | 0..8 | `from`: the caller's pid, `u64` little-endian |
/// | 8..16 | `reply_tag`: the tag the reply must carry, `u64` little-endian |
/// | 16.. | `body`: the request itself, meaning agreed by client and server |
///
/// The server answers with one data message to `from`, tagged `reply_tag`, whose
/// payload is the reply body with no envelope ([`reply`]).
///
/// Reply tags come from a per-process counter starting at
/// [`REPLY_TAG_BASE`] (2^63), so tags below 2^63 are free for the application and a
/// late reply can never be taken for the answer to a newer call. A reply that arrives
/// after its call timed out stays in the mailbox; a plain [`receive`](crate::receive)
/// will return it.
///
/// A server loop:
///
/// ```no_run
/// use rusm_guest::{Message, Request, receive};
///
/// let mut count = 0i64;
/// loop {
///     if let Message::Data { tag: 1, payload } = receive() {
///         let request = Request::decode(&payload)?;
///         count += 1;
///         request.reply(count.to_le_bytes()).map_err(|e| e.to_string())?;
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Request {
    /// The caller, to which the reply goes.
    pub from: Pid,
    /// The tag the reply must carry.
    pub reply_tag: Tag,
    /// The request itself.
    pub body: Vec<u8>,
}

impl Request {
    /// Encodes the envelope and body into a payload.
    pub fn encode(&self) -> Vec<u8> {
        encode_request(self.from, self.reply_tag, &self.body)
    }

    /// Reads a request from the payload of a data message.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(payload);
        let from = reader
            .pid()
            .map_err(|_| DecodeError::new("request too short for its envelope"))?;
        let reply_tag = reader
            .u64()
            .map_err(|_| DecodeError::new("request too short for its envelope"))?;
        Ok(Self {
            from,
            reply_tag,
            body: reader.rest().to_vec(),
        })
    }

    /// Sends `body` back to the caller as the reply to this request.
    pub fn reply(&self, body: impl AsRef<[u8]>) -> Result<(), Error> {
        send(self.from, self.reply_tag, body)
    }

    /// Sends `body` back to the caller as the reply to this request, then takes the
    /// first message in the mailbox, waiting as long as it takes: a server's "reply,
    /// then wait for the next request" in one call into the runtime
    /// ([`send_receive`](crate::send_receive)).
    ///
    /// # Errors
    /// When the reply breaks this process's limits, as for [`reply`]; nothing is
    /// received then.
    pub fn reply_and_receive(&self, body: impl AsRef<[u8]>) -> Result<Message, Error> {
        send_receive(self.from, self.reply_tag, body)
    }
}

fn encode_request(from: Pid, reply_tag: Tag, body: &[u8]) -> Vec<u8> {
    Writer::new().pid(from).u64(reply_tag).raw(body).finish()
}

/// Sends `body` back to the caller of `request`: one data message to `request.from`
/// tagged `request.reply_tag`.
pub fn reply(request: &Request, body: impl AsRef<[u8]>) -> Result<(), Error> {
    request.reply(body)
}

/// Sends `body` back to the caller of `request`, then takes the first message in the
/// mailbox, waiting as long as it takes ([`Request::reply_and_receive`]).
///
/// # Errors
/// As for [`Request::reply_and_receive`].
pub fn reply_and_receive(request: &Request, body: impl AsRef<[u8]>) -> Result<Message, Error> {
    request.reply_and_receive(body)
}

/// Why a [`call`] produced no reply.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum CallError {
    /// The request could not be sent.
    Send(Error),
    /// No reply arrived in time.
    Timeout,
    /// The server ended before replying, or did not exist (reason `noproc`).
    Down(ExitReason),
    /// The reply arrived but could not be decoded (typed calls only).
    Decode(DecodeError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send(error) => write!(f, "cannot send the request: {error}"),
            Self::Timeout => f.write_str("no reply before the timeout"),
            Self::Down(reason) => write!(f, "the server ended before replying: {reason}"),
            Self::Decode(error) => write!(f, "cannot decode the reply: {error}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Send(error) => Some(error),
            Self::Decode(error) => Some(error),
            Self::Timeout | Self::Down(_) => None,
        }
    }
}

/// Sends a request to `server` and waits up to `timeout` for its reply.
///
/// The server gets a data message tagged `tag` whose payload is a [`Request`]
/// envelope around `body`; it answers with [`reply`]. Meanwhile the caller monitors
/// the server, so a server that ends (or never existed) fails the call at once with
/// [`CallError::Down`] instead of a timeout. Only the reply and that `Down` are taken
/// from the mailbox; everything else keeps its place.
///
/// ```no_run
/// use std::time::Duration;
/// # let server = rusm_guest::Pid::from_raw(1);
/// let value = rusm_guest::call(server, 2, b"", Duration::from_secs(5))?;
/// # Ok::<(), rusm_guest::CallError>(())
/// ```
pub fn call(
    server: Pid,
    tag: Tag,
    body: impl AsRef<[u8]>,
    timeout: Duration,
) -> Result<Vec<u8>, CallError> {
    let monitor = monitor(server);
    let reply_tag = fresh_reply_tag();
    let request = encode_request(self_pid(), reply_tag, body.as_ref());
    let selector = Selector::new().tag(reply_tag).monitor(monitor);
    // The request and the wait for its reply in one call into the runtime.
    let answer = match selector.send_receive_timeout(server, tag, request, timeout) {
        Ok(answer) => answer,
        Err(error) => {
            demonitor(monitor);
            return Err(CallError::Send(error));
        }
    };
    match answer {
        Some(Message::Data { payload, .. }) => {
            demonitor(monitor);
            Ok(payload)
        }
        Some(Message::Down { reason, .. }) => Err(CallError::Down(reason)),
        Some(Message::Exit { .. } | Message::Upgrade { .. }) => {
            unreachable!("the runtime returned a message the selector does not match")
        }
        None => {
            demonitor(monitor);
            Err(CallError::Timeout)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let request = Request {
            from: Pid::from_raw(12),
            reply_tag: REPLY_TAG_BASE + 3,
            body: b"get".to_vec(),
        };
        let bytes = request.encode();
        assert_eq!(bytes.len(), REQUEST_HEADER_LEN + 3);
        assert_eq!(&bytes[..8], &12u64.to_le_bytes());
        assert_eq!(&bytes[8..16], &(REPLY_TAG_BASE + 3).to_le_bytes());
        assert_eq!(Request::decode(&bytes).unwrap(), request);
    }

    #[test]
    fn short_requests_are_refused() {
        let error = Request::decode(&[0; 15]).unwrap_err();
        assert_eq!(error.to_string(), "request too short for its envelope");
        let empty = Request::decode(&[0; 16]).unwrap();
        assert!(empty.body.is_empty());
    }

    #[test]
    fn reply_tags_are_fresh_and_reserved() {
        let first = fresh_reply_tag();
        let second = fresh_reply_tag();
        assert!(first >= REPLY_TAG_BASE);
        assert!(second > first);
    }
}
