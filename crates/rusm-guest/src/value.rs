//! Typed messages: values encoded with serde as compact JSON (`serde_json`).
//!
//! JSON keeps payloads readable from any language a host-side test is written in;
//! the bytes are exactly `serde_json::to_vec(&value)`.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::DecodeError;
use crate::{CallError, Error, Message, Pid, Request, Tag, call, send};

/// Encodes a value as a payload.
pub fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value)
        .map_err(|error| Error::Invalid(format!("cannot encode value: {error}")))
}

/// Decodes a payload made by [`encode_value`].
pub fn decode_value<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(payload)
        .map_err(|error| DecodeError::new(format!("cannot decode value: {error}")))
}

/// Sends `value` as a data message tagged `tag`.
///
/// A value serde cannot encode fails with [`Error::Invalid`].
pub fn send_value<T: Serialize + ?Sized>(to: Pid, tag: Tag, value: &T) -> Result<(), Error> {
    send(to, tag, encode_value(value)?)
}

/// A [`call`] whose request and reply are values.
pub fn call_value<Req, Resp>(
    server: Pid,
    tag: Tag,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, CallError>
where
    Req: Serialize + ?Sized,
    Resp: DeserializeOwned,
{
    let body = encode_value(request).map_err(CallError::Send)?;
    let reply = call(server, tag, body, timeout)?;
    decode_value(&reply).map_err(CallError::Decode)
}

/// Sends `value` back to the caller of `request`.
pub fn reply_value<T: Serialize + ?Sized>(request: &Request, value: &T) -> Result<(), Error> {
    request.reply(encode_value(value)?)
}

impl Message {
    /// Decodes the payload of a data message as a value.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        let payload = self
            .payload()
            .ok_or_else(|| DecodeError::new("not a data message"))?;
        decode_value(payload)
    }
}

impl Request {
    /// Decodes the body of the request as a value.
    pub fn decode_body<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        decode_value(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    enum Op {
        Inc(i64),
        Get,
    }

    #[test]
    fn values_round_trip() {
        let bytes = encode_value(&Op::Inc(3)).unwrap();
        assert_eq!(bytes, br#"{"Inc":3}"#);
        assert_eq!(decode_value::<Op>(&bytes).unwrap(), Op::Inc(3));
        let message = Message::Data {
            tag: 1,
            payload: encode_value(&Op::Get).unwrap(),
        };
        assert_eq!(message.decode::<Op>().unwrap(), Op::Get);
        assert!(decode_value::<Op>(b"{").is_err());
    }
}
