//! Bad input gets a clear status and an OWT-shaped JSON error, and the server keeps
//! serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use common::{now_ms, Server};
use serde_json::json;
use switchyard_auth::{mauth_signature, RequestParts, Scheme, Signer};

#[tokio::test]
async fn bad_requests_are_refused_clearly_and_the_server_keeps_serving() {
    let mut server = Server::start("[management-api]\nmax_body_bytes = 4096\n").await;
    let c = server.client();
    let room = c.create_room(json!({"name": "steady"})).await;

    // A well-behaved app server keeps working throughout, concurrently.
    let steady = c.clone();
    let steady_room = room.clone();
    let background = tokio::spawn(async move {
        let mut ok = 0;
        for _ in 0..100 {
            let r = steady.get(&format!("/v1/rooms/{steady_room}")).await;
            assert_eq!(r.status, 200, "{}", r.text);
            ok += 1;
        }
        ok
    });

    // Malformed JSON.
    for body in [
        &b"{\"name\": "[..],
        b"not json",
        b"{\"name\":\"a\"}}",
        b"\xff\xfe",
    ] {
        let auth = c.sign("POST", "/v1/rooms", body);
        let r = c.raw("POST", "/v1/rooms", body.to_vec(), Some(auth)).await;
        let e = r.expect_error(400);
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("malformed JSON"),
            "{e}"
        );
    }
    // An empty body where one is needed.
    let auth = c.sign("POST", "/v1/rooms", b"");
    c.raw("POST", "/v1/rooms", vec![], Some(auth))
        .await
        .expect_error(400);

    // Wrong types and invalid values name the field.
    for (body, field) in [
        (json!({"name": 42}), "name"),
        (json!(["a"]), ""),
        (
            json!({"name": "x", "options": {"participantLimit": "many"}}),
            "options.participantLimit",
        ),
        (
            json!({"name": "x", "options": {"views": [{"video": {"parameters": {"framerate": "fast"}}}]}}),
            "options.views[0].video.parameters.framerate",
        ),
        (
            json!({"name": "x", "options": {"views": [{"video": {"layout": {"templates": {"base": "mosaic"}}}}]}}),
            "options.views[0].video.layout.templates.base",
        ),
        (
            json!({"name": "x", "options": {"roles": [{"role": "p", "publish": {"audio": "yes"}}]}}),
            "options.roles[0].publish.audio",
        ),
        (
            json!({"name": "x", "options": {"mystery": true}}),
            "options.mystery",
        ),
    ] {
        let e = c.post("/v1/rooms", body.clone()).await.expect_error(400);
        assert_eq!(e["error"]["field"], field, "{body} -> {e}");
        assert_eq!(e["error"]["code"], 1301);
    }
    let e = c
        .post(
            &format!("/v1/rooms/{room}/tokens"),
            json!({"user": 7, "role": "presenter"}),
        )
        .await
        .expect_error(400);
    assert_eq!(e["error"]["field"], "user");
    let e = c
        .post(
            &format!("/v1/rooms/{room}/tokens"),
            json!({"user": "u", "role": "emperor"}),
        )
        .await
        .expect_error(400);
    assert_eq!(e["error"]["field"], "role");
    let e = c
        .post(
            &format!("/v1/rooms/{room}/tokens"),
            json!({"role": "presenter"}),
        )
        .await
        .expect_error(400);
    assert_eq!(e["error"]["field"], "user");
    c.get("/v1/rooms?per_page=zero").await.expect_error(400);
    c.patch(
        &format!("/v1/rooms/{room}"),
        json!([{"op": "explode", "path": "/name"}]),
    )
    .await
    .expect_error(400);
    c.patch(
        &format!("/v1/rooms/{room}"),
        json!([{"op": "remove", "path": "/no/such/thing"}]),
    )
    .await
    .expect_error(400);

    // Unknown room, participant, stream, service; unknown route; wrong method.
    assert_eq!(
        c.get("/v1/rooms/000000000000000000000000")
            .await
            .expect_error(404)["error"]["code"],
        1003
    );
    assert_eq!(
        c.put("/v1/rooms/nope", json!({"name": "x"}))
            .await
            .expect_error(404)["error"]["code"],
        1003
    );
    c.get("/v1/rooms/nope/participants").await.expect_error(404);
    assert_eq!(
        c.get(&format!("/v1/rooms/{room}/participants/nobody"))
            .await
            .expect_error(404)["error"]["code"],
        1005
    );
    assert_eq!(
        c.delete(&format!("/v1/rooms/{room}/participants/nobody"))
            .await
            .expect_error(404)["error"]["code"],
        1005
    );
    assert_eq!(
        c.get(&format!("/v1/rooms/{room}/streams/none"))
            .await
            .expect_error(404)["error"]["code"],
        1004
    );
    assert_eq!(
        c.patch(&format!("/v1/rooms/{room}/streams/none"), json!([]))
            .await
            .expect_error(404)["error"]["code"],
        1004
    );
    assert_eq!(
        c.get("/services/none").await.expect_error(404)["error"]["code"],
        1002
    );
    c.get("/v1/nothing-here").await.expect_error(404);
    c.send(
        "POST",
        &format!("/v1/rooms/{room}/streams"),
        Some(json!({})),
    )
    .await
    .expect_error(405);

    // An oversized body: 413, whichever scheme signed it.
    let big = json!({"name": "x".repeat(10_000)});
    assert_eq!(
        c.post("/v1/rooms", big.clone()).await.expect_error(413)["error"]["code"],
        1301
    );
    let sy = c.with_signer(Signer {
        scheme: Scheme::SyHmac,
        ..c.signer.clone()
    });
    sy.post("/v1/rooms", big).await.expect_error(413);

    // No signature, a foreign scheme, a garbled header.
    c.raw("GET", "/v1/rooms", vec![], None)
        .await
        .expect_error(401);
    let r = c
        .raw(
            "GET",
            "/v1/rooms",
            vec![],
            Some("Basic YWRtaW46YWRtaW4=".into()),
        )
        .await;
    r.expect_error(401);
    assert!(r.headers.contains_key("www-authenticate"));
    c.raw(
        "GET",
        "/v1/rooms",
        vec![],
        Some("MAuth mauth_serviceid=".into()),
    )
    .await
    .expect_error(401);

    // A bad signature: wrong key; unknown service; body altered after signing (SY scheme).
    let creds = server.credentials();
    let wrong = c.with_signer(Signer::new(
        creds.id.clone(),
        "not-the-key",
        Scheme::OwtMauth,
    ));
    let e = wrong.get("/v1/rooms").await.expect_error(401);
    assert_eq!(e["error"]["code"], 1101);
    let ghost = c.with_signer(Signer::new(
        "0123456789abcdef01234567",
        creds.key.clone(),
        Scheme::OwtMauth,
    ));
    assert_eq!(
        ghost.get("/v1/rooms").await.expect_error(401)["error"]["message"],
        e["error"]["message"],
        "unknown service looks like a bad key"
    );
    let body = serde_json::to_vec(&json!({"name": "signed"})).unwrap();
    let auth = sy.sign("POST", "/v1/rooms", &body);
    let tampered = serde_json::to_vec(&json!({"name": "swapped"})).unwrap();
    sy.raw("POST", "/v1/rooms", tampered, Some(auth.clone()))
        .await
        .expect_error(401);
    // ... and the same header on another path.
    sy.raw(
        "POST",
        &format!("/v1/rooms/{room}/tokens"),
        body.clone(),
        Some(auth),
    )
    .await
    .expect_error(401);

    // A stale timestamp (both directions), and a replayed cnonce.
    for skew in [-301_000i64, 301_000] {
        let ts = now_ms() + skew;
        let h = format!(
            "MAuth realm=http://webrtc.intel.com,mauth_signature_method=HMAC_SHA256,mauth_serviceid={},mauth_cnonce=123,mauth_timestamp={ts},mauth_signature={}",
            creds.id,
            mauth_signature(&creds.key, ts, "123", None)
        );
        let e = c
            .raw("GET", "/v1/rooms", vec![], Some(h))
            .await
            .expect_error(401);
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("stale timestamp"),
            "{e}"
        );
    }
    let replayable = c.signer.authorization_with(
        now_ms(),
        "4242",
        RequestParts {
            method: "GET",
            path_and_query: "/v1/rooms",
            body: b"",
        },
    );
    assert_eq!(
        c.raw("GET", "/v1/rooms", vec![], Some(replayable.clone()))
            .await
            .status,
        200
    );
    let e = c
        .raw("GET", "/v1/rooms", vec![], Some(replayable))
        .await
        .expect_error(401);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("replayed"),
        "{e}"
    );
    // A replayed SY-signed creation does not create a second room.
    let body = serde_json::to_vec(&json!({"name": "once"})).unwrap();
    let auth = sy.sign("POST", "/v1/rooms", &body);
    assert_eq!(
        sy.raw("POST", "/v1/rooms", body.clone(), Some(auth.clone()))
            .await
            .status,
        200
    );
    sy.raw("POST", "/v1/rooms", body, Some(auth))
        .await
        .expect_error(401);
    let names: Vec<String> = c
        .get("/v1/rooms")
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.iter().filter(|n| *n == "once").count(), 1);
    assert_eq!(names.len(), 2, "no bad request created a room: {names:?}");

    // The failures are counted.
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["missing", "malformed", "bad_signature", "stale", "replayed"] {
        assert!(
            metrics.contains(&format!(
                "switchyard_auth_failures_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }

    // Throughout, the well-behaved client was served, and the server is still up.
    assert_eq!(background.await.unwrap(), 100);
    assert!(server.is_running());
    assert_eq!(c.get(&format!("/v1/rooms/{room}")).await.status, 200);
}

#[tokio::test]
async fn owt_scheme_can_be_switched_off() {
    let server = Server::start("[management-api]\nowt_mauth = false\n").await;
    let c = server.client();
    let e = c.get("/v1/rooms").await.expect_error(401);
    assert!(
        e["error"]["message"].as_str().unwrap().contains("disabled"),
        "{e}"
    );
    let sy = c.with_signer(Signer {
        scheme: Scheme::SyHmac,
        ..c.signer.clone()
    });
    assert_eq!(sy.get("/v1/rooms").await.status, 200);
    let r = sy
        .post("/v1/rooms", json!({"name": "signed strongly"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}
