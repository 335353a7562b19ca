//! The test harness shared by the integration tests: a real `mcm-engine` process.

#![allow(dead_code)]

pub mod raw;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

pub const BIN: &str = env!("CARGO_BIN_EXE_mcm-engine");
pub const WAIT: Duration = Duration::from_secs(30);

/// A running engine with its own temporary directory, ports and log.
pub struct Engine {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub tcp: SocketAddr,
    pub grpc: SocketAddr,
    pub unix: PathBuf,
    pub shm: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn config(dir: &Path, extra: &str) -> String {
    let shm = dir.join("shm");
    format!(
        "[lcores]\ncpus = [1]\n[control]\ncpu = 0\nstats_interval_ms = 0\n[sdk]\ntcp = \"127.0.0.1:0\"\n\
         [grpc]\naddr = \"127.0.0.1:0\"\n[memory]\nshm_dir = \"{}\"\n{extra}",
        shm.display()
    )
}

/// Runs the engine on the test template with `lines` added to its `[sdk]` table, expecting it
/// to refuse the configuration (exit status 2); returns what it printed on stderr.
pub fn refused_sdk_config(lines: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cores.toml");
    let text = config(dir.path(), "").replace("[sdk]\n", &format!("[sdk]\n{lines}\n"));
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

impl Engine {
    /// Starts the engine with the test template; `patch` edits the TOML text.
    pub fn start_with(patch: impl FnOnce(String) -> String, args: &[&str]) -> Engine {
        Self::start_env(patch, args, &[])
    }

    /// [`start_with`](Self::start_with), with `env` added to the engine's environment.
    pub fn start_env(
        patch: impl FnOnce(String) -> String,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Engine {
        Self::start_umask(patch, args, env, None)
    }

    /// [`start_env`](Self::start_env), with the engine started under `umask` when given.
    pub fn start_umask(
        patch: impl FnOnce(String) -> String,
        args: &[&str],
        env: &[(&str, &str)],
        umask: Option<u32>,
    ) -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let text = patch(config(dir.path(), ""));
        let path = dir.path().join("cores.toml");
        std::fs::write(&path, text).unwrap();
        let mut cmd = Command::new(BIN);
        if let Some(mask) = umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask is async-signal-safe and touches nothing but the child's mask.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .arg("--config")
            .arg(&path)
            .args(["--log-level", "info"])
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut e = Engine {
            child,
            log,
            tcp: "0.0.0.0:0".parse().unwrap(),
            grpc: "0.0.0.0:0".parse().unwrap(),
            unix: PathBuf::new(),
            shm: dir.path().join("shm"),
            _dir: dir,
        };
        let line = e.wait_log("TCP Server listening on ");
        e.tcp = line.rsplit(' ').next().unwrap().parse().unwrap();
        let line = e.wait_log("gRPC Server listening on ");
        let after = line.split("gRPC Server listening on ").nth(1).unwrap();
        e.grpc = after.split(' ').next().unwrap().parse().unwrap();
        let line = e.wait_log("Unix socket listening on ");
        e.unix = PathBuf::from(line.rsplit(' ').next().unwrap());
        e.wait_log("engine running");
        e
    }

    pub fn start() -> Engine {
        Self::start_with(|t| t, &[])
    }

    /// Waits for a log line containing `needle`; panics with the log after [`WAIT`].
    pub fn wait_log(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "engine exited ({status}) before logging {needle:?}:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: Signal) {
        rustix::process::kill_process(Pid::from_raw(self.pid()).unwrap(), sig).unwrap();
    }

    /// Waits for the process to exit, killing it if it takes longer than [`WAIT`].
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("engine did not exit:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to `socket` as uid/gid 65534 (nobody) with Python and prints what the engine sent
/// before closing, or the connect error.
pub fn connect_as_nobody(socket: &Path) -> String {
    use std::os::unix::process::CommandExt;
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print('CONNECT', type(e).__name__); sys.exit(0)\n\
        s.settimeout(10)\n\
        data=b''\n\
        while True:\n    b=s.recv(4096)\n    if not b: break\n    data+=b\n\
        print('GOT', data.decode('utf-8','replace'))\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lets uid 65534 reach the engine's socket through the test's private directories.
pub fn open_path_to(socket: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = socket.parent();
    while let Some(dir) = p {
        if dir == Path::new("/") || dir == Path::new("/tmp") {
            break;
        }
        let mode = std::fs::metadata(dir).unwrap().permissions().mode();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o755)).unwrap();
        p = dir.parent();
    }
}
