//! WHIP and WHEP take a token from the REST API: missing, malformed, forged, reused,
//! expired and wrong-room tokens are each refused with a clear status and JSON body, and
//! the server keeps serving. (No dataplane runs here: a valid token gets as far as the
//! media step, which answers 503, and is used up by then.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::Server;
use serde_json::json;

const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n";

async fn whip(base: &str, room: &str, token: Option<&str>, body: &str) -> common::Resp {
    let mut rb = reqwest::Client::new()
        .post(format!("{base}/v1/whip/{room}"))
        .header("content-type", "application/sdp")
        .body(body.to_string());
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    common::Resp {
        status,
        text: r.text().await.unwrap(),
        headers,
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_clearly() {
    let server = Server::start("[management-api]\ntoken_lifetime_s = 1\n").await;
    let c = server.client();
    let room = c.create_room(json!({"name": "whip"})).await;
    let other = c.create_room(json!({"name": "other"})).await;
    let token = |room: String, role: &'static str| {
        let c = c.clone();
        async move {
            c.post(
                &format!("/v1/rooms/{room}/tokens"),
                json!({"user": "u", "role": role}),
            )
            .await
            .text
        }
    };

    // No token, not a bearer token, garbage, a forged signature.
    let e = whip(&server.base, &room, None, OFFER)
        .await
        .expect_error(401);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("Bearer"),
        "{e}"
    );
    whip(&server.base, &room, Some("!!!"), OFFER)
        .await
        .expect_error(401);
    let genuine = token(room.clone(), "presenter").await;
    let mut forged: serde_json::Value = serde_json::from_slice(&base64_decode(&genuine)).unwrap();
    forged["host"] = json!("evil.example.com:443");
    let forged = base64_encode(&serde_json::to_vec(&forged).unwrap());
    let e = whip(&server.base, &room, Some(&forged), OFFER)
        .await
        .expect_error(401);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{e}"
    );

    // A token for another room.
    let e = whip(&server.base, &other, Some(&genuine), OFFER)
        .await
        .expect_error(403);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another room"),
        "{e}"
    );

    // A viewer may not publish.
    let viewer = token(room.clone(), "viewer").await;
    let e = whip(&server.base, &room, Some(&viewer), OFFER)
        .await
        .expect_error(403);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may not publish"),
        "{e}"
    );

    // A fresh presenter token is used once (here the media step is unavailable: 503) ...
    let once = token(room.clone(), "presenter").await;
    let first = whip(&server.base, &room, Some(&once), OFFER).await;
    assert_eq!(first.status, 503, "{}", first.text);
    assert!(first.headers.contains_key("retry-after"));
    // ... and then it is spent.
    let e = whip(&server.base, &room, Some(&once), OFFER)
        .await
        .expect_error(401);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{e}"
    );

    // An expired token (lifetime 1 s here).
    let stale = token(room.clone(), "presenter").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let e = whip(&server.base, &room, Some(&stale), OFFER)
        .await
        .expect_error(401);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("expired"),
        "{e}"
    );

    // Malformed requests are refused before any token is spent.
    let kept = token(room.clone(), "presenter").await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/whip/{room}", server.base))
        .header("content-type", "text/plain")
        .header("authorization", format!("Bearer {kept}"))
        .body(OFFER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    whip(&server.base, &room, Some(&kept), "not an sdp")
        .await
        .expect_error(400);
    assert_eq!(
        whip(&server.base, &room, Some(&kept), OFFER).await.status,
        503,
        "the token survived the refused requests"
    );

    // PATCH on a session: 405 with Allow.
    let r = reqwest::Client::new()
        .patch(format!("{}/v1/whip/{room}/abc", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "DELETE");

    // Still serving.
    assert_eq!(c.get(&format!("/v1/rooms/{room}")).await.status, 200);
    assert!(server.log().contains("media dataplane not reachable"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
