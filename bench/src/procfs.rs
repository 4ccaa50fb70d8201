//! What /proc says about the gateway process and the cores.

use std::fs;
use std::process::Command;

use anyhow::anyhow;

/// One `Name:` field of `/proc/<pid>/status`.
pub fn status_field(pid: u32, name: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: no field {}", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// Two of one core's times so far, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreTicks {
    /// Idle while a task that last ran there waited for the disk (a commit's fsync).
    pub iowait: u64,
    /// The hypervisor ran something else.
    pub steal: u64,
}

/// [`CoreTicks`] of one core, from `/proc/stat`.
pub fn core_ticks(core: usize) -> anyhow::Result<CoreTicks> {
    core_ticks_in(&fs::read_to_string("/proc/stat")?, core)
}

fn core_ticks_in(stat: &str, core: usize) -> anyhow::Result<CoreTicks> {
    let name = format!("cpu{core}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))
        .ok_or_else(|| anyhow!("/proc/stat: no {name}"))?;
    // cpuN user nice system idle iowait irq softirq steal …
    let field = |i: usize, what: &str| {
        line.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("/proc/stat: no {what} for {name}"))
    };
    Ok(CoreTicks {
        iowait: field(5, "iowait")?,
        steal: field(8, "steal")?,
    })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields are read by their place in the core's line, not the summary `cpu` line's.
    #[test]
    fn a_cores_iowait_and_steal_are_its_fifth_and_eighth_numbers() {
        let stat = "cpu  900 800 700 600 500 400 300 200 0 0\n\
                    cpu0 10 11 12 13 14 15 16 17 0 0\n\
                    cpu1 20 21 22 23 24 25 26 27 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(
            core_ticks_in(stat, 1).unwrap(),
            CoreTicks {
                iowait: 24,
                steal: 27
            }
        );
        assert_eq!(core_ticks_in(stat, 0).unwrap().iowait, 14);
        assert!(core_ticks_in(stat, 2).is_err());
    }
}
