//! Every secret the gateway holds (provider keys, AWS credentials, the master key), found and
//! masked in bytes a client or a log would see: provider error bodies, stream events, response
//! headers. Built once from the configuration; each search is one `memmem` pass per secret.

use memchr::memmem::Finder;

/// What a secret is replaced with.
pub const MASK: &[u8] = b"[redacted]";

/// Secrets shorter than this are not searched for: a short value would mask ordinary text, and
/// no provider issues keys that short.
pub const MIN_LEN: usize = 8;

#[derive(Default)]
pub struct Secrets {
    finders: Vec<Finder<'static>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} patterns)", self.finders.len())
    }
}

impl Secrets {
    /// The patterns for these values: each value, and the form a JSON writer that escapes `/`
    /// gives it (AWS secret keys contain slashes). Short and repeated values are left out.
    pub fn new<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for v in values {
            let v = v.as_ref().trim();
            if v.len() < MIN_LEN {
                continue;
            }
            patterns.push(v.as_bytes().to_vec());
            if v.contains('/') {
                patterns.push(v.replace('/', "\\/").into_bytes());
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Secrets {
            finders: patterns
                .iter()
                .map(|p| Finder::new(p).into_owned())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    /// The first secret in `hay` at or after `from`: its start and length.
    fn first(&self, hay: &[u8], from: usize) -> Option<(usize, usize)> {
        let rest = hay.get(from..)?;
        let mut best: Option<(usize, usize)> = None;
        for f in &self.finders {
            let window = match best {
                // Only an earlier start can win.
                Some((at, _)) => rest
                    .get(..at.saturating_add(f.needle().len()))
                    .unwrap_or(rest),
                None => rest,
            };
            if let Some(at) = f.find(window) {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, f.needle().len()));
                }
            }
        }
        best.map(|(at, len)| (from.saturating_add(at), len))
    }

    /// Whether `hay` holds any secret.
    pub fn found_in(&self, hay: &[u8]) -> bool {
        self.first(hay, 0).is_some()
    }

    /// Masks every secret in `buf`; true when something was masked. No allocation when nothing is.
    pub fn scrub(&self, buf: &mut Vec<u8>) -> bool {
        let Some(mut hit) = self.first(buf, 0) else {
            return false;
        };
        let mut out = Vec::with_capacity(buf.len());
        let mut copied = 0;
        loop {
            let (at, len) = hit;
            out.extend_from_slice(buf.get(copied..at).unwrap_or_default());
            out.extend_from_slice(MASK);
            copied = at.saturating_add(len);
            match self.first(buf, copied) {
                Some(next) => hit = next,
                None => break,
            }
        }
        out.extend_from_slice(buf.get(copied..).unwrap_or_default());
        *buf = out;
        true
    }

    /// `scrub` for text.
    pub fn scrub_str(&self, s: &str) -> String {
        let mut bytes = s.as_bytes().to_vec();
        if self.scrub(&mut bytes) {
            // Secrets are whole UTF-8 strings and the mask is ASCII: the result stays UTF-8.
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            s.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_every_occurrence_and_escaped_forms() {
        let s = Secrets::new([
            "sk-live-0123456789",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "short",
        ]);
        let mut b = b"key sk-live-0123456789 and sk-live-0123456789!".to_vec();
        assert!(s.scrub(&mut b));
        assert_eq!(b, b"key [redacted] and [redacted]!");
        let mut b = br#"{"m":"wJalrXUtnFEMI\/K7MDENG\/bPxRfiCYEXAMPLEKEY"}"#.to_vec();
        assert!(s.scrub(&mut b));
        assert_eq!(b, br#"{"m":"[redacted]"}"#);
        let mut b = b"a short text".to_vec();
        assert!(!s.scrub(&mut b));
        assert!(Secrets::new(Vec::<String>::new()).is_empty());
    }

    #[test]
    fn a_secret_containing_another_is_masked_whole() {
        let s = Secrets::new(["abcdefgh", "xxabcdefghyy"]);
        let mut b = b"1 xxabcdefghyy 2 abcdefgh".to_vec();
        s.scrub(&mut b);
        assert_eq!(b, b"1 [redacted] 2 [redacted]");
    }

    proptest! {
        /// Whatever surrounds them, no secret survives a scrub, and text without one is unchanged.
        #[test]
        fn nothing_survives(
            secrets in prop::collection::vec("[a-zA-Z0-9/+_-]{8,24}", 1..4),
            parts in prop::collection::vec(("[ -~]{0,12}", 0usize..4), 0..8),
        ) {
            let s = Secrets::new(&secrets);
            let mut hay = Vec::new();
            for (text, pick) in &parts {
                hay.extend_from_slice(text.as_bytes());
                if let Some(secret) = secrets.get(*pick) {
                    hay.extend_from_slice(secret.as_bytes());
                }
            }
            let before = hay.clone();
            let changed = s.scrub(&mut hay);
            for secret in &secrets {
                prop_assert!(memchr::memmem::find(&hay, secret.as_bytes()).is_none());
            }
            prop_assert_eq!(changed, s.found_in(&before));
            if !changed {
                prop_assert_eq!(hay, before);
            }
        }
    }
}
