// Video RED and ULPFEC from a real browser. A Chromium publisher inside a network
// namespace loses 5 % of what it sends at random (nftables) and protects its VP8 video by
// ULPFEC inside RED (it takes the server's answer without NACK for video: with NACK,
// Chromium adds FEC only on paths with a round trip over 20 ms, which a veth pair is not).
// The dataplane unwraps RED, recovers lost packets from the FEC packets at the
// publisher's core, and a player on the host keeps decoding plain VP8.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startService, launchBrowser, eventually, metricValue, sleep, netns } from "./common.mjs";

const videoIn = (page) => page.evaluate(() => window.sy.videoIn(0));
const metric = (svc, name) => metricValue(svc.metrics, `switchyard_dataplane_${name}`);

test("lost video packets of a publisher are recovered from its ULPFEC", async () => {
  const net = netns();
  let svc, host, inside;
  try {
    svc = await startService({ interfaces: ["lo", net.host], apiAddress: "0.0.0.0" });
    const room = `fec-${Math.random().toString(36).slice(2, 8)}`;
    const port = new URL(svc.api).port;
    inside = await launchBrowser(net.chromium, { secureOrigin: `http://${net.hostIp}:${port}` });
    host = await launchBrowser();

    const pub = await inside.newPage();
    pub.on("pageerror", e => console.error("page error:", e));
    await pub.goto(`http://${net.hostIp}:${port}/`);
    const { stream } = await pub.evaluate((room) => window.sy.publish(room, "alice", { codec: "vp8", fecOnly: true }).then(p => ({ stream: p.stream })), room);
    const player = await host.newPage();
    await player.goto(svc.api + "/");
    await player.evaluate(([room, s]) => window.sy.play(room, "bob", s).then(() => true), [room, stream]);
    await eventually(async () => (await videoIn(player)).frames > 30, 30000, "the player decoding");

    net.lose(5);
    const t0 = Date.now();
    const start = { recovered: await metric(svc, "fec_recovered_total"), fec: await metric(svc, "fec_received_total") };
    // Chromium raises its FEC rate from the loss the server's receiver reports say.
    await eventually(async () => (await metric(svc, "fec_recovered_total")) - start.recovered >= 20, 90000, "20 packets recovered from ULPFEC");
    const before = await videoIn(player);
    await sleep(10000);
    const after = await videoIn(player);
    const dropped = net.lose();
    const fec = (await metric(svc, "fec_received_total")) - start.fec;
    const recovered = (await metric(svc, "fec_recovered_total")) - start.recovered;
    const malformed = await metricValue(svc.metrics, "switchyard_dataplane_drops_total", 'reason="malformed"');
    // A recovered packet that came back with another payload type than its codec's
    // would be dropped as a codec mismatch.
    const mismatched = await metricValue(svc.metrics, "switchyard_dataplane_drops_total", 'reason="codec_mismatch"');
    const lost = await player.evaluate(async () => { for (const s of (await window.sy.pcs[0].getStats()).values()) if (s.type === "inbound-rtp" && s.kind === "video") return s.packetsLost; return -1; });
    console.log(`after ${((Date.now() - t0) / 1000).toFixed(0)} s of 5 % loss: ${dropped} packets dropped on the way in, ${fec} FEC packets received, ${recovered} packets recovered; player decoded ${after.frames - before.frames} frames in 10 s (${after.freezes - before.freezes} freezes), lost ${lost} video packets in all; ${mismatched} codec mismatches`);
    assert.ok(fec > 0);
    // Every FEC packet was taken (a misread header would count as malformed).
    assert.equal(malformed, 0);
    assert.equal(mismatched, 0);
    // The player goes on decoding what the server forwards, recovered packets and all.
    assert.ok(after.frames - before.frames > 50, `player decoded ${after.frames - before.frames} frames in 10 s`);
    assert.ok(after.width > 0);
  } finally {
    await inside?.close();
    await host?.close();
    await svc?.stop();
    net.remove();
  }
});
