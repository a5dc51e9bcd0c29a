//! `switchboard serve` when the database directory is not writable: it exits with one error that
//! names the directory, the uid the process runs as and the fix.
//!
//! The server runs as a real unprivileged process against a real read-only directory. When the
//! tests run as root (CI does), permissions would not stop root, so the server is started as
//! uid/gid 65534 ("nobody") instead, from a copy of the binary that user can execute.

#![cfg(unix)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A scratch directory an unprivileged user may enter, with a copy of the binary it may run.
struct Scratch {
    _dir: tempfile::TempDir,
    root: PathBuf,
    binary: PathBuf,
    /// The uid the server runs as.
    uid: u32,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        chmod(&root, 0o755);
        let binary = root.join("switchboard");
        std::fs::copy(env!("CARGO_BIN_EXE_switchboard"), &binary).unwrap();
        chmod(&binary, 0o755);
        let me = std::fs::metadata("/proc/self").unwrap().uid();
        let uid = if me == 0 { NOBODY } else { me };
        Scratch {
            _dir: dir,
            root,
            binary,
            uid,
        }
    }

    /// Runs `switchboard serve` with its database at `db`, as `self.uid`. Gives up (and kills
    /// the server) if it is still running after 60 s, which means it started when it should not.
    fn serve(&self, db: &Path) -> Output {
        let config = self.root.join("switchboard.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\nurl = \"sqlite://{}\"\n\n\
                 [[webhooks]]\nname = \"default\"\nsecrets = [\"whsec_test\"]\n",
                db.display()
            ),
        )
        .unwrap();
        chmod(&config, 0o644);
        let mut command = Command::new(&self.binary);
        command
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(&self.root)
            .env_remove("SWITCHBOARD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.uid == NOBODY {
            command.uid(NOBODY).gid(NOBODY);
        }
        let child = command.spawn().unwrap();
        let pid = child.id();
        let (done, output) = mpsc::channel();
        std::thread::spawn(move || done.send(child.wait_with_output()));
        match output.recv_timeout(Duration::from_secs(60)) {
            Ok(result) => result.unwrap(),
            Err(_) => {
                let _ = Command::new("kill").arg(pid.to_string()).status();
                panic!("switchboard serve started with its database in a read-only directory");
            }
        }
    }
}

/// Asserts that `output` is a failure whose message names `dir`, the uid, the fix, and the
/// cause `cause` exactly once.
fn assert_explains(output: &Output, dir: &Path, uid: u32, step: &str, cause: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let dir = dir.display();
    for expected in [
        format!("{step} {dir} ("),
        format!("switchboard runs as uid {uid}"),
        format!("chown -R {uid} {dir}`"),
        format!("-v switchboard-data:{dir}"),
        "chown -R 10001 HOST_DIR".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "no `{expected}` in:\n{stderr}");
    }
    assert_eq!(
        stderr.matches(cause).count(),
        1,
        "the cause `{cause}` is not told exactly once:\n{stderr}"
    );
}

#[test]
fn serve_explains_a_database_directory_it_may_not_write() {
    let scratch = Scratch::new();
    let data = scratch.root.join("data");
    std::fs::create_dir(&data).unwrap();
    chmod(&data, 0o555);

    // The directory exists but is read-only: SQLite cannot create the file.
    let output = scratch.serve(&data.join("switchboard.db"));
    assert_explains(
        &output,
        &data,
        scratch.uid,
        "cannot write the database in",
        "unable to open database file",
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("owned by uid {}", {
            std::fs::metadata(&data).unwrap().uid()
        })),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The directory does not exist and its parent is read-only: it cannot be created.
    let nested = data.join("db");
    let output = scratch.serve(&nested.join("switchboard.db"));
    assert_explains(
        &output,
        &nested,
        scratch.uid,
        "cannot create the database directory",
        "Permission denied",
    );
    assert!(!nested.exists());
}

#[test]
fn serve_tells_other_directory_failures_once() {
    let scratch = Scratch::new();
    let file = scratch.root.join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    chmod(&file, 0o644);

    let output = scratch.serve(&file.join("switchboard.db"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot create the database directory {}: ",
            file.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
}
