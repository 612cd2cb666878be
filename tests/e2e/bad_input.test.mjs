// Garbage UDP, malformed STUN/DTLS/RTP/RTCP and malformed SDP offers thrown at a running
// service: the datagrams are dropped and counted, the offers refused with a 4xx and a
// reason, and a session already playing keeps its media flowing throughout.
import { test } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { startService, launchBrowser, openPage, statSum, eventually, metricValue, sleep } from "./common.mjs";

function garbage() {
  const rtpish = Buffer.alloc(60, 7); rtpish[0] = 0x80; rtpish[1] = 96;           // RTP with no valid SRTP tag
  const rtcp = Buffer.from([0x80, 200, 0, 6, 1, 2, 3, 4]);                          // truncated sender report
  const stun = Buffer.from([0x00, 0x01, 0x00, 0x10, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x00, 0x06, 0x00, 0x40]); // USERNAME longer than the message
  const stunBadUser = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42]), Buffer.alloc(12, 9), Buffer.from([0x00, 0x06, 0x00, 0x08]), Buffer.from("nobody:x")]);
  const dtls = Buffer.from([22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2]);      // DTLS record, nonsense inside
  return [Buffer.alloc(0), Buffer.from("hello world"), Buffer.alloc(1500, 0xff), rtpish, rtcp, stun, stunBadUser, dtls, Buffer.from([0x80])];
}

test("garbage datagrams and bad offers are refused while a session keeps playing", async () => {
  const svc = await startService({ cores: 1 });
  const browser = await launchBrowser();
  try {
    const pub = await openPage(browser, svc);
    const p = await pub.evaluate(() => window.sy.publish("e2e-garbage", "alice").then(p => ({ stream: p.stream, room: p.room })));
    const player = await openPage(browser, svc);
    await player.evaluate((s) => window.sy.play("e2e-garbage", "bob", s).then(() => true), p.stream);
    await eventually(async () => (await statSum(player, "inbound-rtp", "video", "framesDecoded")) > 10, 15000, "playback");
    const framesBefore = await statSum(player, "inbound-rtp", "video", "framesDecoded");

    // 1. Garbage at the media port, from a stranger's socket.
    const dpPort = await mediaPort(svc);
    const sock = dgram.createSocket("udp4");
    const dropsBefore = await metricValue(svc.metrics, "switchyard_dataplane_drops_total");
    let sent = 0;
    for (let round = 0; round < 50; round++) {
      for (const g of garbage()) {
        await new Promise(r => sock.send(g, dpPort, "127.0.0.1", r));
        sent++;
      }
    }
    sock.close();
    await sleep(500);
    const dropsAfter = await metricValue(svc.metrics, "switchyard_dataplane_drops_total");
    assert.ok(dropsAfter - dropsBefore >= sent - 50, `only ${dropsAfter - dropsBefore} of ${sent} garbage datagrams counted as dropped`);

    // 2. Malformed SDP offers over WHIP and WHEP: a 4xx with a reason each.
    const offers = ["", "hello", "v=0\r\n", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF\r\na=mid:0\r\n", "\u0000\u0001binary"];
    for (const [i, sdp] of offers.entries()) {
      const { token, room } = await (await fetch(svc.api + "/demo/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ room: "e2e-garbage", user: `bad${i}`, role: "presenter" }) })).json();
      const url = i % 2 === 0 ? `/v1/whip/${room}` : `/v1/whep/${room}/${p.stream}`;
      const r = await fetch(svc.api + url, { method: "POST", headers: { "content-type": "application/sdp", authorization: `Bearer ${token}` }, body: sdp });
      const body = await r.text();
      assert.ok(r.status >= 400 && r.status < 500, `${url} with ${JSON.stringify(sdp)}: ${r.status} ${body}`);
      const err = JSON.parse(body).error;
      assert.ok(err.message.length > 5, body);
    }
    // A wrong content type, and no token at all.
    const r415 = await fetch(svc.api + `/v1/whip/${p.room}`, { method: "POST", headers: { "content-type": "text/plain", authorization: "Bearer x" }, body: "v=0" });
    assert.equal(r415.status, 415);
    const r401 = await fetch(svc.api + `/v1/whip/${p.room}`, { method: "POST", headers: { "content-type": "application/sdp" }, body: "v=0\r\n" });
    assert.equal(r401.status, 401);

    // 3. The session played on through all of it.
    await sleep(2000);
    const framesAfter = await statSum(player, "inbound-rtp", "video", "framesDecoded");
    assert.ok(framesAfter - framesBefore > 40, `the player decoded only ${framesAfter - framesBefore} frames meanwhile`);
    assert.equal(await metricValue(svc.metrics, "switchyard_dataplane_peers"), 2, "no peer was created or lost by the bad input");
  } finally {
    await browser.close();
    await svc.stop();
  }
});

async function mediaPort(svc) {
  const fs = await import("node:fs");
  const cfg = fs.readFileSync(svc.dir + "/switchyard.toml", "utf8");
  return Number(/minport = (\d+)/.exec(cfg)[1]);
}
