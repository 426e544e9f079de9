//! The bytes that travel between nodes: frames on a node's inbox subject and
//! heartbeats on the cluster's heartbeat subject.
//!
//! Every frame starts with the same header: a version byte, the frame's kind, the
//! cluster's id (so a frame published into the wrong cluster's subjects is refused),
//! the sending node's number, its session with the receiver and the frame's sequence
//! number in that session. Integers are little-endian. Decoding never trusts a
//! length: a short or malformed frame is an error, never a panic.

use rusm_otp::{ExitReason, MonitorRef, Pid, SignalKind, SpawnRefused, SpawnRequest, Tag};

/// The version every frame and heartbeat starts with.
pub(crate) const VERSION: u8 = 1;

/// Bytes of the header every frame carries.
pub(crate) const HEADER: usize = 1 + 1 + 8 + 4 + 4 + 8;

/// Bytes a data frame carries besides its payload.
pub(crate) const DATA_OVERHEAD: usize = HEADER + 8 + 8;

/// The longest exit-reason text a frame carries; longer text is cut (at a character
/// boundary).
pub(crate) const MAX_REASON_TEXT: usize = 4096;

/// The longest component or policy name a spawn request carries.
pub(crate) const MAX_SPAWN_NAME: usize = 255;

/// The longest policy text (the caller's own policy) a spawn request carries.
pub(crate) const MAX_HOLDS: usize = 64 * 1024;

/// Bytes a spawn frame carries besides its names, its policy text and its init bytes.
pub(crate) const SPAWN_FIXED: usize = HEADER + 8 + 8 + 1 + 8 + 3 * 4;

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) cluster: u64,
    pub(crate) from: u32,
    pub(crate) session: u32,
    pub(crate) seq: u64,
}

/// What a frame asks of its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// A data message for `to`.
    Data { to: Pid, tag: Tag, payload: Vec<u8> },
    /// An exit signal from `from` to `to`.
    Signal {
        to: Pid,
        from: Pid,
        kind: SignalKind,
        reason: ExitReason,
    },
    /// `from` linked to `to`.
    Link { from: Pid, to: Pid },
    /// `from` unlinked from `to`.
    Unlink { from: Pid, to: Pid },
    /// `owner` monitors `target`.
    Monitor {
        owner: Pid,
        target: Pid,
        monitor: MonitorRef,
    },
    /// `owner` no longer monitors `target`.
    Demonitor {
        owner: Pid,
        target: Pid,
        monitor: MonitorRef,
    },
    /// `pid`, monitored by `owner`, ended.
    Down {
        owner: Pid,
        monitor: MonitorRef,
        pid: Pid,
        reason: ExitReason,
    },
    /// The sender has ended its connection with the receiver (it saw a gap, or
    /// declared the receiver down): the receiver ends its side too.
    Disconnect,
    /// Spawn what the request says and answer with `Spawned` under `id`.
    Spawn { id: u64, request: Box<SpawnRequest> },
    /// The answer to the `Spawn` the receiver sent under `id` for `caller`.
    Spawned {
        id: u64,
        caller: Pid,
        result: Result<Pid, SpawnRefused>,
    },
}

impl Body {
    fn kind(&self) -> u8 {
        match self {
            Body::Data { .. } => 1,
            Body::Signal { .. } => 2,
            Body::Link { .. } => 3,
            Body::Unlink { .. } => 4,
            Body::Monitor { .. } => 5,
            Body::Demonitor { .. } => 6,
            Body::Down { .. } => 7,
            Body::Disconnect => 8,
            Body::Spawn { .. } => 9,
            Body::Spawned { .. } => 10,
        }
    }

    /// Every pid the frame names as the sender's own: each must be of the sending node
    /// (or the node itself, [`Pid::NODE`], for a signal sent by host code).
    pub(crate) fn sender_pids(&self) -> impl Iterator<Item = Pid> {
        let (a, b) = match *self {
            Body::Data { .. } | Body::Disconnect => (None, None),
            Body::Signal { from, .. } => (Some(from).filter(|p| *p != Pid::NODE), None),
            Body::Link { from, .. } | Body::Unlink { from, .. } => (Some(from), None),
            Body::Monitor { owner, .. } | Body::Demonitor { owner, .. } => (Some(owner), None),
            Body::Down { pid, .. } => (Some(pid), None),
            Body::Spawn { ref request, .. } => {
                (Some(request.caller).filter(|p| *p != Pid::NODE), None)
            }
            Body::Spawned { ref result, .. } => (result.as_ref().ok().copied(), None),
        };
        a.into_iter().chain(b)
    }

    /// The pid the frame is for: it must be of the receiving node.
    pub(crate) fn receiver_pid(&self) -> Option<Pid> {
        match *self {
            Body::Data { to, .. }
            | Body::Signal { to, .. }
            | Body::Link { to, .. }
            | Body::Unlink { to, .. } => Some(to),
            Body::Monitor { target, .. } | Body::Demonitor { target, .. } => Some(target),
            Body::Down { owner, .. } => Some(owner),
            Body::Spawned { caller, .. } => Some(caller).filter(|p| *p != Pid::NODE),
            Body::Disconnect | Body::Spawn { .. } => None,
        }
    }
}

/// Why a frame or heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("frame of {0} bytes is shorter than its header or body")]
    Short(usize),
    #[error("unknown version {0}")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("unknown signal kind {0}")]
    Signal(u8),
    #[error("unknown exit reason kind {0}")]
    Reason(u8),
    #[error("exit reason text is not UTF-8")]
    Text,
    #[error("a spawn request's {0} is longer than allowed")]
    TooLong(&'static str),
    #[error("unknown spawn refusal kind {0}")]
    Refusal(u8),
}

fn put_reason(out: &mut Vec<u8>, reason: &ExitReason) {
    let (kind, text): (u8, Option<&str>) = match reason {
        ExitReason::Normal => (0, None),
        ExitReason::Shutdown => (1, None),
        ExitReason::Killed => (2, None),
        ExitReason::Crashed(why) => (3, Some(why)),
        ExitReason::NoProc => (4, None),
        ExitReason::OutOfMemory => (5, None),
        ExitReason::DeadlineExceeded => (6, None),
        ExitReason::MaxRestartIntensity => (7, None),
        ExitReason::CapabilityDenied(what) => (8, Some(what)),
        ExitReason::UpgradeTimeout => (9, None),
        ExitReason::Custom(text) => (10, Some(text)),
        ExitReason::NoConnection => (11, None),
        other => {
            let text = other.to_string();
            out.push(10);
            put_text(out, &text);
            return;
        }
    };
    out.push(kind);
    if let Some(text) = text {
        put_text(out, text);
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_text_within(out, text, MAX_REASON_TEXT);
}

/// Text of at most `max` bytes (cut at a character boundary), after its length.
fn put_text_within(out: &mut Vec<u8>, text: &str, max: usize) {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u32).to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

/// Encode a frame.
pub(crate) fn encode(header: Header, body: &Body) -> Vec<u8> {
    let payload = match body {
        Body::Data { payload, .. } => payload.len(),
        _ => 0,
    };
    let mut out = Vec::with_capacity(HEADER + 32 + payload);
    out.push(VERSION);
    out.push(body.kind());
    out.extend_from_slice(&header.cluster.to_le_bytes());
    out.extend_from_slice(&header.from.to_le_bytes());
    out.extend_from_slice(&header.session.to_le_bytes());
    out.extend_from_slice(&header.seq.to_le_bytes());
    let pid = |out: &mut Vec<u8>, p: Pid| out.extend_from_slice(&p.as_raw().to_le_bytes());
    match body {
        Body::Data { to, tag, payload } => {
            pid(&mut out, *to);
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(payload);
        }
        Body::Signal {
            to,
            from,
            kind,
            reason,
        } => {
            pid(&mut out, *to);
            pid(&mut out, *from);
            out.push(match kind {
                SignalKind::Link => 0,
                SignalKind::Exit => 1,
                SignalKind::Kill => 2,
            });
            put_reason(&mut out, reason);
        }
        Body::Link { from, to } | Body::Unlink { from, to } => {
            pid(&mut out, *from);
            pid(&mut out, *to);
        }
        Body::Monitor {
            owner,
            target,
            monitor,
        }
        | Body::Demonitor {
            owner,
            target,
            monitor,
        } => {
            pid(&mut out, *owner);
            pid(&mut out, *target);
            out.extend_from_slice(&monitor.as_raw().to_le_bytes());
        }
        Body::Down {
            owner,
            monitor,
            pid: ended,
            reason,
        } => {
            pid(&mut out, *owner);
            out.extend_from_slice(&monitor.as_raw().to_le_bytes());
            pid(&mut out, *ended);
            put_reason(&mut out, reason);
        }
        Body::Disconnect => {}
        Body::Spawn { id, request } => {
            out.extend_from_slice(&id.to_le_bytes());
            pid(&mut out, request.caller);
            let flags = u8::from(request.link)
                | u8::from(request.monitor.is_some()) << 1
                | u8::from(request.policy.is_some()) << 2
                | u8::from(request.holds.is_some()) << 3;
            out.push(flags);
            out.extend_from_slice(&request.monitor.map_or(0, |m| m.as_raw()).to_le_bytes());
            put_text_within(&mut out, &request.component, MAX_SPAWN_NAME);
            put_text_within(
                &mut out,
                request.policy.as_deref().unwrap_or(""),
                MAX_SPAWN_NAME,
            );
            put_text_within(&mut out, request.holds.as_deref().unwrap_or(""), MAX_HOLDS);
            out.extend_from_slice(&request.init);
        }
        Body::Spawned { id, caller, result } => {
            out.extend_from_slice(&id.to_le_bytes());
            pid(&mut out, *caller);
            match result {
                Ok(child) => {
                    out.push(0);
                    pid(&mut out, *child);
                }
                Err(refused) => {
                    let kind = match refused {
                        SpawnRefused::NotFound(_) => 1,
                        SpawnRefused::NotPermitted(_) => 2,
                        SpawnRefused::Invalid(_) => 3,
                        _ => 4,
                    };
                    out.push(kind);
                    put_text(&mut out, &refused.to_string());
                }
            }
        }
    }
    out
}

/// A cursor over a frame's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(DecodeError::Short(self.bytes.len()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn pid(&mut self) -> Result<Pid, DecodeError> {
        self.u64().map(Pid::from_raw)
    }

    fn rest(&mut self) -> &'a [u8] {
        let out = &self.bytes[self.at..];
        self.at = self.bytes.len();
        out
    }

    fn text(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        if len > MAX_REASON_TEXT {
            return Err(DecodeError::Short(self.bytes.len()));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Text)
    }

    /// Text of at most `max` bytes, named `what` in the error when longer.
    fn text_within(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong(what));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Text)
    }

    fn reason(&mut self) -> Result<ExitReason, DecodeError> {
        Ok(match self.u8()? {
            0 => ExitReason::Normal,
            1 => ExitReason::Shutdown,
            2 => ExitReason::Killed,
            3 => ExitReason::crashed(self.text()?),
            4 => ExitReason::NoProc,
            5 => ExitReason::OutOfMemory,
            6 => ExitReason::DeadlineExceeded,
            7 => ExitReason::MaxRestartIntensity,
            8 => ExitReason::CapabilityDenied(self.text()?.into()),
            9 => ExitReason::UpgradeTimeout,
            10 => ExitReason::custom(self.text()?),
            11 => ExitReason::NoConnection,
            other => return Err(DecodeError::Reason(other)),
        })
    }
}

/// Decode a frame.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Header, Body), DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let kind = r.u8()?;
    let header = Header {
        cluster: r.u64()?,
        from: r.u32()?,
        session: r.u32()?,
        seq: r.u64()?,
    };
    let body = match kind {
        1 => Body::Data {
            to: r.pid()?,
            tag: r.u64()?,
            payload: r.rest().to_vec(),
        },
        2 => {
            let to = r.pid()?;
            let from = r.pid()?;
            let kind = match r.u8()? {
                0 => SignalKind::Link,
                1 => SignalKind::Exit,
                2 => SignalKind::Kill,
                other => return Err(DecodeError::Signal(other)),
            };
            Body::Signal {
                to,
                from,
                kind,
                reason: r.reason()?,
            }
        }
        3 => Body::Link {
            from: r.pid()?,
            to: r.pid()?,
        },
        4 => Body::Unlink {
            from: r.pid()?,
            to: r.pid()?,
        },
        5 | 6 => {
            let owner = r.pid()?;
            let target = r.pid()?;
            let monitor = MonitorRef::from_raw(r.u64()?);
            if kind == 5 {
                Body::Monitor {
                    owner,
                    target,
                    monitor,
                }
            } else {
                Body::Demonitor {
                    owner,
                    target,
                    monitor,
                }
            }
        }
        7 => Body::Down {
            owner: r.pid()?,
            monitor: MonitorRef::from_raw(r.u64()?),
            pid: r.pid()?,
            reason: r.reason()?,
        },
        8 => Body::Disconnect,
        9 => {
            let id = r.u64()?;
            let caller = r.pid()?;
            let flags = r.u8()?;
            let monitor = r.u64()?;
            let component = r.text_within(MAX_SPAWN_NAME, "component name")?;
            let policy = r.text_within(MAX_SPAWN_NAME, "policy name")?;
            let holds = r.text_within(MAX_HOLDS, "policy text")?;
            Body::Spawn {
                id,
                request: Box::new(SpawnRequest {
                    caller,
                    component,
                    policy: (flags & 4 != 0).then_some(policy),
                    holds: (flags & 8 != 0).then_some(holds),
                    link: flags & 1 != 0,
                    monitor: (flags & 2 != 0).then(|| MonitorRef::from_raw(monitor)),
                    init: r.rest().to_vec(),
                }),
            }
        }
        10 => {
            let id = r.u64()?;
            let caller = r.pid()?;
            let result = match r.u8()? {
                0 => Ok(r.pid()?),
                1 => Err(SpawnRefused::NotFound(r.text()?)),
                2 => Err(SpawnRefused::NotPermitted(r.text()?)),
                3 => Err(SpawnRefused::Invalid(r.text()?)),
                4 => Err(SpawnRefused::Unavailable(r.text()?)),
                other => return Err(DecodeError::Refusal(other)),
            };
            Body::Spawned { id, caller, result }
        }
        other => return Err(DecodeError::Kind(other)),
    };
    Ok((header, body))
}

/// A node's heartbeat: who it is and how often it beats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    pub(crate) cluster: u64,
    pub(crate) node: u32,
    /// False in the last heartbeat of a node that leaves: its peers declare it down
    /// at once.
    pub(crate) alive: bool,
    pub(crate) interval_ms: u32,
    pub(crate) name: String,
}

/// The longest node name.
pub(crate) const MAX_NODE_NAME: usize = 64;

/// Encode a heartbeat.
pub(crate) fn encode_heartbeat(hb: &Heartbeat) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + hb.name.len());
    out.push(VERSION);
    out.extend_from_slice(&hb.cluster.to_le_bytes());
    out.extend_from_slice(&hb.node.to_le_bytes());
    out.push(u8::from(hb.alive));
    out.extend_from_slice(&hb.interval_ms.to_le_bytes());
    out.extend_from_slice(hb.name.as_bytes());
    out
}

/// Decode a heartbeat.
pub(crate) fn decode_heartbeat(bytes: &[u8]) -> Result<Heartbeat, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(DecodeError::Version(version));
    }
    let cluster = r.u64()?;
    let node = r.u32()?;
    let alive = r.u8()? != 0;
    let interval_ms = r.u32()?;
    let name = r.rest();
    if name.len() > MAX_NODE_NAME {
        return Err(DecodeError::Short(bytes.len()));
    }
    // A node's name goes into logs and `rusm cluster status`: only the characters a
    // node may be named with.
    if name.is_empty()
        || !name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(DecodeError::Text);
    }
    let name = String::from_utf8(name.to_vec()).map_err(|_| DecodeError::Text)?;
    Ok(Heartbeat {
        cluster,
        node,
        alive,
        interval_ms,
        name,
    })
}

/// The id of a cluster name that every frame carries (64-bit FNV-1a).
pub(crate) fn cluster_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            cluster: cluster_id("test"),
            from: 3,
            session: 7,
            seq: 42,
        }
    }

    #[test]
    fn every_body_round_trips() {
        let a = Pid::new(3, 10);
        let b = Pid::new(4, 11);
        let bodies = [
            Body::Data {
                to: b,
                tag: 9,
                payload: b"hello".to_vec(),
            },
            Body::Signal {
                to: b,
                from: a,
                kind: SignalKind::Kill,
                reason: ExitReason::Killed,
            },
            Body::Signal {
                to: b,
                from: a,
                kind: SignalKind::Link,
                reason: ExitReason::crashed("boom"),
            },
            Body::Link { from: a, to: b },
            Body::Unlink { from: a, to: b },
            Body::Monitor {
                owner: a,
                target: b,
                monitor: MonitorRef::from_raw(5),
            },
            Body::Demonitor {
                owner: a,
                target: b,
                monitor: MonitorRef::from_raw(5),
            },
            Body::Down {
                owner: b,
                monitor: MonitorRef::from_raw(5),
                pid: a,
                reason: ExitReason::NoConnection,
            },
            Body::Disconnect,
            Body::Spawn {
                id: 77,
                request: Box::new(SpawnRequest {
                    caller: a,
                    component: "echo".into(),
                    policy: Some("worker".into()),
                    holds: Some("[process]\nkill = \"any\"\n".into()),
                    init: b"init".to_vec(),
                    link: true,
                    monitor: Some(MonitorRef::from_raw(8)),
                }),
            },
            Body::Spawn {
                id: 78,
                request: Box::new(SpawnRequest {
                    caller: Pid::NODE,
                    component: "echo".into(),
                    policy: None,
                    holds: None,
                    init: Vec::new(),
                    link: false,
                    monitor: None,
                }),
            },
            Body::Spawned {
                id: 77,
                caller: b,
                result: Ok(a),
            },
            Body::Spawned {
                id: 78,
                caller: b,
                result: Err(SpawnRefused::NotPermitted("no".into())),
            },
        ];
        for body in bodies {
            let bytes = encode(header(), &body);
            assert_eq!(decode(&bytes).unwrap(), (header(), body));
        }
    }

    #[test]
    fn a_spawn_request_is_refused_when_truncated_or_when_its_names_are_too_long() {
        let request = SpawnRequest {
            caller: Pid::new(3, 1),
            component: "echo".into(),
            policy: Some("p".into()),
            holds: Some("".into()),
            init: Vec::new(),
            link: false,
            monitor: None,
        };
        let bytes = encode(
            header(),
            &Body::Spawn {
                id: 1,
                request: Box::new(request),
            },
        );
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "{len} bytes decoded");
        }
        // A forged length past the bound is refused before anything is read.
        let at = HEADER + 8 + 8 + 1 + 8;
        let mut forged = bytes.clone();
        forged[at..at + 4].copy_from_slice(&(MAX_SPAWN_NAME as u32 + 1).to_le_bytes());
        assert_eq!(decode(&forged), Err(DecodeError::TooLong("component name")));
    }

    #[test]
    fn every_truncation_of_a_frame_is_an_error_not_a_panic() {
        let body = Body::Down {
            owner: Pid::new(4, 1),
            monitor: MonitorRef::from_raw(1),
            pid: Pid::new(3, 2),
            reason: ExitReason::custom("why"),
        };
        let bytes = encode(header(), &body);
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "{len} bytes decoded");
        }
    }

    #[test]
    fn hostile_lengths_and_kinds_are_refused() {
        let mut bytes = encode(
            header(),
            &Body::Signal {
                to: Pid::new(4, 1),
                from: Pid::new(3, 1),
                kind: SignalKind::Exit,
                reason: ExitReason::custom("x"),
            },
        );
        // The reason text's length, claimed far past the frame's end.
        let at = HEADER + 8 + 8 + 1 + 1;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&bytes).is_err());
        let mut bytes = encode(header(), &Body::Disconnect);
        bytes[1] = 200;
        assert_eq!(decode(&bytes), Err(DecodeError::Kind(200)));
        bytes[0] = 9;
        assert_eq!(decode(&bytes), Err(DecodeError::Version(9)));
    }

    #[test]
    fn long_reason_text_is_cut_at_a_character_boundary() {
        let text = "é".repeat(MAX_REASON_TEXT);
        let bytes = encode(
            header(),
            &Body::Signal {
                to: Pid::new(4, 1),
                from: Pid::new(3, 1),
                kind: SignalKind::Exit,
                reason: ExitReason::custom(text),
            },
        );
        let (_, body) = decode(&bytes).unwrap();
        let Body::Signal { reason, .. } = body else {
            panic!("not a signal")
        };
        assert!(reason.to_string().len() <= MAX_REASON_TEXT);
    }

    #[test]
    fn heartbeats_round_trip() {
        let hb = Heartbeat {
            cluster: cluster_id("c"),
            node: 9,
            alive: true,
            interval_ms: 500,
            name: "node-a".into(),
        };
        assert_eq!(decode_heartbeat(&encode_heartbeat(&hb)).unwrap(), hb);
        assert!(decode_heartbeat(&encode_heartbeat(&hb)[..10]).is_err());
        for bad in ["", "a\nfake log line", "x y", "ü"] {
            let forged = Heartbeat {
                name: bad.into(),
                ..hb.clone()
            };
            assert!(
                decode_heartbeat(&encode_heartbeat(&forged)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cluster_ids_differ_by_name() {
        assert_ne!(cluster_id("a"), cluster_id("b"));
        assert_eq!(cluster_id("a"), cluster_id("a"));
    }
}
