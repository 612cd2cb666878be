//! `switchyard-dataplane`: WebRTC media forwarding, one pinned glommio executor per core.

use anyhow::Context as _;
use clap::Parser;
use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_config::Config;
use switchyard_dataplane::core::{Core, CoreSettings};
use switchyard_dataplane::driver::{self, CoreLinks, MediaSocket};
use switchyard_dataplane::metrics::CoreMetrics;
use switchyard_dataplane::mgmt::{self, MgmtSetup};
use switchyard_dataplane::setup;
use switchyard_dataplane_api::CoreInfo;

#[global_allocator]
static GLOBAL: switchyard_dataplane::heap::Counting<mimalloc::MiMalloc> =
    switchyard_dataplane::heap::Counting(mimalloc::MiMalloc);

/// Bound of each core's inbound queues (commands, and hand-offs from each other core).
const QUEUE: usize = 4096;

#[derive(Parser, Debug)]
#[command(
    name = "switchyard-dataplane",
    version,
    about = "Switchyard dataplane: WebRTC media forwarding, one pinned executor per core"
)]
struct Args {
    /// The configuration file (the same file control reads).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Check the configuration and the machine (cores, ports, memlock, interfaces) and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match &args.config {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard-dataplane: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = switchyard_config::logging::init(config.log.format, &config.log.level) {
        eprintln!("switchyard-dataplane: {e}");
        return ExitCode::from(2);
    }
    match run(config, args.check) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "switchyard-dataplane stopped");
            eprintln!("switchyard-dataplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, check_only: bool) -> anyhow::Result<()> {
    let cpus = setup::resolve_cores(&config.dataplane.cores, &setup::allowed_cpus())?;
    setup::check_ports(&config, cpus.len())?;
    setup::check_memlock(cpus.len() + 1, setup::memlock_kib())?;
    let addresses = setup::media_addresses(&config)?;
    if check_only {
        println!("configuration and machine are fit: {} core(s) on CPUs {cpus:?}, media on {addresses:?}", cpus.len());
        return Ok(());
    }
    if config.dataplane.test_ingress_loss_percent > 0.0 {
        tracing::warn!(
            percent = config.dataplane.test_ingress_loss_percent,
            "TEST MODE: dropping incoming media on purpose (dataplane.test_ingress_loss_percent)"
        );
    }
    let rpc_address: SocketAddr = config
        .dataplane
        .rpc_address
        .parse()
        .context("dataplane.rpc_address")?;
    let metrics_address: Option<SocketAddr> = if config.dataplane.metrics_address.is_empty() {
        None
    } else {
        Some(
            config
                .dataplane
                .metrics_address
                .parse()
                .context("dataplane.metrics_address")?,
        )
    };

    let provider = str0m::crypto::from_feature_flags();
    provider.clone().install_process_default();

    let n = cpus.len();
    // Channels: commands to each core, events from each, and a full mesh of hand-offs.
    let mut cmd_tx = Vec::new();
    let mut cmd_rx = Vec::new();
    let mut ev_tx = Vec::new();
    let mut ev_rx = Vec::new();
    for _ in 0..n {
        let (t, r) = shared_channel::new_bounded(QUEUE);
        cmd_tx.push(t);
        cmd_rx.push(Some(r));
        let (t, r) = shared_channel::new_bounded(QUEUE);
        ev_tx.push(Some(t));
        ev_rx.push(r);
    }
    let mut to: Vec<Vec<Option<shared_channel::SharedSender<_>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut from: Vec<Vec<shared_channel::SharedReceiver<_>>> =
        (0..n).map(|_| Vec::new()).collect();
    for (i, row) in to.iter_mut().enumerate() {
        for (j, slot) in row.iter_mut().enumerate() {
            if i != j {
                let (t, r) = shared_channel::new_bounded(QUEUE);
                *slot = Some(t);
                from[j].push(r);
            }
        }
    }

    let mut infos = Vec::new();
    let mut all_metrics = Vec::new();
    let mut handles = Vec::new();
    let mut from_iter = from.into_iter();
    let mut to_iter = to.into_iter();
    for (i, cpu) in cpus.iter().enumerate() {
        let port = config.webrtc.minport.0 + i as u16;
        let mut sockets = Vec::new();
        let mut pairs = Vec::new();
        for (bind_ip, announce_ip) in &addresses {
            let local = SocketAddr::new(*bind_ip, port);
            let socket = setup::bind_udp(local, config.dataplane.socket_buffer_bytes)?;
            sockets.push(MediaSocket { local, socket });
            pairs.push((local, SocketAddr::new(*announce_ip, port)));
        }
        infos.push(CoreInfo {
            core: i as u16,
            cpu: *cpu,
            ports: pairs.iter().map(|(_, a)| *a).collect(),
            peers: 0,
        });
        let metrics = Arc::new(CoreMetrics::default());
        all_metrics.push(metrics.clone());
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .context("generating the core's DTLS certificate")?;
        let core = Core::new(
            i as u16,
            &pairs,
            cert,
            CoreSettings {
                max_peers: config.dataplane.max_peers_per_core,
                test_loss_percent: config.dataplane.test_ingress_loss_percent,
                retransmit_history: Duration::from_millis(config.dataplane.retransmit_history_ms),
            },
            metrics.clone(),
        );
        let links = CoreLinks {
            commands: cmd_rx[i].take().context("core channel")?,
            events: ev_tx[i].take().context("core channel")?,
            to_cores: to_iter.next().context("core channel")?,
            from_cores: from_iter.next().context("core channel")?,
        };
        let pinned = *cpu;
        let gso = config.dataplane.udp_gso;
        let handle = LocalExecutorBuilder::new(Placement::Fixed(pinned))
            .name(&format!("core-{i}"))
            .spawn(move || driver::run(pinned, core, sockets, links, metrics, gso))
            .map_err(|e| anyhow::anyhow!("starting core {i} on CPU {cpu}: {e}"))?;
        handles.push(handle);
        tracing::info!(core = i, cpu, ports = ?pairs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), "core started");
    }

    let shutdown = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mgmt_setup = MgmtSetup {
        rpc_address,
        metrics_address,
        cores: infos,
        commands: cmd_tx,
        events: ev_rx,
        metrics: all_metrics,
        max_peers_per_core: config.dataplane.max_peers_per_core as u32,
        shutdown: shutdown.clone(),
        ready: ready_tx,
    };
    let mgmt_handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("mgmt")
        .spawn(move || mgmt::run(mgmt_setup))
        .map_err(|e| anyhow::anyhow!("starting the management executor: {e}"))?;
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => anyhow::bail!("cannot listen on {e} (is another dataplane running?)"),
        Err(_) => anyhow::bail!("the management executor did not start"),
    }
    tracing::info!(rpc = %rpc_address, metrics = ?metrics_address, cores = n, "switchyard-dataplane ready");
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("forwarding media"),
        ],
    );
    let mut usec = 0u64;
    let watchdog =
        sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2));

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing signal handlers")?;
    let flag = shutdown.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                flag.store(true, Ordering::Relaxed);
            }
        })
        .context("starting the signal thread")?;
    if let Some(every) = watchdog {
        let flag = shutdown.clone();
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                    std::thread::sleep(every);
                }
            })
            .context("starting the watchdog thread")?;
    }
    mgmt_handle
        .join()
        .map_err(|e| anyhow::anyhow!("management executor: {e}"))?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("switchyard-dataplane stopped");
    drop(handles);
    // The cores run until the process ends.
    std::process::exit(0)
}
