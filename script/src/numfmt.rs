//! C's `printf("%.Ng")` for doubles: how Redis turns Lua numbers into command arguments
//! (`%.17g`) and how lua-cjson writes them (`%.14g`).

/// Formats `x` as C's `%.{prec}g` does (glibc output: `inf`, `-inf`, `nan`, `-nan`).
pub(crate) fn fmt_g(x: f64, prec: usize) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    let prec = prec.max(1);
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    // An integer of at most `prec` digits (and at most 15, all exact in an f64) prints as
    // itself: the common case (`redis.call('expire', k, 100)`), without the float formatter.
    if x.fract() == 0.0 && x.abs() < 10f64.powi(prec.min(15) as i32) {
        return (x as i64).to_string();
    }
    general(x, prec)
}

/// `%.<prec>g` of a finite non-zero `x` by way of the float formatter.
fn general(x: f64, prec: usize) -> String {
    // Scientific form rounded to `prec` significant digits tells the exponent C uses.
    let sci = format!("{:.*e}", prec - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{:.*}", decimals, x)).to_string()
    }
}

/// Drops trailing zeros of a fraction, and the point if nothing follows it.
fn strip_zeros(s: &str) -> &str {
    if !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{fmt_g, general};

    proptest! {
        #[test]
        fn integers_print_as_the_float_formatter_prints_them(
            n in -10_000_000_000_000_000i64..10_000_000_000_000_000,
            small in -100_000i64..100_000,
            prec in 1usize..=17,
        ) {
            for x in [n as f64, small as f64] {
                if x != 0.0 {
                    prop_assert_eq!(fmt_g(x, prec), general(x, prec));
                }
            }
        }
    }

    #[test]
    fn formats_like_printf_g() {
        assert_eq!(fmt_g(0.1, 17), "0.10000000000000001");
        assert_eq!(fmt_g(3.0, 17), "3");
        assert_eq!(fmt_g(-2.5, 17), "-2.5");
        assert_eq!(fmt_g(1e20, 17), "1e+20");
        assert_eq!(fmt_g(123456789012345678.0, 17), "1.2345678901234568e+17");
        assert_eq!(fmt_g(0.0001, 14), "0.0001");
        assert_eq!(fmt_g(0.00001, 14), "1e-05");
        assert_eq!(fmt_g(1.0 / 3.0, 14), "0.33333333333333");
        assert_eq!(fmt_g(100000000000000.0, 14), "1e+14");
        assert_eq!(fmt_g(10000000000000.0, 14), "10000000000000");
        assert_eq!(fmt_g(f64::INFINITY, 14), "inf");
        assert_eq!(fmt_g(f64::NEG_INFINITY, 17), "-inf");
        assert_eq!(fmt_g(0.0, 17), "0");
        assert_eq!(fmt_g(99_999_999_999_999_990_000_000.0, 14), "1e+23");
    }
}
