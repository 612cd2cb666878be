//! The systemd units verify cleanly, carry the hardening they promise, and the binary
//! speaks the notify protocol (READY=1, then watchdog pings) that `Type=notify` needs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::BIN;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn units() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no units in {}", dir.display());
    v
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().unwrap();
    for unit in units() {
        let text = std::fs::read_to_string(&unit).unwrap();
        // verify checks that ExecStart is executable: point it at a built binary.
        let re_pointed: String = text
            .lines()
            .map(|l| {
                if let Some(rest) = l.strip_prefix("ExecStart=") {
                    let mut parts = rest.splitn(2, ' ');
                    let _bin = parts.next();
                    format!("ExecStart={BIN} {}", parts.next().unwrap_or(""))
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let copy = tmp.path().join(unit.file_name().unwrap());
        std::fs::write(&copy, re_pointed).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{}: {said}",
            unit.display()
        );
        for directive in [
            "Type=notify",
            "WatchdogSec=",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "ProtectHome=yes",
            "DynamicUser=yes",
            "SystemCallFilter=",
        ] {
            assert!(
                text.contains(directive),
                "{} lacks {directive}",
                unit.display()
            );
        }
        let name = unit.file_name().unwrap().to_string_lossy().to_string();
        let specific: &[&str] = match name.as_str() {
            "switchyard-control.service" => &["StateDirectory=switchyard"],
            "switchyard-dataplane.service" => &["LimitMEMLOCK=infinity", "io_uring_setup"],
            "switchyard-mixer.service" => &["Before=switchyard-control.service"],
            _ => &[],
        };
        for directive in specific {
            assert!(text.contains(directive), "{name} lacks {directive}");
        }
    }
}

#[test]
fn notifies_ready_and_pings_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = common::free_port();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[management-api]\nip_address = \"127.0.0.1\"\nport = {port}\n[portal]\nport = {}\n",
            dir.path().join("d"),
            common::free_port()
        ),
    )
    .unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: exec from a shell keeps `$$`.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "WATCHDOG_PID=$$ exec {BIN} --config {}",
            cfg.display()
        ))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut ready, mut pings) = (false, 0);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && !(ready && pings >= 3) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == "READY=1") {
                // Ready means ready: the API answers now.
                let out = Command::new("curl")
                    .args(["-s", &format!("http://127.0.0.1:{port}/healthz")])
                    .output()
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
                ready = true;
            }
            if msg.lines().any(|l| l == "WATCHDOG=1") {
                assert!(ready, "watchdog ping before READY");
                pings += 1;
            }
        }
    }
    // SIGTERM: it says it is stopping and exits cleanly.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let mut stopping = false;
    let stop_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < stop_deadline && !stopping {
        if let Ok(n) = sock.recv(&mut buf) {
            stopping |= String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "STOPPING=1");
        }
    }
    let status = child.wait().unwrap();
    assert!(ready, "no READY=1");
    assert!(
        pings >= 3,
        "only {pings} watchdog pings in the first seconds (every 100 ms expected)"
    );
    assert!(stopping, "no STOPPING=1 on SIGTERM");
    assert!(status.success(), "{status}");
}
