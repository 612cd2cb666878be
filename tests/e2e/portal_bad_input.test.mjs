// Bad input to the portal: each gets an error answer (or the socket is closed with a
// reason), the offending socket stays usable, and the participants beside it — one
// publishing, one watching — are not disturbed.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  startService, launchBrowser, createRoom, newToken, portalClient, rtcPage, eventually, sleep,
  SDK, packets, portalPublish, portalSubscribe, metricValue,
} from "./common.mjs";

const login = (token) => ({ token, userAgent: SDK, protocol: "1.2" });

test("bad input gets error answers and disturbs no one else", { timeout: 120000 }, async () => {
  const svc = await startService({ extraApi: "token_lifetime_s = 2" });
  const browser = await launchBrowser();
  try {
    const room = await createRoom(svc);
    // The bystanders: alice publishes, carol watches.
    const alice = await portalClient(svc.portal);
    const aliceId = (await alice.req("login", login(await newToken(svc, room, "alice")))).id;
    const carol = await portalClient(svc.portal);
    await carol.req("login", login(await newToken(svc, room, "carol")));
    const pageA = await rtcPage(browser, svc);
    const pageC = await rtcPage(browser, svc);
    const pub = await portalPublish(alice, pageA, {});
    const added = await carol.next("stream", d => d.status === "add");
    const sub = await portalSubscribe(carol, pageC, added.data, ["audio", "video"]);
    const videoMid = sub.mids.find(m => m.type === "video").mid;
    await eventually(async () => (await packets(pageC, sub.pc, videoMid)).frames > 10, 15000, "carol to decode alice");

    const m = await portalClient(svc.portal);
    const expect = async (name, data, code, pattern) => {
      const e = data === undefined ? await m.refused(name) : await m.refused(name, data);
      assert.equal(e.code, code, `${name}: ${e.description}`);
      if (pattern) assert.match(e.description, pattern, name);
      assert.ok(e.description.length > 10, "the description says what is wrong");
    };

    // Before login: unknown messages, malformed logins, bad tokens.
    await expect("hack-the-planet", { x: 1 }, 1301, /unknown message "hack-the-planet"/);
    await expect("publish", { media: null }, 1101, /not logged in/);
    await expect("login", undefined, 1301, /login/);
    await expect("login", "a string", 1301, /login/);
    await expect("login", {}, 1301, /token/);
    await expect("login", { token: 42 }, 1301, /token/);
    await expect("login", login("bm90IGEgdG9rZW4="), 1101);
    await expect("login", login("%%% not base64 %%%"), 1101);
    // A forged signature.
    const real = JSON.parse(Buffer.from(await newToken(svc, room, "mallory"), "base64").toString());
    const forged = Buffer.from(JSON.stringify({ ...real, signature: Buffer.from("00".repeat(32)).toString("base64") })).toString("base64");
    await expect("login", login(forged), 1101);
    // A reused token.
    const once = await newToken(svc, room, "mallory");
    const other = await portalClient(svc.portal);
    const otherId = (await other.req("login", login(once))).id;
    await expect("login", login(once), 1101);
    await other.req("logout");
    other.close();
    // An expired token (the service gives tokens 2 s).
    const old = await newToken(svc, room, "mallory");
    await sleep(3000);
    await expect("login", login(old), 1101);
    await expect("relogin", "garbage ticket", 1101);
    await expect("relogin", { nothing: true }, 1301, /ticket/);

    // Logged in: a second login, then malformed requests of every kind.
    const me = await m.req("login", login(await newToken(svc, room, "mallory")));
    assert.equal(me.user, "mallory", "the same socket logs in after all those errors");
    await expect("login", login(await newToken(svc, room, "mallory")), 1301, /already logged in/);
    await expect("publish", {}, 1301, /publish/);
    await expect("publish", { media: { tracks: "x" }, transport: { type: "webrtc" } }, 1301, /tracks/);
    await expect("publish", { media: { tracks: [] }, transport: { type: "webrtc" } }, 1301, /no track/);
    await expect("publish", { media: { tracks: [{ type: "smell" }] }, transport: { type: "webrtc" } }, 1301, /smell/);
    await expect("publish", { media: { tracks: [{ type: "audio", mid: "0" }] }, transport: { type: "quic" } }, 1301, /quic/);
    await expect("publish", { media: { tracks: [{ type: "audio", mid: "0" }] }, transport: { type: "webrtc", id: "nope" } }, 1301, /no transport/);
    await expect("subscribe", { media: { tracks: [{ type: "video", mid: "0", from: "nope-video" }] }, transport: { type: "webrtc" } }, 1004, /no stream/);
    await expect("subscribe", { media: { tracks: [{ type: "video", mid: "0" }] }, transport: { type: "webrtc" } }, 1301, /from/);
    await expect("unsubscribe", { id: "nope" }, 1001);
    await expect("unpublish", { id: pub.id }, 1004, /of yours/);
    await expect("unpublish", {}, 1301, /id/);
    await expect("stream-control", { id: pub.id, operation: "pause", data: "video" }, 1102);
    await expect("stream-control", { id: pub.id, operation: "explode", data: "video" }, 1301, /explode/);
    await expect("stream-control", { id: pub.id, operation: "pause", data: 7 }, 1301, /audio/);
    await expect("subscription-control", { id: sub.id, operation: "pause", data: "av" }, 1001);
    await expect("text", { to: "all" }, 1301, /message/);
    await expect("text", { to: "nobody", message: "hi" }, 1005, /no participant/);
    await expect("text", { to: "all", message: "x".repeat(3000) }, 1301, /2048/);
    await expect("soac", { id: "nope", signaling: { type: "offer", sdp: "v=0" } }, 1301, /no transport/);

    // SDP garbage on a real transport: an error answer and an error progress.
    const bad = await m.req("publish", { media: { tracks: [{ type: "audio", mid: "0", source: "mic" }] }, transport: { type: "webrtc", id: null } });
    await expect("soac", { id: bad.transportId, signaling: { type: "offer", sdp: "hello there" } }, 1301, /v=0/);
    await expect("soac", { id: bad.transportId, signaling: { type: "answer", sdp: "v=0" } }, 1301, /offer/);
    await expect("soac", { id: bad.transportId, signaling: { type: "pranswer" } }, 1301, /pranswer/);
    await expect("soac", { id: bad.transportId, signaling: { type: "offer", sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" } }, 1301);
    const failed = await m.next("progress", d => d.id === bad.transportId && d.status === "error");
    assert.equal(failed.sessionId, bad.id);
    assert.equal(typeof failed.data, "string");

    // Still usable: a text reaches carol.
    await m.req("text", { to: "all", message: "still here" });
    assert.equal((await carol.next("text")).message, "still here");

    // An oversized message closes only that socket, with a reason.
    const closed = new Promise(r => m.socket.once("disconnect", r));
    m.socket.emit("text", { to: "all", message: "x".repeat(2_000_000) }, () => {});
    const reason = await Promise.race([closed, sleep(10000).then(() => { throw new Error("the oversized message did not close the socket"); })]);
    assert.equal(typeof reason, "string");

    // Nobody else noticed: carol still decodes alice, alice saw no error, and carol was
    // told of no stream removed and of no one leaving (but the one who logged out).
    const before = (await packets(pageC, sub.pc, videoMid)).frames;
    await eventually(async () => (await packets(pageC, sub.pc, videoMid)).frames > before + 10, 10000, "carol's video to keep flowing");
    assert.ok(!carol.saw("stream", d => d.status === "remove"));
    assert.ok(!alice.saw("progress", d => d.status === "error"));
    await alice.req("text", { to: "all", message: "all good" });
    assert.equal((await carol.next("text", d => d.message === "all good")).from, aliceId);
    const joins = [];
    for (const n of carol.seen) if (n.name === "participant") joins.push(n.data);
    assert.ok(joins.every(j => j.action === "join" || j.data === otherId), `carol was told of no one leaving but the one who logged out: ${JSON.stringify(joins)}`);
    // Operators see the refusals and the connections in the metrics.
    const metrics = svc.api + "/metrics";
    assert.equal(await metricValue(metrics, "switchyard_portal_requests_total", 'message="unknown",outcome="error"'), 1);
    assert.ok(await metricValue(metrics, "switchyard_portal_requests_total", 'message="login",outcome="error"') >= 9);
    assert.ok(await metricValue(metrics, "switchyard_portal_requests_total", 'message="login",outcome="ok"') >= 4);
    assert.equal(await metricValue(metrics, "switchyard_portal_connections", ""), 2, "alice and carol are connected");
    alice.close();
    carol.close();
  } finally {
    await browser.close();
    await svc.stop();
  }
});
