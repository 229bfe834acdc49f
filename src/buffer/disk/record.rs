//! One record in a segment file: a fixed header, then the payload.
//!
//! ```text
//! offset  size  field
//!      0     4  payload length, u32 little-endian
//!      4     8  sequence number, u64 LE (one per record, increasing, never reused,
//!               below 2^63: see [`SEQ_LIMIT`])
//!     12     8  written at, milliseconds since the Unix epoch, u64 LE
//!     20     4  CRC-32C of the payload, u32 LE
//!     24     4  CRC-32C of bytes 0..24 (the header's own check), u32 LE
//!     28     -  payload (see `codec`)
//! ```
//!
//! The checksum is CRC-32C, the Castagnoli polynomial 0x1EDC6F41 (as in iSCSI, ext4
//! and Kafka's record batches), computed by `crc-fast`'s `Crc32Iscsi`. Two checksums
//! so that a damaged payload costs one record (its length is still known, reading
//! goes on after it) while a damaged header, whose length cannot be trusted, costs
//! the rest of its segment.

use crc_fast::{checksum, CrcAlgorithm};

/// Bytes before the payload.
pub const HEADER_LEN: usize = 28;

/// Sequence numbers are below this. At a million records a second the writer
/// would reach it in 292,000 years; a number at or above it read from disk (a
/// header, the ledger, a segment's name) is damage, so that every `seq + 1` on what
/// was read stays far from `u64::MAX`.
pub const SEQ_LIMIT: u64 = 1 << 63;

/// CRC-32C of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    checksum(CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// A record's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub len: u32,
    pub seq: u64,
    pub written_ms: u64,
    pub payload_crc: u32,
}

impl Header {
    /// The header of `payload`, which must be shorter than 4 GiB (the queue
    /// refuses larger records before framing them).
    pub fn of(seq: u64, written_ms: u64, payload: &[u8]) -> Header {
        debug_assert!(u32::try_from(payload.len()).is_ok());
        Header {
            len: payload.len() as u32,
            seq,
            written_ms,
            payload_crc: crc32c(payload),
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..12].copy_from_slice(&self.seq.to_le_bytes());
        b[12..20].copy_from_slice(&self.written_ms.to_le_bytes());
        b[20..24].copy_from_slice(&self.payload_crc.to_le_bytes());
        let own = crc32c(&b[0..24]);
        b[24..28].copy_from_slice(&own.to_le_bytes());
        b
    }

    /// `None` when the header's own checksum does not match, or its sequence
    /// number is out of range ([`SEQ_LIMIT`]): either way it is damaged.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Option<Header> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        (crc32c(&b[0..24]) == u32_at(24))
            .then(|| Header {
                len: u32_at(0),
                seq: u64_at(4),
                written_ms: u64_at(12),
                payload_crc: u32_at(20),
            })
            .filter(|h| h.seq < SEQ_LIMIT)
    }

    /// Bytes of the whole record on disk.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.len)
    }

    pub fn payload_ok(&self, payload: &[u8]) -> bool {
        crc32c(payload) == self.payload_crc
    }
}

/// Appends the whole record (header and payload) to `out`.
pub fn frame(seq: u64, written_ms: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&Header::of(seq, written_ms, payload).encode());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli() {
        // The check value of CRC-32C (and of no other common CRC-32).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn a_header_reads_back_and_any_flipped_bit_is_caught() {
        let h = Header::of(42, 1_700_000_000_000, b"payload");
        let bytes = h.encode();
        assert_eq!(Header::decode(&bytes), Some(h));
        for i in 0..HEADER_LEN * 8 {
            let mut b = bytes;
            b[i / 8] ^= 1 << (i % 8);
            assert_eq!(Header::decode(&b), None, "bit {i}");
        }
        assert!(h.payload_ok(b"payload") && !h.payload_ok(b"paylaod"));
    }

    /// Found by fuzzing the recovery: a header with a valid checksum and a
    /// sequence number near `u64::MAX` made `seq + 1` overflow. Such a header is
    /// damaged.
    #[test]
    fn a_sequence_number_out_of_range_is_a_damaged_header() {
        let last = Header::of(SEQ_LIMIT - 1, 0, b"p");
        assert_eq!(Header::decode(&last.encode()), Some(last));
        for seq in [SEQ_LIMIT, u64::MAX - 1, u64::MAX] {
            assert_eq!(Header::decode(&Header::of(seq, 0, b"p").encode()), None);
        }
    }
}
