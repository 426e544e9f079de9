//! What travels through mailboxes.

use std::any::Any;
use std::fmt;

use crate::{ExitReason, MonitorRef, Pid};

/// The tag of a data message. Selective receive by tag is indexed (see
/// [`Context::recv_tag`](crate::Context::recv_tag)). Tag 0 is the conventional
/// "untagged" value used by [`Context::send`](crate::Context::send).
pub type Tag = u64;

/// The body of a data message.
///
/// Native processes may send any `Send + 'static` value; wasm processes can only
/// receive [`Payload::Bytes`] (a native process talking to a component sends bytes).
pub enum Payload {
    /// Raw bytes: the only payload a wasm process can send or receive.
    Bytes(Vec<u8>),
    /// Any Rust value, for native processes.
    Value(Box<dyn Any + Send>),
}

impl Payload {
    /// Wrap any Rust value.
    pub fn value<T: Any + Send>(value: T) -> Payload {
        Payload::Value(Box::new(value))
    }

    /// Take the value out if it is a `T` (a `Vec<u8>` matches [`Payload::Bytes`] too);
    /// otherwise hand the payload back.
    ///
    /// # Errors
    /// Returns the payload unchanged when it holds something other than a `T`.
    pub fn downcast<T: Any + Send>(self) -> Result<T, Payload> {
        match self {
            Payload::Value(boxed) => boxed.downcast::<T>().map(|v| *v).map_err(Payload::Value),
            Payload::Bytes(bytes) => {
                let mut slot = Some(bytes);
                match (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
                    Some(taken) => Ok(taken.take().expect("slot holds the bytes")),
                    None => Err(Payload::Bytes(slot.expect("slot untouched"))),
                }
            }
        }
    }

    /// A reference to the value if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        match self {
            Payload::Value(boxed) => boxed.downcast_ref::<T>(),
            Payload::Bytes(bytes) => (bytes as &dyn Any).downcast_ref::<T>(),
        }
    }

    /// The bytes, when this is a [`Payload::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Payload::Bytes(bytes) => Some(bytes),
            Payload::Value(_) => None,
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload::Bytes(bytes)
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Payload {
        Payload::Bytes(bytes.to_vec())
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Payload::Value(_) => f.write_str("Value(..)"),
        }
    }
}

/// A data message: what `send` delivers.
#[derive(Debug)]
pub struct Data {
    /// The tag the sender chose (0 when it did not).
    pub tag: Tag,
    /// The body.
    pub payload: Payload,
}

/// A monitored process ended (or did not exist when the monitor was set up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// The reference `monitor` returned.
    pub monitor: MonitorRef,
    /// The process that ended.
    pub pid: Pid,
    /// Why it ended.
    pub reason: ExitReason,
}

/// An exit signal turned into a message because the receiver traps exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitSignal {
    /// Where the signal came from: a linked process that ended, or the caller of `exit`.
    pub from: Pid,
    /// The reason it carries.
    pub reason: ExitReason,
}

/// Everything a process can receive.
#[derive(Debug)]
#[non_exhaustive]
pub enum Message {
    /// A data message.
    Data(Data),
    /// A monitored process ended.
    Down(Down),
    /// A linked process ended, or someone called `exit` on us, while we trap exits.
    Exit(ExitSignal),
}

impl Message {
    /// The data message inside, if this is one.
    pub fn into_data(self) -> Option<Data> {
        match self {
            Message::Data(data) => Some(data),
            _ => None,
        }
    }

    /// The tag, for data messages.
    pub fn tag(&self) -> Option<Tag> {
        match self {
            Message::Data(data) => Some(data.tag),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_downcasts_values_and_bytes() {
        assert_eq!(Payload::value(5u32).downcast::<u32>().unwrap(), 5);
        let back = Payload::value(5u32).downcast::<String>().unwrap_err();
        assert_eq!(back.downcast_ref::<u32>(), Some(&5));
        assert_eq!(
            Payload::from(vec![1u8, 2]).downcast::<Vec<u8>>().unwrap(),
            vec![1, 2]
        );
        assert!(Payload::from(vec![1u8]).downcast::<u8>().is_err());
        assert_eq!(Payload::from(&b"ab"[..]).as_bytes(), Some(&b"ab"[..]));
    }
}
