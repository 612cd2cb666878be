//! `switchyard-admin`: call the management API from a shell, signed with a service's key
//! (SY-HMAC-SHA256 by default, or OWT's MAuth with `--owt`).
//!
//! ```text
//! switchyard-admin --credentials /var/lib/switchyard/super-service.json rooms create demo
//! switchyard-admin rooms list
//! switchyard-admin token <room-id> alice presenter
//! switchyard-admin call GET /v1/rooms/<room-id>/participants
//! ```

use anyhow::{bail, Context as _};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_auth::{RequestParts, Scheme, Signer};

#[derive(Parser, Debug)]
#[command(
    name = "switchyard-admin",
    version,
    about = "Call the Switchyard management API with a signed request"
)]
pub struct Args {
    /// The management API's base URL.
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://localhost:3000")]
    pub url: String,
    /// A credentials file `{"id": …, "key": …}` (the super service's is in the data directory).
    #[arg(
        long,
        env = "SWITCHYARD_CREDENTIALS",
        default_value = "/var/lib/switchyard/super-service.json"
    )]
    pub credentials: PathBuf,
    /// Sign with OWT's MAuth instead of SY-HMAC-SHA256.
    #[arg(long)]
    pub owt: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Rooms.
    Rooms {
        #[command(subcommand)]
        action: RoomCmd,
    },
    /// Create a token: ROOM USER ROLE.
    Token {
        room: String,
        user: String,
        role: String,
    },
    /// Services (super service only).
    Services {
        #[command(subcommand)]
        action: ServiceCmd,
    },
    /// Any call: METHOD PATH [JSON-BODY].
    Call {
        method: String,
        path: String,
        body: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoomCmd {
    /// List rooms.
    List {
        #[arg(long)]
        page: Option<u64>,
        #[arg(long)]
        per_page: Option<u64>,
    },
    /// Create a room with OWT's defaults, or with OPTIONS (a JSON object).
    Create {
        name: String,
        options: Option<String>,
    },
    /// Show a room.
    Get { id: String },
    /// Delete a room.
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// List services.
    List,
    /// Create a service; prints its key once.
    Create { name: String },
    /// Delete a service and its rooms.
    Delete { id: String },
}

#[derive(serde::Deserialize)]
struct Creds {
    id: String,
    key: String,
}

fn parse_json(s: &str, what: &str) -> anyhow::Result<Value> {
    serde_json::from_str(s).with_context(|| format!("{what} is not valid JSON"))
}

/// Runs one command; returns what to print on success.
pub async fn execute(args: &Args) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&args.credentials).with_context(|| {
        format!(
            "reading credentials {} (use --credentials)",
            args.credentials.display()
        )
    })?;
    let creds: Creds = serde_json::from_str(&text)
        .context("the credentials file must be {\"id\": …, \"key\": …}")?;
    let scheme = if args.owt {
        Scheme::OwtMauth
    } else {
        Scheme::SyHmac
    };
    let signer = Signer::new(creds.id, creds.key, scheme);
    let (method, path, body) = request_for(&args.command)?;
    let method = method.to_ascii_uppercase();
    let bytes = body
        .map(|b| serde_json::to_vec(&b))
        .transpose()?
        .unwrap_or_default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let auth = signer.authorization(
        now,
        RequestParts {
            method: &method,
            path_and_query: &path,
            body: &bytes,
        },
    );
    let url = format!("{}{}", args.url.trim_end_matches('/'), path);
    let resp = reqwest::Client::new()
        .request(reqwest::Method::from_bytes(method.as_bytes())?, &url)
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = resp.status();
    let text = resp.text().await?;
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    if status.is_success() {
        Ok(pretty)
    } else {
        bail!("{method} {path}: {status}\n{pretty}")
    }
}

/// The request a command makes: method, path with query, JSON body.
pub fn request_for(cmd: &Cmd) -> anyhow::Result<(String, String, Option<Value>)> {
    Ok(match cmd {
        Cmd::Rooms { action } => match action {
            RoomCmd::List { page, per_page } => {
                let mut q = Vec::new();
                if let Some(p) = page {
                    q.push(format!("page={p}"));
                }
                if let Some(p) = per_page {
                    q.push(format!("per_page={p}"));
                }
                let qs = if q.is_empty() {
                    String::new()
                } else {
                    format!("?{}", q.join("&"))
                };
                ("GET".into(), format!("/v1/rooms{qs}"), None)
            }
            RoomCmd::Create { name, options } => {
                let options = match options {
                    Some(o) => parse_json(o, "OPTIONS")?,
                    None => json!({}),
                };
                (
                    "POST".into(),
                    "/v1/rooms".into(),
                    Some(json!({"name": name, "options": options})),
                )
            }
            RoomCmd::Get { id } => ("GET".into(), format!("/v1/rooms/{id}"), None),
            RoomCmd::Delete { id } => ("DELETE".into(), format!("/v1/rooms/{id}"), None),
        },
        Cmd::Token { room, user, role } => (
            "POST".into(),
            format!("/v1/rooms/{room}/tokens"),
            Some(json!({"user": user, "role": role})),
        ),
        Cmd::Services { action } => match action {
            ServiceCmd::List => ("GET".into(), "/services".into(), None),
            ServiceCmd::Create { name } => (
                "POST".into(),
                "/services".into(),
                Some(json!({"name": name})),
            ),
            ServiceCmd::Delete { id } => ("DELETE".into(), format!("/services/{id}"), None),
        },
        Cmd::Call { method, path, body } => {
            let body = body
                .as_deref()
                .map(|b| parse_json(b, "the body"))
                .transpose()?;
            (method.clone(), path.clone(), body)
        }
    })
}
