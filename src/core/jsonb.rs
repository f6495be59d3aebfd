//! PostgreSQL's jsonb binary format, written directly: what `jsonb_in` would make of a
//! JSON text, without the text and the parse. Pure Rust; numbers other than integers
//! need PostgreSQL's `numeric_in`, which the caller supplies as a [`NumericEncoder`].
//!
//! Layout (src/include/utils/jsonb.h): a container is a header word (count | kind),
//! one JEntry word per key and value (all keys first) or per element, then the keys'
//! and values' bytes in that order. A JEntry holds the type and the length of its data,
//! or every JB_OFFSET_STRIDE-th one the end offset instead. Numerics and containers
//! start 4-byte aligned, counted from the varlena's start; the padding belongs to the
//! entry's length. Object keys are sorted shorter first, then bytewise. A scalar at the
//! top is stored as a one-element array flagged as a raw scalar.

use serde_json::{Map, Value};

const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;
const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
pub const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
pub const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
pub const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
pub const JENTRY_ISNULL: u32 = 0x4000_0000;
const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
const JB_OFFSET_STRIDE: usize = 32;

/// Appends the image of PostgreSQL's `numeric_in(text)` (a varlena with a 4-byte
/// header) to the buffer. Only the shell can make one; the pure code places it.
pub type NumericEncoder<'e> = &'e mut dyn FnMut(&str, &mut Vec<u8>);

/// A 4-byte varlena header for a datum of `len` bytes (PostgreSQL's SET_VARSIZE_4B).
pub fn varlena_header(len: usize) -> [u8; 4] {
    let len = len as u32;
    if cfg!(target_endian = "little") {
        (len << 2).to_ne_bytes()
    } else {
        (len & 0x3FFF_FFFF).to_ne_bytes()
    }
}

/// Append `numeric_in`'s image of an integer text ("-1234": no sign but '-', no
/// leading zeros) and return true; false (nothing appended) for any other text.
/// The image is a short-format numeric: header word (short flag, sign, weight),
/// then base-10000 digits, most significant first, trailing zero digits dropped.
pub fn integer_numeric_image(s: &str, out: &mut Vec<u8>) -> bool {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d.as_bytes()),
        None => (false, s.as_bytes()),
    };
    if digits.is_empty()
        || !digits.iter().all(u8::is_ascii_digit)
        || (digits.len() > 1 && digits[0] == b'0')
        || (neg && digits == b"0")
    {
        return false;
    }
    let ngroups = digits.len().div_ceil(4);
    // a short numeric's weight is at most 63
    if ngroups > 64 {
        return false;
    }
    let first = digits.len() - (ngroups - 1) * 4;
    let mut groups: Vec<u16> = std::iter::once(&digits[..first])
        .chain(digits[first..].chunks(4))
        .map(|g| g.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')))
        .collect();
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let weight = if groups.is_empty() {
        0
    } else {
        ngroups as u16 - 1
    };
    let header: u16 = 0x8000 | if neg { 0x2000 } else { 0 } | weight;
    out.extend_from_slice(&varlena_header(4 + 2 + 2 * groups.len()));
    out.extend_from_slice(&header.to_ne_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_ne_bytes());
    }
    true
}

pub fn pad_to_int(b: &mut Vec<u8>) -> usize {
    let pad = (4 - b.len() % 4) % 4;
    b.resize(b.len() + pad, 0);
    pad
}

pub fn entry_len(n: usize) -> Option<u32> {
    u32::try_from(n).ok().filter(|&n| n <= JENTRY_OFFLENMASK)
}

/// Append a container of `n` children (an object when `keys` is given, in jsonb order,
/// else an array) whose values `value(buf, i)` appends; returns its JEntry.
fn put_container(
    b: &mut Vec<u8>,
    n: usize,
    keys: Option<&[&str]>,
    flags: u32,
    mut value: impl FnMut(&mut Vec<u8>, usize) -> Option<u32>,
) -> Option<u32> {
    let base = b.len();
    pad_to_int(b);
    let kind = if keys.is_some() {
        JB_FOBJECT
    } else {
        JB_FARRAY
    };
    b.extend_from_slice(&(entry_len(n)? | kind | flags).to_ne_bytes());
    let entries = b.len();
    let nkeys = keys.map_or(0, <[&str]>::len);
    b.resize(entries + 4 * (nkeys + n), 0);
    let mut total: u32 = 0;
    let mut set = |b: &mut Vec<u8>, i: usize, meta: u32| -> Option<()> {
        total = entry_len((total + (meta & JENTRY_OFFLENMASK)) as usize)?;
        let meta = if i.is_multiple_of(JB_OFFSET_STRIDE) {
            (meta & JENTRY_TYPEMASK) | total | JENTRY_HAS_OFF
        } else {
            meta
        };
        b[entries + 4 * i..entries + 4 * i + 4].copy_from_slice(&meta.to_ne_bytes());
        Some(())
    };
    for (i, k) in keys.unwrap_or_default().iter().enumerate() {
        b.extend_from_slice(k.as_bytes());
        set(b, i, entry_len(k.len())?)?;
    }
    for i in 0..n {
        let meta = value(b, i)?;
        set(b, nkeys + i, meta)?;
    }
    Some(JENTRY_ISCONTAINER | entry_len(b.len() - base)?)
}

/// Append an object with the given keys (already in jsonb order: see [`key_order`])
/// whose values `value(buf, i)` appends; returns the object's JEntry.
pub fn put_object(
    b: &mut Vec<u8>,
    keys: &[&str],
    value: impl FnMut(&mut Vec<u8>, usize) -> Option<u32>,
) -> Option<u32> {
    put_container(b, keys.len(), Some(keys), 0, value)
}

/// jsonb's order of object keys: shorter first, then bytewise.
pub fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// Append a JSON number's numeric image (padding first); returns its JEntry.
pub fn put_number(
    b: &mut Vec<u8>,
    text: &str,
    numeric: &mut dyn FnMut(&str, &mut Vec<u8>),
) -> Option<u32> {
    let pad = pad_to_int(b);
    let start = b.len();
    if !integer_numeric_image(text, b) {
        numeric(text, b);
    }
    Some(JENTRY_ISNUMERIC | entry_len(pad + b.len() - start)?)
}

/// Append a string's bytes; returns its JEntry. None for a string with a NUL, which
/// jsonb cannot hold (jsonb_in refuses "\u0000"; the caller lets it say so).
pub fn put_string(b: &mut Vec<u8>, s: &str) -> Option<u32> {
    if s.contains('\0') {
        return None;
    }
    b.extend_from_slice(s.as_bytes());
    entry_len(s.len())
}

fn put_value(
    b: &mut Vec<u8>,
    v: &Value,
    numeric: &mut dyn FnMut(&str, &mut Vec<u8>),
) -> Option<u32> {
    match v {
        Value::Null => Some(JENTRY_ISNULL),
        Value::Bool(true) => Some(JENTRY_ISBOOL_TRUE),
        Value::Bool(false) => Some(JENTRY_ISBOOL_FALSE),
        Value::Number(n) => put_number(b, n.as_str(), numeric),
        Value::String(s) => put_string(b, s),
        Value::Array(a) => put_container(b, a.len(), None, 0, |b, i| put_value(b, &a[i], numeric)),
        Value::Object(m) => put_map(b, m, numeric),
    }
}

/// Append the image of a JSON text, what `jsonb_in` makes of it (a duplicate key keeps
/// its last value in both); returns its JEntry. None when the text does not parse here
/// or a part is too long: the caller then leaves the text to `jsonb_in`, which says why.
pub fn put_json_text(
    b: &mut Vec<u8>,
    text: &str,
    numeric: &mut dyn FnMut(&str, &mut Vec<u8>),
) -> Option<u32> {
    let v: Value = serde_json::from_str(text).ok()?;
    put_value(b, &v, numeric)
}

fn put_map(
    b: &mut Vec<u8>,
    m: &Map<String, Value>,
    numeric: &mut dyn FnMut(&str, &mut Vec<u8>),
) -> Option<u32> {
    let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
    keys.sort_by(|a, b| key_order(a, b));
    put_container(b, keys.len(), Some(&keys), 0, |b, i| {
        put_value(b, &m[keys[i]], numeric)
    })
}

fn finish(mut b: Vec<u8>) -> Vec<u8> {
    let header = varlena_header(b.len());
    b[..4].copy_from_slice(&header);
    b
}

/// The bytes of the jsonb datum for the object `m` (see [`value_image`]).
pub fn object_image(m: &Map<String, Value>, numeric: NumericEncoder) -> Option<Vec<u8>> {
    let mut b = Vec::with_capacity(128);
    b.resize(4, 0);
    put_map(&mut b, m, numeric)?;
    Some(finish(b))
}

/// The bytes of the jsonb datum for `v`, with the 4-byte varlena header set. None when
/// a string or container is too long for jsonb (jsonb_in then reports it).
pub fn value_image(v: &Value, numeric: NumericEncoder) -> Option<Vec<u8>> {
    let mut b = Vec::with_capacity(128);
    b.resize(4, 0);
    match v {
        Value::Array(_) | Value::Object(_) => put_value(&mut b, v, numeric)?,
        scalar => put_container(&mut b, 1, None, JB_FSCALAR, |b, _| {
            put_value(b, scalar, numeric)
        })?,
    };
    Some(finish(b))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn unhex(h: &str) -> Vec<u8> {
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    fn no_numeric(text: &str, _: &mut Vec<u8>) {
        panic!("integers are encoded without numeric_in, not {text}");
    }

    /// Images PostgreSQL 15 stored for these numerics (pageinspect, 1-byte header
    /// dropped); ours carry a 4-byte header.
    #[test]
    fn integer_numeric_images_match_postgres() {
        for (text, payload) in [
            ("0", "0080"),
            ("100000000", "02800100"),
            ("9223372036854775807", "04809a032c0d70016515af16"),
            ("-10000", "01a00100"),
            ("12345", "018001002909"),
            ("-9223372036854775808", "04a09a032c0d70016515b016"),
            ("10000", "01800100"),
            ("9999", "00800f27"),
        ] {
            let mut out = Vec::new();
            assert!(integer_numeric_image(text, &mut out), "{text}");
            let want = unhex(payload);
            assert_eq!(out[4..], want[..], "{text}");
            assert_eq!(out[..4], varlena_header(4 + want.len()), "{text}");
        }
        for other in ["1.5", "-0", "007", "", "-", "1e5", "NaN", " 1", "+1"] {
            let mut out = Vec::new();
            assert!(!integer_numeric_image(other, &mut out), "{other}");
            assert!(out.is_empty());
        }
    }

    // Expected bytes: what PostgreSQL 15 stored for the same JSON text passed to
    // jsonb_in (pageinspect's heap_page_items), minus the header.
    #[test]
    fn value_image_matches_postgres() {
        let img = value_image(
            &json!({"abalance": {"old": 5, "new": -1234}}),
            &mut no_numeric,
        )
        .unwrap();
        assert_eq!(img[..4], varlena_header(img.len()));
        let want = unhex(
            "01000020080000802c0000506162616c616e63650200002003000080030000000a0000100800\
             00106e65776f6c6400002000000000a0d2042000000000800500",
        );
        assert_eq!(img[4..], want[..]);
    }

    #[test]
    fn a_nul_in_a_string_is_left_to_jsonb_in() {
        assert!(value_image(&json!({"a": "x\u{0}y"}), &mut no_numeric).is_none());
        assert!(value_image(&json!({"a": "xy"}), &mut no_numeric).is_some());
    }

    #[test]
    fn key_order_is_length_then_bytes() {
        let mut keys = vec!["name", "id", "ok", "zz", "a"];
        keys.sort_by(|a, b| key_order(a, b));
        assert_eq!(keys, ["a", "id", "ok", "zz", "name"]);
    }
}
