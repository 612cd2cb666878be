//! The dataplane binary refuses to start, with one clear line, when the machine or the
//! config cannot work: too few ports for the cores, too little lockable memory, an
//! unknown interface, a port in use.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard-dataplane");

fn run_with(config: &str, shell_prefix: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{shell_prefix} exec {BIN} --config {} --check",
            path.display()
        ))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn too_few_ports_for_the_cores() {
    let (code, err) = run_with(
        "[webrtc]\nminport = 40000\nmaxport = 40000\n[dataplane]\ncores = 2\n",
        "",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("holds 1 port(s)") && err.contains("2 core(s)"),
        "{err}"
    );
}

#[test]
fn memlock_too_low() {
    let (code, err) = run_with("[dataplane]\ncores = 1\n", "ulimit -l 64;");
    assert_ne!(code, 0);
    assert!(
        err.contains("locked-memory limit is 64 KiB") && err.contains("LimitMEMLOCK"),
        "{err}"
    );
}

#[test]
fn unknown_interface_and_bad_cores() {
    let (code, err) = run_with(
        "[webrtc]\nnetwork_interfaces = [{name = \"nosuch0\"}]\n[dataplane]\ncores = 1\n",
        "",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("webrtc.network_interfaces[0].name") && err.contains("nosuch0"),
        "{err}"
    );
    let (code, err) = run_with("[dataplane]\ncores = 4096\n", "");
    assert_ne!(code, 0);
    assert!(err.contains("dataplane.cores"), "{err}");
    let (code, err) = run_with("[dataplane]\ncores = \"many\"\n", "");
    assert_eq!(code, 2);
    assert!(err.contains("dataplane.cores"), "{err}");
}

#[test]
fn media_port_in_use() {
    let held = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("[webrtc]\nnetwork_interfaces = [{{name = \"lo\"}}]\nminport = {port}\nmaxport = {port}\n[dataplane]\ncores = 1\nrpc_address = \"127.0.0.1:1\"\nmetrics_address = \"\"\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("webrtc.minport"),
        "{err}"
    );
}
