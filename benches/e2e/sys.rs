//! Small OS helpers: CPU pinning, file-descriptor limits, CPU time and RSS.

use std::time::Instant;

/// Number of online CPUs (of the machine, whatever this thread's affinity).
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as usize } else { 1 }
}

fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pins the calling thread to `cpu`. Returns false where it is not allowed.
pub fn pin_current_thread(cpu: usize) -> bool {
    let set = cpu_set(cpu);
    // SAFETY: pid 0 = the calling thread; the set lives on the stack.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Pins every thread of process `pid` to `cpu` (like `taskset -a -p`).
pub fn pin_process(pid: u32, cpu: usize) -> bool {
    let set = cpu_set(cpu);
    let mut ok = true;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let tids: Vec<i32> = match tasks {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => vec![pid as i32],
    };
    for tid in tids {
        // SAFETY: as above; tid is a thread of our own child.
        ok &= unsafe {
            libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
        };
    }
    ok
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return r.rlim_max;
            }
        }
        r.rlim_cur
    }
}

/// CPU seconds (user + system) used by this whole process so far.
pub fn self_cpu() -> f64 {
    // SAFETY: getrusage fills the struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
}

/// CPU seconds (user + system) used by process `pid`, from /proc/PID/stat.
pub fn proc_cpu(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after ')'.
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(14) + ticks(15)) / hz
}

/// VmRSS of process `pid` in bytes.
pub fn vm_rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Busy CPU seconds of the whole machine (all CPUs) from /proc/stat:
/// (task time: user + nice + system + steal, interrupt time: irq + softirq).
/// Interrupt time is charged to no process: on loopback it is mostly the
/// receive half of TCP that the sender's writes run.
pub fn machine_busy() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal …
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ((at(0) + at(1) + at(2) + at(7)) / hz, (at(5) + at(6)) / hz)
}

/// CPU use of this process, of the server and of everything else over an interval.
#[derive(Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    me: f64,
    server: f64,
    all: (f64, f64),
    pid: u32,
}

impl CpuMark {
    pub fn now(server_pid: u32) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            me: self_cpu(),
            server: proc_cpu(server_pid),
            all: machine_busy(),
            pid: server_pid,
        }
    }

    /// (client, server, other processes, irq + softirq) in % of one core since `self`.
    pub fn since3(&self) -> (f64, f64, f64, f64) {
        let dt = self.at.elapsed().as_secs_f64().max(1e-9);
        let me = self_cpu() - self.me;
        let server = proc_cpu(self.pid) - self.server;
        let (tasks, irq) = machine_busy();
        let other = (tasks - self.all.0 - me - server).max(0.0);
        (
            me / dt * 100.0,
            server / dt * 100.0,
            other / dt * 100.0,
            (irq - self.all.1) / dt * 100.0,
        )
    }
}

/// Sets the nice value of process `pid` (0 = this one); false if refused.
pub fn renice(pid: u32, nice: i32) -> bool {
    // SAFETY: plain libc call.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, pid as libc::id_t, nice) == 0 }
}

/// The calling thread's id (a `pid` for [`renice`]: the thread alone).
pub fn thread_id() -> u32 {
    // SAFETY: plain libc call.
    unsafe { libc::gettid() as u32 }
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Pids of the direct children of `pid` (from `/proc/*/stat`).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let s = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // Field 4 (ppid) is the second after the command name's ')'.
            let ppid: u32 = s[s.rfind(')')? + 2..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(p)
        })
        .collect()
}

/// CPU seconds used by each of several groups of processes, to turn into
/// % of one core over an interval (`ps -o %cpu`, but for the interval only).
pub struct GroupCpu {
    at: Instant,
    groups: Vec<(String, Vec<u32>, f64)>,
}

impl GroupCpu {
    pub fn now(groups: Vec<(String, Vec<u32>)>) -> GroupCpu {
        GroupCpu {
            at: Instant::now(),
            groups: groups
                .into_iter()
                .map(|(n, pids)| {
                    let t = pids.iter().map(|&p| proc_cpu(p)).sum();
                    (n, pids, t)
                })
                .collect(),
        }
    }

    /// (name, % of one core) of every group since `now`.
    pub fn since(&self) -> Vec<(String, f64)> {
        let dt = self.at.elapsed().as_secs_f64().max(1e-9);
        self.groups
            .iter()
            .map(|(n, pids, t0)| {
                let t: f64 = pids.iter().map(|&p| proc_cpu(p)).sum();
                (n.clone(), (t - t0) / dt * 100.0)
            })
            .collect()
    }
}

/// (user, system) CPU seconds of thread `tid` of process `pid`, from
/// `/proc/PID/task/TID/stat` (the loop is the main thread: `tid` = `pid`).
pub fn task_cpu(pid: u32, tid: u32) -> (f64, f64) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) else {
        return (0.0, 0.0);
    };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return (0.0, 0.0);
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(14) / hz, ticks(15) / hz)
}

/// Write syscalls thread `tid` of process `pid` has made (`syscw` of
/// `/proc/PID/task/PID/io`: write(2), writev(2) and their kin, not
/// send(2)/sendmsg(2); the server's sockets are written with writev).
/// Free to read, so a run can be counted without a tracer slowing it.
pub fn task_writes(pid: u32, tid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/io")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
