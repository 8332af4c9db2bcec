//! A pull reader over a JSON document, for decoding tensors straight into typed buffers.
//!
//! Written by hand because no well-kept crate does all three things the wire formats need:
//! TF Serving accepts the non-standard tokens `NaN`, `Infinity` and `-Infinity` (serde_json
//! rejects them); numbers must be parsed straight into the model's element type without an
//! intermediate value tree; and nesting depth must be bounded without recursion in the parser
//! itself. Everything outside tensor data is still decoded with serde_json.
//!
//! Over 600 lines only with its unit tests (the last 80 lines), which stay beside the grammar
//! they check.

use std::borrow::Cow;

/// Nesting deeper than this is rejected. Tensors need one level per dimension plus a few for
/// the envelope; this keeps the decoders' recursion far from the stack's limit.
pub const MAX_DEPTH: usize = 64;

/// What the next value in the document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// `{`
    Object,
    /// `[`
    Array,
    /// `"`
    String,
    /// A number, including `NaN` and `±Infinity`.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
}

impl Next {
    /// A word for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Next::Object => "an object",
            Next::Array => "a list",
            Next::String => "a string",
            Next::Number => "a number",
            Next::Bool => "a boolean",
            Next::Null => "null",
        }
    }
}

/// The non-finite values TF Serving accepts as bare words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `NaN`
    NaN,
    /// `Infinity`
    Infinity,
    /// `-Infinity`
    NegInfinity,
}

/// A number token as read: its text and, for finite numbers, its value as
/// `(-1)^negative · mantissa · 10^exponent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NumberToken<'a> {
    /// The token's text.
    pub text: &'a str,
    /// `NaN` or an infinity, instead of digits.
    pub special: Option<Special>,
    /// A leading `-`.
    pub negative: bool,
    /// The significant digits, as many as fit a `u64`.
    pub mantissa: u64,
    /// Power of ten applied to `mantissa`.
    pub exponent: i64,
    /// Non-zero digits were dropped: the value is not exactly the parts.
    pub truncated: bool,
    /// No fraction and no exponent were written.
    pub integer: bool,
}

/// `mantissa · 10 + digit`, unless the mantissa is already `full` or this overflows it.
#[inline]
fn push_digit(mantissa: u64, digit: u8, full: bool) -> Option<u64> {
    if full {
        return None;
    }
    mantissa
        .checked_mul(10)?
        .checked_add(u64::from(digit - b'0'))
}

/// A syntax error, with the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Byte offset in the body.
    pub offset: usize,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "malformed JSON at byte {}: {}",
            self.offset, self.message
        )
    }
}

/// Pull reader over a complete JSON document held in memory. Cheap to clone, for look-ahead.
#[derive(Clone)]
pub struct JsonReader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

type Result<T> = std::result::Result<T, SyntaxError>;

impl<'a> JsonReader<'a> {
    /// A reader over `body`, which must be UTF-8.
    pub fn new(body: &'a [u8]) -> Result<Self> {
        let text = std::str::from_utf8(body).map_err(|e| SyntaxError {
            message: "the body is not valid UTF-8".into(),
            offset: e.valid_up_to(),
        })?;
        Ok(Self {
            text,
            bytes: body,
            pos: 0,
            depth: 0,
        })
    }

    /// An error at the current position.
    pub fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            offset: self.pos,
        }
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Classifies the next value without consuming it.
    #[inline]
    pub fn peek(&mut self) -> Result<Next> {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            Some(b'{') => Ok(Next::Object),
            Some(b'[') => Ok(Next::Array),
            Some(b'"') => Ok(Next::String),
            Some(b'-' | b'0'..=b'9' | b'N' | b'I') => Ok(Next::Number),
            Some(b't' | b'f') => Ok(Next::Bool),
            Some(b'n') => Ok(Next::Null),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    #[inline]
    fn expect_byte(&mut self, b: u8, what: &str) -> Result<()> {
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected {what}")))
        }
    }

    #[inline]
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Consumes `[`.
    #[inline]
    pub fn begin_array(&mut self) -> Result<()> {
        self.expect_byte(b'[', "'['")?;
        self.enter()
    }

    /// Moves to the next element of the current array: `true` when there is one to read,
    /// `false` after consuming the closing `]`. `first` must start `true` for each array.
    #[inline]
    pub fn next_element(&mut self, first: &mut bool) -> Result<bool> {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            Some(b',') if !*first => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) if *first => {
                *first = false;
                Ok(true)
            }
            _ => Err(self.error("expected ',' or ']'")),
        }
    }

    /// Inside an array, after a value: when a `,` and then a number follow, consumes the `,`
    /// and returns `true`; otherwise consumes nothing. Lets callers read runs of numbers
    /// without classifying every element.
    #[inline]
    pub fn comma_then_number(&mut self) -> bool {
        self.skip_ws();
        if self.bytes.get(self.pos) != Some(&b',') {
            return false;
        }
        let mut p = self.pos + 1;
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(p) {
            p += 1;
        }
        if let Some(b'-' | b'0'..=b'9' | b'N' | b'I') = self.bytes.get(p) {
            self.pos = p;
            true
        } else {
            false
        }
    }

    /// Consumes `{`.
    pub fn begin_object(&mut self) -> Result<()> {
        self.expect_byte(b'{', "'{'")?;
        self.enter()
    }

    /// Reads the next key of the current object and its `:`; `None` after consuming `}`.
    pub fn next_key(&mut self, first: &mut bool) -> Result<Option<Cow<'a, str>>> {
        self.skip_ws();
        match self.bytes.get(self.pos) {
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(None);
            }
            Some(b',') if !*first => self.pos += 1,
            Some(_) if *first => *first = false,
            _ => return Err(self.error("expected ',' or '}'")),
        }
        self.skip_ws();
        if self.bytes.get(self.pos) != Some(&b'"') {
            return Err(self.error("expected a key in double quotes"));
        }
        let key = self.read_string()?;
        self.expect_byte(b':', "':' after the key")?;
        Ok(Some(key))
    }

    /// The unread bytes, from the next non-blank one.
    #[inline]
    pub fn rest(&mut self) -> &'a [u8] {
        self.skip_ws();
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// Consumes `n` bytes of [`JsonReader::rest`] that a caller has parsed (whole tokens only).
    #[inline]
    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.bytes.len());
    }

    /// Reads a number token and returns its text: JSON's grammar plus `NaN`, `Infinity`,
    /// `-Infinity`.
    pub fn read_number(&mut self) -> Result<&'a str> {
        Ok(self.read_number_token()?.text)
    }

    /// Reads a number token, splitting it into sign, digits and exponent in the same pass that
    /// checks its grammar, so that converting it needs no second look at the text.
    pub fn read_number_token(&mut self) -> Result<NumberToken<'a>> {
        self.skip_ws();
        let b = self.bytes;
        let start = self.pos;
        let mut p = start;
        let negative = b.get(p) == Some(&b'-');
        if negative {
            p += 1;
        }
        if let Some(b'N' | b'I') = b.get(p) {
            for (word, special) in [
                ("NaN", Special::NaN),
                ("Infinity", Special::Infinity),
                ("-Infinity", Special::NegInfinity),
            ] {
                if self.text[start..].starts_with(word) {
                    self.pos = start + word.len();
                    return Ok(NumberToken {
                        text: &self.text[start..self.pos],
                        special: Some(special),
                        ..NumberToken::default()
                    });
                }
            }
            self.pos = p;
            return Err(self.error("expected a number"));
        }
        let mut token = NumberToken {
            negative,
            integer: true,
            ..NumberToken::default()
        };
        // Digits beyond what a u64 holds only move the exponent, and mark the token as
        // `truncated` if any is non-zero.
        let mut full = false;
        let int_start = p;
        while let Some(&c) = b.get(p) {
            if !c.is_ascii_digit() {
                break;
            }
            match push_digit(token.mantissa, c, full) {
                Some(m) => token.mantissa = m,
                None => {
                    full = true;
                    token.exponent += 1;
                    token.truncated |= c != b'0';
                }
            }
            p += 1;
        }
        if p == int_start {
            self.pos = p;
            return Err(self.error("expected a digit"));
        }
        if p - int_start > 1 && b.get(int_start) == Some(&b'0') {
            self.pos = int_start;
            return Err(self.error("a number may not start with 0 followed by digits"));
        }
        if b.get(p) == Some(&b'.') {
            token.integer = false;
            p += 1;
            let frac = p;
            while let Some(&c) = b.get(p) {
                if !c.is_ascii_digit() {
                    break;
                }
                match push_digit(token.mantissa, c, full) {
                    Some(m) => {
                        token.mantissa = m;
                        token.exponent -= 1;
                    }
                    None => {
                        full = true;
                        token.truncated |= c != b'0';
                    }
                }
                p += 1;
            }
            if p == frac {
                self.pos = p;
                return Err(self.error("expected a digit after '.'"));
            }
        }
        if let Some(b'e' | b'E') = b.get(p) {
            token.integer = false;
            p += 1;
            let mut exp_negative = false;
            if let Some(&sign @ (b'+' | b'-')) = b.get(p) {
                exp_negative = sign == b'-';
                p += 1;
            }
            let exp = p;
            let mut value: i64 = 0;
            while let Some(&c) = b.get(p) {
                if !c.is_ascii_digit() {
                    break;
                }
                // Saturate: any exponent this large already means 0 or infinity.
                value = (value * 10 + i64::from(c - b'0')).min(1 << 40);
                p += 1;
            }
            if p == exp {
                self.pos = p;
                return Err(self.error("expected a digit in the exponent"));
            }
            token.exponent += if exp_negative { -value } else { value };
        }
        self.pos = p;
        token.text = &self.text[start..p];
        Ok(token)
    }

    /// Reads `true` or `false`.
    pub fn read_bool(&mut self) -> Result<bool> {
        self.skip_ws();
        if self.text[self.pos..].starts_with("true") {
            self.pos += 4;
            Ok(true)
        } else if self.text[self.pos..].starts_with("false") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(self.error("expected true or false"))
        }
    }

    /// Reads `null`.
    pub fn read_null(&mut self) -> Result<()> {
        self.skip_ws();
        if self.text[self.pos..].starts_with("null") {
            self.pos += 4;
            Ok(())
        } else {
            Err(self.error("expected null"))
        }
    }

    /// Reads a string, unescaping it; borrowed when it has no escapes.
    pub fn read_string(&mut self) -> Result<Cow<'a, str>> {
        self.expect_byte(b'"', "a string")?;
        let start = self.pos;
        let b = self.bytes;
        let mut p = start;
        loop {
            match b.get(p) {
                Some(b'"') => {
                    self.pos = p + 1;
                    return Ok(Cow::Borrowed(&self.text[start..p]));
                }
                Some(b'\\') => break,
                Some(c) if *c < 0x20 => {
                    self.pos = p;
                    return Err(self.error("control character in a string"));
                }
                Some(_) => p += 1,
                None => {
                    self.pos = p;
                    return Err(self.error("unterminated string"));
                }
            }
        }
        let mut out = String::with_capacity(p - start + 16);
        out.push_str(&self.text[start..p]);
        self.pos = p;
        loop {
            let run_start = self.pos;
            while let Some(&c) = b.get(self.pos) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match b.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.read_escape(&mut out)?;
                }
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn read_escape(&mut self, out: &mut String) -> Result<()> {
        let c = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.error("unterminated escape"))?;
        self.pos += 1;
        let simple = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.read_hex4()?;
                let ch = if (0xD800..0xDC00).contains(&first) {
                    if !self.text[self.pos..].starts_with("\\u") {
                        return Err(self.error("lone high surrogate in \\u escape"));
                    }
                    self.pos += 2;
                    let second = self.read_hex4()?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(self.error("invalid low surrogate in \\u escape"));
                    }
                    char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
                } else {
                    char::from_u32(first)
                };
                ch.ok_or_else(|| self.error("invalid \\u escape"))?
            }
            _ => return Err(self.error("invalid escape")),
        };
        out.push(simple);
        Ok(())
    }

    fn read_hex4(&mut self) -> Result<u32> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let v = u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("invalid \\u escape"));
        }
        self.pos += 4;
        Ok(v)
    }

    /// Skips one value of any kind, however nested (within [`MAX_DEPTH`]), without recursion.
    pub fn skip_value(&mut self) -> Result<()> {
        // Each entry: (is_object, first).
        let mut stack: Vec<(bool, bool)> = Vec::new();
        loop {
            // Read one value start.
            match self.peek()? {
                Next::Object => {
                    self.begin_object()?;
                    stack.push((true, true));
                }
                Next::Array => {
                    self.begin_array()?;
                    stack.push((false, true));
                }
                Next::String => {
                    self.read_string()?;
                }
                Next::Number => {
                    self.read_number()?;
                }
                Next::Bool => {
                    self.read_bool()?;
                }
                Next::Null => self.read_null()?,
            }
            // Advance to the next value to read, closing finished containers.
            loop {
                let Some((is_object, first)) = stack.last_mut() else {
                    return Ok(());
                };
                let more = if *is_object {
                    self.next_key(first)?.is_some()
                } else {
                    self.next_element(first)?
                };
                if more {
                    break;
                }
                stack.pop();
            }
        }
    }

    /// Checks that only white space remains.
    pub fn finish(&mut self) -> Result<()> {
        self.skip_ws();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error("unexpected data after the JSON document"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let mut r = JsonReader::new(b"[1, -2.5e3, NaN, -Infinity, Infinity, 0.25]").unwrap();
        r.begin_array().unwrap();
        let mut first = true;
        let mut got = Vec::new();
        while r.next_element(&mut first).unwrap() {
            got.push(r.read_number().unwrap().to_owned());
        }
        r.finish().unwrap();
        assert_eq!(got, ["1", "-2.5e3", "NaN", "-Infinity", "Infinity", "0.25"]);
    }

    #[test]
    fn bad_numbers() {
        for bad in ["-", "1.", "1e", "1.e5", "-x"] {
            let mut r = JsonReader::new(bad.as_bytes()).unwrap();
            assert!(r.read_number().is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_and_escapes() {
        let mut r = JsonReader::new(br#""plain" "a\"b\\c\/\n\u00e9\ud83d\ude00""#).unwrap();
        assert!(matches!(r.read_string().unwrap(), Cow::Borrowed("plain")));
        assert_eq!(r.read_string().unwrap(), "a\"b\\c/\n\u{e9}\u{1F600}");
        for bad in [r#""abc"#, r#""\x""#, r#""\ud800""#, "\"a\nb\"", r#""\u12""#] {
            let mut r = JsonReader::new(bad.as_bytes()).unwrap();
            assert!(r.read_string().is_err(), "{bad}");
        }
    }

    #[test]
    fn objects_and_skipping() {
        let doc = br#"{"a": {"x": [1, [2, {"y": null}]], "z": "s"}, "b": true}"#;
        let mut r = JsonReader::new(doc).unwrap();
        r.begin_object().unwrap();
        let mut first = true;
        assert_eq!(r.next_key(&mut first).unwrap().unwrap(), "a");
        r.skip_value().unwrap();
        assert_eq!(r.next_key(&mut first).unwrap().unwrap(), "b");
        assert!(r.read_bool().unwrap());
        assert!(r.next_key(&mut first).unwrap().is_none());
        r.finish().unwrap();
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            "[1,]",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "{1:2}",
            "[",
            "tru",
            "[] x",
        ] {
            let mut r = JsonReader::new(bad.as_bytes()).unwrap();
            assert!(r.skip_value().and_then(|()| r.finish()).is_err(), "{bad}");
        }
        assert!(JsonReader::new(b"\"\xff\"").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(150_000) + &"]".repeat(150_000);
        let mut r = JsonReader::new(deep.as_bytes()).unwrap();
        let e = r.skip_value().unwrap_err();
        assert!(e.message.contains("nested deeper"), "{e}");
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        let mut r = JsonReader::new(ok.as_bytes()).unwrap();
        r.skip_value().unwrap();
        r.finish().unwrap();
    }
}
