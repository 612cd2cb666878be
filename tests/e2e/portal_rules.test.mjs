// What the portal enforces: the token's role, the room's participantLimit and
// inputLimit; and what the management API sees and controls of portal participants
// (list, PATCH permissions, DELETE kicks).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  startService, launchBrowser, createRoom, newToken, portalClient, rtcPage, mauth, SDK,
  portalPublish,
} from "./common.mjs";

const tracks = (...kinds) => kinds.map((type, i) => ({ type, mid: String(i), source: type === "audio" ? "mic" : "camera" }));
const publishReq = (...kinds) => ({ media: { tracks: tracks(...kinds) }, transport: { type: "webrtc", id: null } });

async function join(svc, room, user, role) {
  const c = await portalClient(svc.portal);
  c.me = await c.req("login", { token: await newToken(svc, room, user, role), userAgent: SDK, protocol: "1.2" });
  return c;
}

test("roles, participant and input limits, and REST control of portal participants", { timeout: 90000 }, async () => {
  const svc = await startService();
  const browser = await launchBrowser();
  try {
    // Roles.
    const room = await createRoom(svc);
    const viewer = await join(svc, room, "vera", "viewer");
    assert.deepEqual(viewer.me.permission.publish, { audio: false, video: false, data: false });
    const v = await viewer.refused("publish", publishReq("audio", "video"));
    assert.equal(v.code, 1102);
    assert.match(v.description, /viewer.*may not publish/);

    const aop = await join(svc, room, "otto", "audio_only_presenter");
    assert.deepEqual(aop.me.permission.publish, { audio: true, video: false, data: false });
    const noVideo = await aop.refused("publish", publishReq("audio", "video"));
    assert.equal(noVideo.code, 1102);
    assert.match(noVideo.description, /may not publish video/);
    const page = await rtcPage(browser, svc);
    const audioOnly = await portalPublish(aop, page, { label: "otto" }, ["audio"]);
    const added = await viewer.next("stream", d => d.status === "add" && d.id === audioOnly.id);
    assert.deepEqual(added.data.media.tracks.map(t => t.type), ["audio"]);

    // participantLimit: the third participant is refused, the socket stays usable.
    const small = await createRoom(svc, { participantLimit: 2 });
    const p1 = await join(svc, small, "p1", "presenter");
    const p2 = await join(svc, small, "p2", "presenter");
    const p3 = await portalClient(svc.portal);
    const full = await p3.refused("login", { token: await newToken(svc, small, "p3"), userAgent: SDK, protocol: "1.2" });
    assert.equal(full.code, 1102);
    assert.match(full.description, /limit/i);
    await p2.req("logout");
    await p1.next("participant", d => d.action === "leave");
    const again = await p3.req("login", { token: await newToken(svc, small, "p3"), userAgent: SDK, protocol: "1.2" });
    assert.equal(again.user, "p3", "once there is room, the same socket logs in");

    // inputLimit: one stream; a second publication is refused up front.
    const one = await createRoom(svc, { inputLimit: 1 });
    const i1 = await join(svc, one, "i1", "presenter");
    const i2 = await join(svc, one, "i2", "presenter");
    await portalPublish(i1, await rtcPage(browser, svc), {});
    const over = await i2.refused("publish", publishReq("audio", "video"));
    assert.equal(over.code, 1102);
    assert.match(over.description, /input limit \(1\)/);

    // REST: list, PATCH permissions, DELETE kicks.
    const bob = await join(svc, room, "bob", "presenter");
    const listed = (await mauth(svc, "GET", `/v1/rooms/${room}/participants`)).json;
    assert.deepEqual(listed.map(p => p.user).sort(), ["bob", "otto", "vera"]);
    const patched = await mauth(svc, "PATCH", `/v1/rooms/${room}/participants/${bob.me.id}`, [{ op: "replace", path: "/permission/publish/video", value: false }]);
    assert.equal(patched.status, 200, patched.text);
    const denied = await bob.refused("publish", publishReq("video"));
    assert.equal(denied.code, 1102, "the patched permission applies to the connected participant");
    await bob.req("publish", publishReq("audio"));

    const disconnected = new Promise(r => aop.socket.once("disconnect", r));
    assert.equal((await mauth(svc, "DELETE", `/v1/rooms/${room}/participants/${aop.me.id}`)).status, 200);
    assert.equal(await aop.next("drop"), null, "the kicked participant is told");
    await disconnected;
    assert.deepEqual(await viewer.next("stream", d => d.status === "remove"), { id: audioOnly.id, status: "remove" });
    assert.deepEqual(await viewer.next("participant", d => d.action === "leave"), { action: "leave", data: aop.me.id });
    const after = (await mauth(svc, "GET", `/v1/rooms/${room}/participants`)).json;
    assert.deepEqual(after.map(p => p.user).sort(), ["bob", "vera"]);
    assert.deepEqual((await mauth(svc, "GET", `/v1/rooms/${room}/streams`)).json, []);
    for (const c of [viewer, p1, p3, i1, i2, bob]) c.close();
  } finally {
    await browser.close();
    await svc.stop();
  }
});
