//! Lowercase hexadecimal, as key digests, attempt ids and JSON's `\u00XX` escapes spell it.

/// The lowercase hex digit for the low four bits of `n`.
pub fn digit(n: u8) -> u8 {
    let n = n & 0xf;
    if n < 10 {
        b'0' + n
    } else {
        b'a' + (n - 10)
    }
}

/// `bytes` as lowercase hex, two digits each.
pub fn encode(bytes: impl IntoIterator<Item = u8>) -> String {
    let bytes = bytes.into_iter();
    let mut out = String::with_capacity(bytes.size_hint().0 * 2);
    for b in bytes {
        out.push(char::from(digit(b >> 4)));
        out.push(char::from(digit(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_as_format_does() {
        let bytes: Vec<u8> = (0..=255).collect();
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(super::encode(bytes), expected);
    }
}
