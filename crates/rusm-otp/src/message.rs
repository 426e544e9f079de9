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
    /// A small value held inline, with no allocation: what [`Payload::value`] makes of
    /// the types [`Inline`] names. It downcasts exactly like a boxed value.
    Inline(Inline),
}

impl Payload {
    /// The bytes a mailbox counts for this payload: the length of [`Payload::Bytes`];
    /// native values count nothing (they are the host's own).
    pub fn byte_len(&self) -> usize {
        match self {
            Payload::Bytes(bytes) => bytes.len(),
            Payload::Value(_) | Payload::Inline(_) => 0,
        }
    }
}

/// Declares [`Inline`] and the conversions between it and the types it holds.
macro_rules! inline_values {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A small payload value kept inside the message instead of behind a `Box`, so
        /// that sending a number or a pid allocates nothing.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Inline {
            $(
                #[doc = concat!("A `", stringify!($ty), "`.")]
                $variant($ty),
            )*
        }

        impl Inline {
            /// The value as an `Inline`, or back unchanged if its type is not one of them.
            fn of<T: Any>(value: T) -> Result<Inline, T> {
                let mut slot = Some(value);
                let any = &mut slot as &mut dyn Any;
                $(
                    if let Some(v) = any.downcast_mut::<Option<$ty>>() {
                        return Ok(Inline::$variant(v.take().expect("the slot holds the value")));
                    }
                )*
                Err(slot.expect("the slot is untouched"))
            }

            /// The value if it is a `T`.
            fn take<T: Any>(self) -> Result<T, Inline> {
                match self {
                    $(
                        Inline::$variant(v) => {
                            let mut slot = Some(v);
                            match (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
                                Some(taken) => Ok(taken.take().expect("the slot holds the value")),
                                None => Err(self),
                            }
                        }
                    )*
                }
            }

            /// The value, to downcast by reference.
            fn as_any(&self) -> &dyn Any {
                match self {
                    $(Inline::$variant(v) => v,)*
                }
            }
        }
    };
}

inline_values! {
    U64(u64),
    I64(i64),
    U32(u32),
    I32(i32),
    Usize(usize),
    Bool(bool),
    Unit(()),
    Pid(Pid),
}

impl Payload {
    /// Wrap any Rust value. The small types [`Inline`] names are kept inline; anything
    /// else is boxed.
    pub fn value<T: Any + Send>(value: T) -> Payload {
        match Inline::of(value) {
            Ok(inline) => Payload::Inline(inline),
            Err(value) => Payload::Value(Box::new(value)),
        }
    }

    /// Take the value out if it is a `T` (a `Vec<u8>` matches [`Payload::Bytes`] too);
    /// otherwise hand the payload back.
    ///
    /// # Errors
    /// Returns the payload unchanged when it holds something other than a `T`.
    pub fn downcast<T: Any + Send>(self) -> Result<T, Payload> {
        match self {
            Payload::Value(boxed) => boxed.downcast::<T>().map(|v| *v).map_err(Payload::Value),
            Payload::Inline(inline) => inline.take::<T>().map_err(Payload::Inline),
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
            Payload::Inline(inline) => inline.as_any().downcast_ref::<T>(),
            Payload::Bytes(bytes) => (bytes as &dyn Any).downcast_ref::<T>(),
        }
    }

    /// The bytes, when this is a [`Payload::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Payload::Bytes(bytes) => Some(bytes),
            Payload::Value(_) | Payload::Inline(_) => None,
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
            Payload::Inline(inline) => write!(f, "{inline:?}"),
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

    #[test]
    fn small_values_are_inline_and_downcast_like_boxed_ones() {
        let pid = Pid::from_raw(42);
        assert!(matches!(
            Payload::value(7u64),
            Payload::Inline(Inline::U64(7))
        ));
        assert!(matches!(Payload::value(pid), Payload::Inline(Inline::Pid(p)) if p == pid));
        assert!(matches!(
            Payload::value(()),
            Payload::Inline(Inline::Unit(()))
        ));
        assert!(matches!(Payload::value(7u16), Payload::Value(_)));
        assert!(matches!(Payload::value("text"), Payload::Value(_)));

        assert_eq!(Payload::value(-3i64).downcast::<i64>().unwrap(), -3);
        assert_eq!(Payload::value(pid).downcast_ref::<Pid>(), Some(&pid));
        assert!(Payload::value(true).downcast::<bool>().unwrap());
        // The wrong type hands the payload back, still inline and intact.
        let back = Payload::value(9u32).downcast::<u64>().unwrap_err();
        assert!(matches!(back, Payload::Inline(Inline::U32(9))));
        assert_eq!(back.downcast_ref::<u64>(), None);
        assert_eq!(back.downcast::<u32>().unwrap(), 9);
        assert_eq!(Payload::value(5usize).as_bytes(), None);
        assert_eq!(format!("{:?}", Payload::value(5u64)), "U64(5)");
    }
}
