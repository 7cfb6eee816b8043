//! QEMU guest agent client (in progress).
