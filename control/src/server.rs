//! Start-up and serving: the data directory, the store, the super service, the listener,
//! TLS and graceful shutdown. `main` adds the command line, systemd notification and
//! signals on top.

use crate::http::metrics::Metrics;
use crate::http::{app, AppState, Shared, REPLAY_CACHE_ENTRIES};
use crate::ids::{new_id, new_secret, now_ms};
use crate::model::conference::Conference;
use crate::model::service::Service;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};
use crate::token::Tokens;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_auth::ReplayGuard;
use switchyard_config::Config;

/// The name of the super service's credentials file in the data directory.
pub const CREDENTIALS_FILE: &str = "super-service.json";
/// The name of the database file in the data directory.
pub const DATABASE_FILE: &str = "switchyard.db";

/// Why the control process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created or used.
    #[error(
        "data directory {path}: {source} (set data_dir in the config to a writable directory)"
    )]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The credentials file could not be written.
    #[error("cannot write the super service's credentials to {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The portal's socket could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using portal.port?)")]
    PortalBind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source} (is another process using management-api.port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// The super service's credentials, as written to the credentials file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The service id (`mauth_serviceid`).
    pub id: String,
    /// The service key.
    pub key: String,
    /// The service's name.
    pub name: String,
}

/// What start-up found or made.
pub struct Prepared {
    /// The state the API serves.
    pub state: Shared,
    /// The super service's id.
    pub super_service_id: String,
    /// Where its credentials are.
    pub credentials_file: PathBuf,
    /// Whether the super service was created by this start.
    pub created_super_service: bool,
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
}

fn write_credentials(path: &Path, c: &Credentials) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    let json = serde_json::to_string_pretty(c).map_err(std::io::Error::other)?;
    f.write_all(json.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Opens the store, creates the super service on first start and builds the state.
pub fn prepare(config: Config) -> Result<Prepared, StartError> {
    let data_dir = config.data_dir.clone();
    create_private_dir(&data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
        &data_dir.join(DATABASE_FILE),
        config.storage.synchronous,
    )?);
    let credentials_file = data_dir.join(CREDENTIALS_FILE);
    let (super_service, created) = match store.super_service()? {
        Some(s) => (s, false),
        None => {
            let s = Service {
                id: new_id(),
                name: "superService".into(),
                key: new_secret(32),
                is_super: true,
            };
            // The file first: if it cannot be written, no service exists whose key nobody knows.
            if credentials_file.exists() {
                std::fs::remove_file(&credentials_file).map_err(|source| {
                    StartError::Credentials {
                        path: credentials_file.clone(),
                        source,
                    }
                })?;
            }
            write_credentials(
                &credentials_file,
                &Credentials {
                    id: s.id.clone(),
                    key: s.key.clone(),
                    name: s.name.clone(),
                },
            )
            .map_err(|source| StartError::Credentials {
                path: credentials_file.clone(),
                source,
            })?;
            store.create_service(&s)?;
            (s, true)
        }
    };
    if !credentials_file.exists() {
        tracing::warn!(file = %credentials_file.display(), service = %super_service.id,
            "the super service's credentials file is missing; it is written only once, at first start");
    }
    let secret = store.secret("token-signing")?;
    let tokens = Tokens::new(
        secret,
        (config.management_api.token_lifetime_s as i64) * 1000,
        config.portal.public_host(),
        config.tls.enabled(),
    );
    if config.portal.hostname.is_empty() && config.portal.ip_address.is_empty() {
        tracing::warn!(host = %config.portal.public_host(),
            "portal.hostname and portal.ip_address are empty: tokens send clients to localhost; set portal.hostname for clients on other machines");
    }
    let window_ms = (config.management_api.auth_window_s as i64) * 1000;
    let rpc: SocketAddr = config
        .dataplane
        .rpc_address
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7100)));
    let link = crate::dataplane::Link::new(rpc);
    let conference = Arc::new(Conference::new());
    let sessions = Arc::new(crate::media::Sessions::default());
    let media = Arc::new(crate::media::Media::new(
        sessions.clone(),
        conference.clone(),
        link.clone(),
    ));
    let mixer_rpc: SocketAddr = config
        .mixer
        .rpc_address
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7102)));
    let mixing = crate::mixing::Mixing::new(
        crate::mixing::MixerLink::new(mixer_rpc),
        media.clone(),
        store.clone(),
    );
    let state = Arc::new(AppState {
        config: Arc::new(config),
        store,
        conference,
        tokens,
        replay: Mutex::new(ReplayGuard::new(window_ms, REPLAY_CACHE_ENTRIES)),
        metrics: Metrics::new(),
        services: Default::default(),
        link,
        sessions,
        media,
        mixing,
    });
    Ok(Prepared {
        state,
        super_service_id: super_service.id,
        credentials_file,
        created_super_service: created,
    })
}

/// The address the management API listens on.
pub fn listen_addr(config: &Config) -> SocketAddr {
    let ip = config
        .management_api
        .ip_address
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    SocketAddr::new(ip, config.management_api.port.0)
}

/// The URL an operator on this machine would use.
pub fn local_url(config: &Config, addr: SocketAddr) -> String {
    let scheme = if config.tls.enabled() {
        "https"
    } else {
        "http"
    };
    let host = if addr.ip().is_unspecified() {
        "localhost".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("{scheme}://{host}:{}", addr.port())
}

/// Binds the management API's socket.
pub fn bind(config: &Config) -> Result<std::net::TcpListener, StartError> {
    let addr = listen_addr(config);
    let l =
        std::net::TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok(l)
}

fn tls_config(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) else {
        return Ok(None);
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| StartError::Tls(format!("tls.cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "tls.cert {}: no certificate in the file",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StartError::Tls(format!("tls.key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(format!("certificate and key do not fit together: {e}")))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(sc)))
}

/// Checks the TLS files before serving, so that start-up fails early and clearly.
pub fn check_tls(config: &Config) -> Result<(), StartError> {
    tls_config(config).map(|_| ())
}

/// Connects to the media dataplane and the mixer (and keeps reconnecting), and keeps media
/// sessions and rooms' mixed streams in step with the conference.
pub fn spawn_media(state: &Shared) {
    state.link.spawn(state.media.clone());
    state.media.spawn_follow_conference();
    state.mixing.spawn();
}

/// Forgets tokens an hour after they expire (used ones are kept that long so that a
/// reuse is answered "already used" rather than "unknown").
pub fn spawn_housekeeping(state: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let before = now_ms() - 3_600_000;
            match state.db(move |s| s.purge_tokens(before)).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "old tokens purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "token purge failed"),
            }
        }
    })
}

/// The address the portal listens on.
pub fn portal_addr(config: &Config) -> SocketAddr {
    let ip = config
        .portal
        .ip_address
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    SocketAddr::new(ip, config.portal.port.0)
}

/// Binds the portal's socket.
pub fn bind_portal(config: &Config) -> Result<std::net::TcpListener, StartError> {
    let addr = portal_addr(config);
    let l = std::net::TcpListener::bind(addr)
        .map_err(|source| StartError::PortalBind { addr, source })?;
    l.set_nonblocking(true)
        .map_err(|source| StartError::PortalBind { addr, source })?;
    if !config.tls.enabled() && !addr.ip().is_loopback() {
        tracing::warn!(portal = %addr, "the portal serves plain HTTP: browsers on other machines need HTTPS for camera access (set tls.cert and tls.key)");
    }
    Ok(l)
}

/// The portal's router: Socket.IO at `/socket.io/`, with OWT's `cors` origins.
pub fn portal_router(state: &Shared) -> Result<axum::Router, StartError> {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
    let key = state.store.secret("reconnection-ticket")?;
    let (portal, layer) = crate::portal::Portal::new(state.clone(), key);
    portal.spawn_relays();
    let origins = &state.config.portal.cors;
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::mirror_request()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    let cors = CorsLayer::new()
        .allow_origin(allow)
        .allow_credentials(true)
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request());
    Ok(axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(layer)
        .layer(cors))
}

/// Serves the API on `listener` until `shutdown` completes, then drains for up to 10 s.
pub async fn serve(
    state: Shared,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    serve_router(&state, app(state.clone()), listener, shutdown).await
}

/// Serves `router` on `listener` (TLS when configured) until `shutdown` completes.
pub async fn serve_router(
    state: &Shared,
    router: axum::Router,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    match tls_config(&state.config)? {
        None => {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(StartError::Serve)?;
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
                .map_err(StartError::Serve)
        }
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let h2 = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h2.graceful_shutdown(Some(Duration::from_secs(10)));
            });
            axum_server::from_tcp_rustls(
                listener,
                axum_server::tls_rustls::RustlsConfig::from_config(tls),
            )
            .handle(handle)
            .serve(router.into_make_service())
            .await
            .map_err(StartError::Serve)
        }
    }
}
