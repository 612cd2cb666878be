//! Switchyard: rooms and tokens through the REST API (MAuth-signed, as an app server
//! would), publications over WHIP and subscriptions over WHEP.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_auth::{RequestParts, Scheme, Signer};

use super::SignalError;

/// A client of one Switchyard control.
#[derive(Debug, Clone)]
pub struct Switchyard {
    base: String,
    http: reqwest::Client,
    signer: Signer,
}

/// What ends a WHIP or WHEP session: its resource URL and the token that made it.
#[derive(Debug, Clone)]
pub struct Resource {
    url: String,
    token: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Switchyard {
    /// A client of the control at `base` (`http://host:port`), signing as `service`.
    pub fn new(base: &str, service_id: &str, service_key: &str) -> Result<Self, SignalError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| SignalError::Http(e.to_string()))?;
        Ok(Switchyard {
            base: base.trim_end_matches('/').to_string(),
            http,
            signer: Signer::new(service_id, service_key, Scheme::OwtMauth),
        })
    }

    async fn rest(
        &self,
        method: &'static str,
        path: &str,
        body: serde_json::Value,
    ) -> Result<String, SignalError> {
        let body = serde_json::to_vec(&body).map_err(|e| SignalError::Http(e.to_string()))?;
        let auth = self.signer.authorization(
            now_ms(),
            RequestParts {
                method,
                path_and_query: path,
                body: &body,
            },
        );
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| SignalError::Http(e.to_string()))?;
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SignalError::Http(e.to_string()))?;
        let status = r.status();
        let text = r
            .text()
            .await
            .map_err(|e| SignalError::Http(e.to_string()))?;
        if !status.is_success() {
            return Err(SignalError::Refused(format!("{path}: {status} {text}")));
        }
        Ok(text)
    }

    /// Creates a room named `name`; returns its id.
    pub async fn create_room(
        &self,
        name: &str,
        bandwidth_adaptation: bool,
    ) -> Result<String, SignalError> {
        let options = serde_json::json!({ "enableBandwidthAdaptation": bandwidth_adaptation });
        let text = self
            .rest(
                "POST",
                "/v1/rooms",
                serde_json::json!({ "name": name, "options": options }),
            )
            .await?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| SignalError::Protocol(e.to_string()))?;
        v.get("_id")
            .or_else(|| v.get("id"))
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| SignalError::Protocol(format!("no room id in {text}")))
    }

    /// A single-use token for `user` in `room` with `role`.
    pub async fn token(&self, room: &str, user: &str, role: &str) -> Result<String, SignalError> {
        let text = self
            .rest(
                "POST",
                &format!("/v1/rooms/{room}/tokens"),
                serde_json::json!({ "user": user, "role": role,
                    "preference": { "isp": "isp", "region": "region" } }),
            )
            .await?;
        Ok(text.trim().trim_matches('"').to_string())
    }

    async fn post_sdp(
        &self,
        path: &str,
        token: &str,
        offer: String,
    ) -> Result<(String, Resource), SignalError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await
            .map_err(|e| SignalError::Http(e.to_string()))?;
        let status = r.status();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = r
            .text()
            .await
            .map_err(|e| SignalError::Http(e.to_string()))?;
        if status.as_u16() != 201 {
            return Err(SignalError::Refused(format!("{path}: {status} {text}")));
        }
        let location = location
            .ok_or_else(|| SignalError::Protocol(format!("{path}: 201 without Location")))?;
        let url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        Ok((
            text,
            Resource {
                url,
                token: token.to_string(),
            },
        ))
    }

    /// Publishes over WHIP; returns the answer, the resource and the stream id.
    pub async fn publish(
        &self,
        room: &str,
        user: &str,
        offer: String,
    ) -> Result<(String, Resource, String), SignalError> {
        let token = self.token(room, user, "presenter").await?;
        let (answer, res) = self
            .post_sdp(&format!("/v1/whip/{room}"), &token, offer)
            .await?;
        let stream = res.url.rsplit('/').next().unwrap_or_default().to_string();
        Ok((answer, res, stream))
    }

    /// Subscribes to `stream` over WHEP; returns the answer and the resource.
    pub async fn subscribe(
        &self,
        room: &str,
        stream: &str,
        user: &str,
        offer: String,
    ) -> Result<(String, Resource), SignalError> {
        let token = self.token(room, user, "viewer").await?;
        self.post_sdp(&format!("/v1/whep/{room}/{stream}"), &token, offer)
            .await
    }

    /// Ends a WHIP or WHEP session.
    pub async fn leave(&self, res: &Resource) {
        let _ = self
            .http
            .delete(&res.url)
            .header("authorization", format!("Bearer {}", res.token))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
    }
}
