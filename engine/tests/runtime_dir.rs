//! The engine trusts no runtime folder it did not make: a folder another user pre-created (with a
//! symlink planted in it) or that others can write stops the start; under umask 000 the folder
//! and socket stay private; a second engine on the same folder is refused; files a killed engine
//! left are removed at the next start.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::Engine;
use rustix::process::Signal;

/// Runs the engine with `shm_dir` as its runtime folder, expecting it to refuse to start (exit
/// status 1); returns its stderr.
fn refused_start(dir: &Path, shm: &Path) -> String {
    let cfg = dir.join("cores.toml");
    let text = common::config(dir, "").replace(
        &format!("shm_dir = \"{}\"", dir.join("shm").display()),
        &format!("shm_dir = \"{}\"", shm.display()),
    );
    std::fs::write(&cfg, text).unwrap();
    refused(&cfg)
}

/// Runs the engine on `cfg`, expecting exit status 1 within [`common::WAIT`] (an engine that
/// starts instead is killed and fails the test); returns its stderr.
fn refused(cfg: &Path) -> String {
    use std::io::Read;
    let mut child = Command::new(common::BIN)
        .arg("--config")
        .arg(cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + common::WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the engine started on {} instead of refusing",
                cfg.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    stderr
}

/// A config patch that puts the runtime folder at `shm`.
fn at(shm: &Path) -> impl FnOnce(String) -> String {
    let line = format!("shm_dir = \"{}\"", shm.display());
    move |t: String| {
        let start = t.find("shm_dir = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!("{}{line}{}", &t[..start], &t[end..])
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_folder_someone_else_made_is_refused_at_start() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root (it gives the folder to another uid)"
    );
    let t = tempfile::tempdir().unwrap();
    // Another user pre-created the folder, world-writable, with a symlink named like the SDP file
    // a tx session writes and a fake socket.
    let shm = t.path().join("trap");
    std::fs::create_dir(&shm).unwrap();
    std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::fs::chown(&shm, Some(65534), Some(65534)).unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, shm.join("st2110-tx-127.0.0.1-5004.sdp")).unwrap();
    let stderr = refused_start(t.path(), &shm);
    assert!(
        stderr.contains("memory.shm_dir:")
            && stderr.contains("exists and belongs to uid 65534, not to the engine's uid 0"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!shm.join("sdk.sock").exists(), "nothing was bound there");
    assert!(
        !shm.join("engine.lock").exists(),
        "nothing was written there"
    );

    // The engine's own uid, but writable by all: refused as well.
    std::os::unix::fs::chown(&shm, Some(0), Some(0)).unwrap();
    let stderr = refused_start(t.path(), &shm);
    assert!(
        stderr.contains("exists with mode 0777: other users can write it"),
        "{stderr}"
    );
    // A symlink as the folder itself.
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&shm, &link).unwrap();
    let stderr = refused_start(t.path(), &link);
    assert!(stderr.contains("a symbolic link is refused"), "{stderr}");
    // Below a folder another user owns.
    let theirs = t.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let stderr = refused_start(t.path(), &theirs.join("mcm"));
    assert!(
        stderr.contains("belongs to uid 65534, so that user could replace"),
        "{stderr}"
    );
    assert!(!theirs.join("mcm").exists());
    // An sdk.unix_socket outside the folder, in a directory others can write.
    std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cfg = t.path().join("socket.toml");
    let text = common::config(t.path(), "").replace(
        "[sdk]\n",
        &format!(
            "[sdk]\nunix_socket = \"{}\"\n",
            shm.join("s.sock").display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let stderr = refused(&cfg);
    assert!(
        stderr.contains("sdk.unix_socket:") && stderr.contains("mode 0777 lets other users"),
        "{stderr}"
    );
}

#[test]
fn under_umask_000_the_folder_and_socket_stay_private() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs as root (it switches uid)"
    );
    let e = Engine::start_umask(|t| t, &[], &[], Some(0));
    assert_eq!(mode(&e.shm), 0o700, "the folder");
    assert_eq!(mode(&e.unix), 0o660, "the socket");
    assert_eq!(mode(&e.shm.join("engine.lock")), 0o600, "the lock");
    // Let uid 65534 through the test's own directories, not through the engine's folder.
    common::open_path_to(e.shm.parent().unwrap().join("x").as_path());
    let said = common::connect_as_nobody(&e.unix);
    assert!(said.starts_with("CONNECT PermissionError"), "{said}");
    // The engine's own user is served.
    let c = mcm_sdk::Client::with_unix_socket(&e.unix, Default::default());
    assert!(c.is_ok(), "{:?}", c.err());
}

#[test]
fn one_engine_per_folder_and_a_dead_engines_files_are_removed() {
    let t = tempfile::tempdir().unwrap();
    let shm = t.path().join("run");
    let mut first = Engine::start_with(at(&shm), &[]);
    assert_eq!(mode(&shm), 0o700);
    let lock = std::fs::read_to_string(shm.join("engine.lock")).unwrap();
    assert_eq!(lock.trim(), first.pid().to_string());
    // A second engine on the same folder is refused while the first runs.
    let dir2 = tempfile::tempdir().unwrap();
    let stderr = refused_start(dir2.path(), &shm);
    assert!(
        stderr.contains(&format!("is in use by another engine (pid {}", first.pid())),
        "{stderr}"
    );
    // The first dies without cleaning up; it leaves its socket, its lock and an SDP file.
    first.signal(Signal::KILL);
    first.wait_exit();
    let sdp = shm.join("st2110-tx-127.0.0.1-5004.sdp");
    std::fs::write(&sdp, "v=0\n").unwrap();
    assert!(shm.join("sdk.sock").exists());
    let mut second = Engine::start_with(at(&shm), &[]);
    second.wait_log("memory.shm_dir: removed 1 file(s) a previous engine left");
    second.wait_log("replacing stale SDK socket");
    assert!(!sdp.exists());
    let c = mcm_sdk::Client::with_unix_socket(&second.unix, Default::default());
    assert!(c.is_ok(), "{:?}", c.err());
    drop(c);
    // A clean stop removes what the engine made.
    second.signal(Signal::TERM);
    assert!(second.wait_exit().success(), "{}", second.log_text());
    assert!(!shm.join("sdk.sock").exists() && !shm.join("engine.lock").exists());
    assert!(
        shm.exists(),
        "the folder the first engine made stays: the second did not make it"
    );
}
