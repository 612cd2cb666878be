// One page publishes camera and microphone over WHIP; two pages play it over WHEP.
// Both players must decode video and receive audio; the REST API lists the publication.
// Then, with 5 % of the publisher's packets dropped on their way in (the dataplane's test
// loss hook), the players keep decoding and the publisher's NACK/RTX counters move.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startService, launchBrowser, openPage, statSum, eventually, mauth, metricValue, sleep } from "./common.mjs";

async function publishAndPlay(svc, browser, room) {
  const pub = await openPage(browser, svc);
  const p = await pub.evaluate((room) => window.sy.publish(room, "alice").then(p => ({ stream: p.stream, room: p.room })), room);
  const players = [];
  for (const name of ["bob", "carol"]) {
    const page = await openPage(browser, svc);
    await page.evaluate(([room, name, s]) => window.sy.play(room, name, s).then(() => true), [room, name, p.stream]);
    players.push(page);
  }
  return { pub, players, ...p };
}

test("two WHEP players decode a WHIP publication", async () => {
  const svc = await startService();
  const browser = await launchBrowser();
  try {
    const { players, stream, room } = await publishAndPlay(svc, browser, "e2e-plain");
    for (const page of players) {
      await eventually(async () => (await statSum(page, "inbound-rtp", "video", "framesDecoded")) > 30, 15000, "video frames decoded");
      await eventually(async () => (await statSum(page, "inbound-rtp", "audio", "packetsReceived")) > 50, 15000, "audio packets");
    }
    // The management API lists the WHIP publication like any stream, in OWT's shape.
    const streams = await mauth(svc, "GET", `/v1/rooms/${room}/streams`);
    assert.equal(streams.status, 200, streams.text);
    const s = streams.json.find(x => x.id === stream);
    assert.ok(s, `stream ${stream} not listed: ${streams.text}`);
    assert.equal(s.type, "forward");
    assert.equal(s.info.type, "webrtc");
    assert.equal(s.media.audio.format.codec, "opus");
    assert.ok(["vp8", "vp9", "h264", "av1"].includes(s.media.video.format.codec), s.media.video.format.codec);
    const participants = await mauth(svc, "GET", `/v1/rooms/${room}/participants`);
    assert.equal(participants.json.length, 3, participants.text);
    // Dataplane metrics count the traffic per core.
    assert.ok(await metricValue(svc.metrics, "switchyard_dataplane_rtp_forwarded_total") > 100);
    assert.ok(await metricValue(svc.metrics, "switchyard_dataplane_packets_in_total") > 100);
    assert.equal(await metricValue(svc.metrics, "switchyard_dataplane_peers"), 3);
    // Added latency is sampled from the kernel's receive stamps: some samples, each well
    // under a second on a local machine.
    const lat = "switchyard_dataplane_forward_latency_seconds";
    const samples = await metricValue(svc.metrics, lat + "_count");
    assert.ok(samples > 10, `${samples} latency samples`);
    const mean = (await metricValue(svc.metrics, lat + "_sum")) / samples;
    assert.ok(mean > 0 && mean < 0.5, `mean added latency ${mean} s`);
  } finally {
    await browser.close();
    await svc.stop();
  }
});

test("under 5 % upstream loss the players keep decoding and the publisher retransmits", async () => {
  const svc = await startService({ extraDataplane: "test_ingress_loss_percent = 5.0" });
  const browser = await launchBrowser();
  try {
    const { pub, players } = await publishAndPlay(svc, browser, "e2e-loss");
    for (const page of players) {
      await eventually(async () => (await statSum(page, "inbound-rtp", "video", "framesDecoded")) > 10, 15000, "first frames under loss");
    }
    const before = await Promise.all(players.map(p => statSum(p, "inbound-rtp", "video", "framesDecoded")));
    await sleep(4000);
    const after = await Promise.all(players.map(p => statSum(p, "inbound-rtp", "video", "framesDecoded")));
    for (let i = 0; i < players.length; i++) {
      assert.ok(after[i] - before[i] > 30, `player ${i} decoded only ${after[i] - before[i]} frames in 4 s under loss`);
    }
    const nacks = await statSum(pub, "outbound-rtp", "video", "nackCount");
    const rtx = await statSum(pub, "outbound-rtp", "video", "retransmittedPacketsSent");
    assert.ok(nacks > 0, `publisher received no NACK (nackCount ${nacks})`);
    assert.ok(rtx > 0, `publisher retransmitted nothing (retransmittedPacketsSent ${rtx})`);
    assert.ok(await metricValue(svc.metrics, "switchyard_dataplane_drops_total", 'reason="test_loss"') > 10);
    assert.ok(await metricValue(svc.metrics, "switchyard_dataplane_nacks_sent_total") > 0);
  } finally {
    await browser.close();
    await svc.stop();
  }
});
