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

// Runs `body` with the service reachable from a network namespace (its page at `inside`),
// a browser in the namespace and one on the host, and removes them all after.
async function acrossNamespace(body) {
  const net = netns();
  let svc, host, inside;
  try {
    svc = await startService({ interfaces: ["lo", net.host], apiAddress: "0.0.0.0" });
    const room = `fec-${Math.random().toString(36).slice(2, 8)}`;
    const port = new URL(svc.api).port;
    host = await launchBrowser();
    inside = await launchBrowser(net.chromium, { secureOrigin: `http://${net.hostIp}:${port}` });
    await body({ net, svc, room, host, inside, insidePage: `http://${net.hostIp}:${port}/` });
  } finally {
    await inside?.close();
    await host?.close();
    await svc?.stop();
    net.remove();
  }
}

test("lost video packets of a publisher are recovered from its ULPFEC", () => acrossNamespace(async ({ net, svc, room, host, inside, insidePage }) => {
    const pub = await inside.newPage();
    pub.on("pageerror", e => console.error("page error:", e));
    await pub.goto(insidePage);
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
}));

// The other way: a player whose path loses 5 % of what reaches it, with NACK turned off
// (so only FEC can repair a loss: without it a lost packet leaves its frame undecodable
// until Chromium asks for a keyframe, three seconds later). It offers video RED and
// ULPFEC; the server sends it its video inside RED with FEC packets of its own, sized by
// the loss its receiver reports show. (Chromium's getStats counts no ULPFEC for video:
// what shows that the FEC works is that the player keeps decoding through its losses.)
test("a player whose path loses packets gets ULPFEC of its own", () => acrossNamespace(async ({ net, svc, room, host, inside, insidePage }) => {
    const pub = await host.newPage();
    pub.on("pageerror", e => console.error("page error:", e));
    await pub.goto(svc.api + "/");
    const { stream } = await pub.evaluate((room) => window.sy.publish(room, "alice", { codec: "vp8" }).then(p => ({ stream: p.stream })), room);
    const player = await inside.newPage();
    player.on("pageerror", e => console.error("page error:", e));
    await player.goto(insidePage);
    await player.evaluate(([room, s]) => window.sy.play(room, "bob", s, "", { fecOnly: true }).then(() => true), [room, stream]);
    await eventually(async () => (await videoIn(player)).frames > 30, 30000, "the player decoding");

    net.lose(5, true);
    const t0 = Date.now();
    const sent0 = await metric(svc, "fec_sent_total");
    // The first receiver report showing the loss turns protection on.
    await eventually(async () => (await metric(svc, "fec_sent_total")) - sent0 >= 20, 30000, "20 FEC packets sent");
    const before = await videoIn(player);
    await sleep(20000);
    const after = await videoIn(player);
    const dropped = net.lose();
    const sent = (await metric(svc, "fec_sent_total")) - sent0;
    const d = (k) => after[k] - before[k];
    console.log(`after ${((Date.now() - t0) / 1000).toFixed(0)} s of 5 % loss toward the player (${dropped} packets dropped, ${sent} FEC packets sent); over the last 20 s: ${d("packets")} packets, ${d("lost")} lost, ${d("nacks")} NACKs, ${d("frames")} frames, ${d("freezes")} freezes (${d("frozen").toFixed(1)} s), ${d("plis")} PLIs`);
    assert.ok(sent > 0);
    assert.equal(after.nacks, 0, "the player does not NACK");
    assert.ok(d("lost") >= 20, `the FEC player's path lost ${d("lost")} packets`);
    // Recovered, they cost no frame: unrecovered, each would freeze the picture for
    // seconds (as it did when FEC packets went inside frames: 21–56 frames in 20 s).
    assert.ok(d("frames") >= 100, `the FEC player decoded ${d("frames")} frames in 20 s`);
}));
