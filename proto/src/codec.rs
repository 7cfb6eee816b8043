//! The codec of the agent service: prost with small initial buffers.
//!
//! tonic's default codec starts every stream's encode and decode buffers at 8 KiB. An agent
//! stream is idle almost all the time and its frames are small (heartbeats, reports), so at tens
//! of thousands of sessions those buffers dominate the operator's memory. Buffers start at
//! 2 KiB here and still grow as needed for large frames (a desired configuration).

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Initial size of a stream's encode and decode buffers.
pub const BUFFER_SIZE: usize = 2 * 1024;

/// Bytes encoded before an encoder yields to other tasks (tonic's default).
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// Prost codec with [`BUFFER_SIZE`] initial buffers.
#[derive(Debug, Clone, Copy)]
pub struct StreamCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for StreamCodec<T, U> {
    fn default() -> Self {
        StreamCodec(PhantomData)
    }
}

impl<T, U> Codec for StreamCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
