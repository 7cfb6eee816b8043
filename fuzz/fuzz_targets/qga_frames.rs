//! The guest agent's byte stream (untrusted: written by the VM) in arbitrary chunks: the frame
//! decoder never panics, never yields a message over its limit, and replies are interpreted
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vrouter_operator::qga::protocol::{Frame, FrameDecoder, Resync, parse_reply, preview};

const MAX: usize = 256;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so reads split objects at every possible point.
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk % 32) + 1;
    let mut decoder = FrameDecoder::new(MAX);
    let mut resync = Resync::new(7);
    for piece in rest.chunks(chunk) {
        decoder.push(piece);
        while let Some(frame) = decoder.next_frame() {
            if let Frame::Message(raw) = &frame {
                assert!(raw.len() <= MAX, "message over the limit: {}", raw.len());
                let _ = parse_reply("guest-exec-status", raw);
                let _ = preview(raw);
            }
            let _ = resync.feed(&frame);
        }
    }
});
