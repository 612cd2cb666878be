// Shared helpers for the end-to-end tests: start the real switchyard-dataplane and
// switchyard-control binaries on free ports with their own data directory, and open
// pages in Debian's headless Chromium with a fake camera and microphone.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
// The release binaries, which scripts/run.sh starts and scripts/test.sh builds first: the
// mixer's codecs built without optimisation (OpenH264 at -O0) use several times the CPU,
// and on a small machine the browsers then starve. SWITCHYARD_BIN_DIR picks others.
export const BIN_DIR = process.env.SWITCHYARD_BIN_DIR || path.join(root, "target", "release");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// Ports for the service's listeners: below the kernel's ephemeral range (32768 and up),
// so that no outgoing connection or browser socket takes one between the check and the
// bind, and never the same one twice in a run.
const handedOut = new Set();
export async function freePort() {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (handedOut.has(port)) continue;
    const free = await new Promise(resolve => {
      const s = net.createServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (free) {
      handedOut.add(port);
      return port;
    }
  }
}

async function waitFor(url, child, log, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`process exited (${child.exitCode}):\n${fs.readFileSync(log, "utf8")}`);
    try { const r = await fetch(url); if (r.ok) return; } catch {}
    await new Promise(r => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up:\n${fs.readFileSync(log, "utf8")}`);
}

/**
 * Starts dataplane and control; `extra*` are appended to their config tables.
 * `interfaces`: the media interfaces (default loopback only); `apiAddress`: where the
 * management API (and the demo pages) listen.
 */
export async function startService({ extraDataplane = "", extraPortal = "", extraApi = "", extraMixer = "", cores = 2, interfaces = ["lo"], apiAddress = "127.0.0.1", mixer = false } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "switchyard-e2e-"));
  const [api, portal, rpc, metrics, mixerRpc] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  // Media ports below the ephemeral range too (browsers' sockets use it).
  const minport = 10000 + Math.floor(Math.random() * 9000);
  const config = `data_dir = "${dir}/data"
[log]
format = "json"
[management-api]
ip_address = "${apiAddress}"
port = ${api}
${extraApi}
[portal]
ip_address = "127.0.0.1"
port = ${portal}
${extraPortal}
[webrtc]
network_interfaces = [${interfaces.map(n => `{name = "${n}"}`).join(", ")}]
minport = ${minport}
maxport = ${minport + 10}
[dataplane]
cores = ${cores}
rpc_address = "127.0.0.1:${rpc}"
metrics_address = "127.0.0.1:${metrics}"
${extraDataplane}
[mixer]
rpc_address = "127.0.0.1:${mixerRpc}"
${extraMixer}
[demo]
enabled = true
`;
  fs.writeFileSync(path.join(dir, "switchyard.toml"), config);
  const svc = { dir, api: `http://127.0.0.1:${api}`, portal: `http://127.0.0.1:${portal}`, metrics: `http://127.0.0.1:${metrics}/metrics`, procs: {} };
  svc.start = async (name) => {
    const log = path.join(dir, `${name}.log`);
    const out = fs.openSync(log, "a");
    const child = spawn(path.join(BIN_DIR, `switchyard-${name}`), ["--config", path.join(dir, "switchyard.toml")], { stdio: ["ignore", out, out] });
    svc.procs[name] = { child, log };
    if (name === "mixer") {
      // Ready when it listens for control.
      const end = Date.now() + 20000;
      while (Date.now() < end && !fs.readFileSync(log, "utf8").includes("switchyard-mixer ready")) {
        if (child.exitCode !== null) throw new Error(`mixer exited (${child.exitCode}):\n${fs.readFileSync(log, "utf8")}`);
        await new Promise(r => setTimeout(r, 100));
      }
      return;
    }
    await waitFor(name === "control" ? `${svc.api}/healthz` : svc.metrics, child, log);
  };
  svc.kill = async (name, signal = "SIGKILL") => {
    const p = svc.procs[name]; if (!p || p.child.exitCode !== null) return;
    const done = new Promise(r => p.child.once("exit", r));
    p.child.kill(signal); await done;
  };
  svc.log = (name) => fs.readFileSync(svc.procs[name].log, "utf8");
  svc.stop = async () => { for (const n of Object.keys(svc.procs)) await svc.kill(n, "SIGTERM"); };
  try {
    await svc.start("dataplane");
    if (mixer) await svc.start("mixer");
    await svc.start("control");
  } catch (e) {
    // What did start must not outlive the test (it would keep Node, and CI, waiting).
    await svc.stop();
    throw e;
  }
  // Wait until control has connected to the dataplane (and the mixer).
  const end = Date.now() + 10000;
  const up = () => svc.log("control").includes("media dataplane connected") && (!mixer || svc.log("control").includes("mixer connected"));
  while (Date.now() < end && !up()) await new Promise(r => setTimeout(r, 100));
  return svc;
}

/**
 * Headless Chromium; `executablePath` another launcher (e.g. one inside a namespace),
 * `audioFile` a WAV its fake microphone plays instead of its beep; `secureOrigin` an
 * http origin given a secure context (camera and microphone).
 */
export async function launchBrowser(executablePath = CHROMIUM, { audioFile, videoFile, secureOrigin } = {}) {
  // playwright gives each launch a fresh, empty profile directory of its own.
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
      "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
      ...(audioFile ? [`--use-file-for-fake-audio-capture=${audioFile}`] : []),
      ...(videoFile ? [`--use-file-for-fake-video-capture=${videoFile}`] : []),
      // A page served from a namespace's host address may use the camera.
      ...(secureOrigin ? [`--unsafely-treat-insecure-origin-as-secure=${secureOrigin}`] : []),
    ],
  });
}

/**
 * A minute of WAV (made once with FFmpeg): a tone (FFmpeg's sine, -18 dBFS) at 440 Hz
 * (`tone` true) or at `tone` Hz (a number), or silence.
 */
export function wav(name, tone) {
  const file = path.join(os.tmpdir(), `switchyard-e2e-${name}.wav`);
  if (!fs.existsSync(file)) {
    const hz = typeof tone === "number" ? tone : 440;
    const src = tone ? `sine=frequency=${hz}:sample_rate=48000` : "anullsrc=r=48000:cl=mono";
    sh("ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src, "-t", "60", "-ac", "1", file);
  }
  return file;
}

/**
 * Ten seconds of a solid colour as Y4M (made once with FFmpeg), for a fake camera;
 * `source` another FFmpeg lavfi source instead (its size and rate are added).
 */
export function y4m(name, colour, { width = 320, height = 240, fps = 15, source = `color=c=${colour}` } = {}) {
  const file = path.join(os.tmpdir(), `switchyard-e2e-${name}-${width}x${height}-${fps}.y4m`);
  if (!fs.existsSync(file)) {
    sh("ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", `${source}${source.includes("=") ? ":" : "="}s=${width}x${height}:r=${fps}`,
      "-t", "10", "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", file + ".part");
    fs.renameSync(file + ".part", file);
  }
  return file;
}

/** Inbound and outbound RTP stats of every peer connection on the page. */
export async function rtpStats(page) {
  return page.evaluate(async () => {
    const out = [];
    for (const pc of window.sy.pcs) {
      const report = await pc.getStats();
      for (const s of report.values()) {
        if (s.type === "inbound-rtp" || s.type === "outbound-rtp") out.push({ type: s.type, kind: s.kind, packetsReceived: s.packetsReceived, packetsSent: s.packetsSent, framesDecoded: s.framesDecoded, nackCount: s.nackCount, retransmittedPacketsSent: s.retransmittedPacketsSent, bytesReceived: s.bytesReceived, packetsLost: s.packetsLost });
      }
    }
    return out;
  });
}

/**
 * Starts timing each freeze of the video that connection `i` of a demo page decodes:
 * Chromium's getStats gives only a count and a total (`sy.videoIn`), so the page polls it
 * every 200 ms
 * and takes a poll's growth in total as one freeze's length (when two end within one
 * poll, their sum — never less than the longest). `longestFreeze` reads the longest.
 */
export async function watchFreezes(page, i) {
  await page.evaluate((i) => {
    const w = (window.freezeWatch ??= {});
    if (w[i]) return;
    const state = w[i] = { count: 0, total: 0, longest: 0 };
    setInterval(async () => {
      const { freezes, frozen } = await window.sy.videoIn(i);
      if (freezes > state.count) state.longest = Math.max(state.longest, frozen - state.total);
      state.count = freezes; state.total = frozen;
    }, 200);
  }, i);
}

/**
 * The longest freeze, seconds, since `watchFreezes` started or the last `reset` (see
 * there); `reset` starts a new span.
 */
export async function longestFreeze(page, i, { reset = false } = {}) {
  return page.evaluate(([i, reset]) => {
    const state = window.freezeWatch?.[i];
    if (!state) return 0;
    const longest = state.longest;
    if (reset) state.longest = 0;
    return longest;
  }, [i, reset]);
}

export async function metricValue(url, name, labels = "") {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if ((line.startsWith(name + "{") || line.startsWith(name + " ")) && line.includes(labels)) sum += Number(line.split(" ").pop());
  }
  return sum;
}

export const sleep = (ms) => new Promise(r => setTimeout(r, ms));

/** Calls the management API signed with OWT's MAuth, as an OWT app server would. */
export async function mauth(svc, method, pathname, body) {
  const { createHmac, randomInt } = await import("node:crypto");
  const creds = JSON.parse(fs.readFileSync(path.join(svc.dir, "data", "super-service.json"), "utf8"));
  const ts = Date.now();
  const cnonce = randomInt(0, 99999);
  const sig = Buffer.from(createHmac("sha256", creds.key).update(`${ts},${cnonce}`).digest("hex")).toString("base64");
  const auth = `MAuth realm=http://webrtc.intel.com,mauth_signature_method=HMAC_SHA256,mauth_serviceid=${creds.id},mauth_cnonce=${cnonce},mauth_timestamp=${ts},mauth_signature=${sig}`;
  const r = await fetch(svc.api + pathname, { method, headers: { authorization: auth, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json; try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, text, json };
}

/** Opens a page of the service's demo app. */
export async function openPage(browser, svc) {
  const page = await browser.newPage();
  page.on("pageerror", e => console.error("page error:", e));
  await page.goto(svc.api + "/");
  return page;
}

/** Sum of a stat over the page's RTP streams of one type and kind. */
export async function statSum(page, type, kind, field) {
  return (await rtpStats(page)).filter(s => s.type === type && s.kind === kind).reduce((a, s) => a + (s[field] || 0), 0);
}

/** Waits until `fn` returns true, polling. */
export async function eventually(fn, ms, what) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await sleep(200);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Creates a room through the management API; returns its id. */
export async function createRoom(svc, config = {}) {
  const r = await mauth(svc, "POST", "/v1/rooms", { name: `room-${Math.random().toString(36).slice(2, 8)}`, options: config });
  if (r.status !== 200) throw new Error(`room create: ${r.status} ${r.text}`);
  return r.json._id ?? r.json.id;
}

/** A token for `user` in `room` with `role`, as an app server would ask for one. */
export async function newToken(svc, room, user, role = "presenter") {
  const r = await mauth(svc, "POST", `/v1/rooms/${room}/tokens`, { user, role, preference: { isp: "isp", region: "region" } });
  if (r.status !== 200) throw new Error(`token: ${r.status} ${r.text}`);
  return r.text;
}

/**
 * A client of the portal over socket.io-client 2.x (the Socket.IO revision OWT's JS SDK
 * 5.x speaks). `req` resolves with the data of an "ok" answer and rejects with the
 * `{code, description}` of an "error" one; every notification is kept in `seen`.
 */
export async function portalClient(url) {
  const { default: io } = await import("socket.io-client");
  const socket = io(url, { reconnection: false, forceNew: true, transports: ["websocket"] });
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("connect_error", reject);
  });
  const c = { socket, seen: [], waiters: [] };
  for (const name of ["participant", "stream", "text", "progress", "drop"]) {
    socket.on(name, (data) => {
      c.seen.push({ name, data });
      c.waiters = c.waiters.filter(w => { if (w.name === name && w.pred(data)) { w.resolve(data); return false; } return true; });
    });
  }
  c.req = (name, ...data) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer to ${name} in 10 s`)), 10000);
    socket.emit(name, ...data, (status, body) => {
      clearTimeout(timer);
      if (status === "ok") resolve(body);
      else if (status === "error") reject(Object.assign(new Error(`${name}: ${body?.code} ${body?.description}`), { code: body?.code, description: body?.description, status }));
      else reject(new Error(`${name}: unexpected answer status ${status}`));
    });
  });
  /** Expects `req` to be refused; returns the error body. */
  c.refused = async (name, ...data) => {
    try { await c.req(name, ...data); } catch (e) { if (e.status === "error") return { code: e.code, description: e.description }; throw e; }
    throw new Error(`${name} was accepted, expected an error answer`);
  };
  /** The next (or an already seen) notification `name` whose data satisfies `pred`. */
  c.next = (name, pred = () => true, ms = 10000) => {
    const had = c.seen.find(n => n.name === name && pred(n.data));
    if (had) { c.seen.splice(c.seen.indexOf(had), 1); return Promise.resolve(had.data); }
    return new Promise((resolve, reject) => {
      const w = { name, pred, resolve: (d) => { clearTimeout(t); c.seen.splice(c.seen.findIndex(n => n.data === d), 1); resolve(d); } };
      const t = setTimeout(() => { c.waiters = c.waiters.filter(x => x !== w); reject(new Error(`no ${name} notification in ${ms} ms; seen: ${JSON.stringify(c.seen)}`)); }, ms);
      c.waiters.push(w);
    });
  };
  /** Whether a matching notification arrived (without consuming it). */
  c.saw = (name, pred = () => true) => c.seen.some(n => n.name === name && pred(n.data));
  c.close = () => socket.close();
  return c;
}

/** The portal address a token names, as a URL. */
export function portalOf(token) {
  const t = JSON.parse(Buffer.from(token, "base64").toString());
  return `${t.secure ? "https" : "http"}://${t.host}`;
}

/**
 * Opens a page that does WebRTC for a portal client driven from Node: `window.rtc`
 * makes peer connections, offers to publish the fake camera and microphone or to
 * receive, applies answers and reads stats. The page comes from the service so that it
 * is a secure context (loopback) for getUserMedia.
 */
export async function rtcPage(browser, svc) {
  const page = await browser.newPage();
  page.on("pageerror", e => console.error("page error:", e));
  await page.goto(svc.api + "/healthz");
  await page.evaluate(() => {
    const pcs = [];
    window.rtc = {
      pcs,
      async publishOffer(kinds = ["audio", "video"]) {
        const media = await navigator.mediaDevices.getUserMedia({ audio: kinds.includes("audio"), video: kinds.includes("video") ? { width: 320, height: 240 } : false });
        const pc = new RTCPeerConnection();
        const tracks = [];
        for (const t of media.getTracks()) {
          const tr = pc.addTransceiver(t, { direction: "sendonly", streams: [media] });
          tracks.push({ tr, type: t.kind });
        }
        await pc.setLocalDescription(await pc.createOffer());
        pcs.push(pc);
        return { pc: pcs.length - 1, sdp: pc.localDescription.sdp, tracks: tracks.map(({ tr, type }) => ({ type, mid: tr.mid, source: type === "audio" ? "mic" : "camera" })) };
      },
      /** Adds receive-only transceivers to connection `i` (a new one when undefined). */
      async receiveOffer(i, kinds) {
        let pc = pcs[i];
        if (!pc) { pc = new RTCPeerConnection(); pcs.push(pc); i = pcs.length - 1; }
        const added = kinds.map(kind => pc.addTransceiver(kind, { direction: "recvonly" }));
        await pc.setLocalDescription(await pc.createOffer());
        return { pc: i, sdp: pc.localDescription.sdp, mids: added.map((t, k) => ({ type: kinds[k], mid: t.mid })) };
      },
      async answer(i, sdp) { await pcs[i].setRemoteDescription({ type: "answer", sdp }); },
      /** Inbound RTP per mid of connection `i`. */
      async inbound(i) {
        const out = {};
        const pc = pcs[i];
        const byTrack = new Map(pc.getTransceivers().map(t => [t.receiver.track.id, t.mid]));
        for (const s of (await pc.getStats()).values()) {
          if (s.type === "inbound-rtp") out[byTrack.get(s.trackIdentifier) ?? s.mid ?? s.ssrc] = { kind: s.kind, packets: s.packetsReceived || 0, frames: s.framesDecoded || 0, width: s.frameWidth || 0 };
        }
        return out;
      },
      async outbound(i) {
        let packets = 0;
        for (const s of (await pcs[i].getStats()).values()) if (s.type === "outbound-rtp") packets += s.packetsSent || 0;
        return packets;
      },
      state(i) { return pcs[i].connectionState; },
      close(i) { pcs[i].close(); },
    };
  });
  return page;
}

/** The userAgent OWT's JS SDK sends at login. */
export const SDK = { sdk: { type: "JavaScript", version: "5.0" }, runtime: { name: "node" }, os: { name: "linux" } };

/** Packets received on one mid of a page's connection. */
export async function packets(page, pc, mid) {
  const s = await page.evaluate(([i]) => window.rtc.inbound(i), [pc]);
  return s[mid] ?? { packets: 0, frames: 0 };
}

/** Publishes the page's camera and microphone over the portal; returns the ids. */
export async function portalPublish(client, page, attributes, kinds = ["audio", "video"]) {
  const offer = await page.evaluate((k) => window.rtc.publishOffer(k), kinds);
  const pub = await client.req("publish", { media: { tracks: offer.tracks }, attributes, transport: { type: "webrtc", id: null } });
  assert.equal(typeof pub.transportId, "string");
  assert.equal(typeof pub.id, "string");
  assert.equal(await client.req("soac", { id: pub.transportId, signaling: { type: "offer", sdp: offer.sdp } }), undefined);
  const answer = await client.next("progress", d => d.id === pub.transportId && d.status === "soac");
  assert.equal(answer.data.type, "answer");
  assert.match(answer.data.sdp, /^v=0/);
  await page.evaluate(([i, sdp]) => window.rtc.answer(i, sdp), [offer.pc, answer.data.sdp]);
  // A candidate from the client is accepted (ICE-lite server: it learns them from checks).
  await client.req("soac", { id: pub.transportId, signaling: { type: "candidate", candidate: { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 } } });
  const ready = await client.next("progress", d => d.id === pub.transportId && d.status === "ready");
  assert.equal(ready.sessionId, pub.id);
  return { ...pub, pc: offer.pc };
}

/** Subscribes to `stream` (its track ids in `from`), on `transport` or a new one. */
export async function portalSubscribe(client, page, stream, kinds, { pc, transport } = {}) {
  const offer = await page.evaluate(([i, k]) => window.rtc.receiveOffer(i, k), [pc, kinds]);
  const tracks = offer.mids.map(m => ({ type: m.type, mid: m.mid, from: stream.media.tracks.find(t => t.type === m.type).id }));
  const sub = await client.req("subscribe", { media: { tracks }, transport: { type: "webrtc", id: transport ?? null } });
  if (transport) assert.equal(sub.transportId, transport, "the subscription goes on the named transport");
  await client.req("soac", { id: sub.transportId, signaling: { type: "offer", sdp: offer.sdp } });
  const answer = await client.next("progress", d => d.id === sub.transportId && d.status === "soac");
  await page.evaluate(([i, sdp]) => window.rtc.answer(i, sdp), [offer.pc, answer.data.sdp]);
  const ready = await client.next("progress", d => d.id === sub.transportId && d.status === "ready" && d.sessionId === sub.id);
  assert.equal(ready.sessionId, sub.id);
  return { ...sub, pc: offer.pc, mids: offer.mids };
}


function sh(cmd, ...args) {
  return execFileSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
}

/**
 * A network namespace joined to this host by a veth pair (10.216.N.1 here, 10.216.N.2
 * inside), with a Chromium launcher that runs inside it: a client whose path to the
 * server can be throttled on its own. Needs root (the tests run as root; CI too). Stale
 * namespaces of earlier runs whose process is gone are removed first.
 */
export function netns() {
  for (const name of sh("ip", "netns", "list").split("\n").map(l => l.split(" ")[0]).filter(n => n.startsWith("sy-e2e-"))) {
    const pid = Number(name.slice("sy-e2e-".length));
    let alive = true;
    try { process.kill(pid, 0); } catch { alive = false; }
    if (!alive) { try { sh("ip", "netns", "del", name); } catch {} }
  }
  const pid = process.pid;
  const n = 20 + (pid % 200);
  const ns = `sy-e2e-${pid}`, host = `sye${pid % 1000000}h`, peer = `sye${pid % 1000000}n`;
  const hostIp = `10.216.${n}.1`, peerIp = `10.216.${n}.2`;
  sh("ip", "netns", "add", ns);
  sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer);
  sh("ip", "link", "set", peer, "netns", ns);
  sh("ip", "addr", "add", `${hostIp}/24`, "dev", host);
  sh("ip", "link", "set", host, "up");
  sh("ip", "netns", "exec", ns, "ip", "addr", "add", `${peerIp}/24`, "dev", peer);
  sh("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up");
  sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up");
  const launcher = path.join(os.tmpdir(), `chromium-in-${ns}.sh`);
  fs.writeFileSync(launcher, `#!/bin/sh\nexec ip netns exec ${ns} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
  return {
    ns, host, hostIp, peerIp, chromium: launcher,
    /**
     * Limits what reaches the namespace (the server → client direction) to `kbit` kbit/s:
     * netem's rate where the kernel has netem, else a token bucket (tbf) with a queue of
     * `queueMs`. Returns which was used.
     */
    throttle(kbit, queueMs = 400, verb = "replace") {
      const limitPackets = Math.max(4, Math.round(kbit * 1000 / 8 * queueMs / 1000 / 1200));
      // A burst of a few packets, more at high rates (tbf needs rate/HZ at least).
      const burst = String(Math.max(3000, Math.round(kbit * 1000 / 8 / 100)));
      try {
        sh("tc", "qdisc", verb, "dev", host, "root", "netem", "rate", `${kbit}kbit`, "limit", String(limitPackets));
        return "netem";
      } catch {
        sh("tc", "qdisc", verb, "dev", host, "root", "tbf", "rate", `${kbit}kbit`, "burst", burst, "latency", `${queueMs}ms`);
        return "tbf";
      }
    },
    /**
     * Drops `percent` % of the UDP packets the namespace sends (the client → server
     * direction; with `inward`, those it receives) at random, with nftables (netem's loss
     * where the kernel lacks netem). Returns how many it dropped so far when called again
     * with no argument.
     */
    lose(percent, inward = false) {
      const table = `syloss${pid % 1000000}`;
      if (percent !== undefined) {
        try { sh("nft", "delete", "table", "inet", table); } catch {}
        sh("nft", "add", "table", "inet", table);
        const [hook, dir, prio] = inward ? ["postrouting", "oifname", "300"] : ["prerouting", "iifname", "-300"];
        sh("nft", "add", "chain", "inet", table, "lossy", `{ type filter hook ${hook} priority ${prio}; }`);
        sh("nft", "add", "rule", "inet", table, "lossy", dir, host, "meta", "l4proto", "udp", "numgen", "random", "mod", "100", "<", String(percent), "counter", "drop");
      }
      const m = sh("nft", "list", "table", "inet", table).match(/counter packets (\d+)/);
      return m ? Number(m[1]) : 0;
    },
    /** The throttle's counters in one line (sent, dropped, backlog), for a test's log. */
    shaperStats() {
      try { return sh("tc", "-s", "qdisc", "show", "dev", host).replace(/\s+/g, " ").trim(); } catch (e) { return String(e); }
    },
    /** Raises the throttle's rate in place (what is queued stays queued). */
    widen(kbit) { return this.throttle(kbit, 400, "change"); },
    unthrottle() { try { sh("tc", "qdisc", "del", "dev", host, "root"); } catch {} },
    remove() {
      try { sh("nft", "delete", "table", "inet", `syloss${pid % 1000000}`); } catch {}
      try { sh("ip", "netns", "del", ns); } catch {}
      try { sh("ip", "link", "del", host); } catch {}
      try { fs.unlinkSync(launcher); } catch {}
    },
  };
}
