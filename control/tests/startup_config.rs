//! The binary's command line and start-up: the default config, and config errors that
//! stop start-up with one line naming the key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::BIN;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn prints_a_commented_default_config_that_it_accepts() {
    let (code, out, _) = run(&["--print-default-config"]);
    assert_eq!(code, 0);
    for key in [
        "[management-api]",
        "port = 3000",
        "[portal]",
        "port = 8080",
        "hostname",
        "ip_address",
        "[webrtc]",
        "network_interfaces",
        "minport",
        "maxport",
        "data_dir",
        "[tls]",
    ] {
        assert!(out.contains(key), "{key} missing from the default config");
    }
    assert!(
        out.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 20,
        "commented"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &out).unwrap();
    let (code, out, err) = run(&["--config", path.to_str().unwrap(), "--check-config"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn bad_config_stops_startup_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[webrtc]\nminport = 50000\nmaxport = 40000\n",
            "webrtc.minport",
        ),
        ("[management-api]\nport = 70000\n", "management-api.port"),
        ("[management-api]\nport = \"3000\"\n", "management-api.port"),
        ("[portal]\nhostnme = \"x\"\n", "portal.hostnme"),
        (
            "[webrtc]\nnetwork_interfaces = [{name = \"eth0\", replaced_ip_address = \"nat\"}]\n",
            "webrtc.network_interfaces[0].replaced_ip_address",
        ),
        ("data_dir = 7\n", "data_dir"),
        ("[tls]\ncert = \"/nonexistent.pem\"\n", "tls.key"),
        (
            "[storage]\nsynchronous = \"sometimes\"\n",
            "storage.synchronous",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        // Without --check-config too: start-up itself must refuse.
        let (code, out, err) = run(&["--config", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{text}: exit {code}, {out}{err}");
        let line = err.trim();
        assert_eq!(line.lines().count(), 1, "one line: {line:?}");
        assert!(line.contains(key), "{text}: {line:?} does not name {key}");
    }
    let (code, _, err) = run(&["--config", "/nonexistent/switchyard.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/switchyard.toml"), "{err}");
}

#[test]
fn unusable_tls_files_stop_startup_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("data_dir = {:?}\n[management-api]\nport = {}\n[tls]\ncert = {cert:?}\nkey = {cert:?}\n", dir.path().join("d"), common::free_port()),
    )
    .unwrap();
    let (code, _, err) = run(&["--config", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("tls.cert"), "{err}");
}

#[test]
fn port_in_use_is_reported() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n[management-api]\nip_address = \"127.0.0.1\"\nport = {port}\n[portal]\nport = {}\n",
            dir.path().join("d"),
            common::free_port()
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["--config", path.to_str().unwrap(), "--log-format", "text"]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("management-api.port"),
        "{err}"
    );
}

#[test]
fn credentials_file_is_private_and_written_once() {
    use std::os::unix::fs::PermissionsExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = common::Server::start("").await;
        let path = server.data_dir().join("super-service.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(server.data_dir())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(
            server.log().contains(path.to_str().unwrap()),
            "the start-up log says where the credentials are"
        );
        let server = server.restart().await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first);
        assert_eq!(server.client().get("/v1/rooms").await.status, 200);
    });
}

#[test]
fn serves_https_when_tls_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let port = common::free_port();
    let portal = common::free_port();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("data_dir = {:?}\n[management-api]\nip_address = \"127.0.0.1\"\nport = {port}\n[portal]\nip_address = \"127.0.0.1\"\nport = {portal}\n[tls]\ncert = {cert:?}\nkey = {key:?}\n", dir.path().join("d")),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    for _ in 0..100 {
        let out = Command::new("curl")
            .args(["-sk", &format!("https://127.0.0.1:{port}/healthz")])
            .output()
            .unwrap();
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
        if answer == "ok" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Plain HTTP on the TLS port is refused.
    let plain = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/healthz")])
        .output()
        .unwrap();
    // The portal speaks Engine.IO 3 over TLS too (the handshake of socket.io-client 2.x),
    // and not over plain HTTP.
    let get = |url: String| {
        let out = Command::new("curl").args(["-sk", &url]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let handshake = get(format!(
        "https://127.0.0.1:{portal}/socket.io/?EIO=3&transport=polling"
    ));
    let plain_portal = get(format!(
        "http://127.0.0.1:{portal}/socket.io/?EIO=3&transport=polling"
    ));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answer, "ok");
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "ok");
    assert!(handshake.contains("\"sid\""), "{handshake}");
    assert!(handshake.contains("pingInterval"), "{handshake}");
    assert!(!plain_portal.contains("\"sid\""), "{plain_portal}");
}
