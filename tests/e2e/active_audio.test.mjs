// Active-speaker selection (a room's `selectActiveAudio`) with real browsers: the room
// lists its selecting streams (OWT's: audio only, info type "selecting"); a Chromium
// publisher playing a loud tone and one playing silence publish over WHIP; a portal
// client subscribes to a slot and hears the loud one, is told through `stream` updates
// (`activeInput`, `volume: "major"`) who speaks, and the REST API shows the slot's input.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startService, launchBrowser, eventually, mauth, newToken, portalClient, rtcPage, SDK, wav, sleep } from "./common.mjs";

test("the loudest publisher fills the first active-speaker slot and everyone is told", async () => {
  const svc = await startService();
  const loudBrowser = await launchBrowser(undefined, { audioFile: wav("tone", true) });
  const quietBrowser = await launchBrowser(undefined, { audioFile: wav("silence", false) });
  try {
    const name = `speakers-${Math.random().toString(36).slice(2, 8)}`;
    const created = await mauth(svc, "POST", "/v1/rooms", { name, options: { selectActiveAudio: true } });
    assert.equal(created.status, 200, created.text);
    const room = created.json._id ?? created.json.id;

    // A listener logs in: the room has its selecting streams already.
    const l = await portalClient(svc.portal);
    const login = await l.req("login", { token: await newToken(svc, room, "listener", "viewer"), userAgent: SDK, protocol: "1.2" });
    const slots = login.room.streams.filter(s => s.info.type === "selecting");
    assert.equal(slots.length, 3, JSON.stringify(login.room.streams));
    for (const s of slots) {
      assert.deepEqual(s.media.tracks.map(t => t.type), ["audio"]);
      assert.equal(s.info.activeInput, "unknown");
    }

    // Two publishers: a loud tone and silence (no noise suppression, which takes a steady
    // tone for noise).
    const published = {};
    for (const [who, browser] of [["loud", loudBrowser], ["quiet", quietBrowser]]) {
      const page = await browser.newPage();
      page.on("pageerror", e => console.error("page error:", e));
      await page.goto(svc.api + "/");
      published[who + "Page"] = page;
      published[who] = (await page.evaluate((room) => window.sy.publish(room, "p", { audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } }).then(p => p.stream), name));
    }

    // The first slot gets the loud publisher, as the major speaker.
    const update = await l.next("stream", d => d.id === slots[0].id && d.status === "update" && d.data.field === "activeInput" && d.data.value.id === published.loud && d.data.value.volume === "major", 20000);
    assert.equal(update.data.value.id, published.loud);
    // The REST API shows who the slot carries.
    await eventually(async () => {
      const r = await mauth(svc, "GET", `/v1/rooms/${room}/streams/${slots[0].id}`);
      return r.status === 200 && r.json.info.activeInput === published.loud && r.json.info.type === "selecting" ? r : false;
    }, 10000, "the slot's activeInput in the REST API");

    // The listener plays the first slot and hears the tone.
    const page = await rtcPage(loudBrowser, svc);
    const offer = await page.evaluate(() => window.rtc.receiveOffer(undefined, ["audio"]));
    const sub = await l.req("subscribe", { media: { tracks: [{ type: "audio", mid: offer.mids[0].mid, from: `${slots[0].id}-audio` }] }, transport: { type: "webrtc", id: null } });
    await l.req("soac", { id: sub.transportId, signaling: { type: "offer", sdp: offer.sdp } });
    const answer = await l.next("progress", x => x.id === sub.transportId && x.status === "soac");
    await page.evaluate(([i, sdp]) => window.rtc.answer(i, sdp), [offer.pc, answer.data.sdp]);
    // Play it (Chromium measures received audio as it plays it out).
    await page.evaluate((i) => {
      const pc = window.rtc.pcs[i];
      const play = () => { const el = new Audio(); el.srcObject = new MediaStream(pc.getReceivers().map(r => r.track)); el.play(); document.body.appendChild(el); };
      play();
    }, offer.pc);
    const level = () => page.evaluate(async (i) => {
      for (const s of (await window.rtc.pcs[i].getStats()).values()) {
        if (s.type === "inbound-rtp" && s.kind === "audio") return { packets: s.packetsReceived || 0, level: s.audioLevel || 0, energy: s.totalAudioEnergy || 0 };
      }
      return { packets: 0, level: 0, energy: 0 };
    }, offer.pc);
    await eventually(async () => (await level()).packets > 100, 15000, "audio in the slot");
    // The loud publisher's own microphone, measured the same way.
    const source = () => published.loudPage.evaluate(async () => {
      for (const s of (await window.sy.pcs[0].getStats()).values()) {
        if (s.type === "media-source" && s.kind === "audio") return { energy: s.totalAudioEnergy || 0, seconds: s.totalSamplesDuration || 0 };
      }
      return { energy: 0, seconds: 0 };
    });
    const [a, sa] = [await level(), await source()];
    await sleep(2000);
    const [b, sb] = [await level(), await source()];
    const heard = (b.energy - a.energy) / 2;
    const sent = (sb.energy - sa.energy) / Math.max(0.001, sb.seconds - sa.seconds);
    console.log(`slot 0: ${b.packets} packets, audio level ${b.level.toFixed(3)}, energy ${heard.toFixed(5)}/s; the loud publisher's microphone ${sent.toFixed(5)}/s`);
    // The slot sounds like the loud publisher (the other one is silent).
    assert.ok(sent > 0.001, `the loud publisher is not loud: ${sent}/s`);
    assert.ok(heard > sent / 2 && heard < sent * 2, `the slot's energy ${heard}/s is not the loud publisher's ${sent}/s`);
    l.close();
  } finally {
    await loudBrowser.close();
    await quietBrowser.close();
    await svc.stop();
  }
});
