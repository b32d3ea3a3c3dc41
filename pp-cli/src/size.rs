//! Byte sizes with units, for flags, environment variables and config files: a plain number
//! is bytes; `K`/`KB`, `M`/`MB`, `G`/`GB`, `T`/`TB` are powers of 1000 and `KiB`, `MiB`, `GiB`,
//! `TiB` powers of 1024 (case does not matter; `1.5GB` and `20 GiB` work). In a TOML file a
//! size is a number of bytes or such a string. Out, sizes print with binary units (`1.5 GiB`).

pub use bytesize::ByteSize;

/// Parses a size (see the module doc), with an error that says what was wrong.
pub fn parse(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("not a size: {s:?} (use e.g. 500MB, 20GB, 20GiB or a number of bytes)"))
}

/// Parses a rate limit: a size per second (`2MB`, `2MB/s`, `500KiB/s`), or `off` (also
/// `none`, `unlimited`, `0`) for no limit.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    let t = s.trim();
    if ["off", "none", "unlimited", "0"].iter().any(|w| t.eq_ignore_ascii_case(w)) {
        return Ok(None);
    }
    let per = t.strip_suffix("/s").or_else(|| t.strip_suffix("/S")).unwrap_or(t);
    match parse(per) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(format!("not a rate: {s:?} (use e.g. 2MB/s, 500KiB/s, or off)")),
    }
}

/// A clap value parser for a rate flag: checked with [`parse_rate`], kept as written (a
/// config file may give the same setting, and a running peer parses it again).
pub fn rate_arg(s: &str) -> Result<String, String> {
    parse_rate(s).map(|_| s.to_string())
}

/// A size for people: `0 B`, `512 B`, `1.5 MiB`, `20.0 GiB`.
pub fn human(bytes: u64) -> String {
    ByteSize::b(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_with_units_or_off() {
        assert_eq!(parse_rate("2MB/s"), Ok(Some(2_000_000)));
        assert_eq!(parse_rate("2MB"), Ok(Some(2_000_000)));
        assert_eq!(parse_rate("500 KiB/s"), Ok(Some(500 << 10)));
        assert_eq!(parse_rate("off"), Ok(None));
        assert_eq!(parse_rate("0"), Ok(None));
        assert!(parse_rate("fast").unwrap_err().contains("not a rate"));
    }

    #[test]
    fn sizes_with_units_in() {
        assert_eq!(parse("20GB"), Ok(20_000_000_000));
        assert_eq!(parse("20GiB"), Ok(20 << 30));
        assert_eq!(parse("500MB"), Ok(500_000_000));
        assert_eq!(parse("500 MiB"), Ok(500 << 20));
        assert_eq!(parse("10G"), Ok(10_000_000_000));
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("1048576"), Ok(1 << 20));
        assert_eq!(parse("8kib"), Ok(8192));
        assert_eq!(parse(" 2TB "), Ok(2_000_000_000_000));
    }

    #[test]
    fn bad_sizes_say_what_was_given() {
        for bad in ["", "GB", "-5MB", "20XB", "twenty", "1e9"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("not a size") && e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_with_units_out() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 19), "1.5 MiB");
        assert_eq!(human(20 << 30), "20.0 GiB");
    }
}
