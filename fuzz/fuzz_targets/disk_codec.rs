//! A disk buffer record's payload, decoded back into an event (the checksum guards
//! the bytes; this guards their meaning). Any payload decodes or is an error; one
//! that decodes encodes back to the same bytes.
//!
//! Input: the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use profpipe::buffer::disk::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = codec::decode(data) {
        let mut again = Vec::new();
        codec::encode(&event, &mut again);
        let back = codec::decode(&again).expect("an encoded event decodes");
        let mut third = Vec::new();
        codec::encode(&back, &mut third);
        assert_eq!(again, third, "encode(decode(x)) is not stable");
    }
});
