// Scalable video in real browsers: a Chromium publisher sends one VP9 stream with three
// spatial and three temporal layers (scalabilityMode "L3T3") over WHIP; one WHEP player
// gets every layer (640×360), one asks for at most 320×180 (`?maxWidth=&maxHeight=`) and
// gets the spatial layers up to that size only. Both decode, without freezes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startService, launchBrowser, eventually, sleep } from "./common.mjs";

const videoIn = (page) => page.evaluate(() => window.sy.videoIn(0));

test("each player decodes the spatial layers of a VP9 SVC stream its limit allows", async () => {
  const svc = await startService();
  const browser = await launchBrowser();
  try {
    const room = `svc-${Math.random().toString(36).slice(2, 8)}`;
    const pub = await browser.newPage();
    pub.on("pageerror", e => console.error("page error:", e));
    await pub.goto(svc.api + "/");
    const { stream } = await pub.evaluate((room) => window.sy.publish(room, "alice", { svc: "L3T3", video: { width: 640, height: 360, frameRate: 15 } }).then(p => ({ stream: p.stream })), room);
    const sent = await eventually(async () => {
      const out = await pub.evaluate(() => window.sy.videoOut(0));
      return out.length && out[0].frames > 10 ? out[0] : false;
    }, 20000, "the publisher encoding");
    console.log("publisher:", JSON.stringify(sent));
    const full = await browser.newPage();
    await full.goto(svc.api + "/");
    const base = await browser.newPage();
    await base.goto(svc.api + "/");
    await full.evaluate(([room, s]) => window.sy.play(room, "full", s).then(() => true), [room, stream]);
    await base.evaluate(([room, s]) => window.sy.play(room, "base", s, "maxWidth=320&maxHeight=180").then(() => true), [room, stream]);
    await eventually(async () => (await videoIn(full)).width === 640, 40000, "the full player at 640 wide");
    await eventually(async () => { const v = await videoIn(base); return v.width === 320 && v.frames > 20; }, 40000, "the capped player on the 320-wide spatial layer");
    const codec = await full.evaluate(async () => {
      const stats = [...(await window.sy.pcs[0].getStats()).values()];
      const v = stats.find(s => s.type === "inbound-rtp" && s.kind === "video");
      return stats.find(s => s.id === v?.codecId)?.mimeType;
    });
    assert.match(codec, /VP9/i, "the players receive VP9");
    const before = await Promise.all([full, base].map(videoIn));
    await sleep(6000);
    const after = await Promise.all([full, base].map(videoIn));
    for (const [i, name] of ["full", "base"].entries()) {
      console.log(`${name}: ${JSON.stringify(after[i])}`);
      assert.ok(after[i].frames - before[i].frames > 30, `${name} decoded ${after[i].frames - before[i].frames} frames in 6 s`);
      assert.ok(after[i].frozen - before[i].frozen < 0.5, `${name} froze ${after[i].frozen - before[i].frozen} s`);
    }
    assert.equal(after[0].width, 640);
    assert.equal(after[1].width, 320, "the capped player decodes the middle spatial layer");
    // It received less than the full player: the upper layers were left out.
    assert.ok(after[1].bytes < after[0].bytes * 0.7, `capped ${after[1].bytes} B against ${after[0].bytes} B`);
  } finally {
    await browser.close();
    await svc.stop();
  }
});
