// Simulcast and bandwidth adaptation in real browsers. A Chromium publisher sends three
// VP8 layers over WHIP into a room with `enableBandwidthAdaptation`; three WHEP players
// watch it: A runs inside a network namespace whose path from the server is throttled to
// 400 kbit/s, B and C on the host, C asking for the middle layer (`?rid=h`). A converges
// to the lowest layer, B gets the highest, C the middle one; all keep decoding, and the
// layer switches cause no freeze over 500 ms (Chromium's freezeCount and
// totalFreezesDuration, polled to time each freeze). The publisher's camera plays a
// detailed test pattern, so its middle layer takes more than A's path carries. Then A's throttle is lifted and A climbs to the top, again
// without a freeze. A portal client (OWT's protocol) sees the layers as rid tracks,
// subscribes from the lowest one, reads the bandwidth estimate (querybwe) and raises its
// limit with subscription-control update.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startService, launchBrowser, eventually, mauth, metricValue, sleep, netns, newToken, portalClient, rtcPage, packets, SDK, y4m, watchFreezes, longestFreeze } from "./common.mjs";

const videoIn = (page) => page.evaluate(() => window.sy.videoIn(0));

test("each player gets the simulcast layer its path carries, switching without freezes", async () => {
  const net = netns();
  let svc, host, inside;
  try {
    svc = await startService({ interfaces: ["lo", net.host], apiAddress: "0.0.0.0" });
    const room = `simulcast-${Math.random().toString(36).slice(2, 8)}`;
    const created = await mauth(svc, "POST", "/v1/rooms", { name: room, options: { enableBandwidthAdaptation: true } });
    assert.equal(created.status, 200, created.text);
    // 400 kbit/s: the middle layer (355–400 kbit/s, more with audio and the selector's
    // headroom) does not fit, and the lowest one with audio (about 250 kbit/s on the wire)
    // leaves the path room to drain. At 300 kbit/s they took 83 % of it: a keyframe took a
    // third of the shaper's queue, the start-up's keyframes and str0m's start-up probes
    // filled it before the first receiver report (first round trips 87–284 ms), and the
    // media alone needed seconds to drain it, resends of what it dropped keeping it full.
    // A froze on both attempts of one CI; here in 0 of 14 runs of that build, 6 of 11 with
    // its receive batching off, 1 of 7 with padding that waits for the first report.
    const shaper = net.throttle(400);
    console.log(`player A's path: 400 kbit/s (${shaper})`);
    // The publisher's camera: a moving test pattern with enough detail that each layer
    // takes the bitrate Chromium aims for (its blank fake camera made the middle layer as
    // small as 180 kbit/s, which such a path carries: A went there rightly).
    host = await launchBrowser(undefined, { videoFile: y4m("testsrc2", "", { width: 960, height: 540, source: "testsrc2" }) });
    inside = await launchBrowser(net.chromium);

    const pub = await host.newPage();
    pub.on("pageerror", e => console.error("page error:", e));
    await pub.goto(svc.api + "/");
    const { stream } = await pub.evaluate((room) => window.sy.publish(room, "alice", { simulcast: true, video: { width: 960, height: 540, frameRate: 15 } }).then(p => ({ stream: p.stream })), room);
    // Keep each layer's size whatever the publisher's CPU: frame rate gives instead (15
    // frames a second to start with: three encoders and four decoders share two cores).
    // The top layer at 700 kbit/s at most: enough above the middle one, and cheap enough
    // for this machine's decoders and for the players' estimates to reach.
    await pub.evaluate(async () => {
      const s = window.sy.pcs[0].getSenders().find(x => x.track && x.track.kind === "video");
      const p = s.getParameters(); p.degradationPreference = "maintain-resolution";
      for (const e of p.encodings) if (e.rid === "f") e.maxBitrate = 700000;
      await s.setParameters(p);
    });
    const layers = async () => (await pub.evaluate(() => window.sy.videoOut(0))).filter(o => o.width > 0).map(o => o.width).sort((x, y) => x - y);
    const widths = await eventually(async () => { const w = await layers(); return w.length === 3 ? w : false; }, 20000, "the publisher encoding three layers");
    console.log("layer widths:", widths);

    const port = new URL(svc.api).port;
    const a = await inside.newPage();
    await a.goto(`http://${net.hostIp}:${port}/`);
    const b = await host.newPage();
    await b.goto(svc.api + "/");
    const c = await host.newPage();
    await c.goto(svc.api + "/");
    for (const [page, who, query] of [[a, "player-a", ""], [b, "player-b", ""], [c, "player-c", "rid=h"]]) {
      await page.evaluate(([room, who, s, q]) => window.sy.play(room, who, s, q).then(() => true), [room, who, stream, query]);
      await watchFreezes(page, 0);
    }
    // A malformed layer request is refused with the reason.
    const bad = await c.evaluate(async ([room, s]) => {
      const t = await (await fetch("/demo/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ room, user: "x", role: "viewer" }) })).json();
      const r = await fetch(`/v1/whep/${t.room}/${s}?maxBitrate=lots`, { method: "POST", headers: { "content-type": "application/sdp", authorization: "Bearer " + t.token }, body: "v=0\r\n" });
      return { status: r.status, body: await r.text() };
    }, [room, stream]);
    assert.equal(bad.status, 400, bad.body);
    assert.match(bad.body, /maxBitrate/);

    // Convergence: B on the top layer, C on the middle one, A on the lowest.
    await eventually(async () => (await videoIn(b)).width === widths[2], 90000, "player B on the top layer");
    await eventually(async () => (await videoIn(c)).width === widths[1], 30000, "player C on the middle layer");
    await eventually(async () => { const s = await videoIn(a); return s.width === widths[0] && s.frames > 30; }, 60000, "player A on the lowest layer");
    // They stay there and keep decoding.
    const before = await Promise.all([a, b, c].map(videoIn));
    // B climbed from the estimator's starting layer to the top: every switch on the way
    // was seamless (no freeze over 500 ms, the bar; Chromium counts a freeze from
    // about 200 ms at 15 frames a second).
    const climbB = await longestFreeze(b, 0, { reset: true });
    assert.ok(climbB < 0.5, `player B froze ${climbB} s at once while climbing (${before[1].freezes} freezes, ${before[1].frozen} s in all)`);
    for (const page of [a, c]) await longestFreeze(page, 0, { reset: true });
    await sleep(8000);
    const after = await Promise.all([a, b, c].map(videoIn));
    const expected = [widths[0], widths[2], widths[1]];
    // Where a lossy run lost its packets: the shaper's drops and queue, the server's drops.
    console.log(`player A's shaper: ${net.shaperStats()}`);
    const drops = (await (await fetch(svc.metrics)).text()).split("\n").filter(l => l.startsWith("switchyard_dataplane_drops_total{") && !l.endsWith(" 0"));
    console.log(`server drops: ${drops.join(", ") || "none"}; padding stopped for a queue: ${await metricValue(svc.metrics, "switchyard_dataplane_padding_queue_stops_total")}`);
    for (const [i, name] of ["A", "B", "C"].entries()) {
      console.log(`player ${name}: ${JSON.stringify(after[i])}`);
      if (i > 0 && after[i].width !== expected[i]) {
        // B and C have wide paths: their estimate can dip for a moment when the browsers
        // load both CPUs of the test machine and packets reach the players late (read as
        // congestion). Then they go back to their layer, without a freeze (checked below).
        console.log(`player ${name} is on ${after[i].width} for now; waiting for its layer`);
        await eventually(async () => (await videoIn([a, b, c][i])).width === expected[i], 20000, `player ${name} back on its layer`);
      } else {
        assert.equal(after[i].width, expected[i], `player ${name} left its layer`);
      }
      assert.ok(after[i].frames - before[i].frames > 40, `player ${name} decoded ${after[i].frames - before[i].frames} frames in 8 s`);
      const longest = await longestFreeze([a, b, c][i], 0);
      assert.ok(longest < 0.5, `player ${name} froze ${longest} s at once while steady (${after[i].frozen - before[i].frozen} s in all)`);
    }
    const switched = await metricValue(svc.metrics, "switchyard_dataplane_layer_switches_total");
    assert.ok(switched >= 2, `${switched} layer switches counted`);
    const estimates = await metricValue(svc.metrics, "switchyard_dataplane_bandwidth_estimate_bps_count");
    assert.ok(estimates > 10, `${estimates} bandwidth estimates counted`);

    // The portal: the layers are listed as tracks with their rid, a subscription from one
    // gets that layer, querybwe gives the estimate, update changes the limit.
    const d = await portalClient(svc.portal);
    const roomId = created.json._id ?? created.json.id;
    const login = await d.req("login", { token: await newToken(svc, roomId, "player-d", "viewer"), userAgent: SDK, protocol: "1.2" });
    const listed = login.room.streams.find(x => x.id === stream);
    assert.deepEqual(listed.media.tracks.filter(t => t.type === "video").map(t => t.rid ?? null), [null, "q", "h", "f"]);
    const dPage = await rtcPage(host, svc);
    const offer = await dPage.evaluate(() => window.rtc.receiveOffer(undefined, ["video"]));
    const mid = offer.mids[0].mid;
    const sub = await d.req("subscribe", { media: { tracks: [{ type: "video", mid, from: `${stream}-video-q` }] }, transport: { type: "webrtc", id: null } });
    await d.req("soac", { id: sub.transportId, signaling: { type: "offer", sdp: offer.sdp } });
    const answer = await d.next("progress", x => x.id === sub.transportId && x.status === "soac");
    await dPage.evaluate(([i, sdp]) => window.rtc.answer(i, sdp), [offer.pc, answer.data.sdp]);
    await eventually(async () => { const v = await packets(dPage, offer.pc, mid); return v.width === widths[0] && v.frames > 20; }, 30000, "player D on the layer it named");
    const bwe = await d.req("subscription-control", { id: sub.id, operation: "querybwe" });
    assert.ok(bwe.estimatedBitrate > 100000, JSON.stringify(bwe));
    await d.req("subscription-control", { id: sub.id, operation: "update", data: { video: { parameters: { resolution: { width: widths[1], height: 1080 } } } } });
    await eventually(async () => {
      const v = await packets(dPage, offer.pc, mid);
      const e = await d.req("subscription-control", { id: sub.id, operation: "querybwe" });
      console.log(`player D: ${v.width} wide, estimate ${e.estimatedBitrate}`);
      return v.width === widths[1];
    }, 60000, "player D on the largest layer within its new limit");
    d.close();
    await dPage.close();

    // A's path widens (to 100 Mbit/s, nothing queued is lost): A climbs to the top layer, its switches without a freeze.
    net.widen(100000);
    const lifted = await videoIn(a);
    await longestFreeze(a, 0, { reset: true });
    // A climbs when its estimate does: a probe, or padding while the estimate climbs. On
    // this two-CPU machine the estimate often stalls near 700 kbit/s at first (packets
    // reach the loaded browser late), and a stalled path is padded again only for 3 s
    // after each rest (4 s doubling to 32 s). With probes asked for whenever the
    // estimate is below what the up switch needs: 8.0–10.5 s in 11 of 13 runs, 69 s in
    // two (10–57 s in six runs before, once past 90).
    const widened = Date.now();
    await eventually(async () => (await videoIn(a)).width === widths[2], 150000, "player A on the top layer once its path is wide");
    const took = (Date.now() - widened) / 1000;
    await sleep(2000);
    const climbed = await videoIn(a);
    console.log(`player A on the top layer ${took.toFixed(1)} s after its path widened: ${JSON.stringify(climbed)}`);
    assert.ok(climbed.frames > lifted.frames + 30, "player A kept decoding while climbing");
    const climbA = await longestFreeze(a, 0);
    assert.ok(climbA < 0.5, `player A froze ${climbA} s at once while climbing (${climbed.frozen - lifted.frozen} s in all)`);
  } finally {
    if (inside) await inside.close();
    if (host) await host.close();
    if (svc) await svc.stop();
    net.remove();
  }
});
