//! The `process_*` metrics every Prometheus client library exports (resident and virtual
//! memory, CPU seconds, open and allowed file descriptors, start time), read from `/proc`
//! through the `procfs` crate, and `pp_build_info`. Names and units follow the conventions of
//! the official clients, so dashboards made for any exporter read them.

use std::fmt::Write;

/// The process figures, once read (`None` where `/proc` cannot be read, e.g. not on Linux).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessFigures {
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

/// Reads this process's figures from `/proc/self`.
pub fn read() -> Option<ProcessFigures> {
    let me = procfs::process::Process::myself().ok()?;
    let stat = me.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let page = procfs::page_size();
    let boot = procfs::boot_time_secs().ok()? as f64;
    let max_fds = me.limits().ok().and_then(|l| match l.max_open_files.soft_limit {
        procfs::process::LimitValue::Value(v) => Some(v),
        procfs::process::LimitValue::Unlimited => None,
    });
    Some(ProcessFigures {
        resident_memory_bytes: stat.rss * page,
        virtual_memory_bytes: stat.vsize,
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        open_fds: me.fd_count().ok()? as u64,
        max_fds,
        start_time_seconds: boot + stat.starttime as f64 / ticks,
    })
}

/// The exposition of `figures` and of the build info.
pub fn exposition(figures: Option<&ProcessFigures>) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    if let Some(p) = figures {
        family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", &p.resident_memory_bytes);
        family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", &p.virtual_memory_bytes);
        family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            &p.cpu_seconds,
        );
        family("process_open_fds", "gauge", "Number of open file descriptors.", &p.open_fds);
        if let Some(max) = p.max_fds {
            family("process_max_fds", "gauge", "Maximum number of open file descriptors.", &max);
        }
        let help = "Start time of the process since unix epoch in seconds.";
        family("process_start_time_seconds", "gauge", help, &p.start_time_seconds);
    }
    let _ = writeln!(
        out,
        "# HELP pp_build_info The tracker's version and build profile (always 1).\n# TYPE pp_build_info gauge\n\
         pp_build_info{{version=\"{}\",profile=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_a_start_time_and_open_files() {
        let p = read().expect("/proc/self is readable on Linux");
        assert!(p.resident_memory_bytes > 0 && p.virtual_memory_bytes >= p.resident_memory_bytes);
        assert!(p.open_fds >= 3, "stdin, stdout and stderr at least");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0 * 365.0);
    }

    #[test]
    fn build_info_is_always_there() {
        let text = exposition(None);
        assert!(text.contains("pp_build_info{version=\"") && text.trim_end().ends_with(" 1"));
        assert!(!text.contains("process_"));
    }
}
