//! Length and CRC framing shared by the write-ahead log and the dedup journal.
//!
//! A frame is `len: u32 LE | crc32: u32 LE | payload[len]`, the CRC (IEEE, `crc32fast`) taken over
//! the payload. A file of frames is read front to back; the first frame whose header or payload is
//! cut short, or whose CRC does not match, ends the valid prefix. On the last file of a log this is
//! a torn write of a crash (its data was never acknowledged); anywhere else it is corruption.

use std::io::{self, Read};

/// Bytes of a frame header.
pub(crate) const HEADER_LEN: usize = 8;

/// Largest payload a reader accepts: bigger than any request body the collector takes (the
/// config caps `max_body_bytes` at 4 GiB) is impossible, so a larger length is corruption.
pub(crate) const MAX_PAYLOAD_LEN: usize = u32::MAX as usize;

/// Appends one frame holding `payload` to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, payload: &[u8]) {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(payload);
    encode_with_crc(out, payload.len(), hasher.finalize());
    out.extend_from_slice(payload);
}

/// Appends the header of a frame whose payload (of `len` bytes, with CRC `crc`) the caller writes
/// next.
pub(crate) fn encode_with_crc(out: &mut Vec<u8>, len: usize, crc: u32) {
    let len = u32::try_from(len).expect("payloads are bounded by max_body_bytes, itself at most 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Result of reading one frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadFrame {
    /// A complete, intact payload.
    Frame(Vec<u8>),
    /// A clean end of the input, at a frame boundary.
    End,
    /// The input ends inside a frame, or the frame fails its CRC: the valid prefix ends here.
    Invalid(&'static str),
}

/// Reads the next frame from `reader`.
pub(crate) fn read(reader: &mut impl Read) -> io::Result<ReadFrame> {
    let mut header = [0u8; HEADER_LEN];
    match read_full(reader, &mut header)? {
        0 => return Ok(ReadFrame::End),
        HEADER_LEN => {}
        _ => return Ok(ReadFrame::Invalid("truncated frame header")),
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_PAYLOAD_LEN {
        return Ok(ReadFrame::Invalid("frame length out of range"));
    }
    // Read through `take` so that a garbage length on a short file does not allocate gigabytes.
    let mut payload = Vec::with_capacity(len.min(1 << 20));
    reader.take(len as u64).read_to_end(&mut payload)?;
    if payload.len() != len {
        return Ok(ReadFrame::Invalid("truncated frame payload"));
    }
    if crc32fast::hash(&payload) != crc {
        return Ok(ReadFrame::Invalid("frame checksum mismatch"));
    }
    Ok(ReadFrame::Frame(payload))
}

/// Fills `buf` as far as the input allows; returns the bytes read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8]) -> Vec<ReadFrame> {
        let mut reader = bytes;
        let mut out = Vec::new();
        loop {
            let frame = read(&mut reader).unwrap();
            let done = !matches!(frame, ReadFrame::Frame(_));
            out.push(frame);
            if done {
                return out;
            }
        }
    }

    // Golden bytes: the frame format is on disk, so it must not change by accident.
    #[test]
    fn frame_bytes_are_stable() {
        let mut out = Vec::new();
        encode(&mut out, b"owl");
        assert_eq!(out, [3, 0, 0, 0, 0x4d, 0x97, 0xb0, 0x98, b'o', b'w', b'l']);
    }

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut out = Vec::new();
        encode(&mut out, b"first");
        encode(&mut out, b"");
        encode(&mut out, b"third");
        assert_eq!(
            frames(&out),
            vec![
                ReadFrame::Frame(b"first".to_vec()),
                ReadFrame::Frame(Vec::new()),
                ReadFrame::Frame(b"third".to_vec()),
                ReadFrame::End
            ]
        );
    }

    #[test]
    fn every_cut_of_the_last_frame_is_detected() {
        let mut out = Vec::new();
        encode(&mut out, b"kept");
        let boundary = out.len();
        encode(&mut out, b"torn away");
        for cut in boundary + 1..out.len() {
            let read = frames(&out[..cut]);
            assert_eq!(read[0], ReadFrame::Frame(b"kept".to_vec()));
            assert!(matches!(read[1], ReadFrame::Invalid(_)), "cut at {cut}: {read:?}");
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut out = Vec::new();
        encode(&mut out, b"payload");
        out[HEADER_LEN + 2] ^= 0x04;
        assert_eq!(frames(&out), vec![ReadFrame::Invalid("frame checksum mismatch")]);
    }

    #[test]
    fn split_crc_matches_whole_crc() {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(b"abc");
        let mut rest = crc32fast::Hasher::new();
        rest.update(b"defgh");
        hasher.combine(&rest);
        assert_eq!(hasher.finalize(), crc32fast::hash(b"abcdefgh"));
    }
}
