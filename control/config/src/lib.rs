//! The one configuration file that every Switchyard process reads.
//!
//! Switchyard is configured by a single TOML file, passed to every binary with
//! `--config PATH`. The settings that OWT spread over `management_api.toml`,
//! `portal.toml` and `webrtc_agent/agent.toml` keep their OWT names and meaning
//! here, as tables of one file: `[management-api]`, `[portal]`, `[webrtc]`.
//!
//! The contract:
//! - [`Config::from_toml_str`] and [`Config::load`] accept a file only when every key is
//!   known, every value has the right type and every value is valid together with the
//!   others (for example `webrtc.minport <= webrtc.maxport`). Anything else is a
//!   [`ConfigError`] whose `Display` is one line naming the key and the problem, fit to
//!   print and exit on.
//! - A key that is absent takes its default. [`DEFAULT_CONFIG_TOML`] is the commented
//!   default file (what `--print-default-config` prints); it parses to exactly
//!   [`Config::default`], which a unit test checks.
//! - Nothing here opens sockets or files other than the config file itself: the
//!   processes decide what to do with the values.

#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "service")]
pub mod service;

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A configuration problem; its `Display` is one line naming the key and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path that was given.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("config {key}: {problem}")]
    Parse {
        /// The dotted key, e.g. `webrtc.minport`; `(top level)` for the root table.
        key: String,
        /// What is wrong with it, including the line where TOML could tell.
        problem: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("config {key}: {problem}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong with it and what would be accepted.
        problem: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The dotted key the error is about, where there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// A TCP or UDP port, 1 to 65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl serde::de::Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number between 1 and 65535")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Port, E> {
                if (1..=65535).contains(&n) {
                    Ok(Port(n as u16))
                } else {
                    Err(E::custom(format!(
                        "port {n} is out of range: a port is between 1 and 65535"
                    )))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Port, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_i64(PortVisitor)
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when standard output is not a terminal, human-readable text when it is.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// `[log]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `auto`, `json` or `text`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `switchyard_control=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

/// `[tls]`: one certificate for every TCP endpoint Switchyard serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether TLS is configured (both paths set; validation guarantees both or neither).
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }
}

/// How hard the embedded store works to keep the last writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// A crash of the process never loses a committed write; a power loss may lose the
    /// last few. The store is never corrupted either way.
    #[default]
    Normal,
    /// Every write is flushed to the disk before it is acknowledged.
    Full,
}

/// `[storage]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `normal` or `full`.
    pub synchronous: Synchronous,
}

/// `[management-api]`: the REST management API (OWT's management-api).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagementApiConfig {
    /// The address to listen on; empty means every interface.
    pub ip_address: String,
    /// OWT's `management-api.port`.
    pub port: Port,
    /// Whether OWT's `MAuth` scheme is accepted (the stronger `SY-HMAC-SHA256` always is).
    pub owt_mauth: bool,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How far a signed request's timestamp may be from the server's clock, in seconds.
    pub auth_window_s: u64,
    /// How long a token stays valid, in seconds (OWT: 180).
    pub token_lifetime_s: u64,
}

impl Default for ManagementApiConfig {
    fn default() -> Self {
        ManagementApiConfig {
            ip_address: String::new(),
            port: Port(3000),
            owt_mauth: true,
            max_body_bytes: 64 * 1024,
            auth_window_s: 300,
            token_lifetime_s: 180,
        }
    }
}

/// `[portal]`: where clients reach the signaling portal. Tokens carry `host:port` from here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortalConfig {
    /// The public host name of the portal; used first when not empty.
    pub hostname: String,
    /// The public IP address of the portal; used when `hostname` is empty.
    pub ip_address: String,
    /// OWT's `portal.port`.
    pub port: Port,
    /// OWT's `reconnection_ticket_lifetime`: seconds a reconnection ticket stays valid.
    pub reconnection_ticket_lifetime: u64,
    /// OWT's `reconnection_timeout`: seconds a client that lost its connection may take to
    /// come back with `relogin` before its publications and subscriptions end.
    pub reconnection_timeout: u64,
    /// OWT's `cors`: origins allowed to reach the portal from a browser (`"*"`: any).
    pub cors: Vec<String>,
}

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            hostname: String::new(),
            ip_address: String::new(),
            port: Port(8080),
            reconnection_ticket_lifetime: 600,
            reconnection_timeout: 60,
            cors: vec!["*".into()],
        }
    }
}

impl PortalConfig {
    /// The `host:port` that tokens announce: `hostname` when set, else `ip_address`,
    /// else `localhost`.
    pub fn public_host(&self) -> String {
        let host = if !self.hostname.is_empty() {
            self.hostname.clone()
        } else if !self.ip_address.is_empty() {
            match self.ip_address.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                _ => self.ip_address.clone(),
            }
        } else {
            "localhost".to_string()
        };
        format!("{host}:{}", self.port)
    }
}

/// One entry of `webrtc.network_interfaces`, as in OWT.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    /// The interface name, e.g. `eth0`.
    pub name: String,
    /// The address announced to clients instead of the interface's own (behind NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_ip_address: Option<String>,
}

/// `[webrtc]`: the media ports (OWT's webrtc-agent settings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// Interfaces clients reach the media ports on; empty means every interface.
    pub network_interfaces: Vec<NetworkInterface>,
    /// Lowest UDP port of the media range.
    pub minport: Port,
    /// Highest UDP port of the media range.
    pub maxport: Port,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        WebrtcConfig {
            network_interfaces: Vec::new(),
            minport: Port(40000),
            maxport: Port(40099),
        }
    }
}

/// Which CPU cores the dataplane runs on: `"all"`, a count (the first N CPUs the process
/// may use), or a list of CPU ids.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Cores {
    /// Every CPU the process may use.
    #[default]
    All,
    /// The first N of them.
    Count(usize),
    /// These CPU ids.
    List(Vec<usize>),
}

impl Serialize for Cores {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cores::All => s.serialize_str("all"),
            Cores::Count(n) => s.serialize_u64(*n as u64),
            Cores::List(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Cores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Cores;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"all\", a number of cores, or a list of CPU ids")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Cores, E> {
                if v == "all" {
                    Ok(Cores::All)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Cores, E> {
                if n >= 1 {
                    Ok(Cores::Count(n as usize))
                } else {
                    Err(E::custom(format!("{n} cores: use at least 1, or \"all\"")))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Cores, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Cores, A::Error> {
                let mut v = Vec::new();
                while let Some(id) = seq.next_element::<usize>()? {
                    v.push(id);
                }
                Ok(Cores::List(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[dataplane]`: the media process (OWT's webrtc-agent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataplaneConfig {
    /// The cores it runs on, one pinned executor each.
    pub cores: Cores,
    /// Where the dataplane listens for control's RPC (`host:port`).
    pub rpc_address: String,
    /// Where the dataplane serves Prometheus metrics (`host:port`); empty to disable.
    pub metrics_address: String,
    /// SO_RCVBUF and SO_SNDBUF of each media socket, in bytes.
    pub socket_buffer_bytes: usize,
    /// The most peers one core takes.
    pub max_peers_per_core: usize,
    /// How long a video subscription keeps what it sent to answer NACKs with RTX, in
    /// milliseconds (0: NACKs go unanswered). Memory per subscriber grows with it.
    pub retransmit_history_ms: u64,
    /// Send the packets a flush holds for one subscriber (a video frame's burst) as one UDP
    /// GSO message, segmented by the kernel or the NIC: a third less CPU per copy on
    /// fan-out. Off by default: shaping, policing or filtering inside the host (tc or
    /// netfilter on a container's veth) sees the burst as one packet and drops it whole.
    /// For a server whose path to the NIC has none; a core stops using it by itself if the
    /// kernel refuses it.
    pub udp_gso: bool,
    /// For tests only: drop this percentage of incoming media packets, as a lossy
    /// network would (0 in production).
    pub test_ingress_loss_percent: f64,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            cores: Cores::All,
            rpc_address: "127.0.0.1:7100".into(),
            metrics_address: "127.0.0.1:7101".into(),
            socket_buffer_bytes: 4 * 1024 * 1024,
            max_peers_per_core: 5000,
            retransmit_history_ms: 1000,
            udp_gso: false,
            test_ingress_loss_percent: 0.0,
        }
    }
}

/// `[mixer]`: the mixing process (OWT's audio-agent and video-agent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixerConfig {
    /// Where the mixer listens for control's RPC (`host:port`).
    pub rpc_address: String,
    /// The address the mixer's WebRTC clients bind to reach the dataplane.
    pub media_ip: String,
    /// How many of a view's loudest inputs its audio mixes (1 to 16).
    pub speakers: usize,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            rpc_address: "127.0.0.1:7102".into(),
            media_ip: "127.0.0.1".into(),
            speakers: 3,
        }
    }
}

/// `[demo]`: the try-it-out pages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DemoConfig {
    /// Serve the demo page at `/` and its token endpoint. Anyone who reaches the API can
    /// then create rooms and tokens: for trying Switchyard out, never for production.
    pub enabled: bool,
}

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where state lives: the embedded database and the super service's credentials.
    pub data_dir: PathBuf,
    /// `[log]`
    pub log: LogConfig,
    /// `[tls]`
    pub tls: TlsConfig,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[management-api]`
    #[serde(rename = "management-api")]
    pub management_api: ManagementApiConfig,
    /// `[portal]`
    pub portal: PortalConfig,
    /// `[webrtc]`
    pub webrtc: WebrtcConfig,
    /// `[dataplane]`
    pub dataplane: DataplaneConfig,
    /// `[mixer]`
    pub mixer: MixerConfig,
    /// `[demo]`
    pub demo: DemoConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("/var/lib/switchyard"),
            log: LogConfig::default(),
            tls: TlsConfig::default(),
            storage: StorageConfig::default(),
            management_api: ManagementApiConfig::default(),
            portal: PortalConfig::default(),
            webrtc: WebrtcConfig::default(),
            dataplane: DataplaneConfig::default(),
            mixer: MixerConfig::default(),
            demo: DemoConfig::default(),
        }
    }
}

/// The commented default configuration file, as `--print-default-config` prints it.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default.toml");

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    /// Parses and validates a configuration from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let mut problem = inner.message().trim().to_string();
            if let Some(span) = inner.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                problem.push_str(&format!(" (line {line})"));
            } else if let Some(first) = inner.to_string().lines().next() {
                // Syntax errors carry their position only in the rendered text:
                // "TOML parse error at line 1, column 8".
                problem.push_str(&format!(" ({first})"));
            }
            let key = if path == "." {
                "(top level)".to_string()
            } else {
                path
            };
            ConfigError::Parse { key, problem }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "data_dir",
                "must not be empty: give the directory where Switchyard keeps its state",
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            let missing = if self.tls.cert.is_none() {
                "tls.cert"
            } else {
                "tls.key"
            };
            return Err(ConfigError::invalid(
                missing,
                "tls.cert and tls.key must be set together (or both left out for plain HTTP)",
            ));
        }
        for (key, path) in [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
            if let Some(p) = path {
                if p.as_os_str().is_empty() {
                    return Err(ConfigError::invalid(
                        key,
                        "must not be empty: leave the key out for plain HTTP",
                    ));
                }
            }
        }
        if tracing_filter_is_blank(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                "must not be empty: use e.g. \"info\" or \"debug\"",
            ));
        }
        let api = &self.management_api;
        check_ip("management-api.ip_address", &api.ip_address)?;
        if api.max_body_bytes < 1024 || api.max_body_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::invalid(
                "management-api.max_body_bytes",
                format!(
                    "{} is out of range: use 1024 to 67108864 bytes",
                    api.max_body_bytes
                ),
            ));
        }
        if api.auth_window_s == 0 || api.auth_window_s > 3600 {
            return Err(ConfigError::invalid(
                "management-api.auth_window_s",
                format!(
                    "{} is out of range: use 1 to 3600 seconds",
                    api.auth_window_s
                ),
            ));
        }
        if api.token_lifetime_s == 0 || api.token_lifetime_s > 86400 {
            return Err(ConfigError::invalid(
                "management-api.token_lifetime_s",
                format!(
                    "{} is out of range: use 1 to 86400 seconds",
                    api.token_lifetime_s
                ),
            ));
        }
        check_ip("portal.ip_address", &self.portal.ip_address)?;
        if !(10..=86400).contains(&self.portal.reconnection_ticket_lifetime) {
            return Err(ConfigError::invalid(
                "portal.reconnection_ticket_lifetime",
                format!(
                    "{} is out of range: use 10 to 86400 seconds",
                    self.portal.reconnection_ticket_lifetime
                ),
            ));
        }
        if !(1..=3600).contains(&self.portal.reconnection_timeout) {
            return Err(ConfigError::invalid(
                "portal.reconnection_timeout",
                format!(
                    "{} is out of range: use 1 to 3600 seconds",
                    self.portal.reconnection_timeout
                ),
            ));
        }
        if self
            .portal
            .hostname
            .chars()
            .any(|c| c.is_whitespace() || c == '/')
        {
            return Err(ConfigError::invalid(
                "portal.hostname",
                format!("{:?} is not a host name", self.portal.hostname),
            ));
        }
        if self.portal.port == api.port && self.portal.ip_address == api.ip_address {
            return Err(ConfigError::invalid(
                "portal.port",
                format!(
                    "{} is also management-api.port: give each its own port",
                    self.portal.port
                ),
            ));
        }
        let w = &self.webrtc;
        if w.minport > w.maxport {
            return Err(ConfigError::invalid(
                "webrtc.minport",
                format!(
                    "{} is greater than webrtc.maxport {}: the range must not be empty",
                    w.minport, w.maxport
                ),
            ));
        }
        for (i, nic) in w.network_interfaces.iter().enumerate() {
            if nic.name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("webrtc.network_interfaces[{i}].name"),
                    "must not be empty: give an interface name such as \"eth0\"",
                ));
            }
            if let Some(ip) = &nic.replaced_ip_address {
                check_ip(
                    &format!("webrtc.network_interfaces[{i}].replaced_ip_address"),
                    ip,
                )?;
            }
        }
        let dp = &self.dataplane;
        match &dp.cores {
            Cores::List(v) if v.is_empty() => {
                return Err(ConfigError::invalid(
                    "dataplane.cores",
                    "the list is empty: give CPU ids, a count, or \"all\"",
                ));
            }
            Cores::List(v) => {
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = v.iter().find(|c| !seen.insert(**c)) {
                    return Err(ConfigError::invalid(
                        "dataplane.cores",
                        format!("CPU {dup} is listed twice"),
                    ));
                }
            }
            _ => {}
        }
        if dp.rpc_address.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                "dataplane.rpc_address",
                format!(
                    "{:?} is not host:port (e.g. \"127.0.0.1:7100\")",
                    dp.rpc_address
                ),
            ));
        }
        if !dp.metrics_address.is_empty()
            && dp.metrics_address.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::invalid(
                "dataplane.metrics_address",
                format!(
                    "{:?} is not host:port (or \"\" to disable)",
                    dp.metrics_address
                ),
            ));
        }
        if self
            .mixer
            .rpc_address
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(ConfigError::invalid(
                "mixer.rpc_address",
                format!(
                    "{:?} is not host:port (e.g. \"127.0.0.1:7102\")",
                    self.mixer.rpc_address
                ),
            ));
        }
        if !(1..=16).contains(&self.mixer.speakers) {
            return Err(ConfigError::invalid(
                "mixer.speakers",
                format!("{} is out of range: use 1 to 16", self.mixer.speakers),
            ));
        }
        if self.mixer.media_ip.parse::<IpAddr>().is_err() {
            return Err(ConfigError::invalid(
                "mixer.media_ip",
                format!(
                    "{:?} is not an IP address (e.g. \"127.0.0.1\")",
                    self.mixer.media_ip
                ),
            ));
        }
        if dp.retransmit_history_ms > 10_000 {
            return Err(ConfigError::invalid(
                "dataplane.retransmit_history_ms",
                format!(
                    "{} is out of range: use 0 (no retransmissions) to 10000",
                    dp.retransmit_history_ms
                ),
            ));
        }
        if !(64 * 1024..=256 * 1024 * 1024).contains(&dp.socket_buffer_bytes) {
            return Err(ConfigError::invalid(
                "dataplane.socket_buffer_bytes",
                format!(
                    "{} is out of range: use 65536 to 268435456",
                    dp.socket_buffer_bytes
                ),
            ));
        }
        if dp.max_peers_per_core == 0 {
            return Err(ConfigError::invalid(
                "dataplane.max_peers_per_core",
                "must be at least 1",
            ));
        }
        if !(0.0..=50.0).contains(&dp.test_ingress_loss_percent) {
            return Err(ConfigError::invalid(
                "dataplane.test_ingress_loss_percent",
                format!(
                    "{} is out of range: use 0 to 50",
                    dp.test_ingress_loss_percent
                ),
            ));
        }
        Ok(())
    }

    /// The number of media ports the range holds.
    pub fn media_port_count(&self) -> usize {
        usize::from(self.webrtc.maxport.0 - self.webrtc.minport.0) + 1
    }

    /// The default file with `data_dir` replaced, for tools that write a local config.
    pub fn default_toml_with_data_dir(data_dir: &Path) -> String {
        DEFAULT_CONFIG_TOML.replacen(
            "data_dir = \"/var/lib/switchyard\"",
            &format!("data_dir = {:?}", data_dir.display().to_string()),
            1,
        )
    }
}

fn tracing_filter_is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn check_ip(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() || value.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{value:?} is not an IP address (use e.g. \"192.0.2.10\", or \"\" for none)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        match Config::from_toml_str(text) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn default_file_is_the_default_config() {
        let parsed = Config::from_toml_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn empty_file_is_the_default_config() {
        assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
    }

    #[test]
    fn owt_settings_keep_their_names() {
        let c = Config::from_toml_str(
            r#"
            [management-api]
            port = 3300
            [portal]
            hostname = "conf.example.com"
            ip_address = "192.0.2.7"
            port = 8443
            [webrtc]
            network_interfaces = [{name = "eth1"}, {name = "eth2", replaced_ip_address = "192.0.2.2"}]
            minport = 50000
            maxport = 50010
            "#,
        )
        .unwrap();
        assert_eq!(c.management_api.port, Port(3300));
        assert_eq!(c.portal.public_host(), "conf.example.com:8443");
        assert_eq!(c.webrtc.network_interfaces.len(), 2);
        assert_eq!(
            c.webrtc.network_interfaces[1]
                .replaced_ip_address
                .as_deref(),
            Some("192.0.2.2")
        );
        assert_eq!(
            (c.webrtc.minport, c.webrtc.maxport),
            (Port(50000), Port(50010))
        );
    }

    #[test]
    fn portal_host_falls_back_to_ip_then_localhost() {
        let mut p = PortalConfig::default();
        assert_eq!(p.public_host(), "localhost:8080");
        p.ip_address = "2001:db8::1".into();
        assert_eq!(p.public_host(), "[2001:db8::1]:8080");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[webrtc]\nminprot = 4000\n");
        let line = e.to_string();
        assert!(line.contains("webrtc"), "{line}");
        assert!(line.contains("minprot"), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn unknown_table_is_named() {
        let line = err("[portall]\nport = 1\n").to_string();
        assert!(line.contains("portall"), "{line}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err("[management-api]\nport = \"three thousand\"\n");
        assert_eq!(e.key(), Some("management-api.port"));
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn port_out_of_range_is_named() {
        let e = err("[portal]\nport = 70000\n");
        assert_eq!(e.key(), Some("portal.port"));
        assert!(e.to_string().contains("between 1 and 65535"), "{e}");
        let e = err("[webrtc]\nminport = 0\n");
        assert_eq!(e.key(), Some("webrtc.minport"));
    }

    #[test]
    fn minport_above_maxport_is_refused() {
        let e = err("[webrtc]\nminport = 50001\nmaxport = 50000\n");
        assert_eq!(e.key(), Some("webrtc.minport"));
        assert!(e.to_string().contains("greater than webrtc.maxport"), "{e}");
    }

    #[test]
    fn bad_addresses_are_refused() {
        let e = err("[portal]\nip_address = \"not-an-ip\"\n");
        assert_eq!(e.key(), Some("portal.ip_address"));
        let e = err(
            "[webrtc]\nnetwork_interfaces = [{name = \"eth0\", replaced_ip_address = \"x\"}]\n",
        );
        assert_eq!(
            e.key(),
            Some("webrtc.network_interfaces[0].replaced_ip_address")
        );
        let e = err("[webrtc]\nnetwork_interfaces = [{name = \"\"}]\n");
        assert_eq!(e.key(), Some("webrtc.network_interfaces[0].name"));
    }

    #[test]
    fn retransmit_history_is_bounded() {
        let e = err("[dataplane]\nretransmit_history_ms = 60000\n");
        assert_eq!(e.key(), Some("dataplane.retransmit_history_ms"));
        assert!(
            e.to_string().contains("0 (no retransmissions) to 10000"),
            "{e}"
        );
        let c = Config::from_toml_str("[dataplane]\nretransmit_history_ms = 0\n");
        assert_eq!(c.map(|c| c.dataplane.retransmit_history_ms).ok(), Some(0));
    }

    #[test]
    fn tls_needs_both_files() {
        let e = err("[tls]\ncert = \"/etc/ssl/c.pem\"\n");
        assert_eq!(e.key(), Some("tls.key"));
    }

    #[test]
    fn ports_must_not_clash() {
        let e = err("[portal]\nport = 3000\n");
        assert_eq!(e.key(), Some("portal.port"));
    }

    #[test]
    fn log_format_values() {
        let c = Config::from_toml_str("[log]\nformat = \"json\"\n").unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        let e = err("[log]\nformat = \"xml\"\n");
        assert_eq!(e.key(), Some("log.format"));
    }

    #[test]
    fn syntax_error_names_a_line() {
        let e = err("[portal\nport = 1\n");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn load_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load(&dir.path().join("nope.toml")).unwrap_err();
        assert!(e.to_string().contains("nope.toml"), "{e}");
    }

    #[test]
    fn dataplane_cores_forms() {
        assert_eq!(
            Config::from_toml_str("").unwrap().dataplane.cores,
            Cores::All
        );
        let c = Config::from_toml_str("[dataplane]\ncores = 3\n").unwrap();
        assert_eq!(c.dataplane.cores, Cores::Count(3));
        let c = Config::from_toml_str("[dataplane]\ncores = [2, 5]\n").unwrap();
        assert_eq!(c.dataplane.cores, Cores::List(vec![2, 5]));
        for bad in [
            "cores = 0",
            "cores = \"some\"",
            "cores = []",
            "cores = [1, 1]",
            "rpc_address = \"here\"",
            "test_ingress_loss_percent = 90.0",
        ] {
            let e = err(&format!("[dataplane]\n{bad}\n"));
            assert!(
                e.key().is_some_and(|k| k.starts_with("dataplane.")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn local_default_changes_only_data_dir() {
        let text = Config::default_toml_with_data_dir(Path::new("/tmp/sy data"));
        let c = Config::from_toml_str(&text).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/sy data"));
        assert_eq!(c.management_api, ManagementApiConfig::default());
    }
}
