//! Untrusted input: bytes from a peer decode as any top-level message, and through the stream
//! codec, without panicking; the stream decoder refuses frames over the size limit before
//! allocating for them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;
use http_body_util::Full;
use proptest::prelude::*;
use tonic::Code;
use tonic::codec::{Codec, Streaming};
use vrouter_proto::codec::StreamCodec;
use vrouter_proto::prost::Message;
use vrouter_proto::v1::{AgentMessage, ControllerMessage, EnrollRequest, EnrollResponse, Ping, agent_message};

const LIMIT: usize = 1024;

/// Decodes every message of a gRPC request body; returns the messages and the error, if any.
fn decode_stream<M: Message + Default + Send + 'static>(body: Vec<u8>) -> (Vec<M>, Option<tonic::Status>) {
    let decoder = StreamCodec::<M, M>::default().decoder();
    let mut streaming = Streaming::new_request(decoder, Full::new(Bytes::from(body)), None, Some(LIMIT));
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let mut messages = Vec::new();
        loop {
            match streaming.message().await {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => return (messages, None),
                Err(status) => return (messages, Some(status)),
            }
        }
    })
}

/// One gRPC frame: uncompressed flag, big-endian length, payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Protobuf-shaped bytes: valid tags with random wire types and lengths, and plain noise.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let field = (1u32..20, 0u8..8, prop::collection::vec(any::<u8>(), 0..24)).prop_map(|(number, wire, body)| {
        let mut out = Vec::new();
        let key = u64::from(number) << 3 | u64::from(wire);
        prost::encoding::encode_varint(key, &mut out);
        if wire == 2 {
            // A length that may lie about what follows.
            prost::encoding::encode_varint(
                body.len() as u64 + u64::from(body.first().copied().unwrap_or(0) % 3),
                &mut out,
            );
        }
        out.extend(body);
        out
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(field, 0..12).prop_map(|f| f.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every top-level message decodes arbitrary bytes or refuses them; nothing panics, and
    /// what decodes re-encodes to something that decodes to the same message.
    #[test]
    fn messages_decode_or_refuse(bytes in hostile_bytes()) {
        fn check<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
            if let Ok(m) = M::decode(bytes) {
                let again = M::decode(m.encode_to_vec().as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(again, m);
            }
            let _ = M::decode_length_delimited(bytes);
            Ok(())
        }
        check::<AgentMessage>(&bytes)?;
        check::<ControllerMessage>(&bytes)?;
        check::<EnrollRequest>(&bytes)?;
        check::<EnrollResponse>(&bytes)?;
    }

    /// Arbitrary bytes as a gRPC request body of either stream direction: no panic, no message
    /// over the limit.
    #[test]
    fn stream_decoder_never_panics(body in prop::collection::vec(any::<u8>(), 0..512), framed in hostile_bytes()) {
        for body in [body, frame(&framed)] {
            let (messages, _) = decode_stream::<AgentMessage>(body.clone());
            prop_assert!(messages.iter().all(|m| m.encoded_len() <= LIMIT));
            let (messages, _) = decode_stream::<ControllerMessage>(body);
            prop_assert!(messages.iter().all(|m| m.encoded_len() <= LIMIT));
        }
    }

    /// A frame that declares more than the limit is refused with `OutOfRange`, whatever its
    /// declared length (up to 4 GiB) and however little of it arrived.
    #[test]
    fn oversized_frames_are_refused(declared in (LIMIT as u32 + 1)..=u32::MAX, sent in 0usize..64) {
        let mut body = vec![0];
        body.extend_from_slice(&declared.to_be_bytes());
        body.extend(std::iter::repeat_n(0u8, sent));
        let (messages, error) = decode_stream::<AgentMessage>(body);
        prop_assert!(messages.is_empty());
        let status = error.expect("an error");
        prop_assert_eq!(status.code(), Code::OutOfRange, "{}", status);
    }

    /// Frames up to the limit pass, in sequence.
    #[test]
    fn frames_within_the_limit_decode(seqs in prop::collection::vec(any::<u64>(), 1..8)) {
        let sent: Vec<AgentMessage> = seqs
            .iter()
            .map(|&seq| AgentMessage { msg: Some(agent_message::Msg::Ping(Ping { seq, ..Ping::default() })) })
            .collect();
        let body: Vec<u8> = sent.iter().flat_map(|m| frame(&m.encode_to_vec())).collect();
        let (received, error) = decode_stream::<AgentMessage>(body);
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert_eq!(received, sent);
    }
}
