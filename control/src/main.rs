//! `switchyard-control`: the REST management API on the embedded store.

use anyhow::Context as _;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard_config::{Config, LogFormat, DEFAULT_CONFIG_TOML};
use switchyard_control::server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The default config file, used when `--config` is not given and it exists.
const SYSTEM_CONFIG: &str = "/etc/switchyard/switchyard.toml";

#[derive(Parser, Debug)]
#[command(
    name = "switchyard-control",
    version,
    about = "Switchyard control: the REST management API, rooms, services and tokens"
)]
struct Args {
    /// The configuration file (default: /etc/switchyard/switchyard.toml if it exists, else built-in defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Print the commented default configuration file and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Check the configuration file and exit.
    #[arg(long)]
    check_config: bool,
    /// Override log.format: auto, json or text.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

fn load_config(args: &Args) -> anyhow::Result<Config> {
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(SYSTEM_CONFIG)).filter(|p| p.exists()),
    };
    let mut config = match &path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(f) = &args.log_format {
        config.log.format = match f.as_str() {
            "auto" => LogFormat::Auto,
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => anyhow::bail!("--log-format {other:?}: use auto, json or text"),
        };
    }
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{DEFAULT_CONFIG_TOML}");
        return ExitCode::SUCCESS;
    }
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard-control: {e:#}");
            return ExitCode::from(2);
        }
    };
    if args.check_config {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = switchyard_config::logging::init(config.log.format, &config.log.level) {
        eprintln!("switchyard-control: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard-control: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "switchyard-control stopped");
            eprintln!("switchyard-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    server::check_tls(&config)?;
    let listener = server::bind(&config)?;
    let portal_listener = server::bind_portal(&config)?;
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    let url = server::local_url(&config, addr);
    let prepared = tokio::task::spawn_blocking(move || server::prepare(config)).await??;
    let state = prepared.state.clone();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        management_api = %format!("{url}/v1"),
        openapi = %format!("{url}/v1/openapi.json"),
        metrics = %format!("{url}/metrics"),
        super_service = %prepared.super_service_id,
        credentials_file = %prepared.credentials_file.display(),
        created_super_service = prepared.created_super_service,
        "switchyard-control listening"
    );
    server::spawn_housekeeping(state.clone());
    server::spawn_media(&state);
    let portal_router = server::portal_router(&state)?;
    let portal_url = server::local_url(
        &state.config,
        portal_listener
            .local_addr()
            .context("reading the portal address")?,
    );
    tracing::info!(portal = %portal_url, "portal listening (Socket.IO, OWT client protocol)");
    switchyard_config::service::notify_ready("serving the management API");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        switchyard_config::service::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };
    let api = server::serve(state.clone(), listener, stopped(stop_rx.clone()));
    let portal = server::serve_router(&state, portal_router, portal_listener, stopped(stop_rx));
    tokio::try_join!(api, portal)?;
    switchyard_config::service::notify_stopping();
    tracing::info!("switchyard-control stopped");
    Ok(())
}
