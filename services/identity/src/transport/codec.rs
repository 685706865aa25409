//! The protobuf codec of the generated `identity.v1` code (set in build.rs):
//! tonic-prost's, except that a message that does not decode is
//! INVALID_ARGUMENT naming the field. tonic-prost answers INTERNAL, which is
//! what operators page on, and any caller could earn one at will with a
//! string field holding invalid UTF-8. The generated clients (used by the
//! tests) share the codec, so for them an undecodable answer is
//! INVALID_ARGUMENT too.

use prost::Message;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::DecodeBuf;
use tonic_prost::ProstEncoder;

/// `T` is encoded (the answer, on the server), `U` decoded (the request).
#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder(PhantomData)
    }
}

#[derive(Debug, Clone)]
pub struct Decoder<U>(PhantomData<U>);

impl<U: Message + Default> tonic::codec::Decoder for Decoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode(buf).map(Some)
    }
}

fn decode<U: Message + Default>(buf: impl bytes::Buf) -> Result<U, Status> {
    // prost's text names the message and field (`LoginRequest.email:
    // invalid string value ...`) and carries none of the caller's bytes.
    U::decode(buf).map_err(|error| super::status::malformed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::LoginRequest;

    #[test]
    fn a_string_field_of_invalid_utf8_is_invalid_argument_naming_the_field() {
        // Field 1 (email), length 1, the byte 0xff.
        let status = decode::<LoginRequest>(&[0x0a, 0x01, 0xff][..]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        use tonic_types::StatusExt as _;
        assert_eq!(
            status.get_details_error_info().unwrap().reason,
            "MALFORMED_REQUEST"
        );
        assert!(
            status.message().contains("LoginRequest.email"),
            "{status:?}"
        );
    }
}
