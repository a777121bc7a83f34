//! Incremental decoder of `text/event-stream` (the WHATWG server-sent events format).
//!
//! Bytes arrive in arbitrary chunks; the decoder keeps only the unfinished line and the event
//! being assembled, and refuses events larger than a bound so a broken upstream cannot grow
//! memory without limit.

/// One dispatched event; `event` is empty when the stream gave no `event:` field.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    pub event: &'a str,
    pub data: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    event: String,
    data: Vec<u8>,
    has_data: bool,
    max_event: usize,
}

/// Largest event accepted: a single chunk of a provider stream is a few KB; 4 MiB leaves room for
/// a whole tool-call argument document in one event.
pub const DEFAULT_MAX_EVENT: usize = 4 << 20;

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT)
    }
}

impl SseDecoder {
    pub fn new(max_event: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            event: String::new(),
            data: Vec::new(),
            has_data: false,
            max_event,
        }
    }

    /// Feeds bytes; calls `on_event` for every complete event.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_event: impl FnMut(SseEvent<'_>),
    ) -> Result<(), TooLarge> {
        let mut rest = input;
        while !rest.is_empty() {
            // A '\r' left at the end of the previous chunk may be the first half of "\r\n".
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
                if rest.first() == Some(&b'\n') {
                    rest = rest.get(1..).unwrap_or_default();
                }
                self.end_line(&mut on_event);
                continue;
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    let (head, tail) = rest.split_at(i);
                    let terminator = tail.first().copied();
                    let after = tail.get(1..).unwrap_or_default();
                    if self.line.len().saturating_add(head.len()) > self.max_event {
                        return Err(TooLarge);
                    }
                    self.line.extend_from_slice(head);
                    if terminator == Some(b'\r') {
                        if after.is_empty() {
                            // Decide at the next byte whether this is "\r\n".
                            self.line.push(b'\r');
                            rest = after;
                            continue;
                        }
                        rest = if after.first() == Some(&b'\n') {
                            after.get(1..).unwrap_or_default()
                        } else {
                            after
                        };
                    } else {
                        rest = after;
                    }
                    self.end_line(&mut on_event);
                }
                None => {
                    if self.line.len().saturating_add(rest.len()) > self.max_event {
                        return Err(TooLarge);
                    }
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
            }
            if self.data.len() > self.max_event {
                return Err(TooLarge);
            }
        }
        Ok(())
    }

    /// The upstream ended: dispatches a last event that had no blank line after it.
    pub fn finish(&mut self, mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        if !self.line.is_empty() {
            self.end_line(&mut on_event);
        }
        self.dispatch(&mut on_event);
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(on_event);
        } else if line.first() != Some(&b':') {
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let (f, v) = line.split_at(i);
                    let v = v.get(1..).unwrap_or_default();
                    (f, v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line.as_slice(), &[][..]),
            };
            match field {
                b"data" => {
                    if self.has_data {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                    self.has_data = true;
                }
                b"event" => {
                    self.event.clear();
                    self.event.push_str(&String::from_utf8_lossy(value));
                }
                _ => {}
            }
        }
        // Reuse the line buffer's allocation.
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.has_data {
            on_event(SseEvent {
                event: &self.event,
                data: &self.data,
            });
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, |e| {
                out.push((
                    e.event.to_string(),
                    String::from_utf8_lossy(e.data).into_owned(),
                ))
            })
            .unwrap();
        }
        d.finish(|e| {
            out.push((
                e.event.to_string(),
                String::from_utf8_lossy(e.data).into_owned(),
            ))
        });
        out
    }

    const STREAM: &[u8] = b": comment\r\nevent: message_start\r\ndata: {\"a\":1}\r\n\r\nevent: ping\ndata: {}\n\ndata: line1\ndata: line2\n\n\rdata:nospace\r\rdata: [DONE]";

    #[test]
    fn parses_events() {
        let ev = collect(&[STREAM]);
        assert_eq!(
            ev,
            vec![
                ("message_start".into(), "{\"a\":1}".into()),
                ("ping".into(), "{}".into()),
                ("".into(), "line1\nline2".into()),
                ("".into(), "nospace".into()),
                ("".into(), "[DONE]".into()),
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let whole = collect(&[STREAM]);
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let parts = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(collect(&parts), whole, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn bounded() {
        let mut d = SseDecoder::new(16);
        assert_eq!(d.feed(&[b'x'; 64], |_| {}), Err(TooLarge));
        let mut d = SseDecoder::new(16);
        assert_eq!(
            d.feed(b"data: 0123456789\ndata: 0123456789\n", |_| {}),
            Err(TooLarge)
        );
    }
}
