//! `command` graders: an external program scores a sample, cut off from the network and from
//! writing to the project, under a time and a memory limit; a crash, a timeout or output that is not
//! a score is a typed grader error, never a reward.
//!
//! Isolation is Linux namespaces entered between fork and exec: a new user namespace (so no
//! privilege is needed), a new network namespace (only a loopback interface, down: no route
//! anywhere), a new mount namespace in which the project directory is bind-mounted read-only. The
//! limits are `setrlimit` (address space, CPU seconds, no core files) plus a wall-clock deadline
//! after which the whole process group is killed. Where namespaces are unavailable (a kernel or
//! container that forbids them), building a command grader fails with
//! [`GradeError::NoIsolation`] unless the project opts in to running it with only the limits.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{GradeError, Result};
use crate::spec::CommandSpec;

/// What a caller that runs command graders provides.
#[derive(Debug, Clone)]
pub struct CommandEnv {
    /// The project root: the program's working directory, seen read-only.
    pub project_dir: PathBuf,
    /// Run the program without namespaces where the machine cannot isolate it (`[policy]
    /// allow_unisolated_commands`).
    pub allow_unisolated: bool,
}

/// Most of a program's stdout or stderr that is read; the rest is discarded.
const MAX_OUTPUT: u64 = 1 << 20;

/// A command grader's program, checked and ready to run.
#[derive(Debug)]
pub(crate) struct Program {
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    timeout: Duration,
    memory_bytes: u64,
    isolated: bool,
}

/// Whether this machine can isolate a command grader (checked once per process, on the temporary
/// directory): `Err` says why not.
pub fn isolation() -> std::result::Result<(), String> {
    static PROBE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| isolation_at(&std::env::temp_dir()))
        .clone()
}

/// Whether a child can enter the namespaces and mount `dir` read-only: a child does exactly that,
/// then exits without running anything.
fn isolation_at(dir: &Path) -> std::result::Result<(), String> {
    let setup = Setup::new(dir, true, 64 << 20, 1)?;
    let mut cmd = Command::new("/");
    // SAFETY: the closure only makes raw system calls on data prepared before the fork (see
    // `Setup::enter`), then ends the child without running anything.
    unsafe {
        cmd.pre_exec(move || {
            setup.enter()?;
            libc::_exit(0)
        });
    }
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("entering the namespaces failed: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the isolation probe ended with {status}"))
    }
}

/// The longest `timeout_seconds` and largest `memory_mb` a grader may ask for.
const MAX_TIMEOUT_SECONDS: f64 = 3600.0;
const MAX_MEMORY_MB: u64 = 1 << 20;

impl Program {
    pub(crate) fn new(grader: &str, spec: &CommandSpec, env: &CommandEnv) -> Result<Program> {
        let err = |msg: String| GradeError::Spec {
            grader: grader.to_string(),
            msg,
        };
        let Some((first, args)) = spec.command.split_first() else {
            return Err(err(
                "`command` is empty; write the program and its arguments, e.g. [\"python3\", \"graders/check.py\"]".into(),
            ));
        };
        if !(spec.timeout_seconds > 0.0 && spec.timeout_seconds <= MAX_TIMEOUT_SECONDS) {
            return Err(err(format!(
                "timeout_seconds must be a number in (0, {MAX_TIMEOUT_SECONDS}]"
            )));
        }
        if !(16..=MAX_MEMORY_MB).contains(&spec.memory_mb) {
            return Err(err(format!(
                "memory_mb must be from 16 to {MAX_MEMORY_MB} (it limits the address space)"
            )));
        }
        // Absolute, so that the program is found after the child has entered the directory.
        let dir = std::fs::canonicalize(&env.project_dir)
            .map_err(|e| err(format!("{}: {e}", env.project_dir.display())))?;
        let program = find_program(first, &dir).ok_or_else(|| {
            err(format!(
                "program `{first}` not found (a path with `/` is relative to the project, a bare name is looked up on PATH)"
            ))
        })?;
        let isolated = match isolation().and_then(|()| isolation_at(&dir)) {
            Ok(()) => true,
            Err(_) if env.allow_unisolated => false,
            Err(why) => {
                return Err(GradeError::NoIsolation {
                    grader: grader.to_string(),
                    why,
                });
            }
        };
        Ok(Program {
            program,
            args: args.to_vec(),
            dir,
            timeout: Duration::from_secs_f64(spec.timeout_seconds),
            memory_bytes: spec.memory_mb << 20,
            isolated,
        })
    }

    /// Whether the program runs in the namespaces (false only where the project allowed otherwise).
    pub(crate) fn isolated(&self) -> bool {
        self.isolated
    }

    /// Run the program on one sample (`input`: the JSON document it reads) and read its score.
    pub(crate) fn score(&self, grader: &str, input: &[u8]) -> Result<f64> {
        let runtime = |msg: String| GradeError::Runtime {
            grader: grader.to_string(),
            msg,
        };
        let cpu_seconds = self.timeout.as_secs() + 2;
        let setup = Setup::new(&self.dir, self.isolated, self.memory_bytes, cpu_seconds)
            .map_err(&runtime)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: see `Setup::enter`: raw system calls on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || setup.enter());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| runtime(format!("`{}` did not start: {e}", self.program.display())))?;
        let pid = child.id() as libc::pid_t;
        let mut stdin = child.stdin.take();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            // A program that exits without reading its input is not an error here.
            if let Some(s) = stdin.as_mut() {
                let _ = s.write_all(&input);
            }
        });
        // Readers report through channels: a process that left the group (a daemon, setsid) and
        // holds the pipe open must not keep hone waiting past the deadline.
        let read = |pipe: Option<Box<dyn Read + Send>>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(p) = pipe {
                    let _ = p.take(MAX_OUTPUT).read_to_end(&mut out);
                }
                let _ = tx.send(out);
            });
            rx
        };
        let stdout = read(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = read(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => break None,
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => {
                    // SAFETY: a plain system call on the group the child leads.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                    let _ = child.wait();
                    return Err(runtime(format!("waiting for the program: {e}")));
                }
            }
        };
        // The whole group goes, finished or not: a background child left holding stdout would
        // otherwise keep the readers waiting.
        // SAFETY: a plain system call; the group is the one the child leads.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
        let status = match status {
            Some(s) => s,
            None => {
                let _ = child.wait();
                return Err(GradeError::Timeout {
                    grader: grader.to_string(),
                    seconds: self.timeout.as_secs_f64(),
                });
            }
        };
        // The writer is not joined: a process holding stdin without reading would block it.
        drop(writer);
        let grace = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        let out = stdout.recv_timeout(grace).map_err(|_| {
            runtime(
                "the program exited but a process it started still holds its output open".into(),
            )
        })?;
        let err = stderr
            .recv_timeout(Duration::from_secs(1))
            .unwrap_or_default();
        if !status.success() {
            let last = String::from_utf8_lossy(&err)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(": {}", l.trim()))
                .unwrap_or_default();
            let how = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(c), _) => format!("exited with code {c}"),
                (None, Some(s)) => format!("was killed by signal {s}"),
                _ => format!("ended with {status}"),
            };
            return Err(runtime(format!(
                "the command {how} (memory limit {} MiB){last}",
                self.memory_bytes >> 20
            )));
        }
        parse_score(&String::from_utf8_lossy(&out)).map_err(runtime)
    }
}

/// The score a program printed: one number, or a JSON object with a numeric `reward`.
fn parse_score(out: &str) -> std::result::Result<f64, String> {
    let t = out.trim();
    let r = t.parse::<f64>().ok().or_else(|| {
        serde_json::from_str::<serde_json::Value>(t)
            .ok()?
            .get("reward")?
            .as_f64()
    });
    match r {
        Some(r) if r.is_finite() => Ok(r),
        _ => {
            let shown: String = t.chars().take(80).collect();
            Err(format!(
                "the command printed `{shown}`, not a score: print one finite number, or {{\"reward\": x}}"
            ))
        }
    }
}

fn find_program(name: &str, project: &Path) -> Option<PathBuf> {
    let is_file = |p: &Path| p.is_file();
    if name.contains('/') {
        let p = project.join(name);
        return is_file(&p).then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| is_file(p))
}

/// Everything the child needs between fork and exec, prepared beforehand: after the fork only
/// async-signal-safe system calls may run, so nothing here allocates once `enter` starts.
struct Setup {
    isolated: bool,
    dir: CString,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    /// The mount flags the project's file system already has (`nosuid`, `nodev`...): a remount in a
    /// user namespace must keep them, or the kernel refuses it.
    keep_flags: libc::c_ulong,
    memory_bytes: u64,
    cpu_seconds: u64,
}

impl Setup {
    fn new(
        dir: &Path,
        isolated: bool,
        memory_bytes: u64,
        cpu_seconds: u64,
    ) -> std::result::Result<Setup, String> {
        let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| format!("{}: a NUL byte in the path", dir.display()))?;
        let mut keep_flags = 0;
        if isolated {
            // SAFETY: `c` is a valid C string and `st` a properly sized out-parameter.
            let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
                for (st_flag, ms_flag) in [
                    (libc::ST_NOSUID, libc::MS_NOSUID),
                    (libc::ST_NODEV, libc::MS_NODEV),
                    (libc::ST_NOEXEC, libc::MS_NOEXEC),
                    (libc::ST_NOATIME, libc::MS_NOATIME),
                    (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
                    (libc::ST_RELATIME, libc::MS_RELATIME),
                ] {
                    if st.f_flag & st_flag != 0 {
                        keep_flags |= ms_flag;
                    }
                }
            }
        }
        // SAFETY: plain system calls without arguments.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Ok(Setup {
            isolated,
            dir: c,
            uid_map: format!("0 {uid} 1").into_bytes(),
            gid_map: format!("0 {gid} 1").into_bytes(),
            keep_flags,
            memory_bytes,
            cpu_seconds,
        })
    }

    /// In the child, before exec: limits, then (isolated) namespaces and the read-only project,
    /// then the working directory.
    fn enter(&self) -> std::io::Result<()> {
        let fail = || Err(std::io::Error::last_os_error());
        // SAFETY: raw system calls on pointers to memory owned by `self`, which the child's copy of
        // the address space keeps alive until exec.
        unsafe {
            for (res, v) in [
                (libc::RLIMIT_AS, self.memory_bytes),
                (libc::RLIMIT_CPU, self.cpu_seconds),
                (libc::RLIMIT_CORE, 0),
            ] {
                let lim = libc::rlimit {
                    rlim_cur: v as libc::rlim_t,
                    rlim_max: v as libc::rlim_t,
                };
                if libc::setrlimit(res, &lim) != 0 {
                    return fail();
                }
            }
            if self.isolated {
                let flags = libc::CLONE_NEWUSER
                    | libc::CLONE_NEWNS
                    | libc::CLONE_NEWNET
                    | libc::CLONE_NEWIPC;
                if libc::unshare(flags) != 0 {
                    return fail();
                }
                // Older kernels lack setgroups; the maps below still work there.
                let _ = write_file(c"/proc/self/setgroups", b"deny");
                write_file(c"/proc/self/uid_map", &self.uid_map)?;
                write_file(c"/proc/self/gid_map", &self.gid_map)?;
                let none = std::ptr::null();
                if libc::mount(
                    none,
                    c"/".as_ptr(),
                    none,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
                let dir = self.dir.as_ptr();
                if libc::mount(
                    dir,
                    dir,
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return fail();
                }
                let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | self.keep_flags;
                if libc::mount(none, dir, none, ro, std::ptr::null()) != 0 {
                    return fail();
                }
            }
            // After the mounts: a directory entered before them would be the writable one.
            if libc::chdir(self.dir.as_ptr()) != 0 {
                return fail();
            }
        }
        Ok(())
    }
}

/// `open`, `write`, `close`: async-signal-safe, no allocation.
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: `path` is a C string, `data` a live slice.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let r = if n < 0 || n as usize != data.len() {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        };
        libc::close(fd);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_numbers_or_reward_objects() {
        assert_eq!(parse_score(" 0.75\n"), Ok(0.75));
        assert_eq!(parse_score("{\"reward\": 1}"), Ok(1.0));
        assert!(parse_score("NaN").unwrap_err().contains("not a score"));
        assert!(
            parse_score("looks good")
                .unwrap_err()
                .contains("looks good")
        );
        assert!(parse_score("").is_err());
    }
}
