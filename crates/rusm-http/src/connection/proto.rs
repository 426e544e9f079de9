//! The tags and payloads a connection process exchanges with its guest and with
//! whoever holds its pid; the guest side is `rusm_guest::ws` and `rusm_guest::sse`
//! (a test checks the two agree). The encoding is `rusm_guest::wire`'s: integers
//! little-endian, strings and byte strings as a `u32` length then the bytes.

use rusm_otp::{Pid, Tag};

/// The first tag of the connection protocol (`"rusm"` in its high bytes).
const BASE: Tag = 0x7275_736d_0000_0000;

/// A text frame (UTF-8 payload), in either direction.
pub const TEXT: Tag = BASE | 0x101;
/// A binary frame, in either direction.
pub const BINARY: Tag = BASE | 0x102;
/// A close: `u32` code, then the reason as a string; in either direction.
pub const CLOSE: Tag = BASE | 0x103;
/// A ping to the client (payload up to 125 bytes), to the connection only.
pub const PING: Tag = BASE | 0x104;
/// A server-sent event, to an SSE connection: flags (1 id, 2 event, 4 retry), id,
/// event and data strings, retry as a `u64`.
pub const EVENT: Tag = BASE | 0x201;

/// The init of a connection's guest.
pub(crate) struct Init<'a> {
    pub conn: Pid,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub last_event_id: Option<&'a str>,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
}

impl Init<'_> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.conn.as_raw().to_le_bytes());
        put_bytes(&mut out, self.path.as_bytes());
        put_bytes(&mut out, self.query.as_bytes());
        let count = u32::try_from(self.headers.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for (name, value) in self.headers.iter().take(count as usize) {
            put_bytes(&mut out, name.as_str().as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        match self.last_event_id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                put_bytes(&mut out, id.as_bytes());
            }
        }
        out
    }
}

/// Reads the encoding.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// A close payload.
pub(crate) fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + reason.len());
    out.extend_from_slice(&u32::from(code).to_le_bytes());
    put_bytes(&mut out, reason.as_bytes());
    out
}

/// Read a close payload: `None` when malformed.
pub(crate) fn decode_close(bytes: &[u8]) -> Option<(u16, String)> {
    let mut r = Reader(bytes);
    let code = u16::try_from(r.u32()?).ok()?;
    let reason = r.str()?.to_owned();
    r.end()?;
    Some((code, reason))
}

/// A server-sent event as the guest sent it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    pub id: Option<&'a str>,
    pub event: Option<&'a str>,
    pub data: &'a str,
    pub retry: Option<u64>,
}

/// Read an event payload: `None` when malformed.
pub(crate) fn decode_event(bytes: &[u8]) -> Option<Event<'_>> {
    let mut r = Reader(bytes);
    let flags = r.u8()?;
    let id = r.str()?;
    let event = r.str()?;
    let data = r.str()?;
    let retry = r.u64()?;
    r.end()?;
    Some(Event {
        id: (flags & 1 != 0).then_some(id),
        event: (flags & 2 != 0).then_some(event),
        data,
        retry: (flags & 4 != 0).then_some(retry),
    })
}

impl Event<'_> {
    /// The event in the `text/event-stream` format, or `None` when its id or type
    /// holds a line break (or its id a NUL), which the format cannot carry.
    pub(crate) fn to_text(&self) -> Option<String> {
        let breaks = |s: &str| s.contains(['\r', '\n']);
        if self.id.is_some_and(|id| breaks(id) || id.contains('\0'))
            || self.event.is_some_and(breaks)
        {
            return None;
        }
        let mut out = String::with_capacity(self.data.len() + 32);
        if let Some(id) = self.id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        if let Some(event) = self.event {
            out.push_str("event: ");
            out.push_str(event);
            out.push('\n');
        }
        if let Some(retry) = self.retry {
            out.push_str(&format!("retry: {retry}\n"));
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line.strip_suffix('\r').unwrap_or(line));
            out.push('\n');
        }
        out.push('\n');
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusm_guest::sse as guest_sse;
    use rusm_guest::ws as guest_ws;

    #[test]
    fn tags_agree_with_the_guest_sdk() {
        assert_eq!(TEXT, guest_ws::TEXT);
        assert_eq!(BINARY, guest_ws::BINARY);
        assert_eq!(CLOSE, guest_ws::CLOSE);
        assert_eq!(PING, guest_ws::PING);
        assert_eq!(EVENT, guest_sse::EVENT);
        let tags = [TEXT, BINARY, CLOSE, PING, EVENT];
        for (i, a) in tags.iter().enumerate() {
            assert!(*a < rusm_guest::REPLY_TAG_BASE, "below the reply tags");
            assert!(tags[i + 1..].iter().all(|b| b != a), "distinct");
        }
    }

    #[test]
    fn init_encoded_here_decodes_in_the_guest() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-one", http::HeaderValue::from_static("1"));
        headers.append("x-one", http::HeaderValue::from_static("uno"));
        headers.insert("user-agent", http::HeaderValue::from_static("t"));
        for last_event_id in [None, Some("41")] {
            let bytes = Init {
                conn: Pid::from_raw(77),
                path: "/ws/room",
                query: "a=1",
                headers: &headers,
                last_event_id,
            }
            .encode();
            let init = guest_ws::Init::decode(&bytes).expect("the guest reads it");
            assert_eq!(init.conn.as_raw(), 77);
            assert_eq!(init.path, "/ws/room");
            assert_eq!(init.query, "a=1");
            assert_eq!(init.headers.len(), 3);
            assert_eq!(init.header("x-one"), Some("1"));
            assert_eq!(init.header("user-agent"), Some("t"));
            assert_eq!(init.last_event_id.as_deref(), last_event_id);
            assert_eq!(init.encode(), bytes, "both sides encode alike");
        }
    }

    #[test]
    fn close_and_event_payloads_agree() {
        let ours = encode_close(4000, "bye");
        let theirs = guest_ws::Close::decode(&ours).unwrap();
        assert_eq!((theirs.code, theirs.reason.as_str()), (4000, "bye"));
        assert_eq!(decode_close(&theirs.encode()), Some((4000, "bye".into())));
        assert_eq!(decode_close(&[1, 2]), None);

        let event = guest_sse::Event {
            id: Some("7".into()),
            event: None,
            data: "a\nb".into(),
            retry: Some(1500),
        };
        let bytes = event.encode();
        let decoded = decode_event(&bytes).unwrap();
        assert_eq!(
            decoded,
            Event {
                id: Some("7"),
                event: None,
                data: "a\nb",
                retry: Some(1500)
            }
        );
        assert_eq!(
            decoded.to_text().unwrap(),
            "id: 7\nretry: 1500\ndata: a\ndata: b\n\n"
        );
        let bad = guest_sse::Event {
            event: Some("x\ny".into()),
            ..guest_sse::Event::default()
        };
        assert_eq!(decode_event(&bad.encode()).unwrap().to_text(), None);
    }
}
