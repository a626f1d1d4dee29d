//! CPU time from `/proc` (Linux): of one process, of a Postfix instance (its
//! master and every child, live or already reaped), and of the whole machine.

/// `/proc` reports times in USER_HZ, which Linux fixes at 100 on every
/// architecture it exports to user space.
const TICKS_PER_SEC: f64 = 100.0;

/// The fields of `/proc/PID/stat` after the command name (which is in
/// parentheses and may hold spaces): field 3 (state) is index 0.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // The state is a letter; keep its slot so indices match the manual's fields.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// Field `n` (1-based, as in proc(5)) of a parsed stat line.
fn field(fields: &[u64], n: usize) -> Option<u64> {
    fields.get(n.checked_sub(3)?).copied()
}

/// CPU seconds (user + system) a process has used so far, its threads included.
pub fn process_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    Some((field(&f, 14)? + field(&f, 15)?) as f64 / TICKS_PER_SEC)
}

/// CPU seconds of a process and all its children: its own time, the time of the
/// children it has reaped (`cutime + cstime`), and the time of the live ones.
/// Postfix's master forks a process per service and reaps each when it exits, so
/// the difference of two readings is what the instance used in between.
pub fn tree_seconds(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let mut ticks = field(&f, 14)? + field(&f, 15)? + field(&f, 16)? + field(&f, 17)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(cf) = stat_fields(child) else {
            continue;
        };
        if field(&cf, 4) == Some(u64::from(pid)) {
            ticks += field(&cf, 14).unwrap_or(0) + field(&cf, 15).unwrap_or(0);
        }
    }
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// The machine's CPU time so far: (busy seconds, idle seconds, iowait seconds),
/// summed over every core, from the `cpu` line of `/proc/stat`.
pub fn machine_seconds() -> Option<(f64, f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let idle = *v.get(3)?;
    let iowait = v.get(4).copied().unwrap_or(0);
    let busy: u64 = v.iter().take(8).sum::<u64>() - idle - iowait;
    Some((
        busy as f64 / TICKS_PER_SEC,
        idle as f64 / TICKS_PER_SEC,
        iowait as f64 / TICKS_PER_SEC,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_machine() {
        let me = std::process::id();
        // Spin a little so there is something to count.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(process_seconds(me).is_some());
        assert!(tree_seconds(me).unwrap() >= process_seconds(me).unwrap());
        let (busy, idle, _) = machine_seconds().unwrap();
        assert!(busy > 0.0 && idle >= 0.0);
    }
}
