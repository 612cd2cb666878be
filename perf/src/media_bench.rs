//! `media-bench`: the same WebRTC load against Switchyard and Janus, side by side.
//!
//! Makes a network namespace joined to this one by a veth pair (Janus offers no loopback
//! ICE candidates), starts each server inside it pinned to the same CPUs,
//! runs `switchyard-loadgen` from this namespace on other CPUs with the servers' pids to
//! sample, and prints for both: forwarded packets per server CPU-second, Mbit/s per
//! server core, added latency p50/p99/p99.9, loss, RSS per subscriber, time to first
//! frame, the load generator's own CPU, and the Switchyard/Janus ratios. Switchyard's
//! figures are compared with `perf/baseline.json`; a regression beyond the noise margin
//! exits non-zero. The namespace and the servers are removed however the run ends.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Switchyard and Janus under the same WebRTC load, side by side")]
struct Args {
    /// The short run of the test command.
    #[arg(long)]
    quick: bool,
    /// The load generator.
    #[arg(long, default_value = "target/release/switchyard-loadgen")]
    loadgen: PathBuf,
    /// Switchyard's control binary.
    #[arg(long, default_value = "target/release/switchyard-control")]
    control: PathBuf,
    /// Switchyard's dataplane binary.
    #[arg(long, default_value = "target/release/switchyard-dataplane")]
    dataplane: PathBuf,
    /// Janus's binary.
    #[arg(long, default_value = "janus")]
    janus: PathBuf,
    /// Janus's plugins and transports (Debian's path).
    #[arg(long, default_value = "/usr/lib/x86_64-linux-gnu/janus")]
    janus_lib: PathBuf,
    /// The CPUs both servers run on (a list such as 0-3,8).
    #[arg(long)]
    server_cpus: Option<String>,
    /// The CPUs the load generator runs on.
    #[arg(long)]
    loadgen_cpus: Option<String>,
    /// Only this scenario (by name); with `--load`, the custom load's name.
    #[arg(long)]
    scenario: Option<String>,
    /// A load of your own instead of the built-in scenarios: the load generator's options
    /// in one string (e.g. "--rooms 4 --subscribers 100 --bitrate 600 --duration 10").
    #[arg(long, allow_hyphen_values = true)]
    load: Option<String>,
    /// Scaling across cores: for each count in this list (e.g. 1,2,4,8) Switchyard runs on
    /// that many of `--server-cpus` with `--load` (required) multiplied by it (its
    /// `--rooms`), and a table of throughput against the 1-core figure is printed.
    #[arg(long, value_delimiter = ',')]
    scaling: Vec<usize>,
    /// Switchyard with UDP GSO (`dataplane.udp_gso = true`; off by default).
    #[arg(long)]
    udp_gso: bool,
    /// Run in this network namespace on the loopback interface instead of making a
    /// namespace and a veth pair (no root or iproute2 needed; Switchyard only: Janus
    /// offers no loopback candidates).
    #[arg(long)]
    loopback: bool,
    /// Only this server: switchyard or janus.
    #[arg(long)]
    only: Option<String>,
    /// Switchyard's `dataplane.retransmit_history_ms` (its default when not given); 0
    /// measures memory per subscriber without packet caches.
    #[arg(long)]
    retransmit_history_ms: Option<u64>,
    /// Where each run's SVG charts go (a directory per scenario and server).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The committed baseline.
    #[arg(long, default_value = "perf/baseline.json")]
    baseline: PathBuf,
    /// Where the results go.
    #[arg(long, default_value = "perf/results/media.json")]
    out: PathBuf,
}

/// One load, run against each server.
#[derive(Debug, Clone)]
struct Scenario {
    name: String,
    about: String,
    loadgen: Vec<String>,
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let a = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    if quick {
        vec![
            Scenario {
                name: "quick-1x40".into(),
                about: "1 publisher (VP8 1 Mbit/s 30 fps + opus) → 40 subscribers, 8 s".into(),
                loadgen: a("--rooms 1 --publishers 1 --subscribers 40 --bitrate 1000 --duration 8 --settle 2"),
            },
            Scenario {
                name: "quick-4x1x8".into(),
                about: "4 rooms × 1 publisher (VP8 600 kbit/s) × 8 subscribers, 8 s".into(),
                loadgen: a("--rooms 4 --publishers 1 --subscribers 8 --bitrate 600 --duration 8 --settle 2"),
            },
        ]
    } else {
        vec![
            Scenario {
                name: "1x200".into(),
                about: "1 publisher (VP8 2.5 Mbit/s 30 fps + opus) → 200 subscribers, 20 s".into(),
                loadgen: a("--rooms 1 --publishers 1 --subscribers 200 --bitrate 2500 --duration 20 --join-rate 40"),
            },
            Scenario {
                name: "1x200-simulcast".into(),
                about: "1 publisher sending simulcast (VP8 312 kbit/s, 833 kbit/s, 2.5 Mbit/s + opus) → 200 subscribers, each on one layer (the top: no bandwidth adaptation), 20 s".into(),
                loadgen: a("--rooms 1 --publishers 1 --subscribers 200 --bitrate 2500 --simulcast --duration 20 --join-rate 40"),
            },
            Scenario {
                name: "1x200-simulcast-bwe".into(),
                about: "as 1x200-simulcast, in a room with enableBandwidthAdaptation (Switchyard estimates each subscriber's bandwidth from its transport-wide feedback and fits its layer)".into(),
                loadgen: a("--rooms 1 --publishers 1 --subscribers 200 --bitrate 2500 --simulcast --bandwidth-adaptation --duration 20 --join-rate 40"),
            },
            Scenario {
                name: "20x1x10".into(),
                about: "20 rooms × 1 publisher (VP8 1 Mbit/s) × 10 subscribers, 20 s".into(),
                loadgen: a("--rooms 20 --publishers 1 --subscribers 10 --bitrate 1000 --duration 20 --join-rate 40"),
            },
            Scenario {
                name: "1x100-h264".into(),
                about: "1 publisher (H.264 1 Mbit/s 30 fps + opus) → 100 subscribers, 15 s".into(),
                loadgen: a("--rooms 1 --publishers 1 --subscribers 100 --video h264 --bitrate 1000 --duration 15"),
            },
            Scenario {
                name: "ramp-600k".into(),
                about: "ramp: 1 publisher (VP8 600 kbit/s) + 50 subscribers every 5 s until loss > 1 % or p99 > 50 ms (max 1000)".into(),
                loadgen: a("--scenario ramp --rooms 1 --publishers 1 --subscribers 50 --ramp-step 50 --ramp-interval 5 --bitrate 600 --max-subscribers 1000 --join-rate 100"),
            },
            Scenario {
                name: "overload-2500k".into(),
                about: "past the knee: 1 publisher (VP8 2.5 Mbit/s) + 50 subscribers every 5 s from 100 to 400, not stopping at loss or latency".into(),
                loadgen: a("--scenario ramp --rooms 1 --publishers 1 --subscribers 100 --ramp-step 50 --ramp-interval 5 --bitrate 2500 --max-subscribers 400 --join-rate 100 --loss-limit 0.95 --latency-limit-ms 60000"),
            },
        ]
    }
}

/// Where the servers run: a network namespace and its veth pair (removed on drop), or,
/// with `--loopback`, this namespace's loopback interface.
struct Netns {
    /// The namespace's name; `None` on loopback.
    name: Option<String>,
    inner_if: String,
    host_ip: String,
    inner_ip: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (Debian's iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    fn loopback() -> Netns {
        Netns {
            name: None,
            inner_if: "lo".into(),
            host_ip: "127.0.0.1".into(),
            inner_ip: "127.0.0.1".into(),
        }
    }

    fn create() -> anyhow::Result<Netns> {
        // Namespaces left by runs that were killed.
        if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                if let Some(pid) = name.strip_prefix("sy-perf-") {
                    if !Path::new(&format!("/proc/{pid}")).exists() {
                        let _ = ip(&["netns", "del", name]);
                    }
                }
            }
        }
        let pid = std::process::id();
        let net = 20 + pid % 200;
        let name = format!("sy-perf-{pid}");
        let ns = Netns {
            name: Some(name.clone()),
            inner_if: format!("syn{pid}"),
            host_ip: format!("10.213.{net}.1"),
            inner_ip: format!("10.213.{net}.2"),
        };
        let host_if = format!("syh{pid}");
        ip(&["netns", "add", &name])?;
        ip(&[
            "link",
            "add",
            &host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.inner_if,
        ])?;
        ip(&["link", "set", &ns.inner_if, "netns", &name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &host_if,
        ])?;
        ip(&["link", "set", &host_if, "up"])?;
        let exec = |a: &[&str]| {
            let mut v = vec!["netns", "exec", &name, "ip"];
            v.extend_from_slice(a);
            ip(&v)
        };
        exec(&[
            "addr",
            "add",
            &format!("{}/24", ns.inner_ip),
            "dev",
            &ns.inner_if,
        ])?;
        exec(&["link", "set", &ns.inner_if, "up"])?;
        exec(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command run inside the namespace (start it with [`spawn_on`]).
    fn command(&self, program: &Path) -> Command {
        match &self.name {
            Some(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// How the run is placed, for the report.
    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("namespace {name} ({} ↔ {})", self.host_ip, self.inner_ip),
            None => format!("loopback ({})", self.inner_ip),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        if let Some(name) = &self.name {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A server process; killed on drop.
struct Server {
    name: &'static str,
    children: Vec<Child>,
    url: String,
    service_file: Option<PathBuf>,
    /// The dataplane's metrics (Switchyard), for its own added-latency histogram.
    metrics: Option<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.id()).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_http(url: &str, children: &mut [Child], log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if http_ok(url) {
            return Ok(());
        }
        for c in children.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                bail!(
                    "a server exited ({status}) before {url} answered; its log:\n{}",
                    tail(log)
                );
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer within 20 s; log:\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `c` on `cpus` (a list such as "0-3,8"): this thread's CPU affinity is set to
/// them for the spawn, which the child inherits, and then put back.
fn spawn_on(c: &mut Command, cpus: &str) -> anyhow::Result<Child> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let me = Pid::from_raw(0);
    let mut set = CpuSet::new();
    let list = switchyard_dataplane::setup::parse_cpu_list(cpus);
    if list.is_empty() {
        bail!("no CPUs in the list {cpus:?}");
    }
    for cpu in list {
        set.set(cpu)
            .with_context(|| format!("CPU {cpu} in {cpus:?}"))?;
    }
    let before = sched_getaffinity(me).context("reading this thread's CPU affinity")?;
    sched_setaffinity(me, &set).with_context(|| format!("pinning to CPUs {cpus}"))?;
    let child = c.spawn();
    sched_setaffinity(me, &before).context("restoring this thread's CPU affinity")?;
    Ok(child?)
}

/// Whether a GET of `url` (`http://host:port/path`) answers 2xx within a second.
fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(addr) = host.parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        if path.is_empty() { "/" } else { path }
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head[9] == b'2'
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, Stdio, Stdio)> {
    let path = dir.join(format!("{name}.log"));
    let f = std::fs::File::create(&path)?;
    let g = f.try_clone()?;
    Ok((path, Stdio::from(f), Stdio::from(g)))
}

fn start_switchyard(args: &Args, ns: &Netns, cpus: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("switchyard.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"data_dir = "{data}"
[log]
level = "warn,switchyard_control::link=info"
format = "json"
[management-api]
ip_address = "{ip}"
port = 3000
[portal]
ip_address = "{ip}"
port = 8080
[webrtc]
network_interfaces = [{{name = "{ifname}"}}]
minport = 40000
maxport = 40063
[dataplane]
cores = "all"
rpc_address = "127.0.0.1:7000"
metrics_address = "{ip}:7001"
{gso}{history}"#,
            data = dir.path().join("data").display(),
            ip = ns.inner_ip,
            ifname = ns.inner_if,
            gso = if args.udp_gso { "udp_gso = true\n" } else { "" },
            history = args
                .retransmit_history_ms
                .map(|ms| format!("retransmit_history_ms = {ms}\n"))
                .unwrap_or_default()
        ),
    )?;
    // The previous run's dataplane is dead (killed and reaped), but the kernel tears its
    // io_uring down asynchronously and the sockets it held stay bound for a moment: retry
    // while the media port is still taken.
    let mut tries = 0;
    let (dlog, dp) = loop {
        let (dlog, out, err) = log_file(dir.path(), "dataplane")?;
        let mut c = ns.command(&args.dataplane);
        c.arg("--config").arg(&cfg).stdout(out).stderr(err);
        let mut dp = spawn_on(&mut c, cpus)
            .with_context(|| format!("starting {}", args.dataplane.display()))?;
        std::thread::sleep(Duration::from_millis(300));
        let exited = matches!(dp.try_wait(), Ok(Some(_)));
        let in_use = std::fs::read_to_string(&dlog)
            .unwrap_or_default()
            .contains("Address already in use");
        if exited && in_use && tries < 20 {
            tries += 1;
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        break (dlog, dp);
    };
    // Owned by a Server from here: an early return kills what was started.
    let dir_path = dir.path().to_path_buf();
    let mut server = Server {
        name: "switchyard",
        children: vec![dp],
        url: format!("http://{}:3000", ns.inner_ip),
        service_file: Some(dir_path.join("data/super-service.json")),
        metrics: Some(format!("http://{}:7001/metrics", ns.inner_ip)),
        _dir: dir,
    };
    let (clog, out, err) = log_file(&dir_path, "control")?;
    let mut c = ns.command(&args.control);
    c.arg("--config").arg(&cfg).stdout(out).stderr(err);
    let control =
        spawn_on(&mut c, cpus).with_context(|| format!("starting {}", args.control.display()))?;
    server.children.push(control);
    let healthz = format!("{}/healthz", server.url);
    wait_http(&healthz, &mut server.children, &clog)?;
    // Control connects to the dataplane just after it starts serving.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&clog)
        .unwrap_or_default()
        .contains("media dataplane connected")
    {
        if Instant::now() > deadline {
            bail!(
                "control did not connect to the dataplane within 10 s; dataplane log:\n{}\ncontrol log:\n{}",
                tail(&dlog),
                tail(&clog)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

fn start_janus(args: &Args, ns: &Netns, cpus: &str) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let conf = dir.path();
    let list = |sub: &str, keep: &str| -> String {
        std::fs::read_dir(args.janus_lib.join(sub))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.ends_with(".so") && n != keep)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    // Janus's own defaults, except: only the VideoRoom plugin and the HTTP transport, ICE on
    // the namespace's veth only, and no logging beyond warnings.
    std::fs::write(
        conf.join("janus.jcfg"),
        format!(
            r#"general: {{
    configs_folder = "{conf}"
    plugins_folder = "{lib}/plugins"
    transports_folder = "{lib}/transports"
    events_folder = "{lib}/events"
    loggers_folder = "{lib}/loggers"
    debug_level = 3
    admin_secret = "janusoverlord"
}}
certificates: {{
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    ice_enforce_list = "{ifname}"
}}
plugins: {{
    disable = "{plugins}"
}}
transports: {{
    disable = "{transports}"
}}
loggers: {{
    disable = "{loggers}"
}}
events: {{
}}
"#,
            conf = conf.display(),
            lib = args.janus_lib.display(),
            ifname = ns.inner_if,
            plugins = list("plugins", "libjanus_videoroom.so"),
            transports = list("transports", "libjanus_http.so"),
            loggers = list("loggers", ""),
        ),
    )?;
    std::fs::write(
        conf.join("janus.transport.http.jcfg"),
        format!(
            "general: {{\n    base_path = \"/janus\"\n    http = true\n    port = 8088\n    ip = \"{}\"\n    https = false\n}}\nadmin: {{\n    admin_http = false\n}}\ncors: {{\n}}\n",
            ns.inner_ip
        ),
    )?;
    std::fs::write(conf.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    let (log, out, err) = log_file(conf, "janus")?;
    let mut c = ns.command(&args.janus);
    c.arg("-F")
        .arg(conf)
        .arg("-C")
        .arg(conf.join("janus.jcfg"))
        .arg("-o")
        .stdout(out)
        .stderr(err);
    let child = spawn_on(&mut c, cpus).with_context(|| {
        format!(
            "starting {} (Debian's janus; scripts/setup.sh installs it)",
            args.janus.display()
        )
    })?;
    // Owned by a Server from here: an early return kills the process.
    let url = format!("http://{}:8088/janus", ns.inner_ip);
    let mut server = Server {
        name: "janus",
        children: vec![child],
        url,
        service_file: None,
        metrics: None,
        _dir: dir,
    };
    wait_http(&format!("{}/info", server.url), &mut server.children, &log)?;
    Ok(server)
}

fn run_loadgen(
    args: &Args,
    server: &Server,
    sc: &Scenario,
    cpus: &str,
    dir: &Path,
) -> anyhow::Result<Value> {
    let report = dir.join(format!("{}-{}.json", sc.name, server.name));
    let mut c = Command::new(&args.loadgen);
    c.args(["--target", server.name, "--url", &server.url, "--quiet"])
        .args(&sc.loadgen)
        .arg("--report")
        .arg(&report);
    for pid in server.pids() {
        c.args(["--server-pid", &pid.to_string()]);
    }
    if let Some(f) = &server.service_file {
        c.arg("--service-file").arg(f);
    }
    if let Some(m) = &server.metrics {
        c.args(["--server-metrics", m]);
    }
    if let Some(p) = &args.plot {
        c.arg("--plot")
            .arg(p.join(format!("{}-{}", sc.name, server.name)));
    }
    let status = spawn_on(&mut c, cpus)
        .and_then(|mut child| Ok(child.wait()?))
        .with_context(|| format!("running {}", args.loadgen.display()))?;
    if !status.success() {
        bail!(
            "the load generator failed against {} ({status})",
            server.name
        );
    }
    let text = std::fs::read_to_string(&report)?;
    Ok(serde_json::from_str(&text)?)
}

/// The number at `path` in a report, if it has one.
fn get(v: &Value, path: &[&str]) -> Option<f64> {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64()
}

/// The number at `path`, 0 when missing.
fn f(v: &Value, path: &[&str]) -> f64 {
    get(v, path).unwrap_or(0.0)
}

/// The rows of the side-by-side table: label, path in the report's window, scale and
/// decimals.
const ROWS: &[(&str, &[&str], f64, usize)] = &[
    ("subscribers connected", &["subscribers"], 1.0, 0),
    ("forwarded packets/s", &["received_pps"], 1.0, 0),
    ("forwarded Mbit/s", &["received_mbit_s"], 1.0, 1),
    ("server CPU (cores)", &["server_cores"], 1.0, 3),
    (
        "packets per server CPU-s",
        &["packets_per_server_cpu_s"],
        1.0,
        0,
    ),
    (
        "Mbit/s per server core",
        &["mbit_s_per_server_core"],
        1.0,
        1,
    ),
    ("added latency p50 (ms)", &["latency", "p50_us"], 0.001, 2),
    ("added latency p99 (ms)", &["latency", "p99_us"], 0.001, 2),
    (
        "added latency p99.9 (ms)",
        &["latency", "p999_us"],
        0.001,
        2,
    ),
    (
        "server's own latency p50 (µs)",
        &["server_latency", "p50_us"],
        1.0,
        0,
    ),
    (
        "server's own latency p99 (µs)",
        &["server_latency", "p99_us"],
        1.0,
        0,
    ),
    (
        "server's own latency p99.9 (µs)",
        &["server_latency", "p999_us"],
        1.0,
        0,
    ),
    (
        "hand-offs per forwarded copy",
        &["handoffs_per_forwarded"],
        1.0,
        4,
    ),
    ("datagrams per send (GSO)", &["datagrams_per_send"], 1.0, 2),
    ("loss (%)", &["loss"], 100.0, 3),
    ("delivered (%)", &["delivered"], 100.0, 2),
    ("jitter p50 (ms)", &["jitter_p50_us"], 0.001, 2),
    (
        "time to first keyframe p50 (ms)",
        &["ttff_ms", "p50_us"],
        1.0,
        0,
    ),
    (
        "RSS per subscriber (KiB)",
        &["rss_per_subscriber_kib"],
        1.0,
        1,
    ),
    (
        "heap per subscriber (KiB)",
        &["heap_per_subscriber_kib"],
        1.0,
        1,
    ),
    (
        "server RSS at full load (MiB)",
        &["server_rss_after_kib"],
        1.0 / 1024.0,
        1,
    ),
    ("load generator CPU (cores)", &["loadgen_cores"], 1.0, 2),
    ("failed sessions", &["failures"], 1.0, 0),
];

fn print_table(sc: &Scenario, results: &[(String, Value)]) {
    println!("\n{} — {}", sc.name, sc.about);
    let mut head = format!("  {:<34}", "");
    for (name, _) in results {
        head.push_str(&format!("{name:>14}"));
    }
    if results.len() == 2 {
        head.push_str(&format!("{:>14}", "sy/janus"));
    }
    println!("{head}");
    for (label, path, scale, dec) in ROWS {
        let mut line = format!("  {label:<34}");
        // A figure a server does not report (its own latency, from Janus) shows as "-".
        let vals: Vec<Option<f64>> = results
            .iter()
            .map(|(_, r)| get(&r["window"], path).map(|v| v * scale))
            .collect();
        for v in &vals {
            match v {
                Some(v) => line.push_str(&format!("{:>14.*}", *dec, v)),
                None => line.push_str(&format!("{:>14}", "-")),
            }
        }
        if let [Some(a), Some(b)] = vals[..] {
            if b.abs() > 1e-12 {
                line.push_str(&format!("{:>13.2}x", a / b));
            }
        }
        println!("{line}");
    }
    for (name, r) in results {
        if let Some(k) = r["knee_subscribers"].as_u64() {
            println!(
                "  {name}: ramp knee at {k} subscribers ({})",
                r["stop_reason"].as_str().unwrap_or("")
            );
        } else if let Some(why) = r["stop_reason"].as_str() {
            println!("  {name}: ramp stopped at its first step: {why}");
        }
    }
}

/// The scenario `--load` describes, named by `--scenario` ("custom" when not given).
fn custom_scenario(args: &Args, load: &str) -> Scenario {
    Scenario {
        name: args.scenario.clone().unwrap_or_else(|| "custom".into()),
        about: format!("custom load: {load}"),
        loadgen: load.split_whitespace().map(str::to_string).collect(),
    }
}

/// `--scaling`: Switchyard on 1, 2, 4… of the server CPUs, each time with the per-core load
/// `--load` times the core count (its rooms multiplied), and a table of throughput and
/// efficiency against the first count's.
fn scaling(
    args: &Args,
    ns: &Netns,
    server_cpus: &str,
    loadgen_cpus: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let Some(load) = &args.load else {
        bail!("--scaling needs --load: the load per core (its --rooms is multiplied by the core count)");
    };
    let cpus = switchyard_dataplane::setup::parse_cpu_list(server_cpus);
    let most = args.scaling.iter().copied().max().unwrap_or(1);
    if cpus.len() < most || args.scaling.contains(&0) {
        bail!(
            "--scaling up to {most} cores needs that many --server-cpus, and no count of 0 ({server_cpus} has {})",
            cpus.len()
        );
    }
    let per_core = custom_scenario(args, load);
    let rooms_at = per_core.loadgen.iter().position(|a| a == "--rooms");
    let rooms_per_core: usize = match rooms_at {
        Some(i) => per_core
            .loadgen
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .context("--load's --rooms needs a number")?,
        None => 1,
    };
    let mut rows: Vec<(usize, Value)> = Vec::new();
    for &n in &args.scaling {
        let mut sc = per_core.clone();
        sc.name = format!("{}-{n}core", per_core.name);
        let rooms = (rooms_per_core * n).to_string();
        match rooms_at {
            Some(i) => sc.loadgen[i + 1] = rooms,
            None => sc.loadgen.extend(["--rooms".to_string(), rooms]),
        }
        let list = cpus[..n]
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",");
        println!("\n{n} core(s) on CPU {list}: {}", sc.loadgen.join(" "));
        let server = start_switchyard(args, ns, &list)?;
        let r = run_loadgen(args, &server, &sc, loadgen_cpus, dir)?;
        drop(server);
        rows.push((n, r));
    }
    println!(
        "\nscaling — {} per core; server CPUs {server_cpus}, load generator on {loadgen_cpus}, {}",
        load,
        ns.describe()
    );
    println!(
        "  {:>5} {:>11} {:>12} {:>9} {:>10} {:>13} {:>8} {:>11} {:>9} {:>10} {:>10} {:>8} {:>10}",
        "cores",
        "subscribers",
        "fwd pkt/s",
        "Mbit/s",
        "CPU cores",
        "pkt per CPU-s",
        "loss %",
        "delivered %",
        "p99 ms",
        "own p99 µs",
        "gen cores",
        "× first",
        "efficiency"
    );
    let first = rows.first().map(|(n, r)| {
        (
            *n as f64,
            f(&r["window"], &["received_pps"]),
            f(&r["window"], &["packets_per_server_cpu_s"]),
        )
    });
    let mut out_rows = Vec::new();
    for (n, r) in &rows {
        let w = &r["window"];
        let pps = f(w, &["received_pps"]);
        let eff = f(w, &["packets_per_server_cpu_s"]);
        let (x, e) = match first {
            Some((n0, p0, e0)) if p0 > 0.0 && e0 > 0.0 => (pps / p0 * n0, eff / e0),
            _ => (0.0, 0.0),
        };
        println!(
            "  {:>5} {:>11.0} {:>12.0} {:>9.1} {:>10.3} {:>13.0} {:>8.3} {:>11.2} {:>9.2} {:>10.0} {:>10.2} {:>7.2}x {:>10.2}",
            n,
            f(w, &["subscribers"]),
            pps,
            f(w, &["received_mbit_s"]),
            f(w, &["server_cores"]),
            eff,
            f(w, &["loss"]) * 100.0,
            f(w, &["delivered"]) * 100.0,
            f(w, &["latency", "p99_us"]) / 1000.0,
            f(w, &["server_latency", "p99_us"]),
            f(w, &["loadgen_cores"]),
            x,
            e
        );
        out_rows.push(
            json!({ "cores": n, "throughput_vs_first": x, "efficiency_vs_first": e, "window": w }),
        );
    }
    println!("  (× first: forwarded packets/s over the first row's, per its core count; efficiency: packets per CPU-second over the first row's)");
    let doc = json!({
        "machine": switchyard_perf::cpu_model(),
        "cpus": switchyard_perf::available_cores(),
        "server_cpus": server_cpus,
        "loadgen_cpus": loadgen_cpus,
        "placement": ns.describe(),
        "load_per_core": load,
        "rows": out_rows,
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}

fn cpu_lists() -> (String, String) {
    let n = switchyard_perf::available_cores();
    match n {
        1 => ("0".into(), "0".into()),
        2 | 3 => ("1".into(), "0".into()),
        _ => ("1".into(), format!("2-{}", n - 1)),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.loopback && not_root() {
        bail!("media-bench makes a network namespace and a veth pair: run it as root (or pass --loopback)");
    }
    let (def_server, def_gen) = cpu_lists();
    let server_cpus = args.server_cpus.clone().unwrap_or(def_server);
    let loadgen_cpus = args.loadgen_cpus.clone().unwrap_or(def_gen);
    let ns = if args.loopback {
        Netns::loopback()
    } else {
        Netns::create()?
    };
    let out_dir = args
        .out
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&out_dir)?;
    println!(
        "media-bench: servers on CPU {server_cpus}, load generator on CPU {loadgen_cpus}; {}",
        ns.describe()
    );
    if !args.scaling.is_empty() {
        return scaling(&args, &ns, &server_cpus, &loadgen_cpus, &out_dir);
    }
    let list = match &args.load {
        Some(load) => vec![custom_scenario(&args, load)],
        None => scenarios(args.quick),
    };
    let mut all = Vec::new();
    for sc in list {
        if args.load.is_none() && args.scenario.as_deref().is_some_and(|s| s != sc.name) {
            continue;
        }
        let mut results: Vec<(String, Value)> = Vec::new();
        for which in ["switchyard", "janus"] {
            if args.only.as_deref().is_some_and(|o| o != which) {
                continue;
            }
            if which == "janus" && args.loopback {
                println!("  (Janus skipped: it offers no loopback candidates)");
                continue;
            }
            let server = if which == "switchyard" {
                start_switchyard(&args, &ns, &server_cpus)?
            } else {
                start_janus(&args, &ns, &server_cpus)?
            };
            let r = run_loadgen(&args, &server, &sc, &loadgen_cpus, &out_dir)?;
            drop(server);
            results.push((which.to_string(), r));
        }
        print_table(&sc, &results);
        all.push(json!({
            "scenario": sc.name,
            "about": sc.about,
            "results": results.iter().map(|(n, r)| json!({ "server": n, "window": r["window"], "knee_subscribers": r["knee_subscribers"], "steps": r["steps"] })).collect::<Vec<_>>(),
        }));
    }
    let machine = switchyard_perf::cpu_model();
    let doc = json!({
        "machine": machine,
        "placement": ns.describe(),
        "server_cpus": server_cpus,
        "loadgen_cpus": loadgen_cpus,
        "quick": args.quick,
        "scenarios": all,
    });
    std::fs::write(&args.out, serde_json::to_vec_pretty(&doc)?)?;
    compare(&args, &doc)
}

/// Compares Switchyard's packets per server CPU-second with the baseline.
///
/// Janus, run in the same scenario just before or after, is the machine's speed for this
/// work at that moment: when its packets per CPU-second are below the baseline's Janus
/// figure (a shared VM's host lending less — seen here as up to 40 % of the CPU stolen),
/// Switchyard's figure is scaled up by that ratio before the comparison. A faster Janus
/// does not scale it down (run-to-run spread would then count twice).
fn compare(args: &Args, doc: &Value) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.baseline)
        .with_context(|| format!("reading {}", args.baseline.display()))?;
    let base: Value = serde_json::from_str(&text)?;
    let margin = base["media"]["noise_margin"].as_f64().unwrap_or(0.35);
    println!(
        "\nSwitchyard against the baseline {} (noise margin {:.0} %):",
        args.baseline.display(),
        margin * 100.0
    );
    let mut failed = Vec::new();
    for s in doc["scenarios"].as_array().into_iter().flatten() {
        let name = s["scenario"].as_str().unwrap_or("");
        let window_of = |server: &str| {
            s["results"]
                .as_array()
                .and_then(|r| r.iter().find(|x| x["server"] == server))
                .map(|x| &x["window"])
        };
        let Some(w) = window_of("switchyard") else {
            continue;
        };
        if f(w, &["failures"]) > 0.0 {
            failed.push(format!("{name}: {} sessions failed", f(w, &["failures"])));
        }
        let got = f(w, &["packets_per_server_cpu_s"]);
        let Some(want) = base["media"]["packets_per_server_cpu_s"][name].as_f64() else {
            println!("  {name:<16} {got:>10.0} pkt per CPU-s (no baseline)");
            continue;
        };
        // Janus now and in the baseline.
        let janus = window_of("janus")
            .map(|j| f(j, &["packets_per_server_cpu_s"]))
            .zip(base["media"]["janus_packets_per_server_cpu_s"][name].as_f64());
        let speed = janus
            .and_then(|(now, b)| switchyard_perf::slowdown(b, now))
            .unwrap_or(1.0);
        let ratio = got * speed / want;
        let ok = ratio >= 1.0 - margin;
        let scaled = janus.map_or_else(String::new, |(now, b)| {
            format!(" (Janus {now:.0} against its {b:.0}: scaled by {speed:.2})")
        });
        println!(
            "  {name:<16} {got:>10.0} vs baseline {want:>10.0} pkt per CPU-s: {ratio:.2}x  {}{scaled}",
            if ok { "ok" } else { "REGRESSION" }
        );
        if !ok {
            failed.push(format!(
                "{name}: {got:.0} x {speed:.2} < {want:.0} x {:.2}",
                1.0 - margin
            ));
        }
    }
    if !failed.is_empty() {
        bail!("media-bench: {}", failed.join("; "));
    }
    Ok(())
}

/// Whether this process lacks root (namespaces need CAP_NET_ADMIN), read from /proc.
fn not_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u != "0"))
        })
        .unwrap_or(true)
}
