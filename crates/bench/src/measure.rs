//! `postline-bench measure --out FILE -- CMD ARGS...`: runs CMD (stdout and stderr passed
//! through), then writes its wall time, user and system CPU and peak RSS to FILE as JSON.
//!
//! bench/run measures every client through this small process rather than from Python: a
//! child's `ru_maxrss` keeps the high-water mark of the process it was forked from (across
//! exec), so a child of the Python harness would never read below the harness's own ~20 MiB.
//! From here the floor is this binary's few MiB (the `baseline` figure in RESULTS.md).

use std::process::Command;
use std::time::Instant;

pub fn run(out: &str, cmd: &[String]) -> Result<String, String> {
    let (program, args) = cmd.split_first().ok_or("measure: no command")?;
    let start = Instant::now();
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    // SAFETY: getrusage only writes the struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) != 0 {
            return Err(format!("getrusage: {}", std::io::Error::last_os_error()));
        }
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let code = status.code().unwrap_or(-1);
    let json = format!(
        "{{\"exit\":{code},\"wall_s\":{wall:.6},\"user_s\":{:.6},\"sys_s\":{:.6},\"maxrss_kib\":{}}}\n",
        tv(ru.ru_utime),
        tv(ru.ru_stime),
        ru.ru_maxrss
    );
    std::fs::write(out, json).map_err(|e| format!("{out}: {e}"))?;
    if !status.success() {
        return Err(format!("{program} exited with {status}"));
    }
    Ok(String::new())
}
