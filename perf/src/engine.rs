//! Starting an mcm-engine for a measurement, and reading process CPU time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// An engine this tool started; killed on drop.
#[derive(Debug)]
pub struct Engine {
    child: Child,
    /// Its SDK Unix socket.
    pub socket: PathBuf,
    /// Its gRPC address, as it logged it.
    pub grpc: Option<String>,
    _dir: tempfile::TempDir,
}

/// How to start the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The binary.
    pub binary: PathBuf,
    /// CPUs of its lcores.
    pub lcores: Vec<usize>,
    /// CPU of its control thread.
    pub control_cpu: usize,
    /// `busy` or `adaptive`.
    pub idle: String,
    /// How long an adaptive lcore spins before parking, µs.
    pub spin_us: u64,
    /// How long before a port's deadline a parked lcore wakes, µs.
    pub wake_margin_us: u64,
    /// `[st2110] rx_read_interval_us` of the started engine.
    pub rx_read_interval_us: u32,
    /// More command-line flags (e.g. `--agent <addr>`).
    pub args: Vec<String>,
    /// More lines of the config's `[sdk]` table (e.g. `keepalive_timeout_ms = 1500`).
    pub sdk_lines: String,
}

/// Command-line options naming the engine a measurement runs against.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Attach to the engine serving this Unix socket instead of starting one.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// The mcm-engine binary to start (default: next to this executable).
    #[arg(long)]
    pub engine: Option<PathBuf>,
    /// CPUs of the started engine's lcores.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub lcores: Vec<usize>,
    /// CPU of the started engine's control thread.
    #[arg(long, default_value_t = 0)]
    pub control_cpu: usize,
    /// Idle policy of the started engine's lcores: busy or adaptive.
    #[arg(long, default_value = "adaptive")]
    pub idle: String,
    /// How long an adaptive lcore spins after its last work before parking, µs. 0 parks at
    /// once: the engine's CPU time is then what its work costs (plus wake-ups), not a
    /// polling core's full time.
    #[arg(long, default_value_t = 200)]
    pub spin_us: u64,
    /// How long before an ST 2110 pacer's next packet a parked lcore wakes (nearer, it spins),
    /// µs. 0 with --spin-us 0 parks between every batch: the engine's CPU time is then closest
    /// to its work, at the price of late wake-ups.
    #[arg(long, default_value_t = 1000)]
    pub wake_margin_us: u64,
    /// How long the started engine's ST 2110 rx sessions let datagrams gather after finding
    /// their socket empty, µs (its `[st2110] rx_read_interval_us`).
    #[arg(long, default_value_t = 25)]
    pub rx_read_interval_us: u32,
    /// CPUs this tool, its threads and its receiver processes run on (default: every CPU
    /// not given to the started engine's lcores, so that they never preempt an lcore; all
    /// CPUs when that leaves none, or when attaching with --socket).
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
}

impl EngineArgs {
    /// The engine started for the run (none when attaching) and the SDK socket to use.
    pub fn attach_or_start(&self) -> Result<(Option<Engine>, PathBuf), String> {
        if let Some(s) = &self.socket {
            return Ok((None, s.clone()));
        }
        let e = Engine::start(&EngineOptions {
            binary: self.engine.clone().unwrap_or_else(default_binary),
            lcores: self.lcores.clone(),
            control_cpu: self.control_cpu,
            idle: self.idle.clone(),
            spin_us: self.spin_us,
            wake_margin_us: self.wake_margin_us,
            rx_read_interval_us: self.rx_read_interval_us,
            args: Vec::new(),
            sdk_lines: String::new(),
        })?;
        let socket = e.socket.clone();
        let online = std::thread::available_parallelism().map_or(1, usize::from);
        let cpus = self.cpus.clone().unwrap_or_else(|| {
            let rest: Vec<usize> = (0..online).filter(|c| !self.lcores.contains(c)).collect();
            if rest.is_empty() {
                (0..online).collect()
            } else {
                rest
            }
        });
        pin_this_thread(&cpus)?;
        Ok((Some(e), socket))
    }
}

/// Restricts the calling thread, and so every thread and process it starts later, to `cpus`.
pub fn pin_this_thread(cpus: &[usize]) -> Result<(), String> {
    // SAFETY: cpu_set_t is plain old data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(format!("--cpus: CPU {c} is out of range"));
        }
        // SAFETY: `c` is below CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if rc != 0 {
        return Err(format!(
            "cannot run on CPUs {cpus:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The `mcm-engine` next to this executable (cargo puts both in the same directory).
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("mcm-engine")))
        .unwrap_or_else(|| PathBuf::from("mcm-engine"))
}

impl Engine {
    /// Starts an engine with a private shared-memory directory; returns once it serves.
    pub fn start(o: &EngineOptions) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let cpus: Vec<String> = o.lcores.iter().map(ToString::to_string).collect();
        let config = format!(
            "[lcores]\ncpus = [{}]\nidle = \"{}\"\nspin_us = {}\nwake_margin_us = {}\n\
             [control]\ncpu = {}\n\
             stats_interval_ms = 0\n[sdk]\ntcp = \"127.0.0.1:0\"\n{}\n[grpc]\naddr = \"127.0.0.1:0\"\n[memory]\nshm_dir = \"{}\"\n\
             [st2110]\nrx_read_interval_us = {}\n",
            cpus.join(", "),
            o.idle,
            o.spin_us,
            o.wake_margin_us,
            o.control_cpu,
            o.sdk_lines,
            dir.path().join("shm").display(),
            o.rx_read_interval_us
        );
        let path = dir.path().join("cores.toml");
        std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut child = Command::new(&o.binary)
            .arg("--config")
            .arg(&path)
            .args(["--log-level", "info"])
            .args(&o.args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", o.binary.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        // MCM_PERF_ENGINE_LOG=1 echoes every line of the engines' logs (for finding where
        // time goes); otherwise only errors.
        let echo_all = std::env::var_os("MCM_PERF_ENGINE_LOG").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if echo_all || line.contains("ERROR") {
                    eprintln!("engine: {line}");
                }
                let _ = tx.send(line);
            }
        });
        let mut socket = None;
        let mut grpc = None;
        let mut said = Vec::new();
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) => l,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err("the engine did not start within 30 s".to_owned());
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child
                        .wait()
                        .map_or_else(|e| e.to_string(), |s| s.to_string());
                    return Err(format!(
                        "the engine exited ({status}) before serving: {}",
                        said.join(" / ")
                    ));
                }
            };
            said.push(line.clone());
            if let Some(p) = line.split("Unix socket listening on ").nth(1) {
                socket = Some(PathBuf::from(p.trim()));
            }
            if let Some(p) = line.split("gRPC Server listening on ").nth(1) {
                grpc = p.split_whitespace().next().map(str::to_owned);
            }
            if line.contains("engine running") {
                break;
            }
        }
        Ok(Self {
            child,
            socket: socket.ok_or("the engine did not log its Unix socket")?,
            grpc,
            _dir: dir,
        })
    }

    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds a process has used so far (from `/proc/PID/stat`).
pub fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_at(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// User + system CPU seconds of this process so far, every thread (`getrusage`: exact, where
/// `/proc/PID/stat` counts whole clock ticks).
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage for the call to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return cpu_seconds_at(Path::new("/proc/self/stat"));
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn cpu_seconds_at(path: &Path) -> f64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = text.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}
