//! `kill -9` in the middle of writes leaves the last committed state: every room whose
//! creation was acknowledged is there after a restart, the store opens cleanly (it is
//! integrity-checked on open), and nothing half-written appears.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::Server;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_writes_keeps_every_acknowledged_room() {
    let mut server = Server::start("").await;
    let mut acknowledged: HashSet<String> = HashSet::new();
    for round in 0..3 {
        let c = server.client();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut writers = Vec::new();
        for w in 0..4 {
            let c = c.clone();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let body = json!({"name": format!("r{round}-w{w}-{i}"), "options": {"views": [{"label": "v", "video": {"maxInput": 9}}]}});
                    let bytes = serde_json::to_vec(&body).unwrap();
                    let auth = c.sign("POST", "/v1/rooms", &bytes);
                    // Connection errors are expected once the server is killed.
                    let Ok(resp) = c.try_raw("POST", "/v1/rooms", bytes, Some(auth)).await else { break };
                    if resp.status != 200 {
                        break;
                    }
                    let id = resp.json()["_id"].as_str().unwrap().to_string();
                    acked.lock().unwrap().push(id.clone());
                    // Some PUTs too, so that updates are in flight as well.
                    if i % 3 == 0 {
                        let path = format!("/v1/rooms/{id}");
                        let body = serde_json::to_vec(&json!({"name": format!("updated-{i}")})).unwrap();
                        let auth = c.sign("PUT", &path, &body);
                        let _ = c.try_raw("PUT", &path, body, Some(auth)).await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        server.kill9();
        for w in writers {
            w.await.unwrap();
        }
        let acked: Vec<String> = acked.lock().unwrap().clone();
        assert!(
            acked.len() > 20,
            "round {round}: only {} writes before the kill",
            acked.len()
        );
        acknowledged.extend(acked);

        server = server.restart_after_kill().await;
        let rooms = server.client().get("/v1/rooms").await;
        assert_eq!(rooms.status, 200, "{}", rooms.text);
        let rooms = rooms.json();
        let present: HashSet<String> = rooms
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["_id"].as_str().unwrap().to_string())
            .collect();
        let missing: Vec<&String> = acknowledged.difference(&present).collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged rooms lost: {missing:?}"
        );
        // Whatever is there is whole: every room reads back with its full configuration.
        for r in rooms.as_array().unwrap() {
            assert!(
                r["name"].is_string() && r["views"].is_array() && r["roles"].is_array(),
                "{r}"
            );
        }
    }
}
