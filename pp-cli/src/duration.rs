//! Durations with units, for flags, environment variables and config files: `30s`, `2m`,
//! `500ms`, `1h`, `1h 30m`, `2days` (the units of the `humantime` crate: `ns`, `us`, `ms`,
//! `s`/`sec`/`secs`, `m`/`min`/`mins`, `h`/`hr`/`hours`, `d`/`days`, `w`/`weeks`, …).
//!
//! The rule for a bare number (no unit): it keeps the meaning the flag had before units were
//! accepted. Every duration setting of `pp-tracker` and `pp-peer` took seconds, so a bare number
//! is seconds (`--idle-timeout 45` is `45s`; fractions too: `--http-header-timeout 0.3` is
//! `300ms`). The flags whose names carry the unit (`--grace-secs`, `--cluster-lease-secs`)
//! keep those names (scripts and units use them) and take units too, with unit-less aliases
//! (`--grace`, `--cluster-lease`) that read better with one. A future flag named `…-ms` would
//! read a bare number as milliseconds ([`parse_with_bare`]).
//!
//! In a TOML file a duration is a number of seconds or such a string (`idle-timeout = "2m"`).
//! Out, durations print the same way (`45s`, `1h`, `1m 30s`), so `--help` shows defaults with
//! units.

use std::fmt;
use std::time::Duration;

/// A duration setting whose bare numbers are seconds (see the module doc). Parses from
/// flags and environment variables with [`parse_secs`] (`value_parser = parse_secs`), from a
/// TOML number or string through `Deserialize`, and prints with units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secs(pub Duration);

impl Secs {
    pub fn from_secs(s: u64) -> Self {
        Secs(Duration::from_secs(s))
    }
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl From<Secs> for Duration {
    fn from(s: Secs) -> Duration {
        s.0
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human(self.0))
    }
}

/// The clap value parser of a duration flag whose bare numbers are seconds.
pub fn parse_secs(s: &str) -> Result<Secs, String> {
    parse_with_bare(s, Duration::from_secs(1)).map(Secs)
}

/// Parses a duration with a unit, or a bare number (fractions allowed) counted in `bare`
/// units; the error says what was given and what would do.
pub fn parse_with_bare(s: &str, bare: Duration) -> Result<Duration, String> {
    let t = s.trim();
    let unit = if bare == Duration::from_millis(1) { "milliseconds" } else { "seconds" };
    let bad = || format!("not a duration: {s:?} (use e.g. 30s, 2m, 500ms, 1h, or a number of {unit})");
    if t.starts_with(|c: char| c.is_ascii_digit() || c == '.') && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let n: f64 = t.parse().map_err(|_| bad())?;
        return Duration::try_from_secs_f64(n * bare.as_secs_f64()).map_err(|_| bad());
    }
    humantime::parse_duration(t).map_err(|e| format!("{}: {e}", bad()))
}

/// A duration for people: `45s`, `500ms`, `1h`, `1m 30s`, `0s`.
pub fn human(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string()
}

impl<'de> serde::Deserialize<'de> for Secs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration: a number of seconds, or a string with a unit like \"30s\", \"2m\", \"500ms\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs::from_secs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secs, E> {
                u64::try_from(v).map(Secs::from_secs).map_err(|_| E::custom(format!("not a duration: {v} (negative)")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secs, E> {
                Duration::try_from_secs_f64(v).map(Secs).map_err(|_| E::custom(format!("not a duration: {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secs, E> {
                parse_secs(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> Result<Duration, String> {
        parse_secs(s).map(Secs::duration)
    }

    #[test]
    fn durations_with_units() {
        assert_eq!(secs("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(secs("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(secs("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(secs("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(secs("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(secs("2days"), Ok(Duration::from_secs(172_800)));
        assert_eq!(secs(" 10s "), Ok(Duration::from_secs(10)));
        assert_eq!(secs("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bare_numbers_keep_their_old_unit() {
        assert_eq!(secs("45"), Ok(Duration::from_secs(45)), "seconds, as the flags always took");
        assert_eq!(secs("0.3"), Ok(Duration::from_millis(300)));
        assert_eq!(secs("0"), Ok(Duration::ZERO), "0 (never, for some flags) still parses");
        let ms = Duration::from_millis(1);
        assert_eq!(parse_with_bare("500", ms), Ok(Duration::from_millis(500)), "a -ms flag's bare number");
        assert_eq!(parse_with_bare("2s", ms), Ok(Duration::from_secs(2)), "units win");
    }

    #[test]
    fn bad_durations_say_what_was_given() {
        for bad in ["", "5x", "-1", "-5s", "s", "1.2.3", "ten seconds", "1e3", "5 parsecs"] {
            let e = parse_secs(bad).unwrap_err();
            assert!(e.contains("not a duration") && e.contains(&format!("{bad:?}")) && e.contains("30s"), "{bad}: {e}");
        }
        assert!(parse_with_bare("x", Duration::from_millis(1)).unwrap_err().contains("number of milliseconds"));
    }

    #[test]
    fn durations_print_with_units() {
        for (d, text) in [(0, "0s"), (45, "45s"), (3600, "1h"), (90, "1m 30s"), (86_400, "1day")] {
            assert_eq!(Secs::from_secs(d).to_string(), text);
            assert_eq!(secs(text), Ok(Duration::from_secs(d)), "what is printed parses back");
        }
        assert_eq!(human(Duration::from_millis(300)), "300ms");
    }

    proptest::proptest! {
        #[test]
        fn what_is_printed_parses_back(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(secs(&human(d)), Ok(d));
        }

        #[test]
        fn a_bare_number_is_that_many_seconds(n in 0u64..1_000_000_000) {
            proptest::prop_assert_eq!(secs(&n.to_string()), Ok(Duration::from_secs(n)));
            proptest::prop_assert_eq!(secs(&format!("{n}s")), Ok(Duration::from_secs(n)));
            proptest::prop_assert_eq!(secs(&format!("{n}ms")), Ok(Duration::from_millis(n)));
        }

        #[test]
        fn any_text_parses_or_says_why(s in "\\PC{0,12}") {
            if let Err(e) = parse_secs(&s) {
                proptest::prop_assert!(e.contains("not a duration"));
            }
        }
    }

    #[test]
    fn durations_from_toml_numbers_and_strings() {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        struct F {
            idle_timeout: Secs,
        }
        let read = |t: &str| toml::from_str::<F>(t).map(|f| f.idle_timeout.0).map_err(|e| e.to_string());
        assert_eq!(read("idle-timeout = 45"), Ok(Duration::from_secs(45)));
        assert_eq!(read("idle-timeout = 0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(read("idle-timeout = \"2m\""), Ok(Duration::from_secs(120)));
        assert_eq!(read("idle-timeout = \"45\""), Ok(Duration::from_secs(45)));
        for bad in ["idle-timeout = \"5x\"", "idle-timeout = -1", "idle-timeout = true"] {
            let e = read(bad).unwrap_err();
            assert!(e.contains("idle-timeout") && (e.contains("duration")), "{bad}: {e}");
        }
    }
}
