//! A tiny binary encoding for init data and payloads.
//!
//! Every rusm example component and the [`Request`](crate::Request) envelope use it,
//! so host-side code can build and read the same bytes by hand:
//!
//! | value | encoding |
//! | --- | --- |
//! | `u8` | 1 byte |
//! | `u32`, `u64`, `i64` | 4 or 8 bytes, little-endian |
//! | [`Pid`] | its raw number as a `u64` |
//! | string | `u32` byte length, then that many bytes of UTF-8 |
//! | byte string | `u32` length, then the bytes |
//! | raw bytes | the bytes with no length (only as the last field) |
//!
//! ```
//! use rusm_guest::wire::{Reader, Writer};
//! use rusm_guest::Pid;
//!
//! let bytes = Writer::new().pid(Pid::from_raw(7)).str("counter").finish();
//! let mut reader = Reader::new(&bytes);
//! assert_eq!(reader.pid().unwrap(), Pid::from_raw(7));
//! assert_eq!(reader.str().unwrap(), "counter");
//! reader.end().unwrap();
//! ```

use std::fmt;

use crate::Pid;

/// Bytes that do not hold what the reader expected.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DecodeError {
    message: String,
}

impl DecodeError {
    /// An error with the given description.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// What was wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// Builds a byte string field by field; see the [module docs](self) for the encoding.
#[derive(Clone, Default, Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one byte.
    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.push(value);
        self
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a little-endian `u64`.
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a little-endian `i64`.
    pub fn i64(&mut self, value: i64) -> &mut Self {
        self.buf.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// Appends a pid as a little-endian `u64`.
    pub fn pid(&mut self, pid: Pid) -> &mut Self {
        self.u64(pid.as_raw())
    }

    /// Appends a string: its `u32` byte length, then its UTF-8 bytes.
    ///
    /// # Panics
    ///
    /// If the string is longer than `u32::MAX` bytes.
    pub fn str(&mut self, text: &str) -> &mut Self {
        self.bytes(text.as_bytes())
    }

    /// Appends a byte string: its `u32` length, then the bytes.
    ///
    /// # Panics
    ///
    /// If the byte string is longer than `u32::MAX` bytes.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        let len = u32::try_from(bytes.len()).expect("byte string longer than u32::MAX");
        self.u32(len);
        self.raw(bytes)
    }

    /// Appends bytes with no length in front; only useful as the last field.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Takes the bytes written so far, leaving the writer empty.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads a byte string field by field; see the [module docs](self) for the encoding.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < len {
            return Err(DecodeError::new(format!(
                "unexpected end of input: wanted {len} bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads a little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_le_bytes)
    }

    /// Reads a pid written as a little-endian `u64`.
    pub fn pid(&mut self) -> Result<Pid, DecodeError> {
        self.u64().map(Pid::from_raw)
    }

    /// Reads a byte string: a `u32` length, then the bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()?;
        let len = usize::try_from(len)
            .map_err(|_| DecodeError::new("byte string too long for this platform"))?;
        self.take(len)
    }

    /// Reads a string: a `u32` byte length, then UTF-8.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::new("string is not valid utf-8"))
    }

    /// Takes every byte that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Checks that every byte has been read.
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::new(format!(
                "{} unexpected trailing bytes",
                self.rest.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let bytes = Writer::new()
            .u8(3)
            .u32(70_000)
            .u64(u64::MAX)
            .i64(-5)
            .pid(Pid::from_raw(9))
            .str("héllo")
            .bytes(&[1, 2])
            .raw(b"tail")
            .finish();
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.u8().unwrap(), 3);
        assert_eq!(reader.u32().unwrap(), 70_000);
        assert_eq!(reader.u64().unwrap(), u64::MAX);
        assert_eq!(reader.i64().unwrap(), -5);
        assert_eq!(reader.pid().unwrap(), Pid::from_raw(9));
        assert_eq!(reader.str().unwrap(), "héllo");
        assert_eq!(reader.bytes().unwrap(), &[1, 2]);
        assert!(!reader.is_empty());
        assert_eq!(reader.rest(), b"tail");
        reader.end().unwrap();
    }

    #[test]
    fn short_and_invalid_input_is_refused() {
        assert!(Reader::new(&[1, 2, 3]).u32().is_err());
        assert!(Reader::new(&[5, 0, 0, 0, b'a']).str().is_err());
        assert!(Reader::new(&[2, 0, 0, 0, 0xff, 0xfe]).str().is_err());
        let reader = Reader::new(&[1]);
        assert_eq!(
            reader.end().unwrap_err().to_string(),
            "1 unexpected trailing bytes"
        );
    }

    #[test]
    fn finish_leaves_the_writer_empty() {
        let mut writer = Writer::new();
        writer.u8(1);
        assert_eq!(writer.finish(), vec![1]);
        assert!(writer.finish().is_empty());
    }
}
