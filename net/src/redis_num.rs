//! Redis's number syntax, one copy for the proxy (command arguments) and the range state
//! machine (stored values): `INCR` of a value written by `SET` and `INCRBY` of an argument
//! must accept exactly the same strings, so both call these.

/// Parses a decimal `i64` as Redis's `string2ll`: an optional `-`, then digits; no `+`, no
/// spaces, no leading zeros, no `-0`, nothing out of range.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d)?
        } else {
            v.checked_add(d)?
        };
    }
    Some(v)
}

/// Parses a float as Redis's `string2ld`: no surrounding spaces, not NaN (`inf` and `-inf`
/// are numbers).
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Formats a float result as Redis does for `INCRBYFLOAT`: no exponent, no trailing zeros.
pub fn format_f64(v: f64) -> bytes::Bytes {
    let s = if v == v.trunc() && v.abs() < 1e17 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    };
    bytes::Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integers_refuse_what_string2ll_refuses() {
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"-01",
            b"1.0",
            b"0x10",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"000000000000000000001",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    }

    #[test]
    fn floats_refuse_spaces_and_nan() {
        for bad in [&b""[..], b" 1", b"1 ", b"nan", b"NaN", b"abc"] {
            assert_eq!(parse_f64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"-1.5e3"), Some(-1500.0));
    }

    #[test]
    fn incrbyfloat_results_have_no_exponent_and_no_trailing_zeros() {
        assert_eq!(format_f64(3.0), "3");
        assert_eq!(format_f64(10.5), "10.5");
        assert_eq!(format_f64(-0.25), "-0.25");
    }

    proptest! {
        #[test]
        fn every_i64_round_trips_through_its_decimal_text(v in any::<i64>()) {
            prop_assert_eq!(parse_i64(v.to_string().as_bytes()), Some(v));
        }
    }
}
