//! `switchyard-mixer`: mixes each room's views into mixed streams (audio mix, video
//! composite), as control asks over its RPC.

use anyhow::Context as _;
use clap::Parser;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard_config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "switchyard-mixer",
    version,
    about = "Switchyard mixer: audio mixing and video compositing of a room's views"
)]
struct Args {
    /// The configuration file (the same file control reads).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Check the configuration and exit.
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
            eprintln!("switchyard-mixer: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = switchyard_config::logging::init(config.log.format, &config.log.level) {
        eprintln!("switchyard-mixer: {e}");
        return ExitCode::from(2);
    }
    match run(config, args.check) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "switchyard-mixer stopped");
            eprintln!("switchyard-mixer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config, check_only: bool) -> anyhow::Result<()> {
    let rpc: SocketAddr = config
        .mixer
        .rpc_address
        .parse()
        .context("mixer.rpc_address")?;
    let media_ip: IpAddr = config.mixer.media_ip.parse().context("mixer.media_ip")?;
    if check_only {
        println!("configuration is fit: RPC on {rpc}, media from {media_ip}");
        return Ok(());
    }
    str0m::crypto::from_feature_flags().install_process_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(rpc)
            .await
            .with_context(|| format!("cannot listen on mixer.rpc_address {rpc}"))?;
        tracing::info!(%rpc, %media_ip, "switchyard-mixer ready");
        switchyard_config::service::notify_ready("mixing views");
        let settings = switchyard_mixer::rpc::Settings {
            media_ip,
            speakers: config.mixer.speakers,
        };
        tokio::select! {
            _ = switchyard_mixer::rpc::serve(listener, settings) => {}
            _ = switchyard_config::service::shutdown_signal() => {}
        }
        switchyard_config::service::notify_stopping();
        Ok(())
    })
}
