// When the dataplane dies, control notices within seconds and removes its streams and
// participants; when it comes back, control takes it into service again.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startService, launchBrowser, openPage, statSum, eventually, mauth } from "./common.mjs";

test("control survives a dataplane crash and takes it back", async () => {
  const svc = await startService({ cores: 1 });
  const browser = await launchBrowser();
  try {
    const pub = await openPage(browser, svc);
    const p = await pub.evaluate(() => window.sy.publish("e2e-crash", "alice").then(p => ({ stream: p.stream, room: p.room })));
    const listed = await mauth(svc, "GET", `/v1/rooms/${p.room}/streams`);
    assert.equal(listed.json.length, 1, listed.text);

    const killedAt = Date.now();
    await svc.kill("dataplane", "SIGKILL");
    await eventually(async () => (await mauth(svc, "GET", `/v1/rooms/${p.room}/streams`)).json.length === 0, 8000, "the stream to be removed");
    const noticedIn = Date.now() - killedAt;
    assert.ok(noticedIn < 6000, `took ${noticedIn} ms`);
    assert.equal((await mauth(svc, "GET", `/v1/rooms/${p.room}/participants`)).json.length, 0);
    // Meanwhile publishing is refused clearly, not hung.
    const refused = await pub.evaluate(() => window.sy.publish("e2e-crash", "dave").then(() => "ok", e => String(e)));
    assert.match(refused, /503/);

    await svc.start("dataplane");
    await eventually(async () => svc.log("control").split("media dataplane connected").length >= 3, 10000, "control to reconnect");
    const again = await openPage(browser, svc);
    const p2 = await again.evaluate(() => window.sy.publish("e2e-crash", "erin").then(p => ({ stream: p.stream })));
    const player = await openPage(browser, svc);
    await player.evaluate((s) => window.sy.play("e2e-crash", "frank", s).then(() => true), p2.stream);
    await eventually(async () => (await statSum(player, "inbound-rtp", "video", "framesDecoded")) > 10, 15000, "playback after the restart");
  } finally {
    await browser.close();
    await svc.stop();
  }
});
