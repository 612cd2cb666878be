// Shared helpers for the end-to-end tests: start the real switchyard-dataplane and
// switchyard-control binaries on free ports with their own data directory, and open
// pages in Debian's headless Chromium with a fake camera and microphone.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../..");
export const BIN_DIR = process.env.SWITCHYARD_BIN_DIR || path.join(root, "target", "debug");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on("error", reject);
  });
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

/** Starts dataplane and control; `extra` is appended to the config (TOML tables). */
export async function startService({ extraDataplane = "", cores = 2 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "switchyard-e2e-"));
  const [api, portal, rpc, metrics] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const minport = 41000 + Math.floor(Math.random() * 5000);
  const config = `data_dir = "${dir}/data"
[log]
format = "json"
[management-api]
ip_address = "127.0.0.1"
port = ${api}
[portal]
port = ${portal}
[webrtc]
network_interfaces = [{name = "lo"}]
minport = ${minport}
maxport = ${minport + 10}
[dataplane]
cores = ${cores}
rpc_address = "127.0.0.1:${rpc}"
metrics_address = "127.0.0.1:${metrics}"
${extraDataplane}
[demo]
enabled = true
`;
  fs.writeFileSync(path.join(dir, "switchyard.toml"), config);
  const svc = { dir, api: `http://127.0.0.1:${api}`, metrics: `http://127.0.0.1:${metrics}/metrics`, procs: {} };
  svc.start = async (name) => {
    const log = path.join(dir, `${name}.log`);
    const out = fs.openSync(log, "a");
    const child = spawn(path.join(BIN_DIR, `switchyard-${name}`), ["--config", path.join(dir, "switchyard.toml")], { stdio: ["ignore", out, out] });
    svc.procs[name] = { child, log };
    await waitFor(name === "control" ? `${svc.api}/healthz` : svc.metrics, child, log);
  };
  svc.kill = async (name, signal = "SIGKILL") => {
    const p = svc.procs[name]; if (!p || p.child.exitCode !== null) return;
    const done = new Promise(r => p.child.once("exit", r));
    p.child.kill(signal); await done;
  };
  svc.log = (name) => fs.readFileSync(svc.procs[name].log, "utf8");
  svc.stop = async () => { for (const n of Object.keys(svc.procs)) await svc.kill(n, "SIGTERM"); };
  await svc.start("dataplane");
  await svc.start("control");
  // Wait until control has connected to the dataplane.
  const end = Date.now() + 10000;
  while (Date.now() < end && !svc.log("control").includes("media dataplane connected")) await new Promise(r => setTimeout(r, 100));
  return svc;
}

export async function launchBrowser() {
  // playwright gives each launch a fresh, empty profile directory of its own.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
      "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
      "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
    ],
  });
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

export async function metricValue(url, name, labels = "") {
  const text = await (await fetch(url)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name + "{") && line.includes(labels)) sum += Number(line.split(" ").pop());
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
