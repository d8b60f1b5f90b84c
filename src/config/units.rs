//! Durations (`30s`, `1m30s`, `250ms`) and sizes (`5MiB`, `10MB`) in the pipeline file. Plain
//! numbers are seconds and bytes.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// A duration in the pipeline file. Negative values are allowed (`period: -1s` means "never").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration {
    pub millis: i64,
}

impl Duration {
    pub const fn from_secs(s: i64) -> Duration {
        Duration { millis: s * 1000 }
    }

    pub const fn from_millis(ms: i64) -> Duration {
        Duration { millis: ms }
    }

    /// The duration as a std one; zero and negative durations give `None`.
    pub fn positive(self) -> Option<std::time::Duration> {
        (self.millis > 0).then(|| std::time::Duration::from_millis(self.millis as u64))
    }

    pub fn std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis.max(0) as u64)
    }

    pub fn parse(s: &str) -> Result<Duration, String> {
        let t = s.trim();
        let (neg, mut body) = match t.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, t),
        };
        if body.is_empty() {
            return Err(format!(
                "`{s}` is not a duration (expected e.g. 30s, 5m, 250ms)"
            ));
        }
        if let Ok(secs) = body.parse::<f64>() {
            let ms = millis_in_range(secs * 1000.0).ok_or_else(|| too_long(s))?;
            return Ok(Duration {
                millis: if neg { -ms } else { ms },
            });
        }
        let mut total: f64 = 0.0;
        while !body.is_empty() {
            let num_end = body
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(body.len());
            let (num, tail) = body.split_at(num_end);
            let unit_end = tail
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(tail.len());
            let (unit, next) = tail.split_at(unit_end);
            let n: f64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a duration (expected e.g. 30s, 5m, 250ms)"))?;
            let factor = match unit {
                "ns" => 1e-6,
                "us" | "µs" => 1e-3,
                "ms" => 1.0,
                "s" => 1e3,
                "m" => 60e3,
                "h" => 3600e3,
                "d" => 86400e3,
                _ => {
                    return Err(format!(
                        "`{s}` has unknown unit `{unit}` (expected ns, us, ms, s, m, h or d)"
                    ))
                }
            };
            total += n * factor;
            body = next;
        }
        let ms = millis_in_range(total.round()).ok_or_else(|| too_long(s))?;
        Ok(Duration {
            millis: if neg { -ms } else { ms },
        })
    }
}

/// The longest duration the file may give: a century, far beyond any timeout or retention,
/// and far from where milliseconds overflow (a value near `i64::MAX` seconds once wrapped to -1s).
const MAX_MILLIS: f64 = 100.0 * 365.25 * 86_400_000.0;

fn millis_in_range(ms: f64) -> Option<i64> {
    (ms.is_finite() && ms.abs() <= MAX_MILLIS).then_some(ms as i64)
}

fn too_long(s: &str) -> String {
    format!("`{s}` is not a usable duration (expected at most 100 years, e.g. 30s, 5m, 250ms)")
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 30s, 5m or 250ms")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                millis_in_range(v * 1000.0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| E::custom(too_long(&v.to_string())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes (`5MiB`, `10MB`, `512KiB`, `1024`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size (expected e.g. 512KiB, 5MiB, 1GB)"))?;
        let factor: u64 = match unit.trim() {
            "" | "b" | "B" => 1,
            "k" | "K" | "kb" | "KB" => 1000,
            "Ki" | "KiB" | "kib" => 1 << 10,
            "M" | "MB" | "mb" => 1_000_000,
            "Mi" | "MiB" | "mib" => 1 << 20,
            "G" | "GB" | "gb" => 1_000_000_000,
            "Gi" | "GiB" | "gib" => 1 << 30,
            u => {
                return Err(format!(
                    "`{s}` has unknown unit `{u}` (expected B, KB, KiB, MB, MiB, GB or GiB)"
                ))
            }
        };
        let bytes = n * factor as f64;
        // `inf`, `nan` and sizes past 2^63 parse as numbers but are no size anyone means.
        if !bytes.is_finite() || bytes >= (1u64 << 63) as f64 {
            return Err(format!(
                "`{s}` is not a usable size (expected e.g. 512KiB, 5MiB, 1GB)"
            ));
        }
        Ok(ByteSize(bytes as u64))
    }

    pub fn bytes(self) -> u64 {
        self.0
    }

    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 512KiB, 5MiB or 1GB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("30s").unwrap().millis, 30_000);
        assert_eq!(Duration::parse("1m30s").unwrap().millis, 90_000);
        assert_eq!(Duration::parse("250ms").unwrap().millis, 250);
        assert_eq!(Duration::parse("-1s").unwrap().millis, -1000);
        assert_eq!(Duration::parse("1.5h").unwrap().millis, 5_400_000);
        assert_eq!(Duration::parse("10").unwrap().millis, 10_000);
        assert!(Duration::parse("10 parsecs").is_err());
        assert!(Duration::parse("").is_err());
        assert_eq!(Duration::parse("-1s").unwrap().positive(), None);
        for huge in [
            "9223372036854775807",
            "9223372036854775807s",
            "inf",
            "nan",
            "1e300",
        ] {
            assert!(Duration::parse(huge).is_err(), "{huge}");
        }
        assert_eq!(
            Duration::parse("36500d").unwrap().millis,
            36_500 * 86_400_000
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("5MiB").unwrap().0, 5 << 20);
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10_000_000);
        assert_eq!(ByteSize::parse("512 KiB").unwrap().0, 512 << 10);
        assert_eq!(ByteSize::parse("1024").unwrap().0, 1024);
        assert!(ByteSize::parse("lots").is_err());
        assert!(ByteSize::parse("5XB").is_err());
        assert!(ByteSize::parse("inf").is_err());
        assert!(ByteSize::parse("99999999999GiB").is_err());
    }
}
