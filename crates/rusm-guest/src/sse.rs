//! Server-sent events streams as processes.
//!
//! A listener route of kind `sse` runs one process of its component per stream,
//! linked to the host's connection process, with the same init as a WebSocket's guest
//! ([`Init`]; its `last_event_id` holds the client's `Last-Event-ID` header). The
//! guest sends events to the connection's pid with tag [`EVENT`] ([`send_event`]);
//! the host writes them in order and a comment line every `heartbeat`. The stream
//! ends when the guest ends; when the client goes away, the connection process ends
//! and the guest's link to it ends the guest (or, trapping exits, tells it).

use crate::wire::{DecodeError, Reader, Writer};
pub use crate::ws::Init;
use crate::{Error, Pid, Tag, send};

/// An event for the stream ([`Event::encode`]), to the connection.
pub const EVENT: Tag = 0x7275_736d_0000_0201;

/// One event. Fields left `None` are not written; `id` and `event` must not hold a
/// line break (the host ends a stream sent one), `data` may (it becomes several
/// `data:` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field (what the client sends back as `Last-Event-ID`).
    pub id: Option<String>,
    /// The `event:` field (the event's type).
    pub event: Option<String>,
    /// The `data:` lines.
    pub data: String,
    /// The `retry:` field, in milliseconds.
    pub retry: Option<u64>,
}

const HAS_ID: u8 = 1;
const HAS_EVENT: u8 = 2;
const HAS_RETRY: u8 = 4;

impl Event {
    /// The payload: a flags byte (1 id, 2 event, 4 retry), then id, event and data as
    /// [`wire`](crate::wire) strings and retry as a `u64` (each written, empty or 0 when
    /// absent).
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0;
        for (present, bit) in [
            (self.id.is_some(), HAS_ID),
            (self.event.is_some(), HAS_EVENT),
            (self.retry.is_some(), HAS_RETRY),
        ] {
            if present {
                flags |= bit;
            }
        }
        Writer::new()
            .u8(flags)
            .str(self.id.as_deref().unwrap_or(""))
            .str(self.event.as_deref().unwrap_or(""))
            .str(&self.data)
            .u64(self.retry.unwrap_or(0))
            .finish()
    }

    /// Read an event payload.
    ///
    /// # Errors
    /// When the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let mut r = Reader::new(bytes);
        let flags = r.u8()?;
        let id = r.str()?.to_owned();
        let event = r.str()?.to_owned();
        let data = r.str()?.to_owned();
        let retry = r.u64()?;
        r.end()?;
        Ok(Event {
            id: (flags & HAS_ID != 0).then_some(id),
            event: (flags & HAS_EVENT != 0).then_some(event),
            data,
            retry: (flags & HAS_RETRY != 0).then_some(retry),
        })
    }
}

/// Send `event` on stream `conn`.
///
/// # Errors
/// When the event is larger than the route's `max_message_bytes`.
pub fn send_event(conn: Pid, event: &Event) -> Result<(), Error> {
    send(conn, EVENT, event.encode())
}
