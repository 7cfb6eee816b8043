//! Agent protocol bytes from an untrusted peer: every top-level message decodes or fails without
//! panicking, and the gRPC stream decoder (our codec, tonic's framing) enforces the size limit.
#![no_main]

use bytes::Bytes;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;
use tonic::codec::{Codec, Streaming};
use vrouter_proto::codec::StreamCodec;
use vrouter_proto::prost::Message;
use vrouter_proto::v1::{AgentMessage, ControllerMessage, EnrollRequest, EnrollResponse};

const LIMIT: usize = 4096;

fn stream<M: Message + Default + Send + 'static>(data: &[u8]) {
    let decoder = StreamCodec::<M, M>::default().decoder();
    let body = Full::new(Bytes::copy_from_slice(data));
    let mut streaming = Streaming::new_request(decoder, body, None, Some(LIMIT));
    futures::executor::block_on(async {
        while let Ok(Some(message)) = streaming.message().await {
            assert!(message.encoded_len() <= LIMIT, "decoded a message over the limit");
        }
    });
}

fuzz_target!(|data: &[u8]| {
    let _ = AgentMessage::decode(data);
    let _ = ControllerMessage::decode(data);
    let _ = EnrollRequest::decode(data);
    let _ = EnrollResponse::decode(data);
    let _ = AgentMessage::decode_length_delimited(data);
    stream::<AgentMessage>(data);
    stream::<ControllerMessage>(data);
});
