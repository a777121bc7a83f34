//! proxy-wasm's serialized maps, and a header map read once per callback.
//!
//! The host hands maps (all of a request's headers, or a metadata namespace) over as one buffer:
//! a count, then (key length, value length) pairs, then each key and value followed by a NUL byte.
//! Reading a whole map is one host call where reading its entries one by one is one call each,
//! and every call that returns data also calls back into the VM to allocate the result.
//!
//! [`HeaderCache`] holds a header map read that way and the writes the filter makes to it, and
//! reduces them to the host calls that change something: a header removed that was never there,
//! set to the value it already had, or removed and then set again costs one call or none.

/// The entries of a serialized map, borrowed from `bytes`; `None` if it is malformed.
pub fn decode(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let read_u32 = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?]) as usize)
    };
    let count = read_u32(0)?;
    // Each entry takes at least 10 bytes (two lengths, two NULs): a count beyond that is corrupt.
    if count > bytes.len() / 10 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    let mut at = 4usize;
    for _ in 0..count {
        sizes.push((read_u32(at)?, read_u32(at.checked_add(4)?)?));
        at = at.checked_add(8)?;
    }
    let mut entries = Vec::with_capacity(count);
    // Each key and value is followed by a NUL.
    let mut field = |len: usize| -> Option<&[u8]> {
        let end = at.checked_add(len)?;
        let data = bytes.get(at..end)?;
        (bytes.get(end) == Some(&0)).then_some(())?;
        at = end.checked_add(1)?;
        Some(data)
    };
    for (k, v) in sizes {
        let key = field(k)?;
        let value = field(v)?;
        entries.push((key, value));
    }
    Some(entries)
}

/// Serializes entries the way the host does (the inverse of [`decode`]; used by tests and mocks).
pub fn encode<K: AsRef<[u8]>, V: AsRef<[u8]>>(entries: &[(K, V)]) -> Vec<u8> {
    let size = 4 + entries
        .iter()
        .map(|(k, v)| 10 + k.as_ref().len() + v.as_ref().len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(entries.len()));
    for (k, v) in entries {
        out.extend_from_slice(&len(k.as_ref().len()));
        out.extend_from_slice(&len(v.as_ref().len()));
    }
    for (k, v) in entries {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// A host call that brings the host's header map in line with the filter's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Replace every value of the header with this one (adding it if absent).
    Replace(String, String),
    Remove(String),
}

/// A header map as the host had it when read, with the filter's writes applied in memory.
#[derive(Debug, Default, Clone)]
pub struct HeaderCache {
    entries: Vec<(String, String)>,
    /// Each header written since the read, once, with its values at the read.
    touched: Vec<(String, Vec<String>)>,
}

impl HeaderCache {
    /// The map as serialized by the host; `None` if malformed. Values that are not UTF-8 are read
    /// lossily, as single-header reads are.
    pub fn from_serialized(bytes: &[u8]) -> Option<HeaderCache> {
        let entries = decode(bytes)?
            .into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        Some(HeaderCache {
            entries,
            touched: Vec::new(),
        })
    }

    /// The first value of a header (names match regardless of ASCII case, as in Envoy).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header name, once per entry, in the map's order.
    pub fn names(&self) -> Vec<String> {
        self.entries.iter().map(|(k, _)| k.clone()).collect()
    }

    fn values(&self, name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn touch(&mut self, name: &str) {
        if !self
            .touched
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            let initial = self.values(name);
            self.touched.push((name.to_ascii_lowercase(), initial));
        }
    }

    /// Replaces every value of a header with `value`.
    pub fn set(&mut self, name: &str, value: &str) {
        self.touch(name);
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.entries
            .push((name.to_ascii_lowercase(), value.to_string()));
    }

    pub fn remove(&mut self, name: &str) {
        self.touch(name);
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    /// The host calls that make the host's map what this one is now, in the order the headers
    /// were first written; afterwards the map counts as read again (nothing pending).
    pub fn take_writes(&mut self) -> Vec<Write> {
        let touched = std::mem::take(&mut self.touched);
        let mut writes = Vec::with_capacity(touched.len());
        for (name, initial) in touched {
            let now = self.values(&name);
            if now == initial {
                continue;
            }
            match now.into_iter().next() {
                None => writes.push(Write::Remove(name)),
                Some(value) => writes.push(Write::Replace(name, value)),
            }
        }
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(&str, &str)]) -> HeaderCache {
        HeaderCache::from_serialized(&encode(entries)).unwrap()
    }

    #[test]
    fn decodes_what_it_encodes_and_refuses_garbage() {
        let entries: [(&[u8], &[u8]); 3] = [(b":path", b"/v1"), (b"x-empty", b""), (b"k", b"\0v")];
        let bytes = encode(&entries);
        assert_eq!(decode(&bytes).unwrap(), entries.to_vec());
        assert_eq!(decode(&encode::<&[u8], &[u8]>(&[])).unwrap(), vec![]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "{cut}");
        }
        // A count far beyond the buffer is refused before anything is allocated for it.
        assert!(decode(&[0xff, 0xff, 0xff, 0x7f, 0, 0]).is_none());
        assert!(decode(b"").is_none());
    }

    #[test]
    fn reads_like_single_header_reads() {
        let c = cache(&[
            (":method", "POST"),
            ("x-forwarded-for", "a"),
            ("x-forwarded-for", "b"),
        ]);
        assert_eq!(c.get(":method"), Some("POST"));
        assert_eq!(c.get("X-Forwarded-For"), Some("a"));
        assert_eq!(c.get("absent"), None);
        assert_eq!(c.names(), [":method", "x-forwarded-for", "x-forwarded-for"]);
        let lossy = HeaderCache::from_serialized(&encode(&[(b"k".as_slice(), b"\xff".as_slice())]));
        assert_eq!(lossy.unwrap().get("k"), Some("\u{fffd}"));
    }

    #[test]
    fn writes_reduce_to_the_calls_that_change_something() {
        let mut c = cache(&[
            (":path", "/v1/chat/completions"),
            ("content-type", "application/json"),
            ("user-agent", "OpenAI/Python"),
            ("authorization", "Bearer sk-client"),
            ("cookie", "a"),
            ("cookie", "b"),
        ]);
        c.remove("absent"); // never there: no call
        c.set("content-type", "application/json"); // already so: no call
        c.remove("user-agent");
        c.set("user-agent", "tollgate/0.1.0"); // removed then set: one replace
        c.remove("authorization");
        c.set("authorization", "Bearer sk-provider");
        c.remove("cookie"); // both values
        c.set(":path", "/v1/messages");
        c.set("x-new", "1");
        c.remove("x-new"); // added then removed: no call
        c.set("x-api-key", "k");
        assert_eq!(
            c.take_writes(),
            vec![
                Write::Replace("user-agent".into(), "tollgate/0.1.0".into()),
                Write::Replace("authorization".into(), "Bearer sk-provider".into()),
                Write::Remove("cookie".into()),
                Write::Replace(":path".into(), "/v1/messages".into()),
                Write::Replace("x-api-key".into(), "k".into()),
            ]
        );
        assert_eq!(c.get("user-agent"), Some("tollgate/0.1.0"));
        assert_eq!(c.get("cookie"), None);
        // Written out: nothing pending until the next write, which compares with the new state.
        assert!(c.take_writes().is_empty());
        c.set("x-api-key", "k");
        assert!(c.take_writes().is_empty());
        c.set("X-Api-Key", "other");
        assert_eq!(
            c.take_writes(),
            vec![Write::Replace("x-api-key".into(), "other".into())]
        );
    }

    #[test]
    fn setting_one_of_several_values_replaces_them_all() {
        let mut c = cache(&[("x-forwarded-for", "a"), ("x-forwarded-for", "b")]);
        c.set("x-forwarded-for", "a");
        assert_eq!(
            c.take_writes(),
            vec![Write::Replace("x-forwarded-for".into(), "a".into())]
        );
        assert_eq!(c.names(), ["x-forwarded-for"]);
    }
}
