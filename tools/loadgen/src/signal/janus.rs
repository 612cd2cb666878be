//! Janus's VideoRoom through Janus's HTTP API: one Janus session per worker thread with
//! a handle per publisher or subscriber, and one long poll per session that hands each
//! asynchronous event to the request (transaction) waiting for it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::SignalError;
use crate::media::VideoCodec;

/// One Janus session.
#[derive(Debug)]
pub struct Janus {
    base: String,
    http: reqwest::Client,
    session: u64,
    next: Cell<u64>,
    waiting: RefCell<HashMap<String, oneshot::Sender<Value>>>,
    closed: Cell<bool>,
}

impl Janus {
    /// Creates a session at `base` (`http://host:8088/janus`) and starts its long poll.
    pub async fn connect(base: &str) -> Result<Rc<Janus>, SignalError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(70))
            .build()
            .map_err(|e| SignalError::Http(e.to_string()))?;
        let mut j = Janus {
            base: base.trim_end_matches('/').to_string(),
            http,
            session: 0,
            next: Cell::new(1),
            waiting: RefCell::new(HashMap::new()),
            closed: Cell::new(false),
        };
        let r = j.post(None, json!({ "janus": "create" })).await?;
        j.session = id_of(&r)?;
        let j = Rc::new(j);
        let poller = j.clone();
        tokio::task::spawn_local(async move { poller.long_poll().await });
        Ok(j)
    }

    fn transaction(&self) -> String {
        let n = self.next.get();
        self.next.set(n + 1);
        format!("t{n}")
    }

    async fn post(&self, handle: Option<u64>, mut body: Value) -> Result<Value, SignalError> {
        let tx = self.transaction();
        body["transaction"] = json!(tx);
        self.post_with(handle, body).await
    }

    async fn post_with(&self, handle: Option<u64>, body: Value) -> Result<Value, SignalError> {
        let url = match (self.session, handle) {
            (0, _) => self.base.clone(),
            (s, None) => format!("{}/{s}", self.base),
            (s, Some(h)) => format!("{}/{s}/{h}", self.base),
        };
        let r: Value = self
            .http
            .post(url)
            .json(&body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(|e| SignalError::Http(e.to_string()))?
            .json()
            .await
            .map_err(|e| SignalError::Protocol(e.to_string()))?;
        if r["janus"] == "error" {
            return Err(SignalError::Refused(format!("janus: {}", r["error"])));
        }
        Ok(r)
    }

    /// Hands events to their waiting transactions until the session is closed.
    async fn long_poll(self: Rc<Self>) {
        let url = format!("{}/{}?maxev=50", self.base, self.session);
        let mut failures = 0;
        while !self.closed.get() {
            let events = match self.http.get(&url).send().await {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            };
            let Some(events) = events else {
                failures += 1;
                if failures > 5 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            failures = 0;
            let list = match events {
                Value::Array(v) => v,
                other => vec![other],
            };
            for ev in list {
                let Some(tx) = ev["transaction"].as_str() else {
                    continue;
                };
                if ev["janus"] == "ack" {
                    continue;
                }
                if let Some(w) = self.waiting.borrow_mut().remove(tx) {
                    let _ = w.send(ev);
                }
            }
        }
    }

    /// Attaches a VideoRoom handle.
    pub async fn attach(&self) -> Result<u64, SignalError> {
        let r = self
            .post(
                None,
                json!({ "janus": "attach", "plugin": "janus.plugin.videoroom" }),
            )
            .await?;
        id_of(&r)
    }

    /// A synchronous plugin request; returns the plugin's data.
    async fn request(&self, handle: u64, body: Value) -> Result<Value, SignalError> {
        let r = self
            .post(Some(handle), json!({ "janus": "message", "body": body }))
            .await?;
        let data = r["plugindata"]["data"].clone();
        if data.get("error").is_some() {
            return Err(SignalError::Refused(format!(
                "videoroom: {}",
                data["error"]
            )));
        }
        Ok(data)
    }

    /// An asynchronous plugin request; waits for its event.
    async fn request_async(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, SignalError> {
        let tx = self.transaction();
        let (send, recv) = oneshot::channel();
        self.waiting.borrow_mut().insert(tx.clone(), send);
        let mut msg = json!({ "janus": "message", "transaction": tx, "body": body });
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        if let Err(e) = self.post_with(Some(handle), msg).await {
            self.waiting.borrow_mut().remove(&tx);
            return Err(e);
        }
        let ev = tokio::time::timeout(Duration::from_secs(20), recv)
            .await
            .map_err(|_| SignalError::Protocol("no event from janus within 20 s".into()))?
            .map_err(|_| SignalError::Protocol("janus long poll ended".into()))?;
        let data = &ev["plugindata"]["data"];
        if data.get("error").is_some() {
            return Err(SignalError::Refused(format!(
                "videoroom: {}",
                data["error"]
            )));
        }
        Ok(ev)
    }

    /// Creates room `room` for up to `publishers` publishers sending `codec`.
    pub async fn create_room(
        &self,
        room: u64,
        publishers: usize,
        codec: VideoCodec,
    ) -> Result<(), SignalError> {
        let h = self.attach().await?;
        let vc = match codec {
            VideoCodec::Vp8 => "vp8",
            VideoCodec::H264 => "h264",
        };
        self.request(
            h,
            json!({ "request": "create", "room": room, "permanent": false,
                "publishers": publishers.max(1), "bitrate": 0, "audiocodec": "opus",
                "videocodec": vc, "notify_joining": false }),
        )
        .await?;
        self.detach(h).await;
        Ok(())
    }

    /// Joins `room` as a publisher with `offer`; returns (answer, feed id, handle).
    pub async fn publish(
        &self,
        room: u64,
        display: &str,
        offer: String,
    ) -> Result<(String, u64, u64), SignalError> {
        let h = self.attach().await?;
        let ev = self
            .request_async(
                h,
                json!({ "request": "joinandconfigure", "room": room, "ptype": "publisher",
                    "display": display, "audio": true, "video": true }),
                Some(json!({ "type": "offer", "sdp": offer })),
            )
            .await?;
        let feed = ev["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or_else(|| SignalError::Protocol(format!("no publisher id in {ev}")))?;
        let answer = ev["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| SignalError::Protocol("no answer from janus".into()))?;
        Ok((answer.to_string(), feed, h))
    }

    /// Asks to subscribe to `feed`; returns (handle, Janus's offer).
    pub async fn subscribe_offer(
        &self,
        room: u64,
        feed: u64,
    ) -> Result<(u64, String), SignalError> {
        let h = self.attach().await?;
        let ev = self
            .request_async(
                h,
                json!({ "request": "join", "room": room, "ptype": "subscriber",
                    "streams": [{ "feed": feed }] }),
                None,
            )
            .await?;
        let offer = ev["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| SignalError::Protocol(format!("no offer from janus in {ev}")))?;
        Ok((h, offer.to_string()))
    }

    /// Starts a subscription with our answer.
    pub async fn start(&self, handle: u64, answer: String) -> Result<(), SignalError> {
        self.request_async(
            handle,
            json!({ "request": "start" }),
            Some(json!({ "type": "answer", "sdp": answer })),
        )
        .await?;
        Ok(())
    }

    /// Detaches a handle (ends its PeerConnection).
    pub async fn detach(&self, handle: u64) {
        let _ = self.post(Some(handle), json!({ "janus": "detach" })).await;
    }

    /// Destroys the session and stops its long poll.
    pub async fn close(&self) {
        self.closed.set(true);
        let _ = self.post(None, json!({ "janus": "destroy" })).await;
    }
}

fn id_of(r: &Value) -> Result<u64, SignalError> {
    r["data"]["id"]
        .as_u64()
        .ok_or_else(|| SignalError::Protocol(format!("no id in janus's answer {r}")))
}
