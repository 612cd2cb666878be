// The mixer (MCU) in real browsers: four Chromium publishers in one room, each with a
// fake camera of one solid colour and a fake microphone of one tone. The room's default
// view ("common": 640×480, fluid layout) mixes them into its mixed stream. A viewer
// playing it over WHEP decodes 640×480 with the four colours in the four regions the
// mixed stream's layout reports (pixels sampled from a canvas), and hears the four
// tones (an FFT of what it plays); the first publisher playing the same mixed stream
// hears the other three tones but not its own (its mix-minus). Unmixing a stream through
// the management API takes it out of the layout; mixing it again puts it back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startService, launchBrowser, eventually, sleep, wav, y4m, mauth } from "./common.mjs";

const INPUTS = [
  { colour: "red", rgb: [255, 0, 0], hz: 400 },
  { colour: "lime", rgb: [0, 255, 0], hz: 700 },
  { colour: "blue", rgb: [0, 0, 255], hz: 1000 },
  { colour: "yellow", rgb: [255, 255, 0], hz: 1300 },
];

// In the page: the colour at (x, y) of the video playing `id`, and the level (dB above
// the spectrum's median) of each frequency in what it plays, averaged over `ms`.
async function sample(page, id, points) {
  return page.evaluate(([id, points]) => {
    const v = document.getElementById("v-" + id);
    const c = document.createElement("canvas");
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext("2d");
    g.drawImage(v, 0, 0);
    return points.map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));
  }, [id, points]);
}

async function toneLevels(page, id, freqs, ms) {
  return page.evaluate(async ([id, freqs, ms]) => {
    const v = document.getElementById("v-" + id);
    const ctx = new AudioContext({ sampleRate: 48000 });
    const src = ctx.createMediaStreamSource(v.srcObject);
    const an = ctx.createAnalyser();
    an.fftSize = 16384;
    an.smoothingTimeConstant = 0;
    src.connect(an);
    const bins = new Float32Array(an.frequencyBinCount);
    const sum = new Float64Array(an.frequencyBinCount);
    let n = 0;
    const end = performance.now() + ms;
    while (performance.now() < end) {
      await new Promise(r => setTimeout(r, 100));
      an.getFloatFrequencyData(bins);
      for (let i = 0; i < bins.length; i++) sum[i] += Math.pow(10, bins[i] / 10);
      n++;
    }
    await ctx.close();
    const db = Array.from(sum, p => 10 * Math.log10(p / n + 1e-30));
    const sorted = [...db].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    const hzPerBin = 48000 / an.fftSize;
    return freqs.map(f => {
      const i = Math.round(f / hzPerBin);
      return Math.max(...db.slice(i - 2, i + 3)) - median;
    });
  }, [id, freqs, ms]);
}

const near = (a, b) => a.every((x, i) => Math.abs(x - b[i]) < 60);

test("four publishers mixed: colours in their regions, every tone, and no one hears themselves", async () => {
  const svc = await startService({ mixer: true, extraMixer: "speakers = 4" });
  const browsers = [];
  try {
    const room = `mix-${Math.random().toString(36).slice(2, 8)}`;
    const publishers = [];
    let roomId;
    for (const [i, input] of INPUTS.entries()) {
      const b = await launchBrowser(undefined, { audioFile: wav(`tone-${input.hz}`, input.hz), videoFile: y4m(input.colour, input.colour) });
      browsers.push(b);
      const page = await b.newPage();
      page.on("pageerror", e => console.error("page error:", e));
      await page.goto(svc.api + "/");
      const p = await page.evaluate(([room, user]) => window.sy.publish(room, user, { video: { width: 320, height: 240, frameRate: 15 } })
        .then(p => ({ room: p.room, stream: p.stream })), [room, `p${i}`]);
      roomId = p.room;
      publishers.push({ ...input, page, stream: p.stream });
    }
    const mixed = `${roomId}-common`;
    const streams = () => publishers[0].page.evaluate((name) => window.sy.streams(name), room);
    // The mixed stream is listed, with all four inputs in its layout.
    const layout = await eventually(async () => {
      const m = (await streams()).streams.find(s => s.id === mixed);
      return m && m.type === "mixed" && m.info.layout.length === 4 ? m.info.layout : false;
    }, 30000, "the mixed stream with four regions");
    console.log("layout:", JSON.stringify(layout.map(r => [r.stream, r.region.id, r.region.area])));

    const viewer = await browsers[0].newPage();
    await viewer.goto(svc.api + "/");
    await viewer.evaluate(([room, s]) => window.sy.play(room, "viewer", s).then(() => true), [room, mixed]);
    await eventually(async () => {
      const v = await viewer.evaluate(() => window.sy.videoIn(0));
      return v.width === 640 && v.height === 480 && v.frames > 30;
    }, 30000, "the viewer decoding 640×480");

    // Each region shows its input's colour, sampled at the region's centre.
    await eventually(async () => {
      const points = layout.map(r => [Math.round((r.region.area.left + r.region.area.width / 2) * 640),
        Math.round((r.region.area.top + r.region.area.height / 2) * 480)]);
      const got = await sample(viewer, mixed, points);
      const want = layout.map(r => publishers.find(p => p.stream === r.stream).rgb);
      console.log("sampled:", JSON.stringify(got), "want:", JSON.stringify(want));
      return got.every((c, i) => near(c, want[i]));
    }, 20000, "each region in its input's colour");

    // Audio and video come with sender reports (what lets the player synchronise them),
    // their NTP times telling the same clock.
    const reports = await eventually(async () => {
      const r = await viewer.evaluate(async () => {
        const out = {};
        for (const s of (await window.sy.pcs[0].getStats()).values()) {
          if (s.type === "remote-outbound-rtp") out[s.kind] = { reports: s.reportsSent, at: s.remoteTimestamp };
        }
        return out;
      });
      return r.audio?.reports > 0 && r.video?.reports > 0 ? r : false;
    }, 20000, "sender reports of audio and video");
    console.log("sender reports:", JSON.stringify(reports));
    assert.ok(Math.abs(reports.audio.at - reports.video.at) < 10000, "both reports tell one clock");

    // The viewer hears all four tones.
    const freqs = INPUTS.map(i => i.hz);
    const heard = await toneLevels(viewer, mixed, freqs, 3000);
    console.log("viewer hears (dB over the median):", JSON.stringify(heard.map(x => Math.round(x))));
    for (const [i, db] of heard.entries()) assert.ok(db > 25, `the viewer hears ${freqs[i]} Hz (${db.toFixed(1)} dB)`);

    // The first publisher plays the mixed stream as itself: the others, not its own tone.
    const me = publishers[0];
    await me.page.evaluate(([room, s]) => window.sy.play(room, "p0", s).then(() => true), [room, mixed]);
    await eventually(async () => (await me.page.evaluate(() => window.sy.videoIn(1))).frames > 10, 30000, "the publisher playing the mix");
    await sleep(1000);
    // 550 Hz, which nobody sends, is what the codec's noise alone gives near 400 Hz.
    const mine = await toneLevels(me.page, mixed, [...freqs, 550], 3000);
    console.log("p0 hears (dB over the median; the last 550 Hz, sent by nobody):", JSON.stringify(mine.map(x => Math.round(x))));
    for (const i of [1, 2, 3]) assert.ok(mine[i] > 25, `p0 hears ${freqs[i]} Hz (${mine[i].toFixed(1)} dB)`);
    // What is left at its own frequency is the codec's noise: far below the others, and
    // no more than at a frequency nobody sends.
    const weakest = Math.min(mine[1], mine[2], mine[3]);
    assert.ok(mine[0] < weakest - 30, `p0 does not hear its own ${freqs[0]} Hz (${mine[0].toFixed(1)} dB against ${weakest.toFixed(1)})`);
    assert.ok(mine[0] < mine[4] + 10, `${freqs[0]} Hz (${mine[0].toFixed(1)} dB) is no louder than the noise at 550 Hz (${mine[4].toFixed(1)} dB)`);

    // Unmixed through the management API (OWT's PATCH of /info/inViews): three regions
    // left; mixed again: four.
    const last = publishers[3].stream;
    const unmix = await mauth(svc, "PATCH", `/v1/rooms/${roomId}/streams/${last}`, [{ op: "remove", path: "/info/inViews", value: "common" }]);
    assert.equal(unmix.status, 200, unmix.text);
    const regions = async () => (await streams()).streams.find(s => s.id === mixed)?.info.layout ?? [];
    await eventually(async () => { const l = await regions(); return l.length === 3 && l.every(r => r.stream !== last); }, 20000, "the layout without the unmixed stream");
    const remix = await mauth(svc, "PATCH", `/v1/rooms/${roomId}/streams/${last}`, [{ op: "add", path: "/info/inViews", value: "common" }]);
    assert.equal(remix.status, 200, remix.text);
    await eventually(async () => (await regions()).some(r => r.stream === last), 20000, "the stream mixed again");
  } finally {
    for (const b of browsers) await b.close();
    await svc.stop();
  }
});
