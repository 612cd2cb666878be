//! `switchyard-loadgen`: many real WebRTC sessions (str0m, a thread per core, one process)
//! against Switchyard (WHIP/WHEP) or Janus's VideoRoom, so the same load runs against both.
//!
//! R rooms × P publishers × S subscribers per publisher. Publishers loop a clip of real
//! encoder output (opus 20 ms + VP8 or H.264 at the chosen bitrate and frame rate);
//! every payload carries its send time, so subscribers measure the latency the server
//! adds to each packet, loss, jitter and time to first keyframe (hdrhistogram).
//! Scenarios: `fixed` (a load for a duration), `ramp` (add subscribers until loss or
//! latency crosses a limit; report the knee), `churn` (joins and leaves per second).
//! The report is JSON; `--plot` writes SVG charts; `--server-pid` samples the servers'
//! CPU and RSS from /proc, and the load generator's own CPU is always reported.

#![deny(unsafe_code)]

mod media;
mod packetize;
mod report;
mod session;
mod signal;
mod stats;
mod worker;

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use tokio::sync::mpsc;

use media::VideoCodec;
use report::{Point, Report, Step, Usage, Window};
use stats::Tick;
use worker::{Cmd, Feed, RoomRef, Target};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum TargetKind {
    Switchyard,
    Janus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Scenario {
    Fixed,
    Ramp,
    Churn,
}

/// Opens many real WebRTC sessions against a media server and measures what it does to them.
#[derive(Debug, Parser, serde::Serialize)]
#[command(version, args_override_self = true)]
struct Args {
    /// A scenario file (TOML; keys are the long options with `_` or `-`); options given
    /// on the command line override it.
    #[arg(long)]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// The server under test.
    #[arg(long, value_enum, default_value = "switchyard")]
    target: TargetKind,
    /// Switchyard: the management API (`http://host:3000`). Janus: its HTTP API
    /// (`http://host:8088/janus`).
    #[arg(long)]
    url: String,
    /// Switchyard: the service id that signs REST requests.
    #[arg(long, env = "SWITCHYARD_SERVICE_ID", default_value = "")]
    service_id: String,
    /// Switchyard: the service key.
    #[arg(long, env = "SWITCHYARD_SERVICE_KEY", default_value = "")]
    #[serde(skip)]
    service_key: String,
    /// Switchyard: read the service id and key from this JSON file (the data
    /// directory's super-service.json).
    #[arg(long)]
    service_file: Option<PathBuf>,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribers per publisher (fixed, churn; the ramp's start).
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Video codec.
    #[arg(long, default_value = "vp8")]
    video: VideoCodec,
    /// Video bitrate, kbit/s.
    #[arg(long, default_value_t = 1000)]
    bitrate: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Publishers send simulcast: three layers (rids q, h, f) at an eighth, a third and
    /// all of --bitrate; each subscriber gets the one the server picks for it.
    #[arg(long)]
    simulcast: bool,
    /// Switchyard: rooms with `enableBandwidthAdaptation` (each subscriber's bandwidth
    /// is estimated and its simulcast layer fitted to it).
    #[arg(long)]
    bandwidth_adaptation: bool,
    /// What to do.
    #[arg(long, value_enum, default_value = "fixed")]
    scenario: Scenario,
    /// Seconds measured (fixed, churn).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Seconds of full load before the measured window.
    #[arg(long, default_value_t = 2)]
    settle: u64,
    /// Subscriptions started per second while bringing load up.
    #[arg(long, default_value_t = 50)]
    join_rate: u32,
    /// Ramp: subscribers added per step (over all publishers).
    #[arg(long, default_value_t = 20)]
    ramp_step: usize,
    /// Ramp: seconds measured per step.
    #[arg(long, default_value_t = 5)]
    ramp_interval: u64,
    /// Ramp: stop at this many subscribers in all.
    #[arg(long, default_value_t = 2000)]
    max_subscribers: usize,
    /// Ramp: the loss that ends it (also the share of packets not delivered, which counts
    /// streams a server stopped forwarding).
    #[arg(long, default_value_t = 0.01)]
    loss_limit: f64,
    /// Ramp: the p99 latency (ms) that ends it.
    #[arg(long, default_value_t = 50.0)]
    latency_limit_ms: f64,
    /// Churn: subscribers replaced per second.
    #[arg(long, default_value_t = 5)]
    churn_rate: usize,
    /// Worker threads (default: the cores this process may use).
    #[arg(long)]
    threads: Option<usize>,
    /// The address sessions bind (default: the one that routes to the server).
    #[arg(long)]
    local_ip: Option<IpAddr>,
    /// Where encoded clips are cached.
    #[arg(long)]
    media_dir: Option<PathBuf>,
    /// A server process to sample for CPU and RSS (repeat for several).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Switchyard: the dataplane's metrics URL (`http://host:7101/metrics`); its
    /// added-latency histogram, read at each window's start and end, goes into the report
    /// as the window's `server_latency`.
    #[arg(long)]
    server_metrics: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write SVG charts (latency.svg, cpu.svg) into this directory.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print progress events as JSON lines on stdout (for scripts).
    #[arg(long)]
    events: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

/// Arguments with a scenario file's settings in front of the command line's.
fn parse_args() -> anyhow::Result<Args> {
    let cli: Vec<String> = std::env::args().collect();
    let first = Args::try_parse_from(&cli);
    let config = match &first {
        Ok(a) => a.config.clone(),
        Err(_) => cli
            .iter()
            .position(|a| a == "--config")
            .and_then(|i| cli.get(i + 1))
            .map(PathBuf::from),
    };
    let Some(path) = config else {
        return Ok(first?);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the scenario file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut args = vec![cli.first().cloned().unwrap_or_default()];
    args.extend(config_args(table));
    args.extend(cli.into_iter().skip(1));
    Args::try_parse_from(args).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A scenario file's settings as command-line options.
fn config_args(table: toml::Table) -> Vec<String> {
    let mut args = Vec::new();
    for (k, v) in table {
        let flag = format!("--{}", k.replace('_', "-"));
        match v {
            toml::Value::Boolean(true) => args.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for i in items {
                    args.push(flag.clone());
                    args.push(scalar(&i));
                }
            }
            other => {
                args.push(flag);
                args.push(scalar(&other));
            }
        }
    }
    args
}

fn scalar(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<clap::Error>() {
                c.exit();
            }
            return Err(e);
        }
    };
    raise_open_files();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(args))
}

/// Every session has a UDP socket of its own, so thousands of sessions need more open
/// files than the usual soft limit of 1,024: lift it to the hard limit (which stays the
/// operator's to set).
fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                eprintln!("switchyard-loadgen: could not raise the open-file limit from {soft} to {hard}: {e}");
            }
        }
    }
}

/// The run's bookkeeping on the main thread.
struct Run {
    args: Args,
    epoch: Instant,
    workers: Vec<mpsc::UnboundedSender<Cmd>>,
    reports: mpsc::UnboundedReceiver<worker::Report>,
    next_id: u64,
    /// Publishers that are sending, with their feed.
    feeds: Vec<Feed>,
    /// Subscribers started: id → (feed index, connected).
    subs: HashMap<u64, (usize, bool)>,
    publishers_pending: usize,
    pending_ticks: BTreeMap<u64, (Tick, usize)>,
    /// Finished seconds.
    done: Vec<Tick>,
    series: Vec<Point>,
    jitter: Vec<f64>,
    errors: Vec<String>,
    stopped: usize,
    pids: Vec<String>,
    last_usage: (Usage, f64),
    progress: indicatif::ProgressBar,
    plain_progress: bool,
}

impl Run {
    fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn worker_for(&self, id: u64) -> &mpsc::UnboundedSender<Cmd> {
        &self.workers[(id as usize) % self.workers.len()]
    }

    fn connected_subs(&self) -> usize {
        self.subs.values().filter(|(_, c)| *c).count()
    }

    fn subscribe(&mut self, feed_index: usize) {
        let id = self.next_id;
        self.next_id += 1;
        let feed = self.feeds[feed_index].clone();
        self.subs.insert(id, (feed_index, false));
        let _ = self.worker_for(id).send(Cmd::Subscribe { id, feed });
    }

    fn unsubscribe(&mut self, id: u64) {
        self.subs.remove(&id);
        let _ = self.worker_for(id).send(Cmd::Stop { id });
    }

    /// Handles one report from a worker.
    fn on_report(&mut self, r: worker::Report) {
        match r {
            worker::Report::PublisherReady { feed, .. } => {
                self.feeds.push(feed);
                self.publishers_pending = self.publishers_pending.saturating_sub(1);
            }
            worker::Report::SubscriberReady { id } => {
                if let Some(s) = self.subs.get_mut(&id) {
                    s.1 = true;
                }
            }
            worker::Report::Failed { id, error } => {
                if self.errors.len() < 20 {
                    self.errors.push(error.clone());
                }
                if !self.args.quiet {
                    self.progress.println(format!("failed: {error}"));
                }
                if self.subs.remove(&id).is_none() {
                    self.publishers_pending = self.publishers_pending.saturating_sub(1);
                }
            }
            worker::Report::Ended { end, .. } => self.jitter.extend(end.jitter_us),
            worker::Report::Tick(t) => {
                let n = self.workers.len();
                let e = self
                    .pending_ticks
                    .entry(t.index)
                    .or_insert_with(|| (Tick::new(t.index), 0));
                e.0.merge(&t);
                e.1 += 1;
                if e.1 == n {
                    if let Some((t, _)) = self.pending_ticks.remove(&t.index) {
                        self.second_done(t);
                    }
                }
            }
            worker::Report::Stopped => self.stopped += 1,
        }
    }

    fn second_done(&mut self, t: Tick) {
        let usage = report::usage(&self.pids);
        let own = report::cpu_seconds("self").unwrap_or(0.0);
        let (last, last_own) = self.last_usage;
        self.last_usage = (usage, own);
        let p = Point {
            t: t.index,
            subscribers: self.connected_subs(),
            received_pps: t.received_packets,
            received_mbit_s: t.received_bytes as f64 * 8.0 / 1e6,
            loss: t.loss(),
            latency: report::Latency::of(&t.latency),
            server_cpu_percent: (usage.cpu_s - last.cpu_s).max(0.0) * 100.0,
            loadgen_cpu_percent: (own - last_own).max(0.0) * 100.0,
            server_rss_kib: usage.rss_kib,
        };
        let line = format!(
            "{:>4}s pubs {} subs {} | rx {:.1}k pkt/s {:.1} Mbit/s | loss {:.2}% | p50 {:.2} p99 {:.2} ms | server {:.0}% loadgen {:.0}% cpu",
            p.t,
            self.feeds.len(),
            p.subscribers,
            p.received_pps as f64 / 1000.0,
            p.received_mbit_s,
            p.loss * 100.0,
            p.latency.p50_us as f64 / 1000.0,
            p.latency.p99_us as f64 / 1000.0,
            p.server_cpu_percent,
            p.loadgen_cpu_percent
        );
        if !self.args.quiet {
            if self.plain_progress {
                if p.t.is_multiple_of(5) {
                    eprintln!("{line}");
                }
            } else {
                self.progress.set_message(line);
            }
        }
        self.series.push(p);
        self.done.push(t);
    }

    /// Waits for reports until `deadline`.
    async fn pump_until(&mut self, deadline: Instant) {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match tokio::time::timeout(left, self.reports.recv()).await {
                Ok(Some(r)) => self.on_report(r),
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Waits for reports until `done` holds or `timeout` passes; returns whether it held.
    async fn pump_while(&mut self, timeout: Duration, done: impl Fn(&Run) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() >= deadline {
                return false;
            }
            let step = (Instant::now() + Duration::from_millis(100)).min(deadline);
            self.pump_until(step).await;
        }
        true
    }

    /// Starts subscribers (round-robin over the feeds) at the join rate until every
    /// feed has `per_feed`, then waits for them to connect.
    async fn bring_up(&mut self, per_feed: usize) {
        let rate = self.args.join_rate.max(1) as f64;
        let mut counts = vec![0usize; self.feeds.len()];
        for (fi, _) in self.subs.values() {
            counts[*fi] += 1;
        }
        let start = Instant::now();
        let mut started = 0usize;
        while let Some((fi, _)) = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c < per_feed)
            .min_by_key(|(_, c)| **c)
        {
            counts[fi] += 1;
            self.subscribe(fi);
            started += 1;
            let due = start + Duration::from_secs_f64(started as f64 / rate);
            self.pump_until(due).await;
        }
        // Failed subscribers leave `subs`, so this waits for every one still trying.
        let ok = self
            .pump_while(Duration::from_secs(30), |r| r.subs.values().all(|s| s.1))
            .await;
        if !ok {
            self.progress.println(format!(
                "warning: {} of {} subscribers connected",
                self.connected_subs(),
                self.subs.len()
            ));
        }
    }

    fn event(&self, name: &str) {
        if self.args.events {
            println!(
                "{}",
                serde_json::json!({ "event": name, "t": self.now_s() })
            );
        }
    }

    /// Measures a window of `seconds` from the next whole second; returns its figures and
    /// how many subscribers were replaced: `churn` leave and as many join at the start of
    /// every second of the window.
    async fn measure(
        &mut self,
        seconds: u64,
        rss: (u64, u64),
        heap: (Option<u64>, Option<u64>),
        churn: usize,
    ) -> (Window, u64) {
        let first = self.now_s().ceil() as u64;
        self.pump_until(self.epoch + Duration::from_secs(first))
            .await;
        let u0 = report::usage(&self.pids);
        let own0 = report::cpu_seconds("self").unwrap_or(0.0);
        let h0 = self.server_histogram().await;
        self.event("measure-start");
        let mut joins = 0u64;
        for sec in 0..seconds {
            if churn > 0 {
                joins += self.churn(sec, churn);
            }
            self.pump_until(self.epoch + Duration::from_secs(first + sec + 1))
                .await;
        }
        let last = first + seconds;
        let u1 = report::usage(&self.pids);
        let own1 = report::cpu_seconds("self").unwrap_or(0.0);
        let h1 = self.server_histogram().await;
        self.event("measure-end");
        // Wait for every worker's ticks of the window.
        let _ = self
            .pump_while(Duration::from_secs(3), |r| {
                r.done.last().is_some_and(|t| t.index >= last)
            })
            .await;
        let mut total = Tick::new(0);
        for t in self
            .done
            .iter()
            .filter(|t| t.index > first && t.index <= last)
        {
            total.merge(t);
        }
        let window = report::window(
            &total,
            seconds as f64,
            self.feeds.len(),
            self.connected_subs(),
            own1 - own0,
            u1.cpu_s - u0.cpu_s,
            rss,
        );
        let (server_latency, handoffs_per_forwarded, datagrams_per_send) = match (h0, h1) {
            (Some(a), Some(b)) => {
                let forwarded = b.forwarded - a.forwarded;
                let messages = b.send_messages - a.send_messages;
                (
                    report::histogram_latency(&switchyard_perf::histogram_delta(
                        &a.latency, &b.latency,
                    )),
                    (forwarded > 0.0).then(|| (b.handed_off - a.handed_off) / forwarded),
                    (messages > 0.0).then(|| (b.packets_out - a.packets_out) / messages),
                )
            }
            _ => (None, None, None),
        };
        let heap_per_subscriber_kib = match heap {
            (Some(before), Some(after)) if window.subscribers > 0 => {
                Some((after as f64 - before as f64) / window.subscribers as f64)
            }
            _ => None,
        };
        let delivered = (!self.args.simulcast && window.sent_packets > 0 && window.publishers > 0)
            .then(|| {
                let expected = window.sent_packets as f64 * window.subscribers as f64
                    / window.publishers as f64;
                window.received_packets as f64 / expected
            });
        (
            Window {
                delivered,
                server_latency,
                handoffs_per_forwarded,
                datagrams_per_send,
                heap_per_subscriber_kib,
                ..window
            },
            joins,
        )
    }

    /// The dataplane's added-latency histogram and forwarding counters now, if
    /// `--server-metrics` names it and it answers (a failed read leaves the window without
    /// the figures, with a warning).
    async fn server_histogram(&mut self) -> Option<report::ServerReading> {
        let url = self.args.server_metrics.clone()?;
        let text = match reqwest::get(&url).await {
            Ok(r) => r.text().await.ok(),
            Err(_) => None,
        };
        match text {
            Some(t) => Some(report::ServerReading {
                latency: switchyard_perf::prometheus_histogram(&t, report::FORWARD_LATENCY),
                forwarded: switchyard_perf::prometheus_sum(&t, report::FORWARDED),
                handed_off: switchyard_perf::prometheus_sum(&t, report::HANDED_OFF),
                packets_out: switchyard_perf::prometheus_sum(&t, report::PACKETS_OUT),
                send_messages: switchyard_perf::prometheus_sum(&t, report::SEND_MESSAGES),
            }),
            None => {
                self.errors
                    .push(format!("--server-metrics {url}: no answer"));
                None
            }
        }
    }

    /// The dataplane's live heap in KiB (`switchyard_dataplane_heap_bytes`), if
    /// `--server-metrics` names it and it exports the gauge.
    async fn server_heap_kib(&self) -> Option<u64> {
        let url = self.args.server_metrics.as_ref()?;
        let text = reqwest::get(url).await.ok()?.text().await.ok()?;
        text.lines()
            .any(|l| l.starts_with(report::HEAP))
            .then(|| (switchyard_perf::prometheus_sum(&text, report::HEAP) / 1024.0) as u64)
    }

    /// Replaces `rate` connected subscribers (chosen by `sec`) with new ones of the same
    /// feeds; returns how many joined.
    fn churn(&mut self, sec: u64, rate: usize) -> u64 {
        let mut ids: Vec<(u64, usize)> = self
            .subs
            .iter()
            .filter(|(_, s)| s.1)
            .map(|(id, s)| (*id, s.0))
            .collect();
        ids.sort_unstable();
        let mut joins = 0;
        for k in 0..rate.min(ids.len()) {
            let pick = (sec as usize * 7919 + k * 104_729) % ids.len();
            let (id, fi) = ids[pick];
            if self.subs.contains_key(&id) {
                self.unsubscribe(id);
                self.subscribe(fi);
                joins += 1;
            }
        }
        joins
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (service_id, service_key) = match &args.service_file {
        Some(f) => {
            let v: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
            )
            .with_context(|| format!("parsing {}", f.display()))?;
            (
                v["id"].as_str().unwrap_or_default().to_string(),
                v["key"].as_str().unwrap_or_default().to_string(),
            )
        }
        None => (args.service_id.clone(), args.service_key.clone()),
    };
    if args.target == TargetKind::Switchyard && (service_id.is_empty() || service_key.is_empty()) {
        bail!("Switchyard needs a service to sign REST requests: --service-id and --service-key, or --service-file");
    }
    if args.rooms == 0 || args.publishers == 0 {
        bail!("--rooms and --publishers must be at least 1");
    }
    let url = reqwest::Url::parse(&args.url).with_context(|| format!("--url {}", args.url))?;
    let host = url.host_str().context("--url has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let local_ip = match args.local_ip {
        Some(ip) => ip,
        None => {
            let server = (host.as_str(), port)
                .to_socket_addrs()?
                .next()
                .context("the --url host does not resolve")?;
            let probe = UdpSocket::bind(if server.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            })?;
            probe.connect(server)?;
            probe.local_addr()?.ip()
        }
    };
    let media_dir = args
        .media_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("switchyard-loadgen-media"));
    let media = Arc::new(media::Source::load(
        &media_dir,
        args.video,
        args.bitrate,
        args.fps,
        1200,
        args.simulcast,
    )?);
    let top = media.top().context("no clip loaded")?;
    let (codec, clip_bps) = (
        top.codec,
        media.layers.iter().map(|m| m.video_bps).sum::<u64>(),
    );
    let threads = args
        .threads
        .unwrap_or_else(switchyard_perf::available_cores)
        .max(1);
    let target = match args.target {
        TargetKind::Switchyard => Target::Switchyard {
            base: args.url.trim_end_matches('/').to_string(),
            service_id: service_id.clone(),
            service_key: service_key.clone(),
        },
        TargetKind::Janus => Target::Janus {
            base: args.url.trim_end_matches('/').to_string(),
        },
    };
    // Rooms.
    let run_tag: u32 = rand::random::<u32>() % 1_000_000;
    let mut rooms = Vec::new();
    match &target {
        Target::Switchyard { base, .. } => {
            let sy = signal::switchyard::Switchyard::new(base, &service_id, &service_key)?;
            for i in 0..args.rooms {
                rooms.push(RoomRef::Switchyard(
                    sy.create_room(&format!("loadgen-{run_tag}-{i}"), args.bandwidth_adaptation)
                        .await?,
                ));
            }
        }
        Target::Janus { base } => {
            let j = signal::janus::Janus::connect(base).await?;
            for i in 0..args.rooms {
                let id = 1_000_000_000 + run_tag as u64 * 1000 + i as u64;
                j.create_room(id, args.publishers + 1, args.video).await?;
                rooms.push(RoomRef::Janus(id));
            }
            j.close().await;
        }
    }
    let epoch = Instant::now();
    let (report_tx, reports) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for i in 0..threads {
        workers.push(worker::spawn(
            i,
            target.clone(),
            media.clone(),
            args.video,
            local_ip,
            epoch,
            report_tx.clone(),
        )?);
    }
    drop(report_tx);
    let plain_progress = !std::io::stderr().is_terminal();
    let progress = if args.quiet || plain_progress {
        indicatif::ProgressBar::hidden()
    } else {
        let p = indicatif::ProgressBar::new_spinner();
        p.enable_steady_tick(Duration::from_millis(200));
        p
    };
    if !args.quiet {
        progress.println(format!(
            "{:?} at {} | {} room(s) × {} publisher(s) × {} subscriber(s) | {:?} {} kbit/s (clip {:.0} kbit/s{}) {} fps + opus | {} worker threads on {}",
            args.target,
            args.url,
            args.rooms,
            args.publishers,
            args.subscribers,
            codec,
            args.bitrate,
            clip_bps as f64 / 1000.0,
            if media.simulcast() { ", three simulcast layers" } else { "" },
            args.fps,
            threads,
            local_ip
        ));
    }
    let pids: Vec<String> = args.server_pid.iter().map(|p| p.to_string()).collect();
    let mut run = Run {
        last_usage: (
            report::usage(&pids),
            report::cpu_seconds("self").unwrap_or(0.0),
        ),
        pids,
        epoch,
        workers,
        reports,
        next_id: 1,
        feeds: Vec::new(),
        subs: HashMap::new(),
        publishers_pending: 0,
        pending_ticks: BTreeMap::new(),
        done: Vec::new(),
        series: Vec::new(),
        jitter: Vec::new(),
        errors: Vec::new(),
        stopped: 0,
        progress,
        plain_progress,
        args,
    };
    // Publishers.
    for room in &rooms {
        for _ in 0..run.args.publishers {
            let id = run.next_id;
            run.next_id += 1;
            run.publishers_pending += 1;
            let _ = run.worker_for(id).send(Cmd::Publish {
                id,
                room: room.clone(),
            });
        }
    }
    run.pump_while(Duration::from_secs(30), |r| r.publishers_pending == 0)
        .await;
    if run.feeds.is_empty() {
        let errors = run.errors.join("\n  ");
        shutdown(&mut run).await;
        bail!("no publisher connected:\n  {errors}");
    }
    // Let the first keyframes pass before measuring memory.
    run.pump_until(Instant::now() + Duration::from_secs(1))
        .await;
    run.event("publishers-ready");
    let rss_before = report::usage(&run.pids).rss_kib;
    let heap_before = run.server_heap_kib().await;

    let mut steps = Vec::new();
    let mut knee = None;
    let mut stop_reason = None;
    let mut churn_joins = None;
    let mut window = match run.args.scenario {
        Scenario::Fixed => {
            let s = run.args.subscribers;
            run.bring_up(s).await;
            run.event("subscribers-ready");
            let rss_after = report::usage(&run.pids).rss_kib;
            let heap_after = run.server_heap_kib().await;
            let settle = run.args.settle;
            run.pump_until(Instant::now() + Duration::from_secs(settle))
                .await;
            let d = run.args.duration;
            let heap = (heap_before, heap_after);
            run.measure(d, (rss_before, rss_after), heap, 0).await.0
        }
        Scenario::Ramp => {
            let mut last_good = Window::default();
            let feeds = run.feeds.len();
            let mut total = run
                .args
                .subscribers
                .max(run.args.ramp_step)
                .min(run.args.max_subscribers);
            loop {
                let per_feed = total.div_ceil(feeds);
                run.bring_up(per_feed).await;
                let rss_after = report::usage(&run.pids).rss_kib;
                let heap = (heap_before, run.server_heap_kib().await);
                run.pump_until(Instant::now() + Duration::from_secs(1))
                    .await;
                let d = run.args.ramp_interval;
                let (w, _) = run.measure(d, (rss_before, rss_after), heap, 0).await;
                let subs = w.subscribers;
                let p99_ms = w.latency.p99_us as f64 / 1000.0;
                let over = if w.loss > run.args.loss_limit {
                    Some(format!(
                        "loss {:.2}% > {:.2}% at {subs} subscribers",
                        w.loss * 100.0,
                        run.args.loss_limit * 100.0
                    ))
                } else if let Some(short) = w
                    .delivered
                    .map(|d| 1.0 - d)
                    .filter(|short| *short > run.args.loss_limit)
                {
                    Some(format!(
                        "{:.2}% of the packets not delivered (shed or lost) > {:.2}% at {subs} subscribers",
                        short * 100.0,
                        run.args.loss_limit * 100.0
                    ))
                } else if p99_ms > run.args.latency_limit_ms {
                    Some(format!(
                        "p99 {p99_ms:.1} ms > {} ms at {subs} subscribers",
                        run.args.latency_limit_ms
                    ))
                } else if w.failures > 0 || subs < run.subs.len() {
                    Some(format!(
                        "{} sessions failed at {} subscribers",
                        w.failures.max((run.subs.len() - subs) as u64),
                        run.subs.len()
                    ))
                } else {
                    None
                };
                steps.push(Step {
                    subscribers: subs,
                    window: w.clone(),
                });
                if let Some(why) = over {
                    stop_reason = Some(why);
                    break;
                }
                knee = Some(subs);
                last_good = w;
                if total >= run.args.max_subscribers {
                    stop_reason = Some(format!(
                        "reached --max-subscribers {}",
                        run.args.max_subscribers
                    ));
                    break;
                }
                total = (total + run.args.ramp_step).min(run.args.max_subscribers);
            }
            last_good
        }
        Scenario::Churn => {
            let s = run.args.subscribers;
            run.bring_up(s).await;
            run.event("subscribers-ready");
            let rss_after = report::usage(&run.pids).rss_kib;
            let heap = (heap_before, run.server_heap_kib().await);
            let (d, rate) = (run.args.duration, run.args.churn_rate);
            let (w, joins) = run.measure(d, (rss_before, rss_after), heap, rate).await;
            churn_joins = Some(joins);
            w
        }
    };
    shutdown(&mut run).await;
    run.progress.finish_and_clear();
    // Sessions hand in their streams' jitter when they end.
    let mut jitter = std::mem::take(&mut run.jitter);
    jitter.sort_by(|a, b| a.total_cmp(b));
    window.jitter_p50_us = jitter.get(jitter.len() / 2).copied().unwrap_or(0.0);
    window.jitter_max_us = jitter.last().copied().unwrap_or(0.0);
    if run.args.scenario != Scenario::Churn {
        // Subscriptions started before the window: time to first frame over the run.
        let mut all = Tick::new(0);
        for t in &run.done {
            all.merge(t);
        }
        window.ttff_ms = report::Latency::of(&all.ttff);
    }

    let settings = serde_json::to_value(&run.args)?;
    let report = Report {
        target: format!("{:?}", run.args.target).to_lowercase(),
        scenario: format!("{:?}", run.args.scenario).to_lowercase(),
        settings,
        machine: report::machine(),
        window,
        steps,
        knee_subscribers: knee,
        stop_reason,
        churn_joins,
        series: run.series.clone(),
        errors: run.errors.clone(),
    };
    print_summary(&report, run.args.quiet);
    if let Some(path) = &run.args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(dir) = &run.args.plot {
        report::plot(dir, &report)
            .with_context(|| format!("writing charts into {}", dir.display()))?;
    }
    Ok(())
}

/// Ends every session (they leave the server properly) and the workers.
async fn shutdown(run: &mut Run) {
    for w in &run.workers {
        let _ = w.send(Cmd::Shutdown);
    }
    let n = run.workers.len();
    run.pump_while(Duration::from_secs(20), |r| r.stopped >= n)
        .await;
}

fn print_summary(r: &Report, quiet: bool) {
    if quiet {
        return;
    }
    let w = &r.window;
    eprintln!(
        "{} {}: {} publishers, {} subscribers, {:.0} s measured\n  forwarded {:.0} pkt/s, {:.1} Mbit/s, loss {:.3}%\n  added latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms; jitter p50 {:.2} ms\n  time to first keyframe p50 {} ms, p99 {} ms; failures {}\n  server CPU {:.2} cores ({:.0} pkt per CPU-s, {:.1} Mbit/s per core), RSS {} → {} KiB ({:.1} KiB per subscriber)\n  load generator CPU {:.2} cores",
        r.target,
        r.scenario,
        w.publishers,
        w.subscribers,
        w.seconds,
        w.received_pps,
        w.received_mbit_s,
        w.loss * 100.0,
        w.latency.p50_us as f64 / 1000.0,
        w.latency.p99_us as f64 / 1000.0,
        w.latency.p999_us as f64 / 1000.0,
        w.latency.max_us as f64 / 1000.0,
        w.jitter_p50_us / 1000.0,
        w.ttff_ms.p50_us,
        w.ttff_ms.p99_us,
        w.failures,
        w.server_cores,
        w.packets_per_server_cpu_s,
        w.mbit_s_per_server_core,
        w.server_rss_before_kib,
        w.server_rss_after_kib,
        w.rss_per_subscriber_kib,
        w.loadgen_cores
    );
    if let Some(heap) = w.heap_per_subscriber_kib {
        eprintln!("  server heap {heap:.1} KiB per subscriber");
    }
    if let Some(k) = r.knee_subscribers {
        eprintln!(
            "  ramp knee: {k} subscribers ({})",
            r.stop_reason.as_deref().unwrap_or("")
        );
    } else if let Some(why) = &r.stop_reason {
        eprintln!("  ramp stopped at the first step: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_files_become_options_the_command_line_overrides() {
        let table: toml::Table = toml::from_str(
            "scenario = \"ramp\"\nramp_step = 25\nloss_limit = 0.02\nevents = true\nquiet = false\nserver_pid = [1, 2]\nurl = \"http://a:1\"",
        )
        .unwrap_or_default();
        let mut argv = vec!["loadgen".to_string()];
        argv.extend(config_args(table));
        argv.extend(["--ramp-step".to_string(), "40".to_string()]);
        let a = Args::try_parse_from(argv).map_err(|e| e.to_string());
        let a = match a {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(a.scenario, Scenario::Ramp);
        assert_eq!(a.ramp_step, 40);
        assert!((a.loss_limit - 0.02).abs() < 1e-12);
        assert!(a.events);
        assert!(!a.quiet);
        assert_eq!(a.server_pid, vec![1, 2]);
    }

    #[test]
    fn the_committed_scenario_files_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let table: toml::Table = match toml::from_str(&text) {
                Ok(t) => t,
                Err(err) => panic!("{}: {err}", e.path().display()),
            };
            let mut argv = vec!["loadgen".to_string(), "--url".into(), "http://x:1".into()];
            argv.extend(config_args(table));
            if let Err(err) = Args::try_parse_from(argv) {
                panic!("{}: {err}", e.path().display());
            }
            n += 1;
        }
        assert!(n >= 3);
    }
}
