//! Fault injection settings (per-command reply latency, failure percentages) and the
//! per-connection random source that rolls them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A point in the protocol whose reply `--latency` can delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Banner,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    /// The end-of-message reply (after DATA's terminator or `BDAT ... LAST`).
    Dot,
    Rset,
    Quit,
}

impl Point {
    const ALL: [(&'static str, Point); 9] = [
        ("banner", Point::Banner),
        ("ehlo", Point::Ehlo),
        ("mail", Point::Mail),
        ("rcpt", Point::Rcpt),
        ("data", Point::Data),
        ("bdat", Point::Bdat),
        ("dot", Point::Dot),
        ("rset", Point::Rset),
        ("quit", Point::Quit),
    ];
}

/// One `--latency CMD=MS` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySpec {
    /// Which reply to delay.
    pub point: Point,
    /// By how many milliseconds.
    pub ms: u32,
}

impl FromStr for LatencySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (cmd, ms) = s
            .split_once('=')
            .ok_or_else(|| format!("expected CMD=MS, got {s:?}"))?;
        let point = Point::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(cmd.trim()))
            .map(|&(_, p)| p)
            .ok_or_else(|| {
                let names: Vec<_> = Point::ALL.iter().map(|(n, _)| *n).collect();
                format!("unknown command {cmd:?} (one of {})", names.join(", "))
            })?;
        let ms = ms
            .trim()
            .parse()
            .map_err(|_| format!("bad milliseconds {ms:?}"))?;
        Ok(LatencySpec { point, ms })
    }
}

/// Reply delays by protocol point; zero where none was configured.
#[derive(Debug, Clone, Default)]
pub struct Latency([u32; 9]);

impl Latency {
    /// Builds the table; a later flag for the same point wins.
    pub fn new(specs: &[LatencySpec]) -> Latency {
        let mut t = [0; 9];
        for s in specs {
            t[s.point as usize] = s.ms;
        }
        Latency(t)
    }

    /// The delay in milliseconds for `point` (0: none).
    pub fn ms(&self, point: Point) -> u32 {
        self.0[point as usize]
    }
}

/// A probability given as a percentage (0 to 100, fractions allowed), kept as parts
/// per million so a roll is an integer compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Percent(u32);

impl Percent {
    const SCALE: u32 = 1_000_000;

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let v: f64 = s
            .trim()
            .trim_end_matches('%')
            .parse()
            .map_err(|_| format!("bad percentage {s:?}"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("percentage {v} outside 0..=100"));
        }
        Ok(Percent((v * (Percent::SCALE as f64 / 100.0)).round() as u32))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0 as f64 / (Percent::SCALE as f64 / 100.0))
    }
}

/// Every fault the sink injects, from the command line.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Reply delays per protocol point.
    pub latency: Latency,
    /// Share of RCPTs answered `451 4.3.0`.
    pub rcpt_tempfail: Percent,
    /// Share of RCPTs answered `550 5.1.1`.
    pub rcpt_permfail: Percent,
    /// Share of messages answered `451 4.3.0` at end of data.
    pub data_tempfail: Percent,
    /// Share of messages answered `554 5.3.0` at end of data.
    pub data_permfail: Percent,
    /// Share of transactions whose connection is dropped, without a reply, once the
    /// body has arrived.
    pub disconnect: Percent,
}

/// xorshift64* seeded through splitmix64: tiny, fast, and good enough to pick
/// which transactions fail. One per connection, so no sharing.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for stream `stream` (e.g. the connection number) of `seed`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`. Draws nothing when `p` is zero, so enabling one
    /// fault does not reshuffle another's sequence for the unaffected case.
    pub fn roll(&mut self, p: Percent) -> bool {
        if p.is_zero() {
            return false;
        }
        ((self.next_u64() >> 32) % Percent::SCALE as u64) < p.0 as u64
    }
}

/// Milliseconds as a `Duration`.
pub fn ms(ms: u32) -> Duration {
    Duration::from_millis(ms as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_specs_parse() {
        assert_eq!(
            "rcpt=250".parse::<LatencySpec>().unwrap(),
            LatencySpec {
                point: Point::Rcpt,
                ms: 250
            }
        );
        assert_eq!("DOT=5".parse::<LatencySpec>().unwrap().point, Point::Dot);
        assert!("rcpt".parse::<LatencySpec>().is_err());
        assert!("helo=5".parse::<LatencySpec>().is_err());
        assert!("rcpt=-1".parse::<LatencySpec>().is_err());
        let t = Latency::new(&["rcpt=1".parse().unwrap(), "banner=7".parse().unwrap()]);
        assert_eq!(
            (t.ms(Point::Rcpt), t.ms(Point::Banner), t.ms(Point::Quit)),
            (1, 7, 0)
        );
    }

    #[test]
    fn percentages_parse() {
        assert_eq!("0".parse::<Percent>().unwrap(), Percent(0));
        assert_eq!("100".parse::<Percent>().unwrap(), Percent(1_000_000));
        assert_eq!("0.5%".parse::<Percent>().unwrap(), Percent(5_000));
        assert!("101".parse::<Percent>().is_err());
        assert!("-1".parse::<Percent>().is_err());
        assert!("x".parse::<Percent>().is_err());
    }

    #[test]
    fn rolls_match_their_probability() {
        let mut rng = Rng::new(7, 0);
        assert!(!(0..1000).any(|_| rng.roll(Percent(0))));
        assert!((0..1000).all(|_| rng.roll("100".parse().unwrap())));
        let p = "25".parse().unwrap();
        let hits = (0..100_000).filter(|_| rng.roll(p)).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
        // Same seed and stream, same sequence; another stream differs.
        let (mut a, mut b, mut c) = (Rng::new(1, 2), Rng::new(1, 2), Rng::new(1, 3));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(a.next_u64(), c.next_u64());
    }
}
