//! An OWT app server's life with the real binary: create a room with custom views, list
//! with pagination, update with PUT and PATCH, create a token for each role, delete; then
//! restart and find the rooms again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use base64::Engine as _;
use common::Server;
use serde_json::json;

#[tokio::test]
async fn app_server_lifecycle_survives_restart() {
    let server = Server::start("").await;
    let c = server.client();

    // A room with two custom views, as an OWT app would configure it.
    let created = c
        .post(
            "/v1/rooms",
            json!({
                "name": "townhall",
                "options": {
                    "participantLimit": 50,
                    "inputLimit": 8,
                    "views": [
                        {"label": "stage", "video": {
                            "format": {"codec": "h264", "profile": "B"},
                            "parameters": {"resolution": {"width": 1280, "height": 720}, "framerate": 30, "keyFrameInterval": 2},
                            "maxInput": 4, "bgColor": {"r": 20, "g": 40, "b": 60},
                            "layout": {"fitPolicy": "crop", "templates": {"base": "lecture"}}}},
                        {"label": "audio-only", "video": false}
                    ]
                }
            }),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let room = created.json();
    let id = room["_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 24);
    assert_eq!(room["name"], "townhall");
    assert_eq!(room["participantLimit"], 50);
    assert_eq!(room["views"][0]["label"], "stage");
    assert_eq!(room["views"][0]["video"]["parameters"]["framerate"], 30);
    assert_eq!(room["views"][0]["video"]["format"]["profile"], "B");
    assert_eq!(room["views"][0]["video"]["maxInput"], 4);
    assert_eq!(
        room["views"][0]["video"]["motionFactor"], 0.8,
        "OWT default filled in"
    );
    assert_eq!(
        room["views"][0]["audio"]["vad"], true,
        "OWT default filled in"
    );
    assert_eq!(room["views"][1]["video"], json!(false));
    assert_eq!(room["roles"].as_array().unwrap().len(), 6);

    // More rooms, then pagination over all of them in creation order.
    let mut ids = vec![id.clone()];
    for i in 0..6 {
        ids.push(c.create_room(json!({"name": format!("room-{i}")})).await);
    }
    let all = c.get("/v1/rooms").await;
    assert_eq!(all.status, 200);
    let all_ids: Vec<String> = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all_ids, ids);
    assert_eq!(all.headers["x-total-count"], "7");
    let mut paged = Vec::new();
    for page in 1..=3 {
        let r = c.get(&format!("/v1/rooms?page={page}&per_page=3")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let items = r.json();
        let n = items.as_array().unwrap().len();
        assert_eq!(n, if page < 3 { 3 } else { 1 });
        paged.extend(
            items
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["_id"].as_str().unwrap().to_string()),
        );
    }
    assert_eq!(paged, ids);
    assert_eq!(c.get("/v1/rooms?page=4&per_page=3").await.json(), json!([]));

    // PUT replaces the whole configuration (OWT's RoomConfig shape).
    let put = c
        .put(&format!("/v1/rooms/{id}"), json!({"name": "townhall-2", "options": {"participantLimit": 10, "views": [{"label": "only"}]}}))
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let r = put.json();
    assert_eq!(r["_id"], id.as_str());
    assert_eq!(r["name"], "townhall-2");
    assert_eq!(r["participantLimit"], 10);
    assert_eq!(r["inputLimit"], -1, "PUT resets what it leaves out");
    assert_eq!(r["views"].as_array().unwrap().len(), 1);
    // PUT with a room object as GET returns it (what OWT apps send back).
    let mut got = c.get(&format!("/v1/rooms/{id}")).await.json();
    got["inputLimit"] = json!(3);
    let put2 = c.put(&format!("/v1/rooms/{id}"), got).await;
    assert_eq!(put2.status, 200, "{}", put2.text);
    assert_eq!(put2.json()["inputLimit"], 3);

    // PATCH: a merge patch, then a JSON patch.
    let p = c
        .patch(
            &format!("/v1/rooms/{id}"),
            json!({"selectActiveAudio": true, "notifying": {"streamChange": false}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    let r = p.json();
    assert_eq!(r["selectActiveAudio"], true);
    assert_eq!(r["notifying"]["streamChange"], false);
    assert_eq!(r["notifying"]["participantActivities"], true);
    assert_eq!(r["participantLimit"], 10, "PATCH keeps what it leaves out");
    let p = c
        .patch(
            &format!("/v1/rooms/{id}"),
            json!([{"op": "replace", "path": "/views/0/video/parameters/framerate", "value": 15},
                   {"op": "add", "path": "/roles/-", "value": {"role": "moderator", "publish": {"audio": true, "video": true}, "subscribe": {"audio": true, "video": true}}}]),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.json()["views"][0]["video"]["parameters"]["framerate"], 15);
    // A patch that makes the room invalid is refused and changes nothing.
    let bad = c
        .patch(
            &format!("/v1/rooms/{id}"),
            json!({"views": [{"video": {"maxInput": 0}}]}),
        )
        .await;
    assert_eq!(
        bad.expect_error(400)["error"]["field"],
        "views[0].video.maxInput"
    );
    assert_eq!(
        c.get(&format!("/v1/rooms/{id}")).await.json()["views"][0]["label"],
        "only"
    );

    // A token for each role, OWT-shaped, naming the portal.
    let roles = c.get(&format!("/v1/rooms/{id}")).await.json()["roles"].clone();
    let mut seen_ids = std::collections::HashSet::new();
    for role in roles.as_array().unwrap() {
        let role = role["role"].as_str().unwrap();
        let t = c.post(&format!("/v1/rooms/{id}/tokens"), json!({"user": "alice", "role": role, "preference": {"isp": "isp", "region": "region"}})).await;
        assert_eq!(t.status, 200, "{role}: {}", t.text);
        assert!(t.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(t.text.trim())
            .unwrap();
        let token: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(token["host"], format!("localhost:{}", server.portal_port));
        assert_eq!(token["secure"], false);
        assert!(token["signature"].as_str().unwrap().len() > 40);
        assert!(seen_ids.insert(token["tokenId"].as_str().unwrap().to_string()));
    }
    assert_eq!(
        seen_ids.len(),
        7,
        "six default roles plus the patched-in one"
    );

    // Delete one room: gone from GET and from the list.
    let victim = ids.pop().unwrap();
    let d = c.delete(&format!("/v1/rooms/{victim}")).await;
    assert_eq!(d.status, 200, "{}", d.text);
    c.get(&format!("/v1/rooms/{victim}"))
        .await
        .expect_error(404);
    c.delete(&format!("/v1/rooms/{victim}"))
        .await
        .expect_error(404);

    // Restart the binary: the rooms and their configuration are still there, and the
    // super service's credentials still work.
    let server = server.restart().await;
    let c = server.client();
    let after = c.get("/v1/rooms").await;
    assert_eq!(after.status, 200, "{}", after.text);
    let after_ids: Vec<String> = after
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(after_ids, ids);
    let r = c.get(&format!("/v1/rooms/{id}")).await.json();
    assert_eq!(r["name"], "townhall-2");
    assert_eq!(r["selectActiveAudio"], true);
    assert_eq!(r["views"][0]["video"]["parameters"]["framerate"], 15);
    assert_eq!(
        r["roles"].as_array().unwrap().last().unwrap()["role"],
        "moderator"
    );
    assert!(
        server.log().contains("\"created_super_service\":false"),
        "second start reuses the super service"
    );
}

#[tokio::test]
async fn rooms_are_private_to_their_service() {
    let server = Server::start("").await;
    let admin = server.client();
    let svc = admin.post("/services", json!({"name": "tenant-a"})).await;
    assert_eq!(svc.status, 200, "{}", svc.text);
    let svc = svc.json();
    let key = svc["key"].as_str().unwrap().to_string();
    let tenant = admin.with_signer(switchyard_auth::Signer::new(
        svc["_id"].as_str().unwrap(),
        key,
        switchyard_auth::Scheme::OwtMauth,
    ));

    let mine = tenant.create_room(json!({"name": "tenant room"})).await;
    let theirs = admin.create_room(json!({"name": "admin room"})).await;
    let list = tenant.get("/v1/rooms").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["_id"], mine.as_str());
    tenant
        .get(&format!("/v1/rooms/{theirs}"))
        .await
        .expect_error(404);
    tenant
        .delete(&format!("/v1/rooms/{theirs}"))
        .await
        .expect_error(404);
    tenant
        .post(
            &format!("/v1/rooms/{theirs}/tokens"),
            json!({"user": "u", "role": "presenter"}),
        )
        .await
        .expect_error(404);

    // Only the super service manages services.
    assert_eq!(
        tenant.get("/services").await.expect_error(403)["error"]["code"],
        1102
    );
    let listed = admin.get("/services").await.json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(listed[1].get("key").is_none(), "keys are not listed");
    assert_eq!(listed[1]["rooms"], json!([mine]));
    admin
        .post("/services", json!({"name": "tenant-a"}))
        .await
        .expect_error(409);
    let sid = svc["_id"].as_str().unwrap();
    assert_eq!(admin.delete(&format!("/services/{sid}")).await.status, 200);
    // Its rooms went with it, and its key no longer signs anything.
    tenant.get("/v1/rooms").await.expect_error(401);
    let super_id = server.credentials().id;
    admin
        .delete(&format!("/services/{super_id}"))
        .await
        .expect_error(403);
}
