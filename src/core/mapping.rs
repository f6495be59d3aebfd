//! Field mapping between a source table and a target table.
//!
//! A mapping is a list of entries, each taking one or more source columns to
//! one or more target columns through a value transform. Every transform has
//! an inverse (the "reverse" transform) used when writing target changes back
//! to the source. Rows are JSON objects (column name -> value) as produced by
//! PostgreSQL's `to_jsonb(row)`; a column missing from a row is treated as
//! null.
//!
//! This module depends only on `std` and `serde_json`.

use crate::core::error::Error;
use serde_json::{Map, Number, Value};
use std::collections::HashSet;

/// The names accepted for `transform` / `reverse_transform` (case-sensitive).
/// Omitting the transform (or giving null) means identity.
pub const TRANSFORMS: &[&str] = &[
    "uppercase",
    "lowercase",
    "trim",
    "toNumber",
    "toString",
    "split",
    "join",
];

/// Keys allowed in one mapping entry.
const ALLOWED_KEYS: &[&str] = &[
    "source",
    "target",
    "transform",
    "reverse_transform",
    "separator",
];

/// Separator used by split/join when none is given.
const DEFAULT_SEPARATOR: &str = " ";

/// Longest rendering of a value inside an error message.
const MAX_SHOWN_CHARS: usize = 80;

fn err<T>(msg: impl Into<String>) -> Result<T, Error> {
    Err(Error::invalid(msg.into()))
}

/// A value transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Identity,
    Uppercase,
    Lowercase,
    Trim,
    ToNumber,
    ToString,
    Split,
    Join,
}

impl Transform {
    /// Parses a transform name. The names in [`TRANSFORMS`] are accepted
    /// (case-sensitive), plus `"identity"` so that `parse(t.name()) == t`
    /// holds for every transform.
    pub fn parse(name: &str) -> Result<Transform, Error> {
        Ok(match name {
            "identity" => Transform::Identity,
            "uppercase" => Transform::Uppercase,
            "lowercase" => Transform::Lowercase,
            "trim" => Transform::Trim,
            "toNumber" => Transform::ToNumber,
            "toString" => Transform::ToString,
            "split" => Transform::Split,
            "join" => Transform::Join,
            _ => {
                return err(format!(
                    "unknown transform {}; allowed: {} (names are case-sensitive; \
                     omit the key or use null for no transform)",
                    show_str(name),
                    TRANSFORMS.join(", ")
                ))
            }
        })
    }

    /// The transform's name as written in a mapping.
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Identity => "identity",
            Transform::Uppercase => "uppercase",
            Transform::Lowercase => "lowercase",
            Transform::Trim => "trim",
            Transform::ToNumber => "toNumber",
            Transform::ToString => "toString",
            Transform::Split => "split",
            Transform::Join => "join",
        }
    }

    /// The reverse used when `reverse_transform` is not given.
    fn default_reverse(self) -> Transform {
        match self {
            Transform::Identity | Transform::Uppercase | Transform::Lowercase | Transform::Trim => {
                Transform::Identity
            }
            Transform::ToNumber => Transform::ToString,
            Transform::ToString => Transform::ToNumber,
            Transform::Split => Transform::Join,
            Transform::Join => Transform::Split,
        }
    }

    fn is_one_to_one(self) -> bool {
        !matches!(self, Transform::Split | Transform::Join)
    }

    /// Checks that the transform can read `inputs` columns and write
    /// `outputs` columns. Returns a description of the requirement on
    /// failure.
    fn check_arity(self, inputs: usize, outputs: usize) -> Result<(), &'static str> {
        let ok = match self {
            Transform::Split => inputs == 1 && outputs >= 2,
            Transform::Join => inputs >= 2 && outputs == 1,
            _ => inputs == 1 && outputs == 1,
        };
        if ok {
            Ok(())
        } else {
            Err(match self {
                Transform::Split => "exactly 1 input column and at least 2 output columns",
                Transform::Join => "at least 2 input columns and exactly 1 output column",
                _ => "exactly 1 input column and exactly 1 output column",
            })
        }
    }
}

/// One mapping entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMap {
    /// Source columns (1 unless the forward transform is join).
    pub source: Vec<String>,
    /// Target columns (1 unless the forward transform is split).
    pub target: Vec<String>,
    /// Applied source -> target.
    pub forward: Transform,
    /// Applied target -> source.
    pub reverse: Transform,
    /// Separator for split/join (default `" "`).
    pub separator: String,
}

/// A complete field mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub fields: Vec<FieldMap>,
}

impl Mapping {
    /// Parses and validates a user-supplied mapping (a JSON array of entries).
    pub fn parse(v: &Value) -> Result<Mapping, Error> {
        let entries = match v {
            Value::Array(a) if !a.is_empty() => a,
            Value::Array(_) => {
                return err(
                    "field_mapping is an empty array; give at least one entry like \
                     {\"source\": \"col\", \"target\": \"col\"}",
                )
            }
            other => {
                return err(format!(
                    "field_mapping must be a non-empty JSON array of entries, got {} {}; \
                     example: [{{\"source\": \"col\", \"target\": \"col\"}}]",
                    type_name(other),
                    show(other)
                ))
            }
        };

        let mut fields = Vec::with_capacity(entries.len());
        let mut seen_sources: Vec<(String, usize)> = Vec::new();
        let mut seen_targets: Vec<(String, usize)> = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let field = parse_entry(i, entry)?;
            check_unique(i, "source", &field.source, &mut seen_sources)?;
            check_unique(i, "target", &field.target, &mut seen_targets)?;
            fields.push(field);
        }
        Ok(Mapping { fields })
    }

    /// Maps each column to the same-named column, identity both ways.
    /// Duplicate names are kept once.
    pub fn identity(columns: &[String]) -> Mapping {
        let mut seen = HashSet::new();
        let fields = columns
            .iter()
            .filter(|c| seen.insert(c.as_str()))
            .map(|c| FieldMap {
                source: vec![c.clone()],
                target: vec![c.clone()],
                forward: Transform::Identity,
                reverse: Transform::Identity,
                separator: DEFAULT_SEPARATOR.to_string(),
            })
            .collect();
        Mapping { fields }
    }

    /// When every entry copies one column unchanged (no transform either way) to a
    /// column of the same type (`same_type(source, target)`), the (source, target)
    /// column pairs: then a value moves across as it is, and SQL can do it alone.
    pub fn column_copies(
        &self,
        same_type: impl Fn(&str, &str) -> bool,
    ) -> Option<Vec<(String, String)>> {
        self.fields
            .iter()
            .map(|f| match (f.source.as_slice(), f.target.as_slice()) {
                ([s], [t])
                    if f.forward == Transform::Identity
                        && f.reverse == Transform::Identity
                        && same_type(s, t) =>
                {
                    Some((s.clone(), t.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Distinct source columns, in mapping order.
    pub fn source_columns(&self) -> Vec<String> {
        distinct(self.fields.iter().flat_map(|f| f.source.iter()))
    }

    /// Distinct target columns, in mapping order.
    pub fn target_columns(&self) -> Vec<String> {
        distinct(self.fields.iter().flat_map(|f| f.target.iter()))
    }

    /// Applies each entry's forward transform; the result holds every target
    /// column.
    pub fn to_target(&self, source_row: &Map<String, Value>) -> Result<Map<String, Value>, Error> {
        let mut out = Map::new();
        for (i, f) in self.fields.iter().enumerate() {
            apply(
                i,
                f.forward,
                &f.separator,
                &f.source,
                &f.target,
                source_row,
                &mut out,
            )?;
        }
        Ok(out)
    }

    /// Applies each entry's reverse transform; the result holds every source
    /// column.
    pub fn to_source(&self, target_row: &Map<String, Value>) -> Result<Map<String, Value>, Error> {
        let mut out = Map::new();
        for (i, f) in self.fields.iter().enumerate() {
            apply(
                i,
                f.reverse,
                &f.separator,
                &f.target,
                &f.source,
                target_row,
                &mut out,
            )?;
        }
        Ok(out)
    }
}

/// How values reach a column of some type when written: as text through the type's
/// input function (what `json_to_recordset` does with a scalar column), or as a whole
/// JSON document to convert (arrays and composite types, which JSON spells differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnInput {
    /// a scalar type: JSON strings as their contents, other values as JSON text
    Text,
    /// json / jsonb: every value as JSON text (a string keeps its quotes)
    Json,
    /// arrays and composites
    Structured,
}

/// The input text a column of that kind takes for a JSON value (None = SQL NULL);
/// the same text `json_to_recordset` hands a scalar column's input function.
pub fn input_text(v: &Value, input: ColumnInput) -> Option<String> {
    match (v, input) {
        (Value::Null, _) => None,
        (Value::String(s), ColumnInput::Text) => Some(s.clone()),
        (v, _) => Some(v.to_string()),
    }
}

/// Equality used by the merge: numbers compare numerically (1 == 1.0),
/// strings/bools/null exactly, arrays and objects deeply with the same rule.
/// A string "1" is NOT equal to the number 1.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| values_equal(p, q)))
        }
        _ => false,
    }
}

/// Integer value of a number, if it is an integer (i64 or u64).
fn as_integer(n: &Number) -> Option<i128> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

fn numbers_equal(x: &Number, y: &Number) -> bool {
    // exact decimal comparison first: values with more digits than an f64 holds
    // (numeric columns) must not compare equal because they round alike
    let (xs, ys) = (x.as_str(), y.as_str());
    if xs == ys {
        return true;
    }
    // two integers in JSON's spelling (no leading zeros, no "-0"): equal only as text
    let integer = |s: &str| !s.contains(['.', 'e', 'E']) && s != "-0";
    if integer(xs) && integer(ys) {
        return false;
    }
    if let (Some(a), Some(b)) = (decimal(xs), decimal(ys)) {
        return a == b;
    }
    match (as_integer(x), as_integer(y)) {
        (Some(a), Some(b)) => a == b,
        (Some(i), None) => float_equals_integer(y.as_f64(), i),
        (None, Some(i)) => float_equals_integer(x.as_f64(), i),
        (None, None) => x.as_f64() == y.as_f64(),
    }
}

/// A JSON number's exact value as (negative, significant digits, exponent of the
/// last digit): "1.50", "15e-1" and "0.015E2" all give (false, "15", -1); zero is
/// (false, "", 0). None for text outside JSON's number grammar.
fn decimal(s: &str) -> Option<(bool, String, i64)> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let all = format!("{int}{frac}");
    let digits = all.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((false, String::new(), 0));
    }
    let exp = exp
        .checked_sub(frac.len() as i64)?
        .checked_add((digits.len() - trimmed.len()) as i64)?;
    Some((neg, trimmed.to_string(), exp))
}

/// Exact comparison of a float with an integer (no rounding of the integer).
fn float_equals_integer(f: Option<f64>, i: i128) -> bool {
    match f {
        // Every integer-valued f64 within +-2^127 converts exactly to i128.
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1.7e38 => f as i128 == i,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Parsing helpers
// ---------------------------------------------------------------------------

fn parse_entry(i: usize, entry: &Value) -> Result<FieldMap, Error> {
    let obj = match entry {
        Value::Object(o) => o,
        other => {
            return err(format!(
                "field_mapping[{i}]: each entry must be an object like \
                 {{\"source\": \"col\", \"target\": \"col\"}}, got {} {}",
                type_name(other),
                show(other)
            ))
        }
    };

    if let Some(key) = obj.keys().find(|k| !ALLOWED_KEYS.contains(&k.as_str())) {
        return err(format!(
            "field_mapping[{i}]: unknown key {}; allowed keys: {}",
            show_str(key),
            ALLOWED_KEYS.join(", ")
        ));
    }

    let source = parse_columns(i, "source", obj.get("source"))?;
    let target = parse_columns(i, "target", obj.get("target"))?;
    let forward =
        parse_transform(i, "transform", obj.get("transform"))?.unwrap_or(Transform::Identity);

    if forward.check_arity(source.len(), target.len()).is_err() {
        return err(format!(
            "field_mapping[{i}]: transform '{}' maps {}, but the entry has {} source \
             column(s) {} and {} target column(s) {}; {}",
            forward.name(),
            arity_words(forward),
            source.len(),
            show_list(&source),
            target.len(),
            show_list(&target),
            arity_hint(forward)
        ));
    }

    let reverse = match parse_transform(i, "reverse_transform", obj.get("reverse_transform"))? {
        Some(r) => check_reverse(i, forward, r, &source, &target)?,
        None => forward.default_reverse(),
    };

    let separator = match obj.get("separator") {
        None | Some(Value::Null) => DEFAULT_SEPARATOR.to_string(),
        Some(v) => {
            if forward.is_one_to_one() {
                return err(format!(
                    "field_mapping[{i}]: 'separator' {} is only used by the split and join \
                     transforms, not by '{}'; remove it",
                    show(v),
                    forward.name()
                ));
            }
            match v {
                Value::String(s) if !s.is_empty() => s.clone(),
                other => {
                    return err(format!(
                        "field_mapping[{i}]: 'separator' must be a non-empty string \
                         (default \" \"), got {}",
                        show(other)
                    ))
                }
            }
        }
    };

    Ok(FieldMap {
        source,
        target,
        forward,
        reverse,
        separator,
    })
}

fn arity_words(t: Transform) -> &'static str {
    match t {
        Transform::Split => "1 source column to 2 or more target columns",
        Transform::Join => "2 or more source columns to 1 target column",
        _ => "1 source column to 1 target column",
    }
}

fn arity_hint(t: Transform) -> &'static str {
    match t {
        Transform::Split => {
            "give one \"source\" string and a \"target\" array such as [\"firstname\", \"lastname\"]"
        }
        Transform::Join => {
            "give a \"source\" array such as [\"first\", \"last\"] and one \"target\" string"
        }
        _ => {
            "give one \"source\" and one \"target\" column (use split or join to map \
             one column to several or several to one)"
        }
    }
}

/// Validates an explicit `reverse_transform` against the entry's shape.
fn check_reverse(
    i: usize,
    forward: Transform,
    reverse: Transform,
    source: &[String],
    target: &[String],
) -> Result<Transform, Error> {
    // The reverse reads the target columns and writes the source columns.
    if reverse.check_arity(target.len(), source.len()).is_ok() {
        return Ok(reverse);
    }
    let allowed = match forward {
        Transform::Split => {
            "join (its targets are joined back into the one source column)".to_string()
        }
        Transform::Join => {
            "split (its one target is split back into the source columns)".to_string()
        }
        _ => format!(
            "a one-to-one transform: identity, {}",
            TRANSFORMS
                .iter()
                .filter(|n| Transform::parse(n).is_ok_and(Transform::is_one_to_one))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    err(format!(
        "field_mapping[{i}]: reverse_transform '{}' does not fit an entry whose transform \
         is '{}' ({} target column(s) back to {} source column(s)); the reverse must be {}",
        reverse.name(),
        forward.name(),
        target.len(),
        source.len(),
        allowed
    ))
}

fn parse_transform(i: usize, key: &str, v: Option<&Value>) -> Result<Option<Transform>, Error> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Transform::parse(s)
            .map(Some)
            .map_err(|e| Error::invalid(format!("field_mapping[{i}]: '{key}': {e}"))),
        Some(other) => err(format!(
            "field_mapping[{i}]: '{key}' must be a string naming one of: {} \
             (or null for identity), got {}",
            TRANSFORMS.join(", "),
            show(other)
        )),
    }
}

fn parse_columns(i: usize, key: &str, v: Option<&Value>) -> Result<Vec<String>, Error> {
    let expected = "a non-empty string or a non-empty array of non-empty strings";
    match v {
        None => err(format!(
            "field_mapping[{i}]: missing '{key}'; it must be {expected} naming column(s)"
        )),
        Some(Value::String(s)) if !s.is_empty() => Ok(vec![s.clone()]),
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .enumerate()
            .map(|(j, item)| match item {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => err(format!(
                    "field_mapping[{i}]: '{key}'[{j}] must be a non-empty column name \
                     string, got {}",
                    show(other)
                )),
            })
            .collect(),
        Some(other) => err(format!(
            "field_mapping[{i}]: '{key}' must be {expected}, got {}",
            show(other)
        )),
    }
}

/// Rejects a column used twice, within one entry or across entries.
fn check_unique(
    i: usize,
    key: &str,
    columns: &[String],
    seen: &mut Vec<(String, usize)>,
) -> Result<(), Error> {
    for c in columns {
        if let Some((_, first)) = seen.iter().find(|(s, _)| s == c) {
            let place = if *first == i {
                "earlier in the same entry".to_string()
            } else {
                format!("in field_mapping[{first}]")
            };
            let why = if key == "target" {
                "two entries would write the same target column"
            } else {
                "writing changes back to the source would be ambiguous"
            };
            return err(format!(
                "field_mapping[{i}]: {key} column {} is already used {place}; each {key} \
                 column may appear only once ({why})",
                show_str(c)
            ));
        }
        seen.push((c.clone(), i));
    }
    Ok(())
}

fn distinct<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut seen = HashSet::new();
    names.filter(|n| seen.insert(n.as_str())).cloned().collect()
}

// ---------------------------------------------------------------------------
// Value transforms
// ---------------------------------------------------------------------------

/// Applies `t` reading `inputs` from `row` and writing `outputs` into `out`.
fn apply(
    i: usize,
    t: Transform,
    sep: &str,
    inputs: &[String],
    outputs: &[String],
    row: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), Error> {
    if let Err(need) = t.check_arity(inputs.len(), outputs.len()) {
        return err(format!(
            "field_mapping[{i}]: transform '{}' needs {need}, got {} input(s) {} and {} \
             output(s) {}",
            t.name(),
            inputs.len(),
            show_list(inputs),
            outputs.len(),
            show_list(outputs)
        ));
    }
    let get = |c: &String| row.get(c).unwrap_or(&Value::Null);
    match t {
        Transform::Split => {
            let parts = split_value(get(&inputs[0]), sep, outputs.len());
            for (col, v) in outputs.iter().zip(parts) {
                out.insert(col.clone(), v);
            }
        }
        Transform::Join => {
            let values: Vec<&Value> = inputs.iter().map(get).collect();
            out.insert(outputs[0].clone(), join_values(&values, sep));
        }
        _ => {
            let v = apply_scalar(t, get(&inputs[0]), &inputs[0])?;
            out.insert(outputs[0].clone(), v);
        }
    }
    Ok(())
}

/// Applies a one-to-one transform to one value read from `column`.
fn apply_scalar(t: Transform, v: &Value, column: &str) -> Result<Value, Error> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let map_str = |f: fn(&str) -> String| match v {
        Value::String(s) => Value::String(f(s)),
        other => other.clone(),
    };
    Ok(match t {
        Transform::Uppercase => map_str(str::to_uppercase),
        Transform::Lowercase => map_str(str::to_lowercase),
        Transform::Trim => map_str(|s| s.trim().to_string()),
        Transform::ToNumber => to_number(v, column)?,
        Transform::ToString => Value::String(value_to_string(v)),
        // Identity, and split/join which never reach here (arity checked).
        _ => v.clone(),
    })
}

fn to_number(v: &Value, column: &str) -> Result<Value, Error> {
    match v {
        Value::Null => Ok(Value::Null),
        Value::Number(_) => Ok(v.clone()),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Ok(Value::Null);
            }
            if let Ok(n) = t.parse::<i64>() {
                return Ok(Value::Number(n.into()));
            }
            if let Ok(n) = t.parse::<u64>() {
                return Ok(Value::Number(n.into()));
            }
            // a decimal keeps all its digits
            if let Ok(n) = serde_json::from_str::<Number>(t) {
                return Ok(Value::Number(n));
            }
            match t.parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Ok(Value::Number(n)),
                None => err(format!(
                    "toNumber: {} in column {column} is not a number",
                    show(v)
                )),
            }
        }
        other => err(format!(
            "toNumber: {} in column {column} is not a number (a {} cannot be converted; \
             only numbers and numeric strings can)",
            show(other),
            type_name(other)
        )),
    }
}

/// String form of a value as `toString` produces it (null -> "null" is never
/// asked for: callers handle null first).
fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Splits one value into exactly `n` values.
fn split_value(v: &Value, sep: &str, n: usize) -> Vec<Value> {
    let mut out = vec![Value::Null; n];
    if v.is_null() {
        return out;
    }
    let s = value_to_string(v);
    let s = s.trim();
    if s.is_empty() {
        return out;
    }
    for (slot, part) in out.iter_mut().zip(s.splitn(n, sep)) {
        let part = part.trim();
        if !part.is_empty() {
            *slot = Value::String(part.to_string());
        }
    }
    out
}

/// Joins values: nulls and blank strings are skipped, the rest trimmed and
/// joined with `sep`; null when nothing remains.
fn join_values(values: &[&Value], sep: &str) -> Value {
    let parts: Vec<String> = values
        .iter()
        .filter(|v| !v.is_null())
        .map(|v| value_to_string(v).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        Value::Null
    } else {
        Value::String(parts.join(sep))
    }
}

// ---------------------------------------------------------------------------
// Error-message helpers
// ---------------------------------------------------------------------------

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((idx, _)) => format!("{}...", &s[..idx]),
        None => s.to_string(),
    }
}

/// A string shown in single quotes.
fn show_str(s: &str) -> String {
    format!("'{}'", truncate(s))
}

/// A value shown in an error message: strings in single quotes, anything
/// else as compact JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => show_str(s),
        other => truncate(&other.to_string()),
    }
}

fn show_list(cols: &[String]) -> String {
    let items: Vec<String> = cols.iter().map(|c| show_str(c)).collect();
    format!("[{}]", items.join(", "))
}

/// SQL that is true when a row's columns still hold a link's base: for each
/// (base field, column expression, column type `format_type`), the column equals the
/// base's value for that field, and the base has every field. What comparing
/// `jsonb_build_object(fields and columns) = base` tells for these fields, without
/// building an object per row: text columns are compared with the base's text byte for
/// byte (as jsonb compares strings), every other column as its jsonb image (numbers by
/// value, as jsonb compares them). Nothing is cast from the base, so no base can make
/// the statement fail.
pub fn base_guard_sql(cols: &[(&str, &str, &str)], base: &str) -> String {
    let lit = crate::pg::quote::quote_literal;
    let mut parts = vec![format!(
        "{base} ?& ARRAY[{}]::text[]",
        cols.iter().map(|c| lit(c.0)).collect::<Vec<_>>().join(", ")
    )];
    for (field, col, ty) in cols {
        let f = lit(field);
        // `character varying(20)` is text; `character varying(20)[]` is not
        let text = !ty.contains('[')
            && matches!(
                ty.split('(').next().unwrap_or(ty).trim(),
                "text" | "character varying"
            );
        parts.push(if text {
            format!("{col}::text IS NOT DISTINCT FROM ({base} ->> {f}) COLLATE \"C\"")
        } else {
            format!("coalesce(to_jsonb({col}), 'null'::jsonb) = {base} -> {f}")
        });
    }
    parts.join(" AND ")
}

#[cfg(test)]
mod input_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base_guards_compare_each_column_by_its_kind() {
        let g = base_guard_sql(
            &[
                ("name", "w.\"name\"", "character varying(20)"),
                ("n", "w.n", "numeric(10,2)"),
                ("tags", "w.tags", "character varying(20)[]"),
                ("it's", "w.x", "text"),
            ],
            "p.base",
        );
        let parts: Vec<&str> = g.split(" AND ").collect();
        assert_eq!(
            parts,
            [
                "p.base ?& ARRAY['name', 'n', 'tags', 'it''s']::text[]",
                "w.\"name\"::text IS NOT DISTINCT FROM (p.base ->> 'name') COLLATE \"C\"",
                "coalesce(to_jsonb(w.n), 'null'::jsonb) = p.base -> 'n'",
                "coalesce(to_jsonb(w.tags), 'null'::jsonb) = p.base -> 'tags'",
                "w.x::text IS NOT DISTINCT FROM (p.base ->> 'it''s') COLLATE \"C\"",
            ]
        );
    }

    #[test]
    fn numbers_compare_exactly_beyond_f64() {
        let n = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert!(values_equal(&n("1.50"), &n("1.5")));
        assert!(values_equal(&n("15e-1"), &n("0.015E2")));
        assert!(values_equal(&n("0"), &n("-0.000")));
        assert!(values_equal(&n("100"), &n("1e2")));
        assert!(!values_equal(
            &n("98765432109876.1234567891"),
            &n("98765432109876.1234567892")
        ));
        assert!(!values_equal(
            &n("9007199254740993"),
            &n("9007199254740992")
        ));
        assert!(!values_equal(&n("-1.5"), &n("1.5")));
        assert_eq!(decimal("0.0120"), Some((false, "12".into(), -3)));
        assert_eq!(decimal("1200"), Some((false, "12".into(), 2)));
        assert_eq!(decimal("abc"), None);
        assert_eq!(decimal("1E+2"), Some((false, "1".into(), 2)));
        // an exponent beyond i64 is no exact decimal (the float comparison decides)
        assert_eq!(
            decimal("1e9223372036854775807"),
            Some((false, "1".into(), i64::MAX))
        );
        assert_eq!(decimal("1.5e-9223372036854775808"), None);
        // the exact text survives a round trip through Value
        assert_eq!(
            n("98765432109876.1234567891").to_string(),
            "98765432109876.1234567891"
        );
    }

    #[test]
    fn input_text_is_what_a_column_input_function_gets() {
        let t = ColumnInput::Text;
        let j = ColumnInput::Json;
        assert_eq!(input_text(&json!(null), t), None);
        assert_eq!(input_text(&json!(null), j), None);
        assert_eq!(input_text(&json!("a \"b\""), t).as_deref(), Some("a \"b\""));
        assert_eq!(input_text(&json!("a"), j).as_deref(), Some("\"a\""));
        assert_eq!(input_text(&json!(-1.5), t).as_deref(), Some("-1.5"));
        assert_eq!(
            input_text(&json!(12345678901i64), t).as_deref(),
            Some("12345678901")
        );
        assert_eq!(input_text(&json!(true), t).as_deref(), Some("true"));
        assert_eq!(
            input_text(&json!({"a": [1, "x"]}), j).as_deref(),
            Some(r#"{"a":[1,"x"]}"#)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn parse(v: Value) -> Mapping {
        Mapping::parse(&v).expect("valid mapping")
    }

    fn parse_err(v: Value) -> String {
        Mapping::parse(&v).expect_err("invalid mapping").message
    }

    fn assert_mentions(msg: &str, needles: &[&str]) {
        for n in needles {
            assert!(msg.contains(n), "message {msg:?} does not mention {n:?}");
        }
    }

    fn one(transform: &str) -> Mapping {
        parse(json!([{"source": "a", "target": "b", "transform": transform}]))
    }

    fn name_split() -> Mapping {
        parse(
            json!([{"source": "full_name", "target": ["firstname", "lastname"],
                      "transform": "split"}]),
        )
    }

    #[test]
    fn parses_the_documented_example() {
        let m = parse(json!([
            {"source": "full_name", "target": ["firstname", "lastname"], "transform": "split"},
            {"source": "email", "target": "email", "transform": "lowercase"},
            {"source": ["first", "last"], "target": "name", "transform": "join", "separator": ", "},
            {"source": "score", "target": "score_txt", "transform": "toString",
             "reverse_transform": "toNumber"}
        ]));
        assert_eq!(m.fields.len(), 4);
        assert_eq!(m.fields[0].forward, Transform::Split);
        assert_eq!(m.fields[0].reverse, Transform::Join);
        assert_eq!(m.fields[0].separator, " ");
        assert_eq!(m.fields[1].reverse, Transform::Identity);
        assert_eq!(m.fields[2].source, vec!["first", "last"]);
        assert_eq!(m.fields[2].reverse, Transform::Split);
        assert_eq!(m.fields[2].separator, ", ");
        assert_eq!(m.fields[3].forward, Transform::ToString);
        assert_eq!(m.fields[3].reverse, Transform::ToNumber);
        assert_eq!(
            m.source_columns(),
            vec!["full_name", "email", "first", "last", "score"]
        );
        assert_eq!(
            m.target_columns(),
            vec!["firstname", "lastname", "email", "name", "score_txt"]
        );

        let t = m
            .to_target(&row(
                json!({"full_name": "Ada Lovelace", "email": "Ada@X.org",
                                   "first": "Grace", "last": "Hopper", "score": 42,
                                   "unmapped": true}),
            ))
            .unwrap();
        assert_eq!(
            Value::Object(t.clone()),
            json!({"firstname": "Ada", "lastname": "Lovelace", "email": "ada@x.org",
                   "name": "Grace, Hopper", "score_txt": "42"})
        );
        let s = m.to_source(&t).unwrap();
        assert_eq!(
            Value::Object(s),
            json!({"full_name": "Ada Lovelace", "email": "ada@x.org",
                   "first": "Grace", "last": "Hopper", "score": 42})
        );
    }

    #[test]
    fn transform_names_round_trip() {
        for name in TRANSFORMS {
            assert_eq!(Transform::parse(name).unwrap().name(), *name);
        }
        assert_eq!(Transform::parse("identity").unwrap(), Transform::Identity);
        assert_eq!(Transform::Identity.name(), "identity");
        let e = Transform::parse("tonumber").unwrap_err().message;
        assert_mentions(&e, &["'tonumber'", "toNumber", "case-sensitive"]);
    }

    #[test]
    fn uppercase_forward_and_lossy_reverse() {
        let m = one("uppercase");
        assert_eq!(m.fields[0].reverse, Transform::Identity);
        let t = m.to_target(&row(json!({"a": "Straße ok"}))).unwrap();
        assert_eq!(t["b"], json!("STRASSE OK"));
        let s = m.to_source(&row(json!({"b": "MiXeD"}))).unwrap();
        assert_eq!(s["a"], json!("MiXeD"));
    }

    #[test]
    fn lowercase_forward_and_lossy_reverse() {
        let m = one("lowercase");
        let t = m.to_target(&row(json!({"a": "Ada@Example.ORG"}))).unwrap();
        assert_eq!(t["b"], json!("ada@example.org"));
        let s = m.to_source(&row(json!({"b": "X@Y.z"}))).unwrap();
        assert_eq!(s["a"], json!("X@Y.z"));
    }

    #[test]
    fn trim_forward_and_lossy_reverse() {
        let m = one("trim");
        let t = m.to_target(&row(json!({"a": "  padded \t\n"}))).unwrap();
        assert_eq!(t["b"], json!("padded"));
        let s = m.to_source(&row(json!({"b": " kept "}))).unwrap();
        assert_eq!(s["a"], json!(" kept "));
    }

    #[test]
    fn string_transforms_pass_non_strings_through() {
        for name in ["uppercase", "lowercase", "trim"] {
            let m = one(name);
            for v in [
                json!(7),
                json!(1.5),
                json!(true),
                json!([" x "]),
                json!({"k": "v"}),
            ] {
                let t = m.to_target(&row(json!({ "a": v.clone() }))).unwrap();
                assert_eq!(t["b"], v, "{name}");
            }
        }
    }

    #[test]
    fn to_number_converts_strings() {
        let m = one("toNumber");
        assert_eq!(m.fields[0].reverse, Transform::ToString);
        let cases = [
            (json!("42"), json!(42)),
            (json!(" -7 "), json!(-7)),
            (json!("1.5"), json!(1.5)),
            // exact text kept: compared as numbers below
            (json!("1e3"), json!(1000.0)),
            (
                json!("12345678901234.5678901234"),
                serde_json::from_str("12345678901234.5678901234").unwrap(),
            ),
            (json!("18446744073709551615"), json!(u64::MAX)),
            (json!(""), Value::Null),
            (json!("   "), Value::Null),
            (json!(3), json!(3)),
            (json!(2.25), json!(2.25)),
            (Value::Null, Value::Null),
        ];
        for (input, expected) in cases {
            let t = m.to_target(&row(json!({ "a": input.clone() }))).unwrap();
            assert!(
                values_equal(&t["b"], &expected),
                "input {input}: {}",
                t["b"]
            );
            assert_eq!(t["b"].is_number(), expected.is_number(), "input {input}");
        }
        assert!(t_is_integer(&m, "42"));
        assert!(!t_is_integer(&m, "42.0"));
    }

    fn t_is_integer(m: &Mapping, s: &str) -> bool {
        let t = m.to_target(&row(json!({ "a": s }))).unwrap();
        t["b"].is_i64()
    }

    #[test]
    fn to_number_rejects_non_numbers() {
        let m = parse(json!([{"source": "s", "target": "score", "transform": "toNumber"}]));
        let e = m.to_target(&row(json!({"s": "abc"}))).unwrap_err();
        assert_eq!(e.message, "toNumber: 'abc' in column s is not a number");
        for bad in [json!("NaN"), json!("inf"), json!("1,5")] {
            assert!(m.to_target(&row(json!({ "s": bad }))).is_err(), "{bad}");
        }
        for bad in [json!(true), json!([1]), json!({"n": 1})] {
            let e = m
                .to_target(&row(json!({ "s": bad.clone() })))
                .unwrap_err()
                .message;
            assert_mentions(&e, &["toNumber", &bad.to_string(), "column s"]);
        }
        // Reverse direction names the target column being read.
        let m = parse(json!([{"source": "score", "target": "score_txt",
                              "transform": "toString"}]));
        let e = m
            .to_source(&row(json!({"score_txt": "n/a"})))
            .unwrap_err()
            .message;
        assert_eq!(e, "toNumber: 'n/a' in column score_txt is not a number");
    }

    #[test]
    fn to_string_converts_every_type() {
        let m = one("toString");
        let cases = [
            (json!("as is "), json!("as is ")),
            (json!(42), json!("42")),
            (json!(1.5), json!("1.5")),
            (json!(-3), json!("-3")),
            (json!(true), json!("true")),
            (json!(false), json!("false")),
            (json!({"k": [1, "x"]}), json!("{\"k\":[1,\"x\"]}")),
            (json!([1, 2]), json!("[1,2]")),
            (Value::Null, Value::Null),
        ];
        for (input, expected) in cases {
            let t = m.to_target(&row(json!({ "a": input.clone() }))).unwrap();
            assert!(
                values_equal(&t["b"], &expected),
                "input {input}: {}",
                t["b"]
            );
            assert_eq!(t["b"].is_number(), expected.is_number(), "input {input}");
        }
    }

    #[test]
    fn to_string_and_to_number_round_trip() {
        let m = parse(json!([{"source": "score", "target": "score_txt",
                              "transform": "toString", "reverse_transform": "toNumber"}]));
        for v in [json!(42), json!(-1), json!(1.5), json!(0)] {
            let t = m.to_target(&row(json!({ "score": v.clone() }))).unwrap();
            let s = m.to_source(&t).unwrap();
            assert!(values_equal(&s["score"], &v), "{v}");
        }
    }

    #[test]
    fn split_two_words() {
        let t = name_split()
            .to_target(&row(json!({"full_name": "Ada Lovelace"})))
            .unwrap();
        assert_eq!(
            Value::Object(t),
            json!({"firstname": "Ada", "lastname": "Lovelace"})
        );
    }

    #[test]
    fn split_multi_word_puts_remainder_in_last_target() {
        let m = name_split();
        let t = m
            .to_target(&row(json!({"full_name": "  Anne Marie Smith "})))
            .unwrap();
        assert_eq!(t["firstname"], json!("Anne"));
        assert_eq!(t["lastname"], json!("Marie Smith"));

        let m3 = parse(json!([{"source": "n", "target": ["a", "b", "c"],
                               "transform": "split"}]));
        let t = m3.to_target(&row(json!({"n": "w x y z"}))).unwrap();
        assert_eq!(Value::Object(t), json!({"a": "w", "b": "x", "c": "y z"}));
    }

    #[test]
    fn split_single_word_leaves_missing_targets_null() {
        let t = name_split()
            .to_target(&row(json!({"full_name": "Madonna"})))
            .unwrap();
        assert_eq!(
            Value::Object(t),
            json!({"firstname": "Madonna", "lastname": null})
        );
    }

    #[test]
    fn split_null_empty_and_non_string_values() {
        let m = name_split();
        for v in [Value::Null, json!(""), json!("   ")] {
            let t = m
                .to_target(&row(json!({ "full_name": v.clone() })))
                .unwrap();
            assert_eq!(
                Value::Object(t),
                json!({"firstname": null, "lastname": null}),
                "{v}"
            );
        }
        // Missing column is null.
        let t = m.to_target(&Map::new()).unwrap();
        assert_eq!(
            Value::Object(t),
            json!({"firstname": null, "lastname": null})
        );
        // Non-strings are converted as toString does.
        let m = parse(json!([{"source": "v", "target": ["int", "frac"],
                              "transform": "split", "separator": "."}]));
        let t = m.to_target(&row(json!({"v": 3.25}))).unwrap();
        assert_eq!(Value::Object(t), json!({"int": "3", "frac": "25"}));
    }

    #[test]
    fn join_skips_nulls_and_blanks() {
        let m = parse(
            json!([{"source": ["first", "middle", "last"], "target": "name",
                              "transform": "join"}]),
        );
        let cases = [
            (
                json!({"first": "Ada", "middle": null, "last": "Lovelace"}),
                json!("Ada Lovelace"),
            ),
            (
                json!({"first": " Ada ", "middle": "  ", "last": "Lovelace"}),
                json!("Ada Lovelace"),
            ),
            (
                json!({"first": "Agent", "middle": 0, "last": true}),
                json!("Agent 0 true"),
            ),
            (json!({"last": "Cher"}), json!("Cher")),
            (
                json!({"first": null, "middle": "", "last": " "}),
                Value::Null,
            ),
            (json!({}), Value::Null),
        ];
        for (input, expected) in cases {
            let t = m.to_target(&row(input.clone())).unwrap();
            assert_eq!(t["name"], expected, "input {input}");
        }
    }

    #[test]
    fn join_reverse_is_split() {
        let m = parse(json!([{"source": ["first", "last"], "target": "name",
                              "transform": "join"}]));
        let s = m
            .to_source(&row(json!({"name": "Anne Marie Smith"})))
            .unwrap();
        assert_eq!(
            Value::Object(s),
            json!({"first": "Anne", "last": "Marie Smith"})
        );
        let s = m.to_source(&row(json!({"name": null}))).unwrap();
        assert_eq!(Value::Object(s), json!({"first": null, "last": null}));
    }

    #[test]
    fn split_join_round_trips() {
        let m = name_split();
        for name in ["Ada Lovelace", "Anne Marie Smith", "Madonna", "A B C D E"] {
            let t = m.to_target(&row(json!({ "full_name": name }))).unwrap();
            let s = m.to_source(&t).unwrap();
            assert_eq!(s["full_name"], json!(name), "{name}");
        }
        let t = m.to_target(&row(json!({"full_name": null}))).unwrap();
        assert_eq!(m.to_source(&t).unwrap()["full_name"], Value::Null);
    }

    #[test]
    fn custom_separator() {
        let m = parse(json!([{"source": ["last", "first"], "target": "name",
                              "transform": "join", "separator": ", "}]));
        let t = m
            .to_target(&row(json!({"last": "Lovelace", "first": "Ada"})))
            .unwrap();
        assert_eq!(t["name"], json!("Lovelace, Ada"));
        let s = m
            .to_source(&row(json!({"name": "Smith, Anne, Marie"})))
            .unwrap();
        assert_eq!(
            Value::Object(s),
            json!({"last": "Smith", "first": "Anne, Marie"})
        );

        let m = parse(json!([{"source": "path", "target": ["dir", "file"],
                              "transform": "split", "separator": "/"}]));
        let t = m
            .to_target(&row(json!({"path": "etc/pg/pg.conf"})))
            .unwrap();
        assert_eq!(
            Value::Object(t.clone()),
            json!({"dir": "etc", "file": "pg/pg.conf"})
        );
        assert_eq!(m.to_source(&t).unwrap()["path"], json!("etc/pg/pg.conf"));
    }

    #[test]
    fn reverse_transform_override() {
        let m = parse(json!([
            {"source": "code", "target": "code_lc", "transform": "lowercase",
             "reverse_transform": "uppercase"},
            {"source": "n", "target": "n_txt", "transform": "toString",
             "reverse_transform": "identity"},
            {"source": "p", "target": "q", "transform": "trim", "reverse_transform": null},
            {"source": "full", "target": ["f", "l"], "transform": "split",
             "reverse_transform": "join"}
        ]));
        assert_eq!(m.fields[0].reverse, Transform::Uppercase);
        assert_eq!(m.fields[1].reverse, Transform::Identity);
        assert_eq!(m.fields[2].reverse, Transform::Identity);
        assert_eq!(m.fields[3].reverse, Transform::Join);
        let s = m
            .to_source(&row(json!({"code_lc": "abc", "n_txt": "7", "q": " x ",
                                   "f": "A", "l": "B"})))
            .unwrap();
        assert_eq!(
            Value::Object(s),
            json!({"code": "ABC", "n": "7", "p": " x ", "full": "A B"})
        );
    }

    #[test]
    fn reverse_transform_must_fit_the_entry() {
        let e = parse_err(json!([{"source": "full", "target": ["f", "l"],
                                  "transform": "split", "reverse_transform": "toString"}]));
        assert_mentions(&e, &["field_mapping[0]", "'toString'", "must be join"]);

        let e = parse_err(json!([
            {"source": "x", "target": "y"},
            {"source": ["a", "b"], "target": "ab", "transform": "join",
             "reverse_transform": "identity"}
        ]));
        assert_mentions(&e, &["field_mapping[1]", "'identity'", "must be split"]);

        let e = parse_err(
            json!([{"source": "a", "target": "b", "transform": "uppercase",
                                  "reverse_transform": "split"}]),
        );
        assert_mentions(
            &e,
            &[
                "field_mapping[0]",
                "'split'",
                "one-to-one",
                "toNumber",
                "lowercase",
            ],
        );

        let e = parse_err(json!([{"source": "a", "target": "b",
                                  "reverse_transform": "reverse"}]));
        assert_mentions(
            &e,
            &[
                "field_mapping[0]",
                "reverse_transform",
                "'reverse'",
                "uppercase",
            ],
        );
    }

    #[test]
    fn null_in_null_out_for_every_transform() {
        for name in [
            "identity",
            "uppercase",
            "lowercase",
            "trim",
            "toNumber",
            "toString",
        ] {
            let m = parse(json!([{"source": "a", "target": "b", "transform": name,
                                  "reverse_transform": name}]));
            assert_eq!(
                m.to_target(&row(json!({"a": null}))).unwrap()["b"],
                Value::Null
            );
            assert_eq!(m.to_target(&Map::new()).unwrap()["b"], Value::Null);
            assert_eq!(m.to_source(&Map::new()).unwrap()["a"], Value::Null);
        }
    }

    #[test]
    fn values_equal_rules() {
        assert!(values_equal(&json!(1), &json!(1.0)));
        assert!(values_equal(&json!(1.0), &json!(1)));
        assert!(values_equal(&json!(-0.0), &json!(0)));
        assert!(values_equal(&json!(1.5), &json!(1.5)));
        assert!(!values_equal(&json!(1), &json!(1.5)));
        assert!(!values_equal(&json!("1"), &json!(1)));
        assert!(!values_equal(&json!(1), &json!(true)));
        assert!(!values_equal(&Value::Null, &json!("")));
        assert!(values_equal(&Value::Null, &Value::Null));
        assert!(values_equal(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!values_equal(&json!(i64::MAX), &json!(i64::MAX as f64)));
        assert!(!values_equal(&json!(u64::MAX), &json!(-1)));
        assert!(values_equal(
            &json!(9007199254740992u64),
            &json!(9007199254740992.0)
        ));
        assert!(values_equal(&json!("abc"), &json!("abc")));
        assert!(!values_equal(&json!("abc"), &json!("ABC")));
        assert!(values_equal(
            &json!({"a": [1, {"b": 2.0}], "c": null}),
            &json!({"c": null, "a": [1.0, {"b": 2}]})
        ));
        assert!(!values_equal(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!values_equal(&json!([1, 2]), &json!([2, 1])));
        assert!(!values_equal(&json!([1]), &json!([1, 1])));
    }

    #[test]
    fn column_copies_only_for_untransformed_same_type_columns() {
        let any = |_: &str, _: &str| true;
        let m = parse(json!([
            {"source": "email", "target": "mail"},
            {"source": "n", "target": "n"}
        ]));
        assert_eq!(
            m.column_copies(any),
            Some(vec![
                ("email".into(), "mail".into()),
                ("n".into(), "n".into())
            ])
        );
        // a type differs: values would be converted
        assert_eq!(m.column_copies(|s, _| s != "n"), None);
        for transformed in [
            json!([{"source": "email", "target": "mail", "transform": "lowercase"}]),
            json!([{"source": "email", "target": "mail", "reverse_transform": "trim"}]),
            json!([{"source": "full", "target": ["a", "b"], "transform": "split"}]),
            json!([{"source": ["a", "b"], "target": "full", "transform": "join"}]),
            json!([{"source": "n", "target": "n", "transform": "toNumber"}]),
        ] {
            assert_eq!(
                parse(transformed.clone()).column_copies(any),
                None,
                "{transformed}"
            );
        }
        let cols: Vec<String> = vec!["id".into(), "name".into()];
        assert_eq!(
            Mapping::identity(&cols).column_copies(any).map(|v| v.len()),
            Some(2)
        );
    }

    #[test]
    fn identity_mapping() {
        let cols: Vec<String> = ["id", "name", "id"].iter().map(|s| s.to_string()).collect();
        let m = Mapping::identity(&cols);
        assert_eq!(m.fields.len(), 2);
        assert_eq!(m.source_columns(), vec!["id", "name"]);
        assert_eq!(m.target_columns(), vec!["id", "name"]);
        assert!(m
            .fields
            .iter()
            .all(|f| f.forward == Transform::Identity && f.reverse == Transform::Identity));
        let r = row(json!({"id": 1, "name": {"x": [1, 2]}, "extra": 3}));
        let t = m.to_target(&r).unwrap();
        assert_eq!(
            Value::Object(t.clone()),
            json!({"id": 1, "name": {"x": [1, 2]}})
        );
        assert_eq!(Value::Object(m.to_source(&t).unwrap()), Value::Object(t));
        let t = m.to_target(&row(json!({"id": 2}))).unwrap();
        assert_eq!(Value::Object(t), json!({"id": 2, "name": null}));
    }

    #[test]
    fn top_level_must_be_a_non_empty_array() {
        let e = parse_err(json!({"source": "a", "target": "b"}));
        assert_mentions(&e, &["field_mapping", "non-empty JSON array", "object"]);
        let e = parse_err(json!("a"));
        assert_mentions(&e, &["field_mapping", "'a'"]);
        let e = parse_err(json!([]));
        assert_mentions(&e, &["field_mapping", "empty array"]);
    }

    #[test]
    fn entries_must_be_objects_with_known_keys() {
        let e = parse_err(json!([{"source": "a", "target": "b"}, "c"]));
        assert_mentions(&e, &["field_mapping[1]", "object", "'c'"]);
        let e = parse_err(json!([{"source": "a", "target": "b", "tranform": "trim"}]));
        assert_mentions(
            &e,
            &[
                "field_mapping[0]",
                "unknown key 'tranform'",
                "reverse_transform",
            ],
        );
    }

    #[test]
    fn source_and_target_shapes_are_validated() {
        let cases = [
            (json!({"target": "b"}), vec!["missing 'source'"]),
            (json!({"source": "a"}), vec!["missing 'target'"]),
            (json!({"source": "", "target": "b"}), vec!["'source'", "''"]),
            (json!({"source": "a", "target": []}), vec!["'target'", "[]"]),
            (
                json!({"source": 5, "target": "b"}),
                vec!["'source'", "got 5"],
            ),
            (
                json!({"source": null, "target": "b"}),
                vec!["'source'", "got null"],
            ),
            (
                json!({"source": ["a", ""], "target": "b", "transform": "join"}),
                vec!["'source'[1]", "''"],
            ),
            (
                json!({"source": "a", "target": ["x", 3], "transform": "split"}),
                vec!["'target'[1]", "got 3"],
            ),
        ];
        for (entry, needles) in cases {
            let e = parse_err(json!([{"source": "ok", "target": "ok"}, entry]));
            let mut all = vec!["field_mapping[1]", "non-empty"];
            all.extend(needles);
            assert_mentions(&e, &all);
        }
    }

    #[test]
    fn unknown_or_malformed_transform() {
        let e = parse_err(json!([{"source": "a", "target": "b", "transform": "upper"}]));
        assert_mentions(&e, &["field_mapping[0]", "'upper'"]);
        for name in TRANSFORMS {
            assert!(e.contains(name), "{e} lacks {name}");
        }
        let e = parse_err(json!([{"source": "a", "target": "b", "transform": "ToNumber"}]));
        assert_mentions(&e, &["'ToNumber'", "toNumber"]);
        let e = parse_err(json!([{"source": "a", "target": "b", "transform": 1}]));
        assert_mentions(
            &e,
            &["field_mapping[0]", "'transform'", "got 1", "uppercase"],
        );
        // Missing and null both mean identity.
        let m = parse(json!([{"source": "a", "target": "b", "transform": null},
                             {"source": "c", "target": "d"}]));
        assert!(m.fields.iter().all(|f| f.forward == Transform::Identity));
    }

    #[test]
    fn arity_is_validated() {
        let e = parse_err(json!([{"source": "full", "target": "name", "transform": "split"}]));
        assert_mentions(
            &e,
            &["field_mapping[0]", "'split'", "2 or more target", "'name'"],
        );
        let e = parse_err(json!([{"source": ["a", "b"], "target": ["c", "d"],
                                  "transform": "split"}]));
        assert_mentions(&e, &["field_mapping[0]", "'split'", "['a', 'b']"]);
        let e = parse_err(json!([{"source": "a", "target": "b"},
                                 {"source": ["x"], "target": "y", "transform": "join"}]));
        assert_mentions(
            &e,
            &["field_mapping[1]", "'join'", "2 or more source", "['x']"],
        );
        let e = parse_err(json!([{"source": ["a", "b"], "target": ["c", "d"],
                                  "transform": "join"}]));
        assert_mentions(&e, &["field_mapping[0]", "'join'", "['c', 'd']"]);
        let e = parse_err(json!([{"source": ["a", "b"], "target": "c"}]));
        assert_mentions(
            &e,
            &[
                "field_mapping[0]",
                "'identity'",
                "['a', 'b']",
                "split or join",
            ],
        );
        let e = parse_err(json!([{"source": "a", "target": ["b", "c"],
                                  "transform": "uppercase"}]));
        assert_mentions(&e, &["field_mapping[0]", "'uppercase'", "['b', 'c']"]);
        // Single-element arrays are fine for 1:1 transforms.
        let m = parse(json!([{"source": ["a"], "target": ["b"], "transform": "trim"}]));
        assert_eq!(m.fields[0].source, vec!["a"]);
    }

    #[test]
    fn separator_is_validated() {
        let e = parse_err(json!([{"source": "a", "target": "b", "transform": "trim",
                                  "separator": ","}]));
        assert_mentions(&e, &["field_mapping[0]", "','", "split and join", "'trim'"]);
        let e = parse_err(json!([{"source": "a", "target": "b", "separator": "-"}]));
        assert_mentions(&e, &["field_mapping[0]", "'-'", "'identity'"]);
        let e = parse_err(
            json!([{"source": "a", "target": ["b", "c"], "transform": "split",
                                  "separator": ""}]),
        );
        assert_mentions(&e, &["field_mapping[0]", "non-empty string", "''"]);
        let e = parse_err(
            json!([{"source": ["a", "b"], "target": "c", "transform": "join",
                                  "separator": 1}]),
        );
        assert_mentions(&e, &["field_mapping[0]", "'separator'", "got 1"]);
        let m = parse(
            json!([{"source": ["a", "b"], "target": "c", "transform": "join",
                              "separator": null}]),
        );
        assert_eq!(m.fields[0].separator, " ");
    }

    #[test]
    fn duplicate_columns_are_rejected() {
        let e = parse_err(json!([
            {"source": "a", "target": "x"},
            {"source": "b", "target": "y"},
            {"source": "c", "target": "x"}
        ]));
        assert_mentions(
            &e,
            &["field_mapping[2]", "target column 'x'", "field_mapping[0]"],
        );
        let e = parse_err(json!([
            {"source": "a", "target": "x"},
            {"source": ["b", "a"], "target": "y", "transform": "join"}
        ]));
        assert_mentions(
            &e,
            &[
                "field_mapping[1]",
                "source column 'a'",
                "field_mapping[0]",
                "ambiguous",
            ],
        );
        let e = parse_err(json!([
            {"source": "full", "target": ["n", "n"], "transform": "split"}
        ]));
        assert_mentions(&e, &["field_mapping[0]", "target column 'n'", "same entry"]);
        // A column may be a source in one entry and a target in another.
        parse(json!([{"source": "a", "target": "b"}, {"source": "b", "target": "a"}]));
    }

    #[test]
    fn hand_built_field_with_bad_arity_errors_instead_of_panicking() {
        let m = Mapping {
            fields: vec![FieldMap {
                source: vec!["a".into(), "b".into()],
                target: vec!["c".into()],
                forward: Transform::Split,
                reverse: Transform::Join,
                separator: " ".into(),
            }],
        };
        let e = m.to_target(&Map::new()).unwrap_err().message;
        assert_mentions(&e, &["field_mapping[0]", "'split'"]);
        let e = m.to_source(&Map::new()).unwrap_err().message;
        assert_mentions(&e, &["field_mapping[0]", "'join'"]);
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let long = "x".repeat(500);
        let e = one("toNumber")
            .to_target(&row(json!({ "a": long })))
            .unwrap_err()
            .message;
        assert!(e.len() < 200, "{e}");
        assert!(e.contains("..."));
    }
}
