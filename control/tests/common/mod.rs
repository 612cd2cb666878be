//! Shared helpers for the integration tests: start the real `switchyard-control` binary
//! on free ports with its own data directory, and sign requests as an app server would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_auth::{RequestParts, Scheme, Signer};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard-control");

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The super service's credentials file.
#[derive(serde::Deserialize, Clone, Debug)]
pub struct Credentials {
    pub id: String,
    pub key: String,
}

/// A running `switchyard-control` with its own data directory.
pub struct Server {
    pub child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    pub port: u16,
    pub portal_port: u16,
    pub extra: String,
    pub base: String,
}

impl Server {
    /// Starts a server; `extra` is appended to its config file (TOML tables).
    pub async fn start(extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra, free_port(), free_port()).await
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("switchyard.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    pub fn log_path(dir: &Path) -> PathBuf {
        dir.join("control.log")
    }

    async fn start_in(dir: tempfile::TempDir, extra: &str, port: u16, portal_port: u16) -> Server {
        let data = dir.path().join("data");
        let config = format!(
            "data_dir = {data:?}\n[log]\nformat = \"json\"\nlevel = \"info\"\n[management-api]\nip_address = \"127.0.0.1\"\nport = {port}\n[portal]\nport = {portal_port}\n"
        );
        // `extra` may repeat a table; merge by parsing both and overlaying.
        let config = merge_toml(&config, extra);
        std::fs::write(dir.path().join("switchyard.toml"), config).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Self::log_path(dir.path()))
            .unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(dir.path().join("switchyard.toml"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let mut s = Server {
            child: Some(child),
            dir: Some(dir),
            port,
            portal_port,
            extra: extra.to_string(),
            base: format!("http://127.0.0.1:{port}"),
        };
        s.wait_ready().await;
        s
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "switchyard-control exited ({status}) during start-up:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "switchyard-control did not become ready:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(Self::log_path(self.dir())) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn credentials(&self) -> Credentials {
        let text = std::fs::read_to_string(self.data_dir().join("super-service.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// A client signing as the super service with OWT's MAuth.
    pub fn client(&self) -> Client {
        let c = self.credentials();
        Client::new(&self.base, Signer::new(c.id, c.key, Scheme::OwtMauth))
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .map(|c| c.try_wait().unwrap().is_none())
            .unwrap_or(false)
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            send_signal(c.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Starts again on the same data directory and ports.
    pub async fn restart(mut self) -> Server {
        self.stop();
        let dir = self.dir.take().unwrap();
        Self::start_in(dir, &self.extra, self.port, self.portal_port).await
    }

    /// Starts again after a crash, on the same data directory and ports.
    pub async fn restart_after_kill(mut self) -> Server {
        self.kill9();
        let dir = self.dir.take().unwrap();
        Self::start_in(dir, &self.extra, self.port, self.portal_port).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Overlays the tables of `extra` onto `base`.
pub fn merge_toml(base: &str, extra: &str) -> String {
    let mut b: toml::Table = base.parse().unwrap();
    let e: toml::Table = extra.parse().unwrap();
    for (k, v) in e {
        match (b.get_mut(&k), v) {
            (Some(toml::Value::Table(bt)), toml::Value::Table(et)) => {
                for (k2, v2) in et {
                    bt.insert(k2, v2);
                }
            }
            (_, v) => {
                b.insert(k, v);
            }
        }
    }
    toml::to_string(&b).unwrap()
}

/// An answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// Asserts an error answer in OWT's shape with this status; returns its body.
    pub fn expect_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        let v = self.json();
        assert!(v["error"]["code"].is_u64(), "no error.code: {v}");
        assert!(
            !v["error"]["message"].as_str().unwrap_or("").is_empty(),
            "no error.message: {v}"
        );
        v
    }
}

/// Signs and sends requests as an app server would.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub signer: Signer,
}

impl Client {
    pub fn new(base: &str, signer: Signer) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: base.to_string(),
            signer,
        }
    }

    pub fn with_signer(&self, signer: Signer) -> Self {
        Client {
            signer,
            ..self.clone()
        }
    }

    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> String {
        self.signer.authorization(
            now_ms(),
            RequestParts {
                method,
                path_and_query: path,
                body,
            },
        )
    }

    /// Sends with a header the caller chose (None: unsigned).
    pub async fn raw(&self, method: &str, path: &str, body: Vec<u8>, auth: Option<String>) -> Resp {
        self.try_raw(method, path, body, auth).await.unwrap()
    }

    /// As `raw`, but a connection failure is returned, not a panic.
    pub async fn try_raw(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
        auth: Option<String>,
    ) -> Result<Resp, reqwest::Error> {
        let mut rb = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{}", self.base, path),
            )
            .header("content-type", "application/json")
            .body(body);
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await?;
        Ok(Resp {
            status,
            text,
            headers,
        })
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).unwrap())
            .unwrap_or_default();
        let auth = self.sign(method, path, &bytes);
        self.raw(method, path, bytes, Some(auth)).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send("PUT", path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send("PATCH", path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None).await
    }

    /// Creates a room and returns its id.
    pub async fn create_room(&self, body: Value) -> String {
        let r = self.post("/v1/rooms", body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["_id"].as_str().unwrap().to_string()
    }
}
