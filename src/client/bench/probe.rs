//! The server process's memory and CPU time, read from /proc (Linux) by its PID, and this
//! process's own CPU time.
//!
//! Reading fails soft: a missing or unreadable /proc gives zeros, never an error.

/// Reads a local process's figures from /proc.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    pid: u32,
}

/// One reading of [`Probe`]; zeros when /proc could not be read.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sample {
    pub(super) rss_bytes: u64,
    pub(super) peak_rss_bytes: u64,
    pub(super) cpu_seconds: f64,
}

impl Probe {
    pub(super) fn new(pid: u32) -> Probe {
        Probe { pid }
    }

    pub(super) fn sample(&self) -> Sample {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
        let kb = |key: &str| {
            status.as_deref().ok().and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
        };
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok();
        Sample {
            rss_bytes: kb("VmRSS:").unwrap_or(0) * 1024,
            peak_rss_bytes: kb("VmHWM:").unwrap_or(0) * 1024,
            cpu_seconds: stat.as_deref().and_then(cpu_seconds).unwrap_or(0.0),
        }
    }
}

/// What a measured part starts from: the server's figures (when its PID was given) and this
/// process's CPU time, taken together so that both cover the same stretch.
pub(super) struct Before {
    pub(super) server: Option<(Probe, Sample)>,
    pub(super) own_cpu_seconds: f64,
}

impl Before {
    /// The figures now.
    pub(super) fn now(probe: Option<Probe>) -> Before {
        Before {
            server: probe.map(|p| (p, p.sample())),
            own_cpu_seconds: own_cpu_seconds(),
        }
    }
}

/// CPU seconds (user + system, every thread) this process has spent so far; zero when
/// /proc cannot be read.
pub(super) fn own_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(cpu_seconds)
        .unwrap_or(0.0)
}

/// utime + stime of a /proc/PID/stat line, in seconds (Linux reports them in 1/100 s).
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may contain spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_after_a_name_with_spaces() {
        let stat = "42 (my server) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }

    #[test]
    fn a_short_or_nameless_stat_line_reads_as_nothing() {
        assert_eq!(cpu_seconds("42 (x) S 1 2 3"), None);
        assert_eq!(cpu_seconds("no parenthesis here"), None);
    }

    #[test]
    fn reads_this_process() {
        let s = Probe::new(std::process::id()).sample();
        assert!(s.rss_bytes > 0 && s.peak_rss_bytes >= s.rss_bytes, "{s:?}");
    }
}
