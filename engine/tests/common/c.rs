//! C programs against `libmcm_dp` in integration tests: builds the SDK's shared and static
//! libraries once per test process, compiles C sources with `cc`, and runs them with the
//! sanitizers set to fail on any report.
//!
//! Include it next to the engine harness with
//!
//! ```ignore
//! mod common;
//! #[path = "common/c.rs"]
//! mod c;
//! ```
//!
//! (a module of its own rather than `common::c`, so that test files that compile no C do not
//! carry it).
//!
//! Programs land in `<target>/<profile>/c-tests/`, linked against the `libmcm_dp.so` or
//! `libmcm_dp.a` of the profile the test itself was built with.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Flags every C source is compiled with (warnings are errors).
pub const CFLAGS: &[&str] = &["-std=c11", "-g", "-O1", "-Wall", "-Wextra", "-Werror"];
/// Sanitizers of the dynamically linked programs.
pub const SANITIZE: &[&str] = &["-fsanitize=address,undefined", "-fno-omit-frame-pointer"];
/// What a C program linked against `libmcm_dp.a` needs besides it (Rust's std runtime).
pub const STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];
/// AddressSanitizer (and LeakSanitizer) settings: any report ends the process with an abort.
pub const ASAN_OPTIONS: &str =
    "halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1";
/// UndefinedBehaviorSanitizer settings: any report ends the process.
pub const UBSAN_OPTIONS: &str = "print_stacktrace=1:halt_on_error=1";

/// How a program is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// Against `libmcm_dp.so` (with an rpath to it), with AddressSanitizer and UBSan.
    Shared,
    /// Against `libmcm_dp.a`, without sanitizers: proves the staticlib is self-contained.
    Static,
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the engine crate is inside the workspace")
        .to_owned()
}

/// `<target>/<profile>`: the parent of the `deps` directory holding this test executable.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable is in a directory");
    assert_eq!(
        deps.file_name().and_then(|n| n.to_str()),
        Some("deps"),
        "expected the test executable in <target>/<profile>/deps, got {}",
        exe.display()
    );
    deps.parent().expect("deps has a parent").to_owned()
}

/// Builds `mcm-ctl` and `mcm-agent` (mcm-control's binaries) with the test's profile, once per
/// process, and returns the path of `name`.
pub fn control_bin(name: &str) -> PathBuf {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    let dir = DONE.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root()).args([
            "build",
            "-p",
            "mcm-control",
            "--bin",
            "mcm-ctl",
            "--bin",
            "mcm-agent",
        ]);
        if cfg!(not(debug_assertions)) {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("cannot run cargo");
        assert!(
            out.status.success(),
            "cargo build -p mcm-control --bins failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir()
    });
    let bin = dir.join(name);
    assert!(bin.is_file(), "no {}", bin.display());
    bin
}

/// Builds `libmcm_dp.so` and `libmcm_dp.a` with the test's profile (once per process) and
/// returns the directory holding them.
pub fn sdk_lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace_root())
            .args(["build", "-p", "mcm-sdk", "--lib"]);
        if cfg!(not(debug_assertions)) {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("cannot run cargo");
        assert!(
            out.status.success(),
            "cargo build -p mcm-sdk --lib failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = profile_dir();
        for lib in ["libmcm_dp.so", "libmcm_dp.a"] {
            assert!(
                dir.join(lib).is_file(),
                "{lib} is not in {} after cargo build",
                dir.display()
            );
        }
        dir
    })
}

/// Compiles `sources` (paths relative to the workspace root) into the program `name`, once
/// per process and link mode, and returns its path. A compile error fails the test with cc's
/// output.
pub fn compile(name: &str, sources: &[&str], link: Link) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<(String, Link), PathBuf>>> = Mutex::new(None);
    let lib_dir = sdk_lib_dir();
    // Held while compiling: two tests asking for the same program wait for one compile.
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let key = (name.to_owned(), link);
    if let Some(path) = built.get_or_insert_with(HashMap::new).get(&key) {
        return path.clone();
    }
    let root = workspace_root();
    let out_dir = lib_dir.join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = match link {
        Link::Shared => name.to_owned(),
        Link::Static => format!("{name}-static"),
    };
    let path = out_dir.join(&file);
    // Another test process may compile the same program: write aside, then rename (atomic).
    let tmp = out_dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let mut cmd = Command::new("cc");
    cmd.current_dir(&root).args(CFLAGS);
    if link == Link::Shared {
        cmd.args(SANITIZE);
    }
    cmd.arg("-I").arg(root.join("sdk-c/include"));
    cmd.args(sources).arg("-o").arg(&tmp);
    match link {
        Link::Shared => {
            cmd.arg("-L")
                .arg(lib_dir)
                .arg("-lmcm_dp")
                .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
                .arg("-lpthread");
        }
        Link::Static => {
            cmd.arg(lib_dir.join("libmcm_dp.a")).args(STATIC_LIBS);
        }
    }
    let out = cmd.output().expect("cannot run cc");
    assert!(
        out.status.success(),
        "compiling {name} failed ({}): {cmd:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &path).unwrap();
    built
        .get_or_insert_with(HashMap::new)
        .insert(key, path.clone());
    path
}

/// A command running `program` with the sanitizers set to fail on any report.
pub fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("ASAN_OPTIONS", ASAN_OPTIONS)
        .env("UBSAN_OPTIONS", UBSAN_OPTIONS)
        .env_remove("MCM_SDK_UNIX_SOCKET")
        .env_remove("MCM_MEDIA_PROXY_IP")
        .env_remove("MCM_MEDIA_PROXY_PORT")
        .env_remove("MCM_SDK_ACCESS_TOKEN")
        .stdin(Stdio::null());
    cmd
}

/// What a finished program printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Both streams, for a failure message.
    pub fn text(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion, killing it after `limit` (a hung program fails the test instead
/// of hanging it).
pub fn run(cmd: &mut Command, limit: Duration) -> Finished {
    Proc::spawn(cmd).finish(limit)
}

/// A running program whose output is collected line by line.
pub struct Proc {
    pub child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr piped.
    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (out, err) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&out)),
            collect(child.stderr.take().unwrap(), Arc::clone(&err)),
        ];
        Proc {
            child,
            out,
            err,
            readers,
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Both streams so far, for a failure message.
    pub fn text(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.out.lock().unwrap().join("\n"),
            self.err.lock().unwrap().join("\n")
        )
    }

    /// Waits for a stdout line containing `needle`; panics with the output if the program
    /// exits first or `limit` passes.
    pub fn wait_stdout(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.out.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the readers catch up with what it printed last.
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "exited ({status}) before printing {needle:?}:\n{}",
                    self.text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {limit:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the program to exit, killing it (and failing) after `limit`.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                panic!("killed after {limit:?}:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        Finished {
            status,
            stdout: self.out.lock().unwrap().join("\n"),
            stderr: self.err.lock().unwrap().join("\n"),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn collect(stream: impl Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&line).into_owned());
        }
    })
}

/// The `key=value` fields of the line of `text` starting with `summary `.
pub fn summary(text: &str) -> Option<HashMap<String, String>> {
    let line = text.lines().rev().find(|l| l.starts_with("summary "))?;
    Some(
        line.split_whitespace()
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}
