//! `rest-bench`: signed room creation, token creation and room reads per second against
//! the real `switchyard-control` binary, as an OWT app server drives it.
//!
//! It starts the binary on a fresh data directory, runs each phase for a fixed time with
//! a number of concurrent clients (each request signed afresh with OWT's MAuth), the
//! phases taking turns in short rounds beside `GET /healthz` (the machine's speed for this
//! work in this run), and prints per phase: requests per second, latency percentiles, and
//! requests per CPU-second of the server (the figure least disturbed by a busy machine),
//! over all rounds and per round. The client's own CPU time is printed too, to show which
//! side was busy. With `--baseline`, it exits non-zero when a phase's best round, scaled up
//! when healthz shows a slower machine than the baseline's, falls below the baseline by more
//! than the baseline's noise margin.

use anyhow::{bail, Context as _};
use clap::Parser;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchyard_auth::{RequestParts, Scheme, Signer};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "rest-bench",
    about = "Benchmark signed REST calls against switchyard-control"
)]
struct Args {
    /// The switchyard-control binary (a release build).
    #[arg(long, default_value = "target/release/switchyard-control")]
    control: PathBuf,
    /// Short phases (a few seconds each), for the test suite.
    #[arg(long)]
    quick: bool,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds per phase, all rounds together (default 3 with --quick, 15 otherwise).
    #[arg(long)]
    seconds: Option<u64>,
    /// Rounds the phases take turns in (default 3 with --quick, 5 otherwise).
    #[arg(long)]
    rounds: Option<u32>,
    /// Write the results as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compare with this baseline and fail on a regression.
    #[arg(long)]
    baseline: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PhaseResult {
    requests: u64,
    errors: u64,
    seconds: f64,
    requests_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    server_cpu_s: f64,
    client_cpu_s: f64,
    requests_per_server_cpu_s: f64,
    /// Requests per server CPU-second of each round on its own.
    rounds_per_server_cpu_s: Vec<f64>,
    /// The best of those: the figure compared with the baseline.
    best_round_per_server_cpu_s: f64,
}

/// One phase's measurements, summed over its rounds.
struct Phase {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    seconds: f64,
    server_cpu_s: f64,
    client_cpu_s: f64,
    rounds: Vec<f64>,
}

impl Phase {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            requests: 0,
            errors: 0,
            seconds: 0.0,
            server_cpu_s: 0.0,
            client_cpu_s: 0.0,
            rounds: Vec::new(),
        })
    }

    fn result(&self) -> PhaseResult {
        let per_cpu = |n: u64, cpu: f64| if cpu > 0.0 { n as f64 / cpu } else { 0.0 };
        PhaseResult {
            requests: self.requests,
            errors: self.errors,
            seconds: self.seconds,
            requests_per_s: self.requests as f64 / self.seconds.max(1e-9),
            p50_us: self.hist.value_at_quantile(0.5),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            server_cpu_s: self.server_cpu_s,
            client_cpu_s: self.client_cpu_s,
            requests_per_server_cpu_s: per_cpu(self.requests, self.server_cpu_s),
            rounds_per_server_cpu_s: self.rounds.clone(),
            best_round_per_server_cpu_s: self.rounds.iter().copied().fold(0.0, f64::max),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Report {
    machine: String,
    concurrency: usize,
    server_rss_kib: u64,
    phases: BTreeMap<String, PhaseResult>,
    /// `GET /healthz`, in turns with the phases: the machine's speed for this work.
    healthz: PhaseResult,
}

#[derive(Debug, Deserialize)]
struct Baseline {
    /// Allowed fall below the baseline, as a fraction (e.g. 0.4 = 40 %).
    noise_margin: f64,
    /// Phase name → requests per server CPU-second.
    requests_per_server_cpu_s: BTreeMap<String, f64>,
    /// `GET /healthz` requests per server CPU-second (best round) on the machine and at the
    /// speed of those figures; a run whose healthz is below it is scaled up by the ratio.
    #[serde(default)]
    healthz_per_server_cpu_s: Option<f64>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// CPU seconds of `pid`, or an error naming it.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    switchyard_perf::cpu_seconds(pid).with_context(|| format!("reading /proc/{pid}/stat"))
}

struct Control {
    child: Child,
    base: String,
    signer: Signer,
    _dir: tempfile::TempDir,
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_control(bin: &Path) -> anyhow::Result<Control> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let portal = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n[log]\nlevel = \"warn\"\nformat = \"json\"\n[management-api]\nip_address = \"127.0.0.1\"\nport = {port}\n[portal]\nport = {portal}\n",
            dir.path().join("data")
        ),
    )?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (build it with: cargo build --release -p switchyard-control)",
                bin.display()
            )
        })?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("switchyard-control did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    #[derive(Deserialize)]
    struct Creds {
        id: String,
        key: String,
    }
    let creds: Creds = serde_json::from_str(&std::fs::read_to_string(
        dir.path().join("data/super-service.json"),
    )?)?;
    Ok(Control {
        child,
        base,
        signer: Signer::new(creds.id, creds.key, Scheme::OwtMauth),
        _dir: dir,
    })
}

/// One request: method, path, body.
type MakeRequest = Arc<dyn Fn(u64) -> (&'static str, String, Vec<u8>) + Send + Sync>;

/// Runs one round of a phase for `seconds` and adds it to `into`.
async fn phase(
    ctl: &Control,
    seconds: f64,
    concurrency: usize,
    make: MakeRequest,
    into: &mut Phase,
) -> anyhow::Result<()> {
    let pid = ctl.child.id().to_string();
    let cpu0 = cpu_seconds(&pid)?;
    let me0 = cpu_seconds("self")?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let http = reqwest::Client::new();
        let base = ctl.base.clone();
        let signer = ctl.signer.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let (mut n, mut errors) = (0u64, 0u64);
            let mut i = w as u64;
            while Instant::now() < end {
                let (method, path, body) = make(i);
                i += concurrency as u64;
                let auth = signer.authorization(
                    now_ms(),
                    RequestParts {
                        method,
                        path_and_query: &path,
                        body: &body,
                    },
                );
                let t = Instant::now();
                let r = http
                    .request(
                        reqwest::Method::from_bytes(method.as_bytes())?,
                        format!("{base}{path}"),
                    )
                    .header("authorization", auth)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let ok = match r {
                    Ok(resp) => {
                        let good = resp.status().is_success();
                        let _ = resp.bytes().await;
                        good
                    }
                    Err(_) => false,
                };
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                n += 1;
                if !ok {
                    errors += 1;
                }
            }
            Ok::<_, anyhow::Error>((hist, n, errors))
        }));
    }
    let mut n = 0;
    for t in tasks {
        let (h, k, e) = t.await??;
        into.hist.add(h)?;
        n += k;
        into.errors += e;
    }
    let server_cpu = cpu_seconds(&pid)? - cpu0;
    into.seconds += start.elapsed().as_secs_f64();
    into.server_cpu_s += server_cpu;
    into.client_cpu_s += cpu_seconds("self")? - me0;
    into.requests += n;
    into.rounds.push(if server_cpu > 0.0 {
        n as f64 / server_cpu
    } else {
        0.0
    });
    Ok(())
}

fn machine() -> String {
    format!(
        "{} cores, {}",
        switchyard_perf::available_cores(),
        switchyard_perf::cpu_model()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seconds = args.seconds.unwrap_or(if args.quick { 3 } else { 15 });
    let rounds = args.rounds.unwrap_or(if args.quick { 3 } else { 5 }).max(1);
    let round_s = seconds as f64 / rounds as f64;
    let ctl = start_control(&args.control).await?;
    let c = args.concurrency;

    let create: MakeRequest = Arc::new(|i| {
        let body = serde_json::to_vec(&json!({"name": format!("bench-{i}"), "options": {"views": [{"label": "common", "video": {"maxInput": 4}}]}})).unwrap_or_default();
        ("POST", "/v1/rooms".to_string(), body)
    });
    // Warm up connections and caches, unmeasured; this also makes the rooms the token and
    // read phases use.
    phase(&ctl, 1.0, c, create.clone(), &mut Phase::new()?).await?;
    // Tokens on 16 rooms, round robin.
    let mut rooms = Vec::new();
    let http = reqwest::Client::new();
    let list = ctl.signer.authorization(
        now_ms(),
        RequestParts {
            method: "GET",
            path_and_query: "/v1/rooms?page=1&per_page=16",
            body: b"",
        },
    );
    let got: serde_json::Value = http
        .get(format!("{}/v1/rooms?page=1&per_page=16", ctl.base))
        .header("authorization", list)
        .send()
        .await?
        .json()
        .await?;
    for r in got.as_array().context("room list")? {
        rooms.push(r["_id"].as_str().context("room id")?.to_string());
    }
    let rooms = Arc::new(rooms);
    let r2 = rooms.clone();
    let token: MakeRequest = Arc::new(move |i| {
        let room = &r2[(i as usize) % r2.len()];
        let body = serde_json::to_vec(&json!({"user": format!("user-{i}"), "role": "presenter", "preference": {"isp": "isp", "region": "region"}})).unwrap_or_default();
        ("POST", format!("/v1/rooms/{room}/tokens"), body)
    });
    let r3 = rooms.clone();
    let read: MakeRequest = Arc::new(move |i| {
        (
            "GET",
            format!("/v1/rooms/{}", r3[(i as usize) % r3.len()]),
            Vec::new(),
        )
    });
    // Side by side with the measured phases, the same server answers `GET /healthz` (same
    // HTTP stack, runtime, client and connections; no signature check, no store): the
    // machine's speed for this kind of work at that moment, which the baseline check divides
    // out. The phases take turns in short rounds, so a slow spell of a shared machine
    // (another guest's load on the host) falls on every phase alike, and each phase's best
    // round is the one least disturbed.
    let work = [
        (
            "healthz",
            Arc::new(|_| ("GET", "/healthz".to_string(), Vec::new())) as MakeRequest,
        ),
        ("rooms_create", create),
        ("tokens_create", token),
        ("rooms_get", read),
    ];
    let mut measured = Vec::new();
    for _ in &work {
        measured.push(Phase::new()?);
    }
    for _ in 0..rounds {
        for ((_, make), into) in work.iter().zip(measured.iter_mut()) {
            phase(&ctl, round_s, c, make.clone(), into).await?;
        }
    }
    let mut phases: BTreeMap<String, PhaseResult> = work
        .iter()
        .zip(&measured)
        .map(|((name, _), m)| (name.to_string(), m.result()))
        .collect();
    let healthz = phases.remove("healthz").context("healthz phase")?;
    let report = Report {
        machine: machine(),
        concurrency: c,
        server_rss_kib: switchyard_perf::rss_kib(&ctl.child.id().to_string()).unwrap_or(0),
        phases,
        healthz,
    };
    println!(
        "rest-bench: {} concurrent clients, {seconds} s per phase in {rounds} rounds taking turns, {}",
        c, report.machine
    );
    println!(
        "{:<14} {:>9} {:>7} {:>10} {:>8} {:>8} {:>9} {:>10} {:>10} {:>16}  rounds",
        "phase",
        "requests",
        "errors",
        "req/s",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "server cpu",
        "client cpu",
        "req/server-cpu-s",
    );
    let healthz_name = "healthz".to_string();
    let rows = report
        .phases
        .iter()
        .chain(std::iter::once((&healthz_name, &report.healthz)));
    for (name, p) in rows {
        println!(
            "{:<14} {:>9} {:>7} {:>10.0} {:>8} {:>8} {:>9} {:>9.2}s {:>9.2}s {:>16.0}  {}",
            name,
            p.requests,
            p.errors,
            p.requests_per_s,
            p.p50_us,
            p.p99_us,
            p.p999_us,
            p.server_cpu_s,
            p.client_cpu_s,
            p.requests_per_server_cpu_s,
            p.rounds_per_server_cpu_s
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "server RSS after the run: {} MiB",
        report.server_rss_kib / 1024
    );
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
        println!("results written to {}", out.display());
    }
    let mut failed = false;
    for (name, p) in &report.phases {
        if p.errors > 0 {
            println!(
                "FAIL {name}: {} of {} requests failed",
                p.errors, p.requests
            );
            failed = true;
        }
    }
    if let Some(path) = &args.baseline {
        let b: Baseline = serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?;
        // Each phase's best round. When healthz's best round is below the baseline's, the
        // machine is slower for this kind of work than when the baseline was taken (a shared
        // VM's host busy with other guests: up to 40 % of the CPU stolen, seen here), and the
        // figures are scaled up by that factor: a slow hour slows healthz and the phases
        // alike, a slower handler only its phase. A faster machine is not scaled down, as
        // healthz's own spread (about ±20 % between runs) would then add to the phases'.
        let healthz = report.healthz.best_round_per_server_cpu_s;
        let scale = b
            .healthz_per_server_cpu_s
            .and_then(|base_h| Some((base_h, switchyard_perf::slowdown(base_h, healthz)?)));
        let speed = match scale {
            Some((base_h, speed)) => {
                println!(
                    "best rounds; healthz {healthz:.0} req/server-cpu-s against the baseline's {base_h:.0}: figures scaled by {speed:.2}"
                );
                speed
            }
            _ => {
                println!("best rounds; the baseline has no healthz figure, so not scaled");
                1.0
            }
        };
        println!(
            "against the baseline {} (noise margin {:.0} %):",
            path.display(),
            b.noise_margin * 100.0
        );
        for (name, base) in &b.requests_per_server_cpu_s {
            let Some(p) = report.phases.get(name) else {
                println!("FAIL {name}: in the baseline but not measured");
                failed = true;
                continue;
            };
            let scaled = p.best_round_per_server_cpu_s * speed;
            let ratio = scaled / base;
            let verdict = if ratio < 1.0 - b.noise_margin {
                failed = true;
                "REGRESSION"
            } else {
                "ok"
            };
            println!(
                "  {name:<14} {scaled:>10.0} req/server-cpu-s vs baseline {:>10.0}: {:>5.2}x  {verdict}",
                base, ratio
            );
        }
    }
    if failed {
        bail!("performance check failed");
    }
    Ok(())
}
