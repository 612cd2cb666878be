// Scalable AV1 in real browsers: a Chromium publisher sends one AV1 stream with spatial
// and temporal layers (scalabilityMode "L3T3_KEY"; at 640×360 libaom makes it L2T3_KEY)
// over WHIP. AV1 says its layers only in the dependency descriptor header extension,
// which the dataplane reads and passes on to players that negotiate it. A player with
// the descriptor gets every layer (640×360); one with the descriptor asking for at most
// 320×180 gets the base spatial layer; a plain player (browsers do not ask for the
// descriptor when they only receive, and cannot decode AV1 spatial layers without it)
// gets the base spatial layer too. All decode, without freezes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startService, launchBrowser, eventually, sleep } from "./common.mjs";

const videoIn = (page) => page.evaluate(() => window.sy.videoIn(0));

test("each player decodes the spatial layers of an AV1 SVC stream its limit allows", async () => {
  const svc = await startService();
  const browser = await launchBrowser();
  try {
    const room = `av1-${Math.random().toString(36).slice(2, 8)}`;
    const pub = await browser.newPage();
    pub.on("pageerror", e => console.error("page error:", e));
    await pub.goto(svc.api + "/");
    const { stream, answer } = await pub.evaluate((room) => window.sy.publish(room, "alice", { svc: "L3T3_KEY", codec: "av1", video: { width: 640, height: 360, frameRate: 15 } })
      .then(p => ({ stream: p.stream, answer: p.pc.remoteDescription.sdp })), room);
    assert.match(answer, /dependency-descriptor/, "the publisher's answer negotiates the dependency descriptor");
    const sent = await eventually(async () => {
      const out = await pub.evaluate(() => window.sy.videoOut(0));
      return out.length && out[0].frames > 10 ? out[0] : false;
    }, 20000, "the publisher encoding");
    console.log("publisher:", JSON.stringify(sent));
    const pages = {};
    for (const name of ["full", "base", "plain"]) {
      pages[name] = await browser.newPage();
      await pages[name].goto(svc.api + "/");
    }
    const play = (name, query, dd) => pages[name].evaluate(([room, s, name, query, dd]) =>
      window.sy.play(room, name, s, query, { dependencyDescriptor: dd }).then(p => p.pc.remoteDescription.sdp), [room, stream, name, query, dd]);
    assert.match(await play("full", "", true), /dependency-descriptor/, "the descriptor is negotiated with a player that asks");
    assert.match(await play("base", "maxWidth=320&maxHeight=180", true), /dependency-descriptor/);
    assert.doesNotMatch(await play("plain", "", false), /dependency-descriptor/);
    await eventually(async () => (await videoIn(pages.full)).width === 640, 40000, "the full player at 640 wide");
    for (const name of ["base", "plain"]) {
      await eventually(async () => { const v = await videoIn(pages[name]); return v.width === 320 && v.frames > 20; }, 40000, `the ${name} player on the 320-wide spatial layer`);
    }
    const codec = await pages.full.evaluate(async () => {
      const stats = [...(await window.sy.pcs[0].getStats()).values()];
      const v = stats.find(s => s.type === "inbound-rtp" && s.kind === "video");
      return stats.find(s => s.id === v?.codecId)?.mimeType;
    });
    assert.match(codec, /AV1/i, "the players receive AV1");
    const names = ["full", "base", "plain"];
    const before = await Promise.all(names.map(n => videoIn(pages[n])));
    await sleep(6000);
    const after = await Promise.all(names.map(n => videoIn(pages[n])));
    for (const [i, name] of names.entries()) {
      console.log(`${name}: ${JSON.stringify(after[i])}`);
      assert.ok(after[i].frames - before[i].frames > 30, `${name} decoded ${after[i].frames - before[i].frames} frames in 6 s`);
      assert.ok(after[i].frozen - before[i].frozen < 0.5, `${name} froze ${after[i].frozen - before[i].frozen} s`);
    }
    assert.equal(after[0].width, 640);
    assert.equal(after[1].width, 320, "the capped player decodes the base spatial layer");
    assert.equal(after[2].width, 320, "the plain player decodes the base spatial layer");
    // The capped players received less than the full one: the upper layer was left out.
    for (const i of [1, 2]) {
      assert.ok(after[i].bytes < after[0].bytes * 0.7, `capped ${after[i].bytes} B against ${after[0].bytes} B`);
    }
  } finally {
    await browser.close();
    await svc.stop();
  }
});
