//! The OpenAPI document covers the whole API, `/metrics` counts requests and what is
//! live, and every request gets a request id that appears in the JSON logs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::Server;
use serde_json::json;

#[tokio::test]
async fn openapi_document_covers_every_route() {
    let server = Server::start("").await;
    let doc: serde_json::Value = reqwest::get(format!("{}/v1/openapi.json", server.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    let expected = [
        ("/v1/rooms", &["get", "post"][..]),
        ("/v1/rooms/{room}", &["get", "put", "patch", "delete"]),
        ("/v1/rooms/{room}/participants", &["get"]),
        (
            "/v1/rooms/{room}/participants/{participant}",
            &["get", "patch", "delete"],
        ),
        ("/v1/rooms/{room}/streams", &["get"]),
        (
            "/v1/rooms/{room}/streams/{stream}",
            &["get", "patch", "delete"],
        ),
        ("/v1/rooms/{room}/tokens", &["post"]),
        ("/services", &["get", "post"]),
        ("/services/{service}", &["get", "delete"]),
        ("/v1/whip/{room}", &["post"]),
        ("/v1/whip/{room}/{stream}", &["delete"]),
        ("/v1/whep/{room}/{stream}", &["post"]),
        ("/v1/whep/{room}/{stream}/{subscription}", &["delete"]),
        ("/v1/openapi.json", &["get"]),
        ("/metrics", &["get"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        expected.len(),
        "documented paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, methods) in expected {
        for m in methods {
            assert!(
                doc["paths"][path][m].is_object(),
                "{m} {path} is not documented"
            );
        }
    }
    for schema in [
        "Room",
        "RoomConfig",
        "ViewVideo",
        "Participant",
        "StreamInfo",
        "ErrorBody",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["mauth"].is_object());
    // Every documented signed route really answers (401 unsigned, not 404).
    let http = reqwest::Client::new();
    for (path, methods) in expected
        .iter()
        .filter(|(p, _)| *p != "/metrics" && *p != "/v1/openapi.json")
    {
        let concrete = path
            .replace("{room}", "r")
            .replace("{participant}", "p")
            .replace("{stream}", "s")
            .replace("{subscription}", "u")
            .replace("{service}", "x");
        for m in *methods {
            let r = http
                .request(
                    m.to_uppercase().parse().unwrap(),
                    format!("{}{concrete}", server.base),
                )
                .send()
                .await
                .unwrap();
            // Signed routes refuse the missing signature; WHIP/WHEP want application/sdp
            // (POST) or a Bearer token (DELETE) first. None is missing (404/405).
            let want: &[u16] = if path.starts_with("/v1/wh") {
                &[401, 415]
            } else {
                &[401]
            };
            assert!(
                want.contains(&r.status().as_u16()),
                "{m} {concrete}: {}",
                r.status()
            );
        }
    }
}

#[tokio::test]
async fn metrics_count_requests_and_rooms() {
    let server = Server::start("").await;
    let c = server.client();
    for i in 0..3 {
        c.create_room(json!({"name": format!("m{i}")})).await;
    }
    c.get("/v1/rooms/none").await.expect_error(404);
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "switchyard_http_requests_total{route=\"/v1/rooms\",method=\"POST\",status=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("switchyard_http_requests_total{route=\"/v1/rooms/{room}\",method=\"GET\",status=\"404\"} 1"), "{text}");
    assert!(
        text.contains(
            "switchyard_http_request_duration_seconds_count{route=\"/v1/rooms\",method=\"POST\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("switchyard_rooms 3"), "{text}");
    assert!(text.contains("switchyard_participants 0"), "{text}");
    assert!(text.contains("switchyard_streams 0"), "{text}");
}

#[tokio::test]
async fn each_request_has_an_id_in_the_json_log() {
    let server = Server::start("").await;
    let c = server.client();
    let r = c.get("/v1/rooms").await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    // The log is JSON lines; find this request's line.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let log = server.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["span"]["request_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no log line with request id {id}:\n{log}"));
    assert_eq!(line["span"]["path"], "/v1/rooms");
    assert_eq!(line["fields"]["status"], 200);
}
