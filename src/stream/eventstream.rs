//! Incremental decoder of AWS event-stream framing (`application/vnd.amazon.eventstream`), the
//! binary format Bedrock's streaming operations answer in.
//!
//! A message is: total length (u32 BE), headers length (u32 BE), CRC32 of those 8 bytes, the
//! headers, the payload, and a CRC32 of everything before it. Both CRCs are checked, a frame
//! larger than a bound is refused as soon as its prelude arrives, and only the unfinished frame
//! is buffered, so memory stays bounded whatever the upstream sends and however it is chunked.

/// Prelude (two lengths and their CRC) plus the trailing message CRC.
const PRELUDE_LEN: usize = 12;
const OVERHEAD: usize = PRELUDE_LEN + 4;

/// Largest frame accepted. Bedrock's events are small JSON documents; 4 MiB leaves room for a
/// whole tool-call argument document in one event, like the SSE decoder's bound.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;

/// A header value. Only strings matter to Bedrock's events; the other types are decoded so
/// that they are skipped by their exact size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderValue<'a> {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(&'a [u8]),
    String(&'a str),
    Timestamp(i64),
    Uuid(&'a [u8]),
}

/// One decoded message, borrowed from the decoder's buffer or the input chunk.
#[derive(Debug)]
pub struct Message<'a> {
    pub headers: Vec<(&'a str, HeaderValue<'a>)>,
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// The value of a string header (`:event-type`, `:message-type`, ...).
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if *n == name => Some(*s),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The CRC of the two length fields does not match: the lengths cannot be trusted.
    PreludeCrc,
    /// The CRC over the whole message does not match.
    MessageCrc,
    /// The prelude announces a frame larger than the decoder accepts.
    TooLarge(usize),
    /// Lengths or headers that do not fit together.
    Malformed(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::PreludeCrc => f.write_str("prelude checksum mismatch"),
            DecodeError::MessageCrc => f.write_str("message checksum mismatch"),
            DecodeError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
            DecodeError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

#[derive(Debug)]
pub struct EventStreamDecoder {
    /// The bytes of an unfinished frame (never more than one frame).
    partial: Vec<u8>,
    max_frame: usize,
    failed: Option<DecodeError>,
}

impl Default for EventStreamDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

impl EventStreamDecoder {
    pub fn new(max_frame: usize) -> Self {
        EventStreamDecoder {
            partial: Vec::new(),
            max_frame: max_frame.max(OVERHEAD),
            failed: None,
        }
    }

    /// Bytes received that do not yet form a whole frame.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Checks a prelude and returns the frame's total length.
    fn frame_len(&self, prelude: &[u8]) -> Result<usize, DecodeError> {
        let (Some(total), Some(headers), Some(crc)) =
            (be_u32(prelude, 0), be_u32(prelude, 4), be_u32(prelude, 8))
        else {
            return Err(DecodeError::Malformed("short prelude"));
        };
        if crc32fast::hash(prelude.get(..8).unwrap_or_default()) != crc {
            return Err(DecodeError::PreludeCrc);
        }
        let total = total as usize;
        if total > self.max_frame {
            return Err(DecodeError::TooLarge(total));
        }
        if total < OVERHEAD || headers as usize > total - OVERHEAD {
            return Err(DecodeError::Malformed("lengths do not fit together"));
        }
        Ok(total)
    }

    /// Feeds bytes; calls `on_message` for every complete, valid frame. After an error the
    /// decoder stays failed: the framing cannot be trusted past a corrupt frame.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_message: impl FnMut(Message<'_>),
    ) -> Result<(), DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let result = self.feed_inner(input, &mut on_message);
        if let Err(e) = result {
            self.failed = Some(e);
            self.partial = Vec::new();
        }
        result
    }

    fn feed_inner(
        &mut self,
        mut input: &[u8],
        on_message: &mut impl FnMut(Message<'_>),
    ) -> Result<(), DecodeError> {
        // Finish the frame left over from earlier chunks first.
        if !self.partial.is_empty() {
            if self.partial.len() < PRELUDE_LEN {
                let want = (PRELUDE_LEN - self.partial.len()).min(input.len());
                let (head, rest) = input.split_at(want);
                self.partial.extend_from_slice(head);
                input = rest;
                if self.partial.len() < PRELUDE_LEN {
                    return Ok(());
                }
            }
            let total = self.frame_len(&self.partial)?;
            let want = total.saturating_sub(self.partial.len()).min(input.len());
            let (head, rest) = input.split_at(want);
            self.partial.extend_from_slice(head);
            input = rest;
            if self.partial.len() < total {
                return Ok(());
            }
            let frame = std::mem::take(&mut self.partial);
            on_message(parse_frame(&frame)?);
            // Keep the allocation for the next partial frame.
            self.partial = frame;
            self.partial.clear();
        }
        // Whole frames straight from the input, without copying.
        while input.len() >= PRELUDE_LEN {
            let total = self.frame_len(input)?;
            if input.len() < total {
                break;
            }
            let (frame, rest) = input.split_at(total);
            on_message(parse_frame(frame)?);
            input = rest;
        }
        if !input.is_empty() {
            if input.len() >= PRELUDE_LEN {
                // Checked above: the length is within bounds, so this reservation is too.
                self.partial.reserve(self.frame_len(input)?);
            }
            self.partial.extend_from_slice(input);
        }
        Ok(())
    }
}

/// Parses one whole frame whose prelude was already checked.
fn parse_frame(frame: &[u8]) -> Result<Message<'_>, DecodeError> {
    let body_end = frame.len().saturating_sub(4);
    let crc = be_u32(frame, body_end).ok_or(DecodeError::Malformed("short frame"))?;
    let body = frame.get(..body_end).unwrap_or_default();
    if crc32fast::hash(body) != crc {
        return Err(DecodeError::MessageCrc);
    }
    let headers_len = be_u32(frame, 4).ok_or(DecodeError::Malformed("short frame"))? as usize;
    let headers_end = PRELUDE_LEN.saturating_add(headers_len);
    let headers = frame
        .get(PRELUDE_LEN..headers_end)
        .ok_or(DecodeError::Malformed("headers overrun the frame"))?;
    let payload = frame
        .get(headers_end..body_end)
        .ok_or(DecodeError::Malformed("headers overrun the frame"))?;
    Ok(Message {
        headers: parse_headers(headers)?,
        payload,
    })
}

/// A cursor over the header block that fails instead of reading past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.0.len() {
            return Err(DecodeError::Malformed("header overruns the header block"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?
            .try_into()
            .map_err(|_| DecodeError::Malformed("header overruns the header block"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
}

fn parse_headers(block: &[u8]) -> Result<Vec<(&str, HeaderValue<'_>)>, DecodeError> {
    let mut r = Reader(block);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let name_len = r.u8()? as usize;
        let name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| DecodeError::Malformed("header name is not UTF-8"))?;
        let value = match r.u8()? {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(r.array()?)),
            3 => HeaderValue::Short(i16::from_be_bytes(r.array()?)),
            4 => HeaderValue::Int(i32::from_be_bytes(r.array()?)),
            5 => HeaderValue::Long(i64::from_be_bytes(r.array()?)),
            6 => {
                let n = r.u16()? as usize;
                HeaderValue::Bytes(r.take(n)?)
            }
            7 => {
                let n = r.u16()? as usize;
                HeaderValue::String(
                    std::str::from_utf8(r.take(n)?)
                        .map_err(|_| DecodeError::Malformed("string header is not UTF-8"))?,
                )
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(r.array()?)),
            9 => HeaderValue::Uuid(r.take(16)?),
            _ => return Err(DecodeError::Malformed("unknown header value type")),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Encodes a frame with string headers: the inverse of the decoder, for tests.
#[cfg(test)]
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(7);
        block.extend_from_slice(&(value.len() as u16).to_be_bytes());
        block.extend_from_slice(value.as_bytes());
    }
    encode_raw(&block, payload)
}

/// Encodes a frame around an already-encoded header block, for tests.
#[cfg(test)]
pub fn encode_raw(block: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = (OVERHEAD + block.len() + payload.len()) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(block);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Decoded = Vec<(Vec<(String, String)>, Vec<u8>)>;

    fn decode(chunks: &[&[u8]]) -> (Decoded, Result<(), DecodeError>, usize) {
        let mut d = EventStreamDecoder::default();
        let mut out = Vec::new();
        let mut result = Ok(());
        for c in chunks {
            result = d.feed(c, |m| {
                let headers = m
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), format!("{v:?}")))
                    .collect();
                out.push((headers, m.payload.to_vec()));
            });
            if result.is_err() {
                break;
            }
        }
        (out, result, d.pending())
    }

    fn sample() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(encode(
            &[
                (":event-type", "messageStart"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            br#"{"role":"assistant","p":"abcd"}"#,
        ));
        s.extend(encode(
            &[(":event-type", "contentBlockDelta")],
            r#"{"contentBlockIndex":0,"delta":{"text":"héllo ✓"}}"#.as_bytes(),
        ));
        // Every header value type, then an empty payload.
        let mut block = Vec::new();
        let mut header = |name: &str, ty: u8, value: &[u8]| {
            block.push(name.len() as u8);
            block.extend_from_slice(name.as_bytes());
            block.push(ty);
            block.extend_from_slice(value);
        };
        header("t", 0, &[]);
        header("f", 1, &[]);
        header("b", 2, &[0xff]);
        header("s", 3, &[0x01, 0x02]);
        header("i", 4, &[0, 0, 0, 7]);
        header("l", 5, &[0, 0, 0, 0, 0, 0, 0, 9]);
        header("y", 6, &[0, 3, 1, 2, 3]);
        header("z", 7, &[0, 2, b'o', b'k']);
        header("ts", 8, &[0, 0, 1, 2, 3, 4, 5, 6]);
        header("u", 9, &[0xaa; 16]);
        s.extend(encode_raw(&block, b""));
        s.extend(encode(
            &[(":event-type", "messageStop")],
            br#"{"stopReason":"end_turn"}"#,
        ));
        s
    }

    #[test]
    fn decodes_frames_and_every_header_type() {
        let s = sample();
        let (msgs, result, pending) = decode(&[&s]);
        assert_eq!(result, Ok(()));
        assert_eq!(pending, 0);
        assert_eq!(msgs.len(), 4);
        assert_eq!(
            msgs[0].0[0],
            (":event-type".into(), "String(\"messageStart\")".into())
        );
        assert_eq!(
            String::from_utf8(msgs[1].1.clone()).unwrap(),
            r#"{"contentBlockIndex":0,"delta":{"text":"héllo ✓"}}"#
        );
        let types: Vec<&str> = msgs[2].0.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            types,
            vec![
                "Bool(true)",
                "Bool(false)",
                "Byte(-1)",
                "Short(258)",
                "Int(7)",
                "Long(9)",
                "Bytes([1, 2, 3])",
                "String(\"ok\")",
                "Timestamp(1108152157446)",
                "Uuid([170, 170, 170, 170, 170, 170, 170, 170, 170, 170, 170, 170, 170, 170, 170, 170])",
            ]
        );
        assert!(msgs[2].1.is_empty());
        let mut d = EventStreamDecoder::default();
        let mut seen = None;
        d.feed(&s, |m| {
            if m.header_str(":event-type") == Some("messageStop") {
                seen = Some(m.payload.len());
            }
        })
        .unwrap();
        assert_eq!(seen, Some(25));
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        let s = sample();
        let (whole, ..) = decode(&[&s]);
        for i in 0..=s.len() {
            let (parts, result, pending) = decode(&[&s[..i], &s[i..]]);
            assert_eq!(result, Ok(()), "split at {i}");
            assert_eq!(pending, 0);
            assert_eq!(parts, whole, "split at {i}");
        }
        for i in 0..=s.len() {
            for j in (i..=s.len()).step_by(7) {
                let (parts, ..) = decode(&[&s[..i], &s[i..j], &s[j..]]);
                assert_eq!(parts, whole, "split at {i},{j}");
            }
        }
        let bytes: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(decode(&bytes).0, whole);
    }

    #[test]
    fn incomplete_frame_is_pending() {
        let s = sample();
        let (msgs, result, pending) = decode(&[&s[..s.len() - 3]]);
        assert_eq!(result, Ok(()));
        assert_eq!(msgs.len(), 3);
        assert!(pending > 0);
    }

    #[test]
    fn bad_prelude_crc() {
        let mut f = encode(&[(":event-type", "x")], b"{}");
        f[9] ^= 0x01;
        for split in [0, 5, 11, 12, f.len()] {
            let (msgs, result, _) = decode(&[&f[..split], &f[split..]]);
            assert!(msgs.is_empty());
            assert_eq!(result, Err(DecodeError::PreludeCrc), "split {split}");
        }
        // A corrupted length is caught by the prelude CRC, before any buffering.
        let mut f = encode(&[(":event-type", "x")], b"{}");
        f[2] = 0x7f;
        assert_eq!(decode(&[&f[..12]]).1, Err(DecodeError::PreludeCrc));
    }

    #[test]
    fn bad_message_crc_and_sticky_failure() {
        let good = encode(&[(":event-type", "a")], b"{}");
        let mut bad = encode(&[(":event-type", "b")], b"{\"x\":1}");
        let n = bad.len();
        bad[n - 6] ^= 0x20; // a payload byte
        let mut s = good.clone();
        s.extend(&bad);
        s.extend(&good);
        for split in 0..=s.len() {
            let (msgs, result, _) = decode(&[&s[..split], &s[split..]]);
            assert_eq!(msgs.len(), 1, "split {split}");
            assert_eq!(result, Err(DecodeError::MessageCrc), "split {split}");
        }
        let mut d = EventStreamDecoder::default();
        assert!(d.feed(&bad, |_| {}).is_err());
        let mut count = 0;
        assert_eq!(d.feed(&good, |_| count += 1), Err(DecodeError::MessageCrc));
        assert_eq!(count, 0);
    }

    #[test]
    fn oversized_frame_is_refused_from_its_prelude() {
        let f = encode(&[(":event-type", "big")], &[b'x'; 200]);
        let mut d = EventStreamDecoder::new(64);
        assert_eq!(
            d.feed(&f[..12], |_| {}),
            Err(DecodeError::TooLarge(f.len()))
        );
        let mut d = EventStreamDecoder::new(64);
        assert_eq!(d.feed(&f[..5], |_| {}), Ok(()));
        assert_eq!(
            d.feed(&f[5..13], |_| {}),
            Err(DecodeError::TooLarge(f.len()))
        );
        assert_eq!(d.pending(), 0);
        // A prelude claiming 4 GiB (with a valid CRC) is refused without allocating.
        let mut huge = Vec::new();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        huge.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&huge);
        huge.extend_from_slice(&crc.to_be_bytes());
        let mut d = EventStreamDecoder::default();
        assert_eq!(
            d.feed(&huge, |_| {}),
            Err(DecodeError::TooLarge(u32::MAX as usize))
        );
    }

    #[test]
    fn malformed_lengths_and_headers() {
        let prelude = |total: u32, headers: u32| {
            let mut p = Vec::new();
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&headers.to_be_bytes());
            let crc = crc32fast::hash(&p);
            p.extend_from_slice(&crc.to_be_bytes());
            p
        };
        let mut d = EventStreamDecoder::default();
        assert!(matches!(
            d.feed(&prelude(10, 0), |_| {}),
            Err(DecodeError::Malformed(_))
        ));
        let mut d = EventStreamDecoder::default();
        assert!(matches!(
            d.feed(&prelude(20, 5), |_| {}),
            Err(DecodeError::Malformed(_))
        ));
        // Header claiming a longer string than the block holds.
        let f = encode_raw(&[1, b'a', 7, 0, 50, b'x'], b"");
        assert!(matches!(decode(&[&f]).1, Err(DecodeError::Malformed(_))));
        // Unknown value type.
        let f = encode_raw(&[1, b'a', 42], b"");
        assert!(matches!(decode(&[&f]).1, Err(DecodeError::Malformed(_))));
        // Minimal frame: no headers, no payload.
        let f = encode_raw(&[], b"");
        let (msgs, result, _) = decode(&[&f]);
        assert_eq!(result, Ok(()));
        assert_eq!(msgs.len(), 1);
    }
}
