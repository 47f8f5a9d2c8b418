//! Reading the server's memory and CPU time, the machine's CPU time and this
//! process's limits from `/proc` (Linux).

use std::path::Path;
use std::time::Duration;

/// Clock ticks per second of the CPU times in `/proc` (`USER_HZ`, fixed at 100
/// by the kernel's user-space ABI on every architecture Linux reports it for).
const USER_HZ: u64 = 100;

/// Resident memory of a process, bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss: u64,
    /// `VmHWM`: the peak resident size.
    pub hwm: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid` from `/proc/PID/status`.
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
    })
}

/// CPU time (user + system, all threads) a process has used so far, from
/// fields 14 and 15 of `/proc/PID/stat`; 10 ms resolution.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_cpu(&stat)
}

/// `utime + stime` of a `/proc/PID/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_process_cpu(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(ticks(utime + stime))
}

/// CPU time of the whole machine so far, summed over all cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineCpu {
    /// Time spent running anything (everything but idle and iowait).
    pub busy: Duration,
    /// All time, busy or not.
    pub total: Duration,
}

/// Reads the machine's CPU time from the `cpu` line of `/proc/stat`.
pub fn machine_cpu() -> Option<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_cpu(&stat)
}

/// The aggregate `cpu` line of `/proc/stat`: user nice system idle iowait irq
/// softirq steal (guest time is already inside user and nice).
fn parse_machine_cpu(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some(MachineCpu {
        busy: ticks(total.saturating_sub(idle)),
        total: ticks(total),
    })
}

fn ticks(n: u64) -> Duration {
    Duration::from_millis(n.saturating_mul(1000 / USER_HZ))
}

/// Open descriptors of `pid` (the entries of `/proc/PID/fd`): its sockets,
/// files and pipes.
pub fn open_files(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
}

/// Finds the process listening on TCP `port` (IPv4 or IPv6): the socket's inode
/// from `/proc/net/tcp{,6}`, then the process holding a descriptor to it.
/// `None` when not found or not permitted.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let processes = std::fs::read_dir("/proc").ok()?;
    for entry in processes.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if holds_any(&entry.path().join("fd"), &targets) {
            return Some(pid);
        }
    }
    None
}

fn holds_any(fd_dir: &Path, targets: &[String]) -> bool {
    let Ok(fds) = std::fs::read_dir(fd_dir) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .ok()
            .and_then(|link| link.to_str().map(|l| targets.iter().any(|t| t == l)))
            .unwrap_or(false)
    })
}

/// Inodes of sockets in state LISTEN (0A) on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let wanted = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            (local.ends_with(&wanted) && *state == "0A").then(|| (*inode).to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn reads_cpu_time_after_the_command_name() {
        let stat =
            "4242 (fleet reg (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(
            super::parse_process_cpu(stat),
            Some(Duration::from_millis(3250))
        );
        assert_eq!(super::parse_process_cpu("4242 (x) S 1"), None);
    }

    #[test]
    fn reads_machine_busy_and_total() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        let cpu = super::parse_machine_cpu(stat);
        assert_eq!(
            cpu,
            Some(super::MachineCpu {
                busy: Duration::from_millis(1600),
                total: Duration::from_millis(10000),
            })
        );
    }

    #[test]
    fn finds_listening_inode() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:4745 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0 100 0 0 10 0\n\
   1: 0100007F:4745 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 654321 1 0 100 0 0 10 0\n";
        assert_eq!(
            super::listening_inodes(table, 0x4745),
            vec!["123456".to_owned()]
        );
        assert!(super::listening_inodes(table, 80).is_empty());
    }
}
