//! Byte sizes as operators write them: `100GiB`, `1.5 TB`, `4096`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// Parses a size: a plain number of bytes, or a number with a decimal (`kB MB GB TB PB`) or binary
/// (`KiB MiB GiB TiB PiB`) unit. `K M G T P` alone are binary, as in Kubernetes quantities
/// without the `i` (and in `ceph df`). Fractions are allowed with a unit and rounded down.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() {
        return Err(format!("{text:?} is not a size (expected a number such as 100GiB)"));
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "pb" => 1_000_000_000_000_000,
        "k" | "ki" | "kib" => 1 << 10,
        "m" | "mi" | "mib" => 1 << 20,
        "g" | "gi" | "gib" => 1 << 30,
        "t" | "ti" | "tib" => 1 << 40,
        "p" | "pi" | "pib" => 1 << 50,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?} (use B, KiB, MiB, GiB, TiB, PiB or kB, MB, GB, TB, PB)"
            ));
        }
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(|| format!("{text:?} is too large"));
    }
    let f: f64 = num.parse().map_err(|_| format!("{text:?} is not a size"))?;
    if mult == 1 {
        return Err(format!("{text:?}: a number of bytes must be whole"));
    }
    let bytes = f * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// Formats bytes with the largest binary unit that keeps at least one whole unit (`1.5 TiB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut value = bytes as f64;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A size in a topology file: an integer (bytes, possibly negative so that validation can name
/// the pool that has it) or a string with a unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SizeSpec(pub i128);

impl From<u64> for SizeSpec {
    fn from(v: u64) -> Self {
        SizeSpec(i128::from(v))
    }
}

impl<'de> Deserialize<'de> for SizeSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SizeSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size in bytes or a string such as \"40TiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeSpec, E> {
                Ok(SizeSpec(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeSpec, E> {
                Ok(SizeSpec(i128::from(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeSpec, E> {
                let t = v.trim();
                if let Some(rest) = t.strip_prefix('-') {
                    return parse_size(rest).map(|n| SizeSpec(-i128::from(n))).map_err(E::custom);
                }
                parse_size(t).map(SizeSpec::from).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for SizeSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(self.0) {
            Ok(v) => s.serialize_str(&format_size(v).replace(' ', "")),
            Err(_) => s.serialize_i128(self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Result<u64, &str>) {
        assert_eq!(parse_size(input), expect.map_err(str::to_owned));
    }

    #[test]
    fn sizes() {
        check("4096", Ok(4096));
        check("100GiB", Ok(100 << 30));
        check("100 GiB", Ok(100 << 30));
        check("1.5TiB", Ok(3 << 39));
        check("2G", Ok(2 << 30));
        check("1TB", Ok(1_000_000_000_000));
        check("1kb", Ok(1000));
        check("1.5", Err("\"1.5\": a number of bytes must be whole"));
        check("GiB", Err("\"GiB\" is not a size (expected a number such as 100GiB)"));
        check(
            "10 bananas",
            Err(
                "\"10 bananas\" has an unknown unit \"bananas\" (use B, KiB, MiB, GiB, TiB, PiB or kB, MB, GB, TB, PB)",
            ),
        );
        check("99999999999PiB", Err("\"99999999999PiB\" is too large"));
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(100 << 30), "100 GiB");
        assert_eq!(format_size(3 << 39), "1.5 TiB");
        for v in [1u64, 4096, 100 << 30, 40 << 40] {
            assert_eq!(parse_size(&format_size(v).replace(' ', "")), Ok(v));
        }
    }
}
