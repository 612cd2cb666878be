// OWT's client–portal protocol, spoken by socket.io-client 2.x (what OWT's JS SDK 5.x
// uses) from Node, with the media carried by real WebRTC peers in headless Chromium.
// Walks login → publish → soac → subscribe → stream-control → subscription-control →
// text → relogin → logout, asserting every answer and notification on both sides.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  startService, launchBrowser, createRoom, newToken, portalClient, portalOf, rtcPage,
  eventually, sleep, mauth, SDK, packets, portalPublish as publish, portalSubscribe as subscribe,
} from "./common.mjs";

test("the portal protocol, login to logout, with media in Chromium", { timeout: 120000 }, async () => {
  const svc = await startService({ extraPortal: "reconnection_timeout = 5" });
  const browser = await launchBrowser();
  try {
    const room = await createRoom(svc);
    const tokenA = await newToken(svc, room, "alice");
    const tokenB = await newToken(svc, room, "bob");
    assert.equal(portalOf(tokenA), svc.portal, "the token names the portal");

    // login: the room as it is, the participant's permissions and a reconnection ticket.
    const a = await portalClient(portalOf(tokenA));
    const la = await a.req("login", { token: tokenA, userAgent: SDK, protocol: "1.2" });
    assert.equal(la.user, "alice");
    assert.equal(la.role, "presenter");
    assert.equal(typeof la.id, "string");
    assert.deepEqual(la.permission.publish, { audio: true, video: true, data: false });
    assert.equal(la.permission.subscribe.video, true);
    assert.equal(la.room.id, room);
    assert.deepEqual(la.room.participants.map(p => p.user), ["alice"]);
    assert.deepEqual(la.room.streams, []);
    assert.ok(Array.isArray(la.room.views));
    assert.equal(typeof la.reconnectionTicket, "string");

    const b = await portalClient(portalOf(tokenB));
    const lb = await b.req("login", { token: tokenB, userAgent: SDK, protocol: "1.2" });
    assert.deepEqual(lb.room.participants.map(p => p.user).sort(), ["alice", "bob"]);
    const joined = await a.next("participant", d => d.action === "join");
    assert.deepEqual(joined.data, { id: lb.id, role: "presenter", user: "bob" });
    assert.ok(!b.saw("participant", d => d.action === "join"), "no join notification about oneself");

    // REST sees both participants.
    const listed = await mauth(svc, "GET", `/v1/rooms/${room}/participants`);
    assert.deepEqual(listed.json.map(p => p.user).sort(), ["alice", "bob"]);

    // publish → soac → ready; the others hear of the stream with its attributes.
    const pageA = await rtcPage(browser, svc);
    const pageB = await rtcPage(browser, svc);
    const pub = await publish(a, pageA, { label: "camera of alice" });
    const added = await b.next("stream", d => d.status === "add");
    assert.equal(added.id, pub.id);
    assert.equal(added.data.type, "forward");
    assert.equal(added.data.info.owner, la.id);
    assert.equal(added.data.info.type, "webrtc");
    assert.deepEqual(added.data.info.attributes, { label: "camera of alice" });
    const kinds = added.data.media.tracks.map(t => t.type).sort();
    assert.deepEqual(kinds, ["audio", "video"]);
    for (const t of added.data.media.tracks) {
      assert.equal(t.status, "active");
      assert.ok(t.id && t.format && t.format.codec, `track ${JSON.stringify(t)} has an id and a format`);
    }
    assert.ok(!a.saw("stream", d => d.status === "add"), "the publisher is not told of its own stream");

    // subscribe → soac → ready; Chromium decodes the video.
    const sub = await subscribe(b, pageB, added.data, ["audio", "video"]);
    const videoMid = sub.mids.find(m => m.type === "video").mid;
    const audioMid = sub.mids.find(m => m.type === "audio").mid;
    await eventually(async () => (await packets(pageB, sub.pc, videoMid)).frames > 10, 15000, "bob to decode alice's video");
    await eventually(async () => (await packets(pageB, sub.pc, audioMid)).packets > 10, 5000, "bob to receive alice's audio");

    // A second subscription on the same transport (SDK 5.x reuses connections): renegotiated
    // with another soac, the first keeps flowing.
    const sub2 = await subscribe(b, pageB, added.data, ["video"], { pc: sub.pc, transport: sub.transportId });
    await eventually(async () => (await packets(pageB, sub.pc, sub2.mids[0].mid)).frames > 10, 15000, "the second subscription's video");
    await b.req("unsubscribe", { id: sub2.id });

    // stream-control: the publisher pauses its video; everyone hears of it and it stops.
    assert.equal(await a.req("stream-control", { id: pub.id, operation: "pause", data: "video" }), undefined);
    for (const c of [a, b]) {
      const upd = await c.next("stream", d => d.status === "update" && d.id === pub.id);
      assert.deepEqual(upd.data, { field: "video.status", value: "inactive" });
    }
    await sleep(500);
    const paused = (await packets(pageB, sub.pc, videoMid)).packets;
    await sleep(1500);
    assert.ok((await packets(pageB, sub.pc, videoMid)).packets - paused <= 2, "no video while the publication is paused");
    assert.ok((await packets(pageB, sub.pc, audioMid)).packets > 0);
    // Only the publisher controls its stream.
    const notOwner = await b.refused("stream-control", { id: pub.id, operation: "play", data: "video" });
    assert.equal(notOwner.code, 1102);
    await a.req("stream-control", { id: pub.id, operation: "play", data: "video" });
    const played = await b.next("stream", d => d.status === "update" && d.id === pub.id);
    assert.deepEqual(played.data, { field: "video.status", value: "active" });
    const resumed = (await packets(pageB, sub.pc, videoMid)).frames;
    await eventually(async () => (await packets(pageB, sub.pc, videoMid)).frames > resumed + 10, 10000, "video to resume");

    // subscription-control: the subscriber pauses its own subscription's audio.
    await b.req("subscription-control", { id: sub.id, operation: "pause", data: "audio" });
    await sleep(500);
    const muted = (await packets(pageB, sub.pc, audioMid)).packets;
    await sleep(1500);
    assert.ok((await packets(pageB, sub.pc, audioMid)).packets - muted <= 2, "no audio while the subscription is paused");
    await b.req("subscription-control", { id: sub.id, operation: "play", data: "audio" });
    await eventually(async () => (await packets(pageB, sub.pc, audioMid)).packets > muted + 20, 10000, "audio to resume");
    // update (OWT's SubscriptionUpdate): a resolution or bitrate bounds the simulcast layer
    // served; a frame rate needs a transcoding, which only a new subscription gets; a
    // malformed one names the problem.
    assert.equal(await b.req("subscription-control", { id: sub.id, operation: "update", data: { video: { parameters: { resolution: { width: 160, height: 120 }, bitrate: 300 } } } }), undefined);
    const framerate = await b.refused("subscription-control", { id: sub.id, operation: "update", data: { video: { parameters: { framerate: 15 } } } });
    assert.equal(framerate.code, 2002);
    assert.match(framerate.description, /transcoding/);
    assert.equal((await b.refused("subscription-control", { id: sub.id, operation: "update", data: { parameters: {} } })).code, 1301);
    // querybwe: this room has no bandwidth adaptation, so there is no estimate to give.
    const bwe = await b.refused("subscription-control", { id: sub.id, operation: "querybwe" });
    assert.equal(bwe.code, 2002);
    assert.match(bwe.description, /enableBandwidthAdaptation/);
    assert.equal((await a.refused("subscription-control", { id: sub.id, operation: "pause", data: "video" })).code, 1001, "only the subscriber controls its subscription");

    // text: to everyone, and to one participant.
    await a.req("text", { to: "all", message: "hello, room" });
    assert.deepEqual(await b.next("text"), { from: la.id, to: "all", message: "hello, room" });
    await b.req("text", { to: la.id, message: "hi alice" });
    assert.deepEqual(await a.next("text"), { from: lb.id, to: "me", message: "hi alice" });
    assert.ok(!a.saw("text", d => d.message === "hello, room"), "the sender is not echoed");

    // refreshReconnectionTicket gives a new ticket.
    const ticket = await a.req("refreshReconnectionTicket");
    assert.equal(typeof ticket, "string");
    assert.notEqual(ticket, la.reconnectionTicket);

    // The connection drops; relogin on a new one resumes alice with her publication.
    a.close();
    await sleep(1000);
    const a2 = await portalClient(svc.portal);
    const stale = await a2.refused("relogin", la.reconnectionTicket);
    assert.equal(stale.code, 1101, "a superseded ticket is refused");
    const ticket2 = await a2.req("relogin", ticket);
    assert.equal(typeof ticket2, "string");
    assert.ok(!b.saw("participant", d => d.action === "leave"), "bob was not told alice left");
    assert.ok(!b.saw("stream", d => d.status === "remove"), "alice's stream did not end");
    const before = (await packets(pageB, sub.pc, videoMid)).frames;
    await eventually(async () => (await packets(pageB, sub.pc, videoMid)).frames > before + 10, 10000, "alice's video to keep flowing");
    // The resumed session answers as before: text reaches bob from the same participant.
    await a2.req("text", { to: "all", message: "back" });
    assert.deepEqual(await b.next("text"), { from: la.id, to: "all", message: "back" });
    assert.equal((await mauth(svc, "GET", `/v1/rooms/${room}/streams`)).json.length, 1);

    // unpublish ends the stream for everyone; logout ends alice.
    await a2.req("unpublish", { id: pub.id });
    assert.deepEqual(await b.next("stream", d => d.status === "remove"), { id: pub.id, status: "remove" });
    assert.equal(await a2.req("logout"), undefined);
    assert.deepEqual(await b.next("participant", d => d.action === "leave"), { action: "leave", data: la.id });
    assert.equal((await a2.refused("text", { to: "all", message: "gone" })).code, 1101, "logged out: requests are refused");
    const left = await mauth(svc, "GET", `/v1/rooms/${room}/participants`);
    assert.deepEqual(left.json.map(p => p.user), ["bob"]);
    a2.close();
    b.close();
  } finally {
    await browser.close();
    await svc.stop();
  }
});

test("a client that does not come back within the reconnection timeout is cleaned up", { timeout: 60000 }, async () => {
  const svc = await startService({ extraPortal: "reconnection_timeout = 2" });
  const browser = await launchBrowser();
  try {
    const room = await createRoom(svc);
    const [tokenA, tokenB] = [await newToken(svc, room, "alice"), await newToken(svc, room, "bob")];
    const a = await portalClient(svc.portal);
    const la = await a.req("login", { token: tokenA, userAgent: SDK, protocol: "1.2" });
    const b = await portalClient(svc.portal);
    await b.req("login", { token: tokenB, userAgent: SDK, protocol: "1.2" });
    const page = await rtcPage(browser, svc);
    const pub = await publish(a, page, { label: "cam" });
    await b.next("stream", d => d.status === "add" && d.id === pub.id);

    const lost = Date.now();
    a.close();
    assert.deepEqual(await b.next("stream", d => d.status === "remove", 8000), { id: pub.id, status: "remove" });
    assert.deepEqual(await b.next("participant", d => d.action === "leave", 8000), { action: "leave", data: la.id });
    const waited = Date.now() - lost;
    assert.ok(waited >= 1500, `cleaned up after the 2 s timeout, not before (${waited} ms)`);
    assert.deepEqual((await mauth(svc, "GET", `/v1/rooms/${room}/streams`)).json, []);
    const late = await portalClient(svc.portal);
    assert.equal((await late.refused("relogin", la.reconnectionTicket)).code, 1101, "too late to relogin");
    late.close();
    b.close();
  } finally {
    await browser.close();
    await svc.stop();
  }
});
