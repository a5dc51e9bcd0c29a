//! The real `switchboard` binary as a child process, for faults only a process can have
//! (SIGKILL, SIGTERM): started on a config file, its address read from its log, every log line
//! kept for assertions.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct ServerProcess {
    child: Child,
    /// `127.0.0.1:PORT`, from the "switchboard listening" log line.
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Runs `switchboard serve --config CONFIG` (human log at `info`) and waits until it
    /// listens. Blocking: call it from `spawn_blocking` in async tests.
    pub fn start(config: &Path) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("SWITCHBOARD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let found = found.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("switchboard listening") {
                        if let Some(rest) = line.split("addr=").nth(1) {
                            let addr: String =
                                rest.chars().take_while(|c| !c.is_whitespace()).collect();
                            let _ = found.send(addr);
                        }
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        match address.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => ServerProcess { child, addr, log },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server never logged its address:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The log lines so far (stdout and stderr).
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`; panics with the log after `within`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log_lines().iter().any(|line| line.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?} within {within:?}:\n{}",
                self.log_lines().join("\n")
            );
            // A polling interval: the loop ends on the condition.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: the process ends at once, with no chance to commit, answer or close anything.
    pub fn kill(&mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself; SIGKILLs it and panics after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running {within:?} later");
            }
            // A polling interval: the loop ends on the condition.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
