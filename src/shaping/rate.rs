//! [`Rate`]: "so many per period", written `"1000/s"`, `"50/m"`, `"20000/h"`,
//! `"100/10s"`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A rate: `count` events per `per`. The limiter spaces events `per / count` apart
/// ([`Rate::interval`]), so `"60/m"` and `"1/s"` behave the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Events allowed per period; at least 1.
    pub count: u32,
    /// The period; positive.
    pub per: Duration,
}

impl Rate {
    /// `count` per `per`; `None` if either is zero.
    pub fn new(count: u32, per: Duration) -> Option<Rate> {
        (count > 0 && !per.is_zero()).then_some(Rate { count, per })
    }

    /// `count` per second.
    pub fn per_second(count: u32) -> Rate {
        Rate {
            count: count.max(1),
            per: Duration::from_secs(1),
        }
    }

    /// `count` per minute.
    pub fn per_minute(count: u32) -> Rate {
        Rate {
            count: count.max(1),
            per: Duration::from_secs(60),
        }
    }

    /// The spacing between events, in nanoseconds (at least 1).
    pub fn interval_nanos(&self) -> u64 {
        let per = u64::try_from(self.per.as_nanos()).unwrap_or(u64::MAX);
        (per / u64::from(self.count.max(1))).max(1)
    }

    /// The spacing between events.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        let bad = |why: &str| {
            format!("invalid rate {text:?}: {why} (examples: \"1000/s\", \"50/m\", \"20000/h\", \"100/10s\")")
        };
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| bad("expected COUNT/PERIOD"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count must be a whole number"))?;
        if count == 0 {
            return Err(bad(
                "the count must be at least 1 (omit the key for no limit)",
            ));
        }
        let period = period.trim();
        let per = match period {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => humantime::parse_duration(period).map_err(|_| bad("unknown period"))?,
        };
        Rate::new(count, per).ok_or_else(|| bad("the period must be positive"))
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => write!(f, "{}/s", self.count),
            60 if self.per.subsec_nanos() == 0 => write!(f, "{}/m", self.count),
            3600 if self.per.subsec_nanos() == 0 => write!(f, "{}/h", self.count),
            86_400 if self.per.subsec_nanos() == 0 => write!(f, "{}/d", self.count),
            _ => write!(f, "{}/{}", self.count, humantime::format_duration(self.per)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_durations() {
        let r: Rate = "1000/s".parse().unwrap();
        assert_eq!(r.interval(), Duration::from_millis(1));
        let r: Rate = "50/m".parse().unwrap();
        assert_eq!(r.interval(), Duration::from_millis(1200));
        let r: Rate = "20000/h".parse().unwrap();
        assert_eq!(r.interval(), Duration::from_millis(180));
        let r: Rate = "100/10s".parse().unwrap();
        assert_eq!(r.interval(), Duration::from_millis(100));
        assert_eq!(r.to_string(), "100/10s");
        assert_eq!("7/d".parse::<Rate>().unwrap().to_string(), "7/d");
    }

    #[test]
    fn refuses_bad_rates() {
        for bad in ["1000", "0/s", "x/s", "10/fortnight", "-1/s", "10/0s"] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.contains("invalid rate"), "{bad}: {err}");
        }
    }
}
