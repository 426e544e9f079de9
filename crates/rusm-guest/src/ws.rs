//! WebSocket connections as processes: the tags and payloads exchanged with a
//! connection's pid.
//!
//! A listener route of kind `websocket` runs one process of its component per
//! connection. The host keeps a *connection process* that owns the socket; it spawns
//! the component linked to it, with an init that [`Init::decode`] reads (the
//! connection's pid, and the request's path, query and headers).
//!
//! Frames from the client arrive in the guest as data messages from the connection:
//!
//! | tag | payload |
//! | --- | --- |
//! | [`TEXT`] | the text, UTF-8 |
//! | [`BINARY`] | the bytes |
//! | [`CLOSE`] | the client's close: [`Close::encode`] (code 1005 when it gave none, 1006 when the socket was lost) |
//!
//! Any process holding the connection's pid sends it the same tags to write frames
//! ([`send_text`], [`send_binary`], [`close`]), and [`PING`] (payload up to 125 bytes)
//! for a ping. A message larger than the route's `max_message_bytes` is refused at
//! the send (an error); when the connection's outgoing queue is full the connection
//! is closed with 1008. [`Frame::from_message`] reads what the connection sends.
//!
//! The connection ends with its guest: when the guest ends, the socket is closed with
//! 1000 (or the code of a [`close`] it sent), 1011 if it crashed; when the socket
//! closes first, the guest gets [`CLOSE`] and has the route's close timeout to end
//! before its link to the connection ends it.

use crate::wire::{DecodeError, Reader, Writer};
use crate::{Error, Message, Pid, Tag, send};

/// The first tag of the connection protocol (`"rusm"` in its high bytes).
const BASE: Tag = 0x7275_736d_0000_0000;

/// A text frame (UTF-8 payload), in either direction.
pub const TEXT: Tag = BASE | 0x101;
/// A binary frame, in either direction.
pub const BINARY: Tag = BASE | 0x102;
/// A close (code and reason, [`Close::encode`]), in either direction.
pub const CLOSE: Tag = BASE | 0x103;
/// A ping to the client (payload up to 125 bytes), to the connection only.
pub const PING: Tag = BASE | 0x104;

/// What the connection tells its guest at the start, and an SSE stream's guest too
/// (see [`sse`](crate::sse)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    /// The connection process: send frames (or events) to it.
    pub conn: Pid,
    /// The request's path.
    pub path: String,
    /// The request's query string, without `?` (empty when none).
    pub query: String,
    /// The request's headers, names in lower case (bounded by the listener's head
    /// limits).
    pub headers: Vec<(String, Vec<u8>)>,
    /// For an SSE stream, the client's `Last-Event-ID` header; `None` otherwise.
    pub last_event_id: Option<String>,
}

impl Init {
    /// Read the init bytes of a connection's guest.
    ///
    /// # Errors
    /// When the bytes are not a connection's init.
    pub fn decode(bytes: &[u8]) -> Result<Init, DecodeError> {
        let mut r = Reader::new(bytes);
        let conn = r.pid()?;
        let path = r.str()?.to_owned();
        let query = r.str()?.to_owned();
        let count = r.u32()?;
        let mut headers = Vec::new();
        for _ in 0..count {
            let name = r.str()?.to_owned();
            let value = r.bytes()?.to_vec();
            headers.push((name, value));
        }
        let last_event_id = match r.u8()? {
            0 => None,
            _ => Some(r.str()?.to_owned()),
        };
        r.end()?;
        Ok(Init {
            conn,
            path,
            query,
            headers,
            last_event_id,
        })
    }

    /// The bytes [`Init::decode`] reads (what the host sends).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.pid(self.conn).str(&self.path).str(&self.query);
        w.u32(u32::try_from(self.headers.len()).unwrap_or(u32::MAX));
        for (name, value) in &self.headers {
            w.str(name).bytes(value);
        }
        match &self.last_event_id {
            None => w.u8(0),
            Some(id) => w.u8(1).str(id),
        };
        w.finish()
    }

    /// The first value of header `name` (lower case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// A close: its status code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The WebSocket status code (1000 normal, 1001 going away, 1009 too big, 1011
    /// server error, 4000-4999 for applications).
    pub code: u16,
    /// Why, at most 123 bytes on the wire (the host cuts longer ones).
    pub reason: String,
}

impl Close {
    /// The payload: the code as a little-endian `u32`, then the reason as a
    /// [`wire`](crate::wire) string.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u32(u32::from(self.code))
            .str(&self.reason)
            .finish()
    }

    /// Read a close payload.
    ///
    /// # Errors
    /// When the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Result<Close, DecodeError> {
        let mut r = Reader::new(bytes);
        let code = u16::try_from(r.u32()?).map_err(|_| DecodeError::new("close code"))?;
        let reason = r.str()?.to_owned();
        r.end()?;
        Ok(Close { code, reason })
    }
}

/// A frame the connection sent its guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Vec<u8>),
    /// The client closed (or the socket was lost).
    Close(Close),
}

impl Frame {
    /// The frame a message carries, if it is one of the connection's tags.
    pub fn from_message(message: &Message) -> Option<Frame> {
        let Message::Data { tag, payload } = message else {
            return None;
        };
        match *tag {
            TEXT => String::from_utf8(payload.clone()).ok().map(Frame::Text),
            BINARY => Some(Frame::Binary(payload.clone())),
            CLOSE => Close::decode(payload).ok().map(Frame::Close),
            _ => None,
        }
    }
}

/// Send a text frame through connection `conn`.
///
/// # Errors
/// When the text is larger than the route's `max_message_bytes`.
pub fn send_text(conn: Pid, text: &str) -> Result<(), Error> {
    send(conn, TEXT, text.as_bytes())
}

/// Send a binary frame through connection `conn`.
///
/// # Errors
/// When the bytes are more than the route's `max_message_bytes`.
pub fn send_binary(conn: Pid, bytes: &[u8]) -> Result<(), Error> {
    send(conn, BINARY, bytes)
}

/// Send a ping (up to 125 bytes) through connection `conn`.
///
/// # Errors
/// As [`send`].
pub fn ping(conn: Pid, payload: &[u8]) -> Result<(), Error> {
    send(conn, PING, payload)
}

/// Close connection `conn` with `code` and `reason`.
///
/// # Errors
/// As [`send`].
pub fn close(conn: Pid, code: u16, reason: &str) -> Result<(), Error> {
    let close = Close {
        code,
        reason: reason.to_owned(),
    };
    send(conn, CLOSE, close.encode())
}
