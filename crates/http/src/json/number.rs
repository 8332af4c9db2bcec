//! Converting JSON numbers into tensor elements.
//!
//! Floats are parsed straight from the body's bytes by `lexical-core` (correctly rounded, with
//! JSON's number grammar, and several digits at a time — the standard library's parser, on a
//! token already scanned once, took half the decoding time). TF Serving's bare `NaN`,
//! `Infinity` and `-Infinity` are read by the reader's token scanner.

use lexical_core::{FromLexicalWithOptions, ParseFloatOptions, format::JSON};
use quiver_engine_api::DataType;

use super::reader::{JsonReader, NumberToken, Special, SyntaxError};

/// Float element types read from JSON.
pub trait JsonFloat:
    FromLexicalWithOptions<Options = ParseFloatOptions>
    + std::str::FromStr
    + std::ops::Neg<Output = Self>
{
    /// Not a number.
    const NAN: Self;
    /// +∞.
    const INFINITY: Self;
    /// −∞.
    const NEG_INFINITY: Self;

    /// Decimal digits that always make an exact mantissa.
    const EXACT_DIGITS: usize;

    /// `mantissa / 10^scale` when both are exact in `Self`, so that the one division rounds
    /// correctly (Clinger's fast path); `None` otherwise.
    fn exact_quotient(mantissa: u64, scale: usize) -> Option<Self>;
}

impl JsonFloat for f32 {
    const NAN: Self = f32::NAN;
    const INFINITY: Self = f32::INFINITY;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const EXACT_DIGITS: usize = 7;

    #[inline]
    fn exact_quotient(mantissa: u64, scale: usize) -> Option<Self> {
        const POW10: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];
        let divisor = *POW10.get(scale)?;
        // Below 2^24 the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        (mantissa <= 1 << 24).then(|| mantissa as f32 / divisor)
    }
}

impl JsonFloat for f64 {
    const NAN: Self = f64::NAN;
    const INFINITY: Self = f64::INFINITY;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const EXACT_DIGITS: usize = 15;

    #[inline]
    fn exact_quotient(mantissa: u64, scale: usize) -> Option<Self> {
        const POW10: [f64; 16] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
        ];
        let divisor = *POW10.get(scale)?;
        // Below 2^53 the conversion is exact.
        #[allow(clippy::cast_precision_loss)]
        (mantissa <= 1 << 53).then(|| mantissa as f64 / divisor)
    }
}

/// Short plain decimals (`128.0`, `-0.5`, `17`) — what most tensors hold — read in one pass:
/// the value and the bytes used, or `None` for anything else (exponents, long digit strings,
/// JSON's forbidden forms), which the general parser takes.
#[inline]
fn short_decimal<F: JsonFloat>(bytes: &[u8]) -> Option<(F, usize)> {
    let negative = bytes.first() == Some(&b'-');
    let int_start = usize::from(negative);
    let mut p = int_start;
    let mut mantissa: u64 = 0;
    let mut digits = 0;
    let mut scale = 0;
    let mut seen_point = false;
    loop {
        match bytes.get(p) {
            Some(&c @ b'0'..=b'9') => {
                digits += 1;
                // Long numbers leave early, for the general parser.
                if digits > F::EXACT_DIGITS {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(c - b'0');
                scale += usize::from(seen_point);
            }
            Some(b'.') if !seen_point && digits > 0 => seen_point = true,
            Some(b'e' | b'E' | b'.') => return None,
            _ => break,
        }
        p += 1;
    }
    let int_digits = digits - scale;
    // JSON wants digits on both sides of a point, and no leading zero before another digit.
    if int_digits == 0
        || (seen_point && scale == 0)
        || (int_digits > 1 && bytes.get(int_start) == Some(&b'0'))
    {
        return None;
    }
    let value = F::exact_quotient(mantissa, scale)?;
    Some((if negative { -value } else { value }, p))
}

const OPTIONS: ParseFloatOptions = ParseFloatOptions::new();

/// Reads the number at the reader's position as the nearest `F`.
#[inline]
pub fn read_float<F: JsonFloat>(r: &mut JsonReader<'_>) -> Result<F, SyntaxError> {
    let rest = r.rest();
    let special = matches!(rest, [b'N' | b'I', ..] | [b'-', b'I', ..]);
    if let Some((value, used)) = short_decimal::<F>(rest) {
        r.advance(used);
        return Ok(value);
    }
    if !special
        && let Ok((value, used)) =
            lexical_core::parse_partial_with_options::<F, JSON>(rest, &OPTIONS)
    {
        r.advance(used);
        return Ok(value);
    }
    // Specials, and numbers outside JSON's grammar (which the token scanner reports precisely).
    let token = r.read_number_token()?;
    to_float(&token).map_err(|message| r.error(message))
}

/// The token as the nearest `F`.
pub fn to_float<F: JsonFloat>(token: &NumberToken<'_>) -> Result<F, String> {
    match token.special {
        Some(Special::NaN) => Ok(F::NAN),
        Some(Special::Infinity) => Ok(F::INFINITY),
        Some(Special::NegInfinity) => Ok(F::NEG_INFINITY),
        None => token
            .text
            .parse()
            .map_err(|_| format!("{} is not a number", token.text)),
    }
}

/// The token as an integer of `dtype`'s range; fractions and exponents are refused, as
/// TF Serving refuses them for integer inputs.
pub fn to_int<T: TryFrom<i128>>(token: &NumberToken<'_>, dtype: DataType) -> Result<T, String> {
    let not_integer = || {
        format!(
            "{} is not an integer ({} takes integers)",
            token.text,
            dtype.tf_name()
        )
    };
    if !token.integer || token.special.is_some() {
        return Err(not_integer());
    }
    // Whatever does not fit a u64 is out of every integer range.
    let wide = if token.truncated || token.exponent != 0 {
        return Err(format!(
            "{} is out of range for {}",
            token.text,
            dtype.tf_name()
        ));
    } else {
        i128::from(token.mantissa)
    };
    let wide = if token.negative { -wide } else { wide };
    T::try_from(wide).map_err(|_| format!("{} is out of range for {}", token.text, dtype.tf_name()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::reader::JsonReader;

    fn float<F: JsonFloat>(text: &str) -> F {
        let mut r = JsonReader::new(text.as_bytes()).unwrap();
        let value = read_float(&mut r).unwrap();
        r.finish().unwrap();
        value
    }

    fn token(text: &str) -> NumberToken<'_> {
        let mut r = JsonReader::new(text.as_bytes()).unwrap();
        let t = r.read_number_token().unwrap();
        assert_eq!(t.text, text);
        t
    }

    /// A deterministic stream of numbers in many textual forms.
    fn samples() -> Vec<String> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::new();
        for i in 0..200_000 {
            let bits = next();
            let text = match i % 8 {
                6 => format!("{}.0", bits % 256),
                7 => format!("{}.{}", bits % 100_000, (bits >> 32) % 10_000_000_000),
                // Python's repr of float32 values (shortest f64 text, up to 17 digits).
                0 => format!("{:?}", f64::from(f32::from_bits(bits as u32 & 0x7f7f_ffff))),
                1 => format!("{:?}", f32::from_bits(bits as u32 & 0x7f7f_ffff)),
                2 => format!("{:?}", f64::from_bits(bits & 0x7fef_ffff_ffff_ffff)),
                3 => format!("{:.7}", (bits % 10_000_000) as f64 / 1e6 - 5.0),
                4 => format!("{}e{}", bits % 100_000_000, (bits >> 40) as i64 % 60 - 30),
                // Exactly halfway between two f32s: the hard case.
                _ => {
                    let f = f32::from_bits((bits as u32 & 0x3fff_ffff) | 0x0080_0000);
                    let next = f32::from_bits(f.to_bits() + 1);
                    format!("{:?}", (f64::from(f) + f64::from(next)) / 2.0)
                }
            };
            let negate = bits & 1 << 63 != 0 && !text.starts_with('-');
            out.push(if negate { format!("-{text}") } else { text });
        }
        out.extend(
            [
                "0",
                "-0",
                "0.0",
                "-0.0",
                "1",
                "3.4028235e38",
                "3.4028236e38",
                "1e39",
                "1e-46",
                "1.17549435e-38",
                "1.4e-45",
                "123456789012345678901234567890",
                "0.1",
                "0.10000000149011612",
                "16777217",
                "9007199254740993",
                "1e22",
                "1e23",
                "0.000000000000000000000000000001",
                "16777216.5",
                "16777217.0",
                "0.3",
                "123456789012345.6",
                "9007199254740993.0",
                "1234567.8",
                "0.00000001",
            ]
            .map(String::from),
        );
        out
    }

    #[test]
    fn f32_matches_the_standard_parser_bit_for_bit() {
        for text in samples() {
            let want: f32 = text.parse().unwrap();
            let got: f32 = float(&text);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{text}: got {got:e}, want {want:e}"
            );
        }
    }

    #[test]
    fn f64_matches_the_standard_parser_bit_for_bit() {
        for text in samples() {
            let want: f64 = text.parse().unwrap();
            let got: f64 = float(&text);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{text}: got {got:e}, want {want:e}"
            );
        }
    }

    #[test]
    fn grammar_errors_are_syntax_errors() {
        assert!(
            JsonReader::new(b"007")
                .unwrap()
                .read_number_token()
                .is_err()
        );
        for bad in [
            "-", "1.", ".5", "1e", "+1", "-Inf", "Nan", "--1", "01", "-01.5", "1.e3",
        ] {
            let mut r = JsonReader::new(bad.as_bytes()).unwrap();
            let result = read_float::<f32>(&mut r).and_then(|_| r.finish());
            assert!(result.is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn specials() {
        assert!(float::<f32>("NaN").is_nan());
        assert_eq!(float::<f32>("Infinity"), f32::INFINITY);
        assert_eq!(float::<f64>("-Infinity"), f64::NEG_INFINITY);
        assert_eq!(float::<f32>("-0").to_bits(), (-0.0f32).to_bits());
        assert!(to_int::<i32>(&token("NaN"), DataType::I32).is_err());
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(
            to_int::<i64>(&token("-9223372036854775808"), DataType::I64),
            Ok(i64::MIN)
        );
        assert_eq!(
            to_int::<i64>(&token("9223372036854775807"), DataType::I64),
            Ok(i64::MAX)
        );
        assert_eq!(
            to_int::<u64>(&token("18446744073709551615"), DataType::U64),
            Ok(u64::MAX)
        );
        assert!(to_int::<u64>(&token("18446744073709551616"), DataType::U64).is_err());
        assert!(to_int::<i64>(&token("9223372036854775808"), DataType::I64).is_err());
        assert!(to_int::<u8>(&token("256"), DataType::U8).is_err());
        assert!(to_int::<u8>(&token("-1"), DataType::U8).is_err());
        assert_eq!(to_int::<i8>(&token("-128"), DataType::I8), Ok(-128));
        assert_eq!(to_int::<i32>(&token("-0"), DataType::I32), Ok(0));
        for bad in ["1.0", "1e3", "1.5"] {
            let e = to_int::<i32>(&token(bad), DataType::I32).unwrap_err();
            assert!(e.contains("not an integer"), "{e}");
        }
        let e = to_int::<i64>(&token("123456789012345678901234567890"), DataType::I64).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }
}
