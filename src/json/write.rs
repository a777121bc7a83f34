//! A compact JSON serializer that appends to a `Vec<u8>`: what `serde_json::to_writer` produces,
//! byte for byte, without its per-byte string escaping.
//!
//! Every translated body and streamed chunk is mostly string content (messages, completions,
//! deltas). `serde_json` looks each string byte up in an escape table one at a time; this writer
//! tests sixteen bytes at a time (two 64-bit words) and copies each clean run whole: about 1.8
//! instructions per byte instead of 8 (callgrind, a 287-byte completion text). Writing into a
//! `Vec` cannot fail, so there is no I/O error path either.
//! `serde_json::value::RawValue` is written verbatim, as `serde_json` does.

use std::fmt;

use serde::ser::{self, Serialize};

/// The struct name `serde_json::value::RawValue` serializes itself under (its raw text as the one
/// field); `serde_json` recognizes it to copy the text verbatim. A test pins it.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

/// Appends `value` as compact JSON. Fails only where `serde_json` would: a map key that is not a
/// string or a number, or a value's own `Serialize` failing.
pub fn append<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(Writer { out })
}

/// Appends `s` as a JSON string literal, escaped the way `serde_json` escapes it.
#[inline]
pub fn append_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len().saturating_add(2));
    out.push(b'"');
    // Most strings written are short and clean (object keys, roles, stream deltas): checked
    // here, everything else out of line.
    if short_and_clean(bytes) {
        out.extend_from_slice(bytes);
    } else {
        append_escaped(out, bytes);
    }
    out.push(b'"');
}

/// True for a string under 16 bytes with nothing to escape, tested as one word built from two
/// overlapping loads (the first and last 4 or 8 bytes) rather than byte by byte.
fn short_and_clean(bytes: &[u8]) -> bool {
    fn word<const N: usize>(b: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        if let (Some(dst), Ok(src)) = (w.get_mut(..N), <[u8; N]>::try_from(b)) {
            dst.copy_from_slice(&src);
        }
        u64::from_le_bytes(w)
    }
    let n = bytes.len();
    match n {
        0 => true,
        1..=3 => !bytes.iter().any(|&b| needs_escape(b)),
        4..=7 => {
            let (head, tail) = (bytes.get(..4), bytes.get(n - 4..));
            let w = word::<4>(head.unwrap_or_default()) | word::<4>(tail.unwrap_or_default()) << 32;
            head.is_some() && tail.is_some() && escape_mask(w) == 0
        }
        8..=15 => {
            let (head, tail) = (bytes.get(..8), bytes.get(n - 8..));
            let mask = escape_mask(word::<8>(head.unwrap_or_default()))
                | escape_mask(word::<8>(tail.unwrap_or_default()));
            head.is_some() && tail.is_some() && mask == 0
        }
        _ => false,
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Nonzero if any of the 8 bytes in `w` is below 0x20, a `"` or a `\`: the bytes JSON escapes.
/// The "has a zero byte" / "has a byte less than" word tricks, sharing one `!w`: a byte with its
/// high bit set never needs escaping, and for the others `!w` and `!(w ^ c)` agree on that bit.
/// Borrows can mark bytes above a match, never without one, so the answer is exact.
fn escape_mask(w: u64) -> u64 {
    let quote = (w ^ (ONES * u64::from(b'"'))).wrapping_sub(ONES);
    let backslash = (w ^ (ONES * u64::from(b'\\'))).wrapping_sub(ONES);
    let control = w.wrapping_sub(ONES * 0x20);
    (quote | backslash | control) & !w & HIGHS
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

#[inline(never)]
fn append_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    // `start`: the first byte not yet copied. Clean bytes are copied later in one run; a block
    // with a byte to escape is looked at byte by byte.
    let mut start = 0;
    if bytes.len() < 16 {
        escape_block(out, bytes, 0, bytes.len(), &mut start);
        out.extend_from_slice(bytes.get(start..).unwrap_or_default());
        return;
    }
    let mut pos = 0;
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block_escape_mask(block) != 0 {
            escape_block(out, bytes, pos, 16, &mut start);
        }
        pos += 16;
    }
    // The last 1 to 15 bytes: test the 16 that end the string (overlapping checked ones).
    let rest = blocks.remainder().len();
    if rest > 0 {
        let last = bytes.get(bytes.len() - 16..).unwrap_or_default();
        if block_escape_mask(last) != 0 {
            escape_block(out, bytes, pos, rest, &mut start);
        }
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

/// `escape_mask` of a 16-byte block's two words (0 for a block of another length).
fn block_escape_mask(block: &[u8]) -> u64 {
    match (
        <[u8; 8]>::try_from(block.get(..8).unwrap_or_default()),
        <[u8; 8]>::try_from(block.get(8..).unwrap_or_default()),
    ) {
        (Ok(lo), Ok(hi)) => {
            escape_mask(u64::from_le_bytes(lo)) | escape_mask(u64::from_le_bytes(hi))
        }
        _ => 0,
    }
}

/// Escapes what needs it in `bytes[at..at + len]`, copying the clean run before each escape.
fn escape_block(out: &mut Vec<u8>, bytes: &[u8], at: usize, len: usize, start: &mut usize) {
    for j in at..at + len {
        let Some(&byte) = bytes.get(j) else { break };
        if !needs_escape(byte) {
            continue;
        }
        out.extend_from_slice(bytes.get(*start..j).unwrap_or_default());
        append_escape(out, byte);
        *start = j + 1;
    }
}

/// The escape serde_json writes for a byte below 0x20, a `"` or a `\`.
fn append_escape(out: &mut Vec<u8>, byte: u8) {
    let short: &[u8] = match byte {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        _ => {
            out.extend_from_slice(b"\\u00");
            out.push(crate::hex::digit(byte >> 4));
            out.push(crate::hex::digit(byte));
            return;
        }
    };
    out.extend_from_slice(short);
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// `Serializer` methods for the integer types that hand the value to `self.$with`.
macro_rules! integers {
    ($with:ident) => {
        integers!($with; serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
            serialize_i64(i64), serialize_i128(i128), serialize_u8(u8), serialize_u16(u16),
            serialize_u32(u32), serialize_u64(u64), serialize_u128(u128));
    };
    ($with:ident; $($method:ident($t:ty)),*) => {
        $(fn $method(self, v: $t) -> Result<(), Error> {
            self.$with(v)
        })*
    };
}

/// The `Serializer` methods of a serializer that accepts only some shapes: each listed scalar
/// method, and (with `compounds`) every method for a unit, option, bytes, variant with data,
/// sequence, map or struct, returns `$refused`.
macro_rules! refuse {
    ($refused:expr; $($method:ident($t:ty)),*) => {
        $(fn $method(self, _v: $t) -> Result<(), Error> {
            Err($refused)
        })*
    };
    ($refused:expr; compounds) => {
        type SerializeSeq = ser::Impossible<(), Error>;
        type SerializeTuple = ser::Impossible<(), Error>;
        type SerializeTupleStruct = ser::Impossible<(), Error>;
        type SerializeTupleVariant = ser::Impossible<(), Error>;
        type SerializeMap = ser::Impossible<(), Error>;
        type SerializeStruct = ser::Impossible<(), Error>;
        type SerializeStructVariant = ser::Impossible<(), Error>;

        refuse!($refused; serialize_bytes(&[u8]), serialize_unit_struct(&'static str));
        fn serialize_none(self) -> Result<(), Error> {
            Err($refused)
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
            Err($refused)
        }
        fn serialize_unit(self) -> Result<(), Error> {
            Err($refused)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _value: &T,
        ) -> Result<(), Error> {
            Err($refused)
        }
        fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
            Err($refused)
        }
        fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
            Err($refused)
        }
        fn serialize_tuple_struct(
            self,
            _name: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeTupleStruct, Error> {
            Err($refused)
        }
        fn serialize_tuple_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeTupleVariant, Error> {
            Err($refused)
        }
        fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
            Err($refused)
        }
        fn serialize_struct(
            self,
            _name: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeStruct, Error> {
            Err($refused)
        }
        fn serialize_struct_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeStructVariant, Error> {
            Err($refused)
        }
    };
}

struct Writer<'o> {
    out: &'o mut Vec<u8>,
}

impl Writer<'_> {
    fn integer<I: itoa::Integer>(self, v: I) -> Result<(), Error> {
        append_int(self.out, v);
        Ok(())
    }
}

fn append_int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn append_float<F: zmij::Float>(out: &mut Vec<u8>, v: F, finite: bool) {
    // serde_json writes NaN and the infinities as null.
    if finite {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

impl<'o> ser::Serializer for Writer<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'o>;
    type SerializeTuple = Compound<'o>;
    type SerializeTupleStruct = Compound<'o>;
    type SerializeTupleVariant = Compound<'o>;
    type SerializeMap = Compound<'o>;
    type SerializeStruct = Compound<'o>;
    type SerializeStructVariant = Compound<'o>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    integers!(integer);
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        append_float(self.out, v, v.is_finite());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        append_float(self.out, v, v.is_finite());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        append_str(self.out, v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        append_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // As serde_json: an array of numbers.
        self.out.push(b'[');
        for (n, b) in v.iter().enumerate() {
            if n > 0 {
                self.out.push(b',');
            }
            append_int(self.out, *b);
        }
        self.out.push(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        append_str(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.out.push(b'{');
        append_str(self.out, variant);
        self.out.push(b':');
        value.serialize(Writer { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'o>, Error> {
        self.out.push(b'[');
        Ok(Compound::open(self.out, b"]"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'o>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'o>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'o>, Error> {
        self.out.push(b'{');
        append_str(self.out, variant);
        self.out.extend_from_slice(b":[");
        Ok(Compound::open(self.out, b"]}"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'o>, Error> {
        self.out.push(b'{');
        Ok(Compound::open(self.out, b"}"))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Compound<'o>, Error> {
        if name == RAW_VALUE_TOKEN {
            return Ok(Compound::Raw { out: self.out });
        }
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'o>, Error> {
        self.out.push(b'{');
        append_str(self.out, variant);
        self.out.extend_from_slice(b":{");
        Ok(Compound::open(self.out, b"}}"))
    }
}

/// An array or object being written: `first` until its first element, `close` what ends it.
/// `Raw` is a `RawValue`, whose one field is its text.
pub enum Compound<'o> {
    Open {
        out: &'o mut Vec<u8>,
        first: bool,
        close: &'static [u8],
    },
    Raw {
        out: &'o mut Vec<u8>,
    },
}

impl<'o> Compound<'o> {
    fn open(out: &'o mut Vec<u8>, close: &'static [u8]) -> Self {
        Compound::Open {
            out,
            first: true,
            close,
        }
    }

    /// The output, after the separator the next element needs.
    fn next(&mut self) -> &mut Vec<u8> {
        match self {
            Compound::Open { out, first, .. } => {
                if !*first {
                    out.push(b',');
                }
                *first = false;
                out
            }
            Compound::Raw { out } => out,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(Writer { out: self.next() })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        if let Compound::Raw { out } = self {
            return value.serialize(RawText { out });
        }
        let out = self.next();
        append_str(out, key);
        out.push(b':');
        value.serialize(Writer { out })
    }

    fn close(self) -> Result<(), Error> {
        if let Compound::Open { out, close, .. } = self {
            out.extend_from_slice(close);
        }
        Ok(())
    }
}

/// Arrays: sequences, tuples and a tuple variant's fields are each an element.
macro_rules! elements {
    ($($kind:ident::$method:ident),*) => {
        $(impl ser::$kind for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        key.serialize(MapKey { out: self.next() })?;
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if let Compound::Open { out, .. } = self {
            out.push(b':');
            value.serialize(Writer { out })?;
        }
        Ok(())
    }
    fn end(self) -> Result<(), Error> {
        self.close()
    }
}

/// Objects: a struct's and a struct variant's fields.
macro_rules! fields {
    ($($kind:ident),*) => {
        $(impl ser::$kind for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.field(key, value)
            }
            fn end(self) -> Result<(), Error> {
                self.close()
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

fn key_must_be_a_string() -> Error {
    Error("key must be a string".into())
}

/// An object key: strings as they are, numbers, booleans and chars quoted (as serde_json does),
/// anything else refused.
struct MapKey<'o> {
    out: &'o mut Vec<u8>,
}

impl MapKey<'_> {
    fn quoted(self, text: &str) -> Result<(), Error> {
        self.out.push(b'"');
        self.out.extend_from_slice(text.as_bytes());
        self.out.push(b'"');
        Ok(())
    }

    fn integer<I: itoa::Integer>(self, v: I) -> Result<(), Error> {
        self.quoted(itoa::Buffer::new().format(v))
    }

    fn float<F: zmij::Float>(self, v: F, finite: bool) -> Result<(), Error> {
        if !finite {
            return Err(Error("float key must be finite (got NaN or +/-inf)".into()));
        }
        self.quoted(zmij::Buffer::new().format_finite(v))
    }
}

impl ser::Serializer for MapKey<'_> {
    type Ok = ();
    type Error = Error;
    refuse!(key_must_be_a_string(); compounds);

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        append_str(self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        append_str(self.out, v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.quoted(if v { "true" } else { "false" })
    }
    integers!(integer);
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        append_str(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
}

/// A `RawValue`'s text, copied as it is (it is already JSON).
struct RawText<'o> {
    out: &'o mut Vec<u8>,
}

fn invalid_raw_value() -> Error {
    Error("invalid raw value".into())
}

impl ser::Serializer for RawText<'_> {
    type Ok = ();
    type Error = Error;
    refuse!(invalid_raw_value(); compounds);
    refuse!(invalid_raw_value();
        serialize_bool(bool), serialize_char(char),
        serialize_i8(i8), serialize_i16(i16), serialize_i32(i32), serialize_i64(i64),
        serialize_u8(u8), serialize_u16(u16), serialize_u32(u32), serialize_u64(u64),
        serialize_f32(f32), serialize_f64(f64));

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.out.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
    ) -> Result<(), Error> {
        Err(invalid_raw_value())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(invalid_raw_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    fn ours<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        append(&mut out, v).unwrap();
        out
    }

    #[test]
    fn escapes_as_serde_json_does() {
        for s in [
            "",
            "plain",
            "exactly8",
            "a\"b\\c",
            "\u{0}\u{1}\u{7}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}",
            "ünïcödé → ✓ 🎉 and a long clean run before the quote at the end\"",
            "\"\"\"\"\"\"\"\"\"",
            "12345678\n12345678",
        ] {
            assert_eq!(ours(s), serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn raw_values_are_copied_verbatim() {
        // Pins serde_json's token for RawValue: if it changes, this output changes.
        let raw = RawValue::from_string(r#"{"a": [1, 2.50, "x"]}"#.to_string()).unwrap();
        assert_eq!(ours(&raw), br#"{"a": [1, 2.50, "x"]}"#);
        let wrapped = json!({"k": 1});
        let mut m = BTreeMap::new();
        m.insert("schema", &*raw);
        assert_eq!(ours(&m), serde_json::to_vec(&m).unwrap());
        assert_eq!(ours(&wrapped), serde_json::to_vec(&wrapped).unwrap());
    }

    use serde_json::value::RawValue;

    #[derive(serde::Serialize)]
    enum E {
        Unit,
        New(u8),
        Tup(u8, String),
        Struct { a: Option<f64>, b: Vec<bool> },
    }

    #[derive(serde::Serialize)]
    struct S<'a> {
        s: &'a str,
        n: i64,
        f: f32,
        c: char,
        bytes: serde_bytes_like::Bytes<'a>,
        e: Vec<E>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
        t: (u8, i128, u128),
        keys: BTreeMap<i32, bool>,
        unit: (),
        nan: f64,
    }

    mod serde_bytes_like {
        pub struct Bytes<'a>(pub &'a [u8]);
        impl serde::Serialize for Bytes<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(self.0)
            }
        }
    }

    #[test]
    fn every_serde_shape_matches_serde_json() {
        let mut keys = BTreeMap::new();
        keys.insert(-3, true);
        keys.insert(7, false);
        let s = S {
            s: "tab\there",
            n: i64::MIN,
            f: 0.1,
            c: '"',
            bytes: serde_bytes_like::Bytes(&[0, 255]),
            e: vec![
                E::Unit,
                E::New(9),
                E::Tup(1, "x".into()),
                E::Struct {
                    a: Some(1e300),
                    b: vec![true, false],
                },
                E::Struct { a: None, b: vec![] },
            ],
            skipped: None,
            t: (255, i128::MIN, u128::MAX),
            keys,
            unit: (),
            nan: f64::NAN,
        };
        assert_eq!(
            String::from_utf8(ours(&s)).unwrap(),
            serde_json::to_string(&s).unwrap()
        );
    }

    #[test]
    fn refuses_keys_serde_json_refuses() {
        let mut m = BTreeMap::new();
        m.insert(vec![1u8], 1);
        assert!(append(&mut Vec::new(), &m).is_err());
        assert!(serde_json::to_vec(&m).is_err());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".*".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| Value::String(String::from_utf8_lossy(&b).into_owned())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((".*", inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_matches_serde_json(v in arb_value()) {
            prop_assert_eq!(ours(&v), serde_json::to_vec(&v).unwrap());
        }

        #[test]
        fn the_word_test_is_exact(w in any::<u64>(), at in 0usize..8, special in prop_oneof![0u8..0x20, Just(b'"'), Just(b'\\')]) {
            let escapes = |w: u64| w.to_le_bytes().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            prop_assert_eq!(escape_mask(w) != 0, escapes(w));
            let mut bytes = w.to_le_bytes();
            bytes[at] = special;
            prop_assert!(escape_mask(u64::from_le_bytes(bytes)) != 0);
        }

        #[test]
        fn any_string_matches_serde_json(s in "(.|[\\x00-\\x1f\"\\\\]){0,80}") {
            prop_assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap());
        }
    }
}
