//! Pure part of change capture: turning a row's column texts into the change record's
//! `fields` JSON and the checksum of the row's canonical form. No Postgres here.

use crate::core::jsonb::{self, JENTRY_ISBOOL_FALSE, JENTRY_ISBOOL_TRUE, JENTRY_ISNULL};
use sha2::{Digest, Sha256};

/// How a column's text output becomes a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    /// integers, floats, numeric: a JSON number (NaN/Infinity become strings)
    Number,
    /// 't' / 'f' -> true / false
    Bool,
    /// json / jsonb: the text is JSON already
    Json,
    /// anything else: a JSON string
    Text,
}

/// A column's value as its PostgreSQL text output; None is SQL NULL.
pub type ColValue = Option<String>;

/// Column metadata of one table, in attribute order.
pub struct Cols<'a> {
    pub names: &'a [&'a str],
    pub kinds: &'a [ColKind],
    /// false for dropped columns
    pub live: &'a [bool],
    /// indexes of live columns sorted by name (canonical order)
    pub sorted: &'a [usize],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub entity_id: String,
    pub operation: &'static str,
    pub fields: String,
    /// `fields` as a ready jsonb datum image (see [`fields_jsonb`]), when the caller
    /// supplied a numeric encoder and every value has a scalar form
    pub fields_jsonb: Option<Vec<u8>>,
    pub checksum: Option<String>,
}

pub use crate::core::jsonb::NumericEncoder;

pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    // most values need no escaping: copy them whole
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Does the text follow JSON's number grammar? PostgreSQL prints numbers that way
/// except NaN and +-Infinity, which become strings.
fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Append the JSON form of one column value.
pub fn push_value(out: &mut String, kind: ColKind, v: &ColValue) {
    match v {
        None => out.push_str("null"),
        Some(s) => match kind {
            ColKind::Number if is_json_number(s) => out.push_str(s),
            ColKind::Bool if s == "t" => out.push_str("true"),
            ColKind::Bool if s == "f" => out.push_str("false"),
            ColKind::Json => out.push_str(s),
            _ => push_json_string(out, s),
        },
    }
}

/// sha256 (hex) of the row's canonical form: a compact JSON object with the live
/// columns in name order.
pub fn checksum(cols: &Cols, vals: &[ColValue]) -> String {
    let mut s = String::with_capacity(128);
    s.push('{');
    for (n, &i) in cols.sorted.iter().enumerate() {
        if n > 0 {
            s.push(',');
        }
        push_json_string(&mut s, cols.names[i]);
        s.push(':');
        push_value(&mut s, cols.kinds[i], &vals[i]);
    }
    s.push('}');
    to_hex(&Sha256::digest(s.as_bytes()))
}

/// Lowercase hex of bytes (what `hex::encode` gives, without a char per step).
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

fn fields_json(
    cols: &Cols,
    old: Option<&[ColValue]>,
    new: Option<&[ColValue]>,
    only: Option<&[bool]>,
) -> String {
    let mut s = String::with_capacity(256);
    s.push('{');
    let mut first = true;
    for i in 0..cols.names.len() {
        if !cols.live[i] || only.is_some_and(|o| !o[i]) {
            continue;
        }
        if !first {
            s.push(',');
        }
        first = false;
        push_json_string(&mut s, cols.names[i]);
        s.push_str(":{\"old\":");
        push_value(&mut s, cols.kinds[i], old.map_or(&None, |o| &o[i]));
        s.push_str(",\"new\":");
        push_value(&mut s, cols.kinds[i], new.map_or(&None, |n| &n[i]));
        s.push('}');
    }
    s.push('}');
    s
}

/// What a record's `fields` is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldsForm {
    /// the JSON text, and the jsonb image when the caller supplies a numeric encoder
    TextAndImage,
    /// the jsonb image alone when it can be made (`fields` then stays empty: the
    /// capture trigger writes the image, and prints it only on its rare SPI path);
    /// else the text
    ImageOrText,
}

/// One change record. `old` / `new`: the row's values before / after (None for an
/// insert / a delete); `only`: the columns that go into `fields` (None: every live
/// column); the checksum is of `new`, when there is one.
#[allow(clippy::too_many_arguments)]
pub fn record(
    cols: &Cols,
    entity_id: String,
    operation: &'static str,
    old: Option<&[ColValue]>,
    new: Option<&[ColValue]>,
    only: Option<&[bool]>,
    numeric: Option<NumericEncoder>,
    form: FieldsForm,
) -> ChangeRecord {
    let fields_jsonb = numeric.and_then(|n| fields_jsonb(cols, old, new, only, n));
    let fields = if form == FieldsForm::ImageOrText && fields_jsonb.is_some() {
        String::new()
    } else {
        fields_json(cols, old, new, only)
    };
    ChangeRecord {
        entity_id,
        operation,
        fields,
        fields_jsonb,
        checksum: new.map(|n| checksum(cols, n)),
    }
}

pub fn insert_record(
    cols: &Cols,
    entity_id: String,
    new: &[ColValue],
    numeric: Option<NumericEncoder>,
) -> ChangeRecord {
    record(
        cols,
        entity_id,
        "insert",
        None,
        Some(new),
        None,
        numeric,
        FieldsForm::TextAndImage,
    )
}

pub fn delete_record(
    cols: &Cols,
    entity_id: String,
    old: &[ColValue],
    numeric: Option<NumericEncoder>,
) -> ChangeRecord {
    record(
        cols,
        entity_id,
        "delete",
        Some(old),
        None,
        None,
        numeric,
        FieldsForm::TextAndImage,
    )
}

/// `old` is read only where `changed` is true.
pub fn update_record(
    cols: &Cols,
    entity_id: String,
    old: &[ColValue],
    new: &[ColValue],
    changed: &[bool],
    numeric: Option<NumericEncoder>,
) -> ChangeRecord {
    record(
        cols,
        entity_id,
        "update",
        Some(old),
        Some(new),
        Some(changed),
        numeric,
        FieldsForm::TextAndImage,
    )
}

/// Append one value's data; returns its JEntry (type and length). None when the value
/// has no scalar jsonb form here (JSON columns: their text must be parsed).
fn put_scalar(
    b: &mut Vec<u8>,
    kind: ColKind,
    v: &ColValue,
    numeric: &mut dyn FnMut(&str, &mut Vec<u8>),
) -> Option<u32> {
    let Some(s) = v else {
        return Some(JENTRY_ISNULL);
    };
    match kind {
        ColKind::Number if is_json_number(s) => jsonb::put_number(b, s, numeric),
        ColKind::Bool if s == "t" => Some(JENTRY_ISBOOL_TRUE),
        ColKind::Bool if s == "f" => Some(JENTRY_ISBOOL_FALSE),
        ColKind::Json => jsonb::put_json_text(b, s, numeric),
        _ => jsonb::put_string(b, s),
    }
}

/// The `fields` object as the bytes of a jsonb datum, exactly what `jsonb_in` makes of
/// [`fields_json`]'s text (varlena header included); a JSON-typed column's text is
/// parsed here. None when such a text does not parse here or a value is too long for
/// jsonb (jsonb_in then parses the whole text, and says what is wrong).
pub fn fields_jsonb(
    cols: &Cols,
    old: Option<&[ColValue]>,
    new: Option<&[ColValue]>,
    only: Option<&[bool]>,
    numeric: &mut dyn FnMut(&str, &mut Vec<u8>),
) -> Option<Vec<u8>> {
    let mut idx: Vec<usize> = (0..cols.names.len())
        .filter(|&i| cols.live[i] && only.is_none_or(|o| o[i]))
        .collect();
    idx.sort_by(|&a, &b| jsonb::key_order(cols.names[a], cols.names[b]));
    let keys: Vec<&str> = idx.iter().map(|&i| cols.names[i]).collect();
    let mut b = Vec::with_capacity(64 + 48 * idx.len());
    b.resize(4, 0);
    jsonb::put_object(&mut b, &keys, |b, k| {
        let i = idx[k];
        let kind = cols.kinds[i];
        // "new" sorts before "old"
        jsonb::put_object(b, &["new", "old"], |b, which| {
            let side = if which == 0 { new } else { old };
            put_scalar(b, kind, side.map_or(&None, |s| &s[i]), numeric)
        })
    })?;
    let header = jsonb::varlena_header(b.len());
    b[..4].copy_from_slice(&header);
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::jsonb::tests::unhex;
    use serde_json::{json, Value};

    fn v(s: &str) -> ColValue {
        Some(s.to_string())
    }

    fn with_cols<R>(f: impl FnOnce(&Cols) -> R) -> R {
        let names = ["id", "name", "score", "active", "meta", "gone"];
        let kinds = [
            ColKind::Number,
            ColKind::Text,
            ColKind::Number,
            ColKind::Bool,
            ColKind::Json,
            ColKind::Text,
        ];
        let live = [true, true, true, true, true, false];
        let sorted = [3, 0, 4, 1, 2];
        f(&Cols {
            names: &names,
            kinds: &kinds,
            live: &live,
            sorted: &sorted,
        })
    }

    #[test]
    fn insert_has_all_live_columns_typed() {
        with_cols(|c| {
            let row = [
                v("7"),
                v("Ann \"A\"\n"),
                v("1.50"),
                v("t"),
                v("{\"a\": [1, 2]}"),
                None,
            ];
            let r = insert_record(c, "7".into(), &row, None);
            let f: Value = serde_json::from_str(&r.fields).unwrap();
            assert_eq!(
                f,
                json!({"id": {"old": null, "new": 7}, "name": {"old": null, "new": "Ann \"A\"\n"},
                       "score": {"old": null, "new": serde_json::from_str::<Value>("1.50").unwrap()},
                       "active": {"old": null, "new": true},
                       "meta": {"old": null, "new": {"a": [1, 2]}}})
            );
            assert_eq!(r.operation, "insert");
            assert_eq!(r.checksum.as_ref().unwrap().len(), 64);
        });
    }

    #[test]
    fn update_has_only_changed_columns_and_nulls() {
        with_cols(|c| {
            let old = [v("7"), v("Ann"), None, v("t"), None, None];
            let new = [v("7"), None, v("2"), v("t"), None, None];
            let changed = [false, true, true, false, false, false];
            let r = update_record(c, "7".into(), &old, &new, &changed, None);
            let f: Value = serde_json::from_str(&r.fields).unwrap();
            assert_eq!(
                f,
                json!({"name": {"old": "Ann", "new": null}, "score": {"old": null, "new": 2}})
            );
        });
    }

    #[test]
    fn delete_has_old_values_and_no_checksum() {
        with_cols(|c| {
            let old = [v("7"), v("Ann"), None, v("f"), None, None];
            let r = delete_record(c, "7".into(), &old, None);
            let f: Value = serde_json::from_str(&r.fields).unwrap();
            assert_eq!(f["active"], json!({"old": false, "new": null}));
            assert!(r.checksum.is_none());
        });
    }

    #[test]
    fn non_json_numbers_become_strings() {
        for (text, expect) in [
            ("NaN", json!("NaN")),
            ("Infinity", json!("Infinity")),
            ("-Infinity", json!("-Infinity")),
            ("-0.5", json!(-0.5)),
            ("0", json!(0)),
            ("1e+30", json!(1e30)),
            ("123456789012", json!(123456789012i64)),
        ] {
            let mut s = String::new();
            push_value(&mut s, ColKind::Number, &v(text));
            let parsed: Value =
                serde_json::from_str(&s).unwrap_or_else(|e| panic!("{text}: {s}: {e}"));
            assert_eq!(parsed, expect, "{text}");
        }
    }

    #[test]
    fn checksum_is_canonical_and_content_sensitive() {
        with_cols(|c| {
            let a = [v("7"), v("Ann"), v("1"), v("t"), None, v("ignored")];
            let b = [
                v("7"),
                v("Ann"),
                v("1"),
                v("t"),
                None,
                v("dropped column differs"),
            ];
            let d = [v("7"), v("Anne"), v("1"), v("t"), None, None];
            assert_eq!(checksum(c, &a), checksum(c, &b));
            assert_ne!(checksum(c, &a), checksum(c, &d));
            // known value: sha256 of the canonical text
            let canon = r#"{"active":true,"id":7,"meta":null,"name":"Ann","score":1}"#;
            assert_eq!(
                checksum(c, &a),
                hex::encode(Sha256::digest(canon.as_bytes()))
            );
        });
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut s = String::new();
        push_json_string(&mut s, "a\u{1}b\\");
        assert_eq!(s, "\"a\\u0001b\\\\\"");
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, json!("a\u{1}b\\"));
    }

    /// numeric_in images of the numbers the golden tests use (4-byte varlena header,
    /// short numeric header, base-10000 digits)
    fn fake_numeric(text: &str, _: &mut Vec<u8>) {
        panic!("integers are encoded without numeric_in, not {text}");
    }

    // The expected bytes are what PostgreSQL 15 stored for the same JSON text passed
    // to jsonb_in (read back with pageinspect's heap_page_items), minus the header.
    #[test]
    fn jsonb_image_matches_postgres_for_a_numeric_update() {
        let names = ["abalance"];
        let kinds = [ColKind::Number];
        let cols = Cols {
            names: &names,
            kinds: &kinds,
            live: &[true],
            sorted: &[0],
        };
        let r = update_record(
            &cols,
            "1".into(),
            &[v("5")],
            &[v("-1234")],
            &[true],
            Some(&mut fake_numeric),
        );
        // '{"abalance": {"old": 5, "new": -1234}}'::jsonb
        let want = unhex(
            "01000020080000802c0000506162616c616e63650200002003000080030000000a0000100800\
             00106e65776f6c6400002000000000a0d2042000000000800500",
        );
        let img = r.fields_jsonb.expect("scalar values have an image");
        assert_eq!(img[..4], jsonb::varlena_header(img.len()));
        assert_eq!(img[4..], want[..]);
    }

    #[test]
    fn jsonb_image_sorts_keys_and_encodes_strings_bools_and_nulls() {
        let names = ["id", "name", "ok"];
        let kinds = [ColKind::Number, ColKind::Text, ColKind::Bool];
        let cols = Cols {
            names: &names,
            kinds: &kinds,
            live: &[true; 3],
            sorted: &[0, 1, 2],
        };
        let r = update_record(
            &cols,
            "7".into(),
            &[None, None, v("t")],
            &[v("7"), v("Ann \"A\""), v("f")],
            &[true; 3],
            Some(&mut fake_numeric),
        );
        // '{"name": {"old": null, "new": "Ann \"A\""}, "id": {"old": null, "new": 7},
        //   "ok": {"old": true, "new": false}}'::jsonb: keys shorter first
        let want = unhex(
            "03000020020000800200000004000000240000501a0000502300005069646f6b6e616d6502\
             00002003000080030000000a000010000000406e65776f6c6400002000000000800700020000\
             20030000800300000000000020000000306e65776f6c640000020000200300008003000000070000\
             00000000406e65776f6c64416e6e20224122",
        );
        assert_eq!(r.fields_jsonb.unwrap()[4..], want[..]);
    }

    #[test]
    fn image_or_text_leaves_the_text_out_only_when_there_is_an_image() {
        with_cols(|c| {
            let enc = |t: &str, b: &mut Vec<u8>| b.extend_from_slice(t.as_bytes());
            let old = [v("7"), v("Ann"), v("1"), v("t"), None, None];
            let new = [v("7"), v("Bo"), v("1"), v("t"), None, None];
            let changed = [false, true, false, false, false, false];
            let full = update_record(c, "7".into(), &old, &new, &changed, Some(&mut { enc }));
            let lean = record(
                c,
                "7".into(),
                "update",
                Some(&old),
                Some(&new),
                Some(&changed),
                Some(&mut { enc }),
                FieldsForm::ImageOrText,
            );
            assert!(lean.fields.is_empty());
            assert_eq!(lean.fields_jsonb, full.fields_jsonb);
            assert!(full.fields_jsonb.is_some());
            assert_eq!(
                (lean.operation, &lean.checksum, &lean.entity_id),
                (full.operation, &full.checksum, &full.entity_id)
            );
            // a JSON column's text that does not parse here has no image: the text is made
            let row = [
                v("7"),
                v("Ann"),
                None,
                v("t"),
                v("{\"a\": \"\\u0000\"}"),
                None,
            ];
            let r = record(
                c,
                "7".into(),
                "insert",
                None,
                Some(&row),
                None,
                Some(&mut { enc }),
                FieldsForm::ImageOrText,
            );
            assert!(r.fields_jsonb.is_none());
            assert_eq!(r.fields, insert_record(c, "7".into(), &row, None).fields);
        });
    }

    #[test]
    fn json_columns_get_an_image_unless_the_parser_must_speak() {
        with_cols(|c| {
            let image = |meta: Option<&str>| {
                let row = [
                    v("7"),
                    v("Ann"),
                    None,
                    v("t"),
                    meta.map(str::to_string),
                    None,
                ];
                insert_record(
                    c,
                    "7".into(),
                    &row,
                    Some(&mut |_: &str, _: &mut Vec<u8>| {}),
                )
                .fields_jsonb
            };
            // parsed here: nested values, whitespace, escapes, a duplicate key
            for text in [
                "{\"a\": 1}",
                " [1, \"x\", {\"b\": [true, null]}] ",
                "\"\\u00e9\\ud83d\\ude80\"",
                "{\"k\": 1, \"k\": 2}",
                "{}",
                "[]",
            ] {
                assert!(image(Some(text)).is_some(), "{text}");
            }
            // the last of a duplicate key's values is kept, as jsonb_in keeps it
            assert_eq!(
                image(Some("{\"k\": 1, \"k\": 2}")),
                image(Some("{\"k\": 2}"))
            );
            // left to jsonb_in, which reports or parses them itself
            for text in ["{\"a\": \"\\u0000\"}", "{\"a\": }", "\"\\ud800\""] {
                assert!(image(Some(text)).is_none(), "{text}");
            }
            // a NULL JSON value is a plain null
            assert!(image(None).is_some());
        });
    }
}
