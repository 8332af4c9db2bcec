//! What the two protobuf text-format readers (Triton's `config.pbtxt`, TF Serving's
//! `--model_config_file`) share: parsing against a compiled schema with errors that point at a
//! line, reading fields of the parsed message, and version policies, which both formats spell
//! the same way.

use miette::Diagnostic;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

use crate::types::config::VersionPolicy;

/// Decodes a descriptor set written by build.rs.
pub(crate) fn pool(encoded: &[u8]) -> DescriptorPool {
    // Built from the crate's own .proto files at compile time: failing here is a build bug,
    // which the unit tests catch, not something a user's input can cause.
    DescriptorPool::decode(encoded).expect("descriptor set compiled by build.rs")
}

/// The descriptor of `name` in `pool`.
pub(crate) fn message_descriptor(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
    pool.get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is not in the compiled schema"))
}

/// Parses `text` as a `desc` message. Unknown fields, bad values and syntax errors are errors
/// (as in Triton and TF Serving), with the line and column when the parser knows the place.
pub(crate) fn parse(desc: MessageDescriptor, text: &str) -> Result<DynamicMessage, String> {
    let colons = list_colons(text);
    let normalized = insert_colons(text, &colons);
    DynamicMessage::parse_text_format(desc, &normalized).map_err(|e| {
        let offset = e
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|l| l.offset());
        match offset {
            Some(offset) => {
                let (line, column) = position(text, original_offset(offset, &colons));
                format!("line {line}, column {column}: {e}")
            }
            None => e.to_string(),
        }
    })
}

/// Where a `:` is missing between a field name and a `[`: byte offsets just past the name.
///
/// The text format lets a message list drop the colon (`input [ { ... } ]`), and Triton's
/// configs nearly all do, but prost-reflect (0.16.5) requires it. Adding it changes no valid
/// file's meaning, as `name: [` is valid wherever `name [` is; it does let a scalar list
/// through without its colon (`dims [1]`), which protobuf's own parser would reject.
///
/// This is a scan of the tokens, not a parse: a name is an identifier that neither follows a
/// `:` or `-` (those are values: enum names, `inf`) nor stands inside a `[...]` (list elements,
/// extension and Any type names). Strings and `#` comments are skipped.
fn list_colons(text: &str) -> Vec<usize> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Prev {
        /// `:` or `-`: an identifier next is a value.
        ValueStart,
        Other,
    }
    let b = text.as_bytes();
    let mut colons = Vec::new();
    let mut open: Vec<u8> = Vec::new();
    let mut prev = Prev::Other;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'#' => {
                i = skip_comment(b, i);
                continue;
            }
            b'"' | b'\'' => {
                i += 1;
                while i < b.len() && b[i] != c && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                prev = Prev::Other;
                continue;
            }
            b'[' | b'{' | b'<' => open.push(c),
            b']' | b'}' | b'>' => {
                open.pop();
            }
            b':' | b'-' => {
                prev = Prev::ValueStart;
                i += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    // 1e-5, 1E+5: the sign belongs to the number.
                    i += 1;
                    if i + 1 < b.len()
                        && matches!(b[i - 1], b'e' | b'E')
                        && matches!(b[i], b'+' | b'-')
                        && b[start].is_ascii_digit()
                    {
                        i += 1;
                    }
                }
                let identifier = !b[start].is_ascii_digit() && b[start] != b'.';
                let is_name = identifier && prev != Prev::ValueStart && open.last() != Some(&b'[');
                if is_name && next_significant(b, i) == Some(b'[') {
                    colons.push(i);
                }
                prev = Prev::Other;
                continue;
            }
            _ => {}
        }
        prev = Prev::Other;
        i += 1;
    }
    colons
}

/// The offset just past the `#` comment starting at `i`.
fn skip_comment(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' {
        i += 1;
    }
    i
}

/// The first byte at or after `i` that is not whitespace or in a comment.
fn next_significant(b: &[u8], mut i: usize) -> Option<u8> {
    while i < b.len() {
        match b[i] {
            b'#' => i = skip_comment(b, i),
            c if c.is_ascii_whitespace() => i += 1,
            c => return Some(c),
        }
    }
    None
}

/// `text` with a `:` inserted at each of `colons` (ascending byte offsets).
fn insert_colons<'a>(text: &'a str, colons: &[usize]) -> std::borrow::Cow<'a, str> {
    if colons.is_empty() {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + colons.len());
    let mut from = 0;
    for &at in colons {
        out.push_str(&text[from..at]);
        out.push(':');
        from = at;
    }
    out.push_str(&text[from..]);
    out.into()
}

/// The offset in the original text of `offset` in the text with `colons` inserted.
fn original_offset(offset: usize, colons: &[usize]) -> usize {
    let before = colons
        .iter()
        .enumerate()
        .take_while(|&(k, &at)| at + k < offset)
        .count();
    offset - before
}

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// The value of field `name` when it is set; proto3 scalars at their default count as unset.
pub(crate) fn field<'a>(m: &'a DynamicMessage, name: &str) -> Option<&'a Value> {
    m.fields().find(|(f, _)| f.name() == name).map(|(_, v)| v)
}

/// A set message field.
pub(crate) fn message<'a>(m: &'a DynamicMessage, name: &str) -> Option<&'a DynamicMessage> {
    field(m, name).and_then(Value::as_message)
}

/// A set (non-empty) string field.
pub(crate) fn string<'a>(m: &'a DynamicMessage, name: &str) -> Option<&'a str> {
    field(m, name).and_then(Value::as_str)
}

/// The elements of a repeated field; empty when unset.
pub(crate) fn list<'a>(m: &'a DynamicMessage, name: &str) -> &'a [Value] {
    field(m, name).and_then(Value::as_list).unwrap_or(&[])
}

/// An integer field of any width as i128, 0 when unset, so callers check ranges in one place.
pub(crate) fn int(m: &DynamicMessage, name: &str) -> i128 {
    field(m, name).and_then(as_int).unwrap_or(0)
}

/// An integer value of any protobuf integer type.
pub(crate) fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::I32(n) => Some((*n).into()),
        Value::I64(n) => Some((*n).into()),
        Value::U32(n) => Some((*n).into()),
        Value::U64(n) => Some((*n).into()),
        Value::EnumNumber(n) => Some((*n).into()),
        Value::Bool(_)
        | Value::F32(_)
        | Value::F64(_)
        | Value::String(_)
        | Value::Bytes(_)
        | Value::Message(_)
        | Value::List(_)
        | Value::Map(_) => None,
    }
}

/// The name of a set enum field's value (`None` when unset, i.e. the enum's zero value).
pub(crate) fn enum_name(m: &DynamicMessage, name: &str) -> Option<String> {
    let (f, v) = m.fields().find(|(f, _)| f.name() == name)?;
    let number = v.as_enum_number()?;
    let value = f.kind().as_enum()?.get_value(number)?;
    Some(value.name().to_owned())
}

/// Adds a warning for each set field of `m` not in `used`; `path` names `m` in the file.
pub(crate) fn warn_unused(
    m: &DynamicMessage,
    path: &str,
    used: &[&str],
    warnings: &mut Vec<String>,
) {
    for (f, _) in m.fields() {
        if !used.contains(&f.name()) {
            warnings.push(format!("{}: not used by Quiver", join(path, f.name())));
        }
    }
}

/// `path.name`, or `name` at the top level.
pub(crate) fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// How a `latest` policy with `num_versions` unset (0) is read: the formats disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZeroLatest {
    /// An error: Triton would serve no version and fail the model.
    Error,
    /// One version: TF Serving serves at least one.
    One,
}

/// Reads a `{ latest { num_versions } | all {} | specific { versions } }` message (Triton's
/// ModelVersionPolicy, TF Serving's ServableVersionPolicy); `path` names it in errors.
pub(crate) fn version_policy(
    m: &DynamicMessage,
    path: &str,
    zero_latest: ZeroLatest,
) -> Result<VersionPolicy, String> {
    if let Some(latest) = message(m, "latest") {
        let n = int(latest, "num_versions");
        return match (n, zero_latest) {
            (0, ZeroLatest::Error) => Err(format!(
                "{}: expected at least 1 version, got 0",
                join(path, "latest.num_versions")
            )),
            (0, ZeroLatest::One) => Ok(VersionPolicy::Latest(1)),
            // uint32 in both schemas, so it fits a usize on any platform Quiver builds for.
            (n, _) => Ok(VersionPolicy::Latest(
                usize::try_from(n).unwrap_or(usize::MAX),
            )),
        };
    }
    if message(m, "all").is_some() {
        return Ok(VersionPolicy::All);
    }
    if let Some(specific) = message(m, "specific") {
        let path = join(path, "specific.versions");
        let versions = list(specific, "versions")
            .iter()
            .filter_map(as_int)
            .map(|v| {
                u64::try_from(v)
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| format!("{path}: versions are positive integers, got {v}"))
            })
            .collect::<Result<Vec<u64>, String>>()?;
        if versions.is_empty() {
            return Err(format!("{path}: no versions listed"));
        }
        return Ok(VersionPolicy::Specific(versions));
    }
    // An empty policy message selects nothing in particular: the default.
    Ok(VersionPolicy::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(text: &str) -> String {
        insert_colons(text, &list_colons(text)).into_owned()
    }

    #[test]
    fn message_lists_get_their_colon() {
        assert_eq!(normalized("input [ { } ]"), "input: [ { } ]");
        assert_eq!(normalized("input: [ { } ]"), "input: [ { } ]");
        assert_eq!(
            normalized("a [{b [{}]}] c\n# x [\n[{}]"),
            "a: [{b: [{}]}] c:\n# x [\n[{}]"
        );
        // Values and things in brackets are not field names.
        assert_eq!(normalized("k: KIND_CPU [x.y]: 1"), "k: KIND_CPU [x.y]: 1");
        assert_eq!(normalized("f: -inf [x]"), "f: -inf [x]");
        assert_eq!(normalized("a [x.y [z]]"), "a: [x.y [z]]");
        assert_eq!(normalized("s: \"q [\" t ['"), "s: \"q [\" t: ['");
        assert_eq!(normalized("s: 'it\\'s [' t ["), "s: 'it\\'s [' t: [");
        assert_eq!(normalized("n: 1e-5 m [ {} ]"), "n: 1e-5 m: [ {} ]");
    }

    #[test]
    fn error_offsets_map_back() {
        // "a: [ {} ] b: [ {} ]" is "a [ {} ] b [ {} ]" with colons at 1 and 10.
        assert_eq!(original_offset(0, &[1, 10]), 0);
        assert_eq!(original_offset(3, &[1, 10]), 2);
        assert_eq!(original_offset(13, &[1, 10]), 11);
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(position("ab\ncd", 0), (1, 1));
        assert_eq!(position("ab\ncd", 4), (2, 2));
        assert_eq!(position("ab", 99), (1, 3));
    }
}
