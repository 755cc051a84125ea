//! What `/proc` says about a process: resident memory, CPU time, open files and their
//! limit; and which processes are the Switchyard servers under test.

use std::path::Path;
use std::time::Duration;

/// Linux reports `/proc/PID/stat` times in USER_HZ ticks, 100 per second on every
/// architecture Linux exports to user space.
const TICKS_PER_SEC: u64 = 100;

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system CPU time the process has used.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_micros(
        (utime + stime) * 1_000_000 / TICKS_PER_SEC,
    ))
}

/// Open file descriptors now, and the soft limit on them.
pub fn files(pid: u32) -> Option<(u64, u64)> {
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    let soft = if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse().ok()?
    };
    Some((open, soft))
}

/// Processes named `switchyard` other than this one and its children (the agents).
pub fn find_servers() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || parent(pid) == Some(me) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != "switchyard" {
            continue;
        }
        // Other benches and their agents are not servers.
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let role = args.iter().skip(1).find(|a| !a.starts_with(b"-"));
        if matches!(role, Some(r) if r.starts_with(b"bench")) {
            continue;
        }
        found.push(pid);
    }
    found.sort_unstable();
    found
}

fn parent(pid: u32) -> Option<u32> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A short description of a server process for the results: its pid and role.
pub fn describe(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|b| *b == 0)
        .skip(1)
        .filter(|a| !a.is_empty())
        .take(3)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    format!("{pid} ({})", words.join(" "))
}

/// CPU time of a set of processes, summed; missing processes count zero.
pub fn cpu_sum(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|p| cpu_time(*p)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_time(me).is_some());
        let (open, limit) = files(me).unwrap();
        assert!(open > 0 && limit >= open);
        assert!(!find_servers().contains(&me));
    }
}
