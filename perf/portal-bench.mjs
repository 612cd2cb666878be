#!/usr/bin/env node
// portal-bench: the client portal under many clients, against the release
// switchyard-control on a fresh data directory (no dataplane: signaling only).
//
//   logins: clients connect with socket.io-client 2.x (what OWT's JS SDK 5.x uses) and
//           log in with a token each, 16 at a time, as a crowd joining a meeting does;
//           each join is announced to everyone already in the room.
//   text:   one client sends text to all; the time until every other client in the room
//           has it (fan-out latency), one message after another.
//
// Reported: rates, latency percentiles, server CPU seconds (from /proc) and the figures
// per server CPU-second that are compared with perf/baseline.json (`portal`).
//   node perf/portal-bench.mjs --control target/release/switchyard-control \
//     --baseline perf/baseline.json --out perf/results/portal.json [--quick]
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, "../tests/e2e/package.json"));
const io = require("socket.io-client");

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const quick = args.includes("--quick");
const control = opt("--control", "target/release/switchyard-control");
const baselinePath = opt("--baseline", null);
const outPath = opt("--out", null);
const CLIENTS = quick ? 200 : 500;
const MESSAGES = quick ? 100 : 400;
const CONCURRENCY = 16;

const freePort = () => new Promise((res, rej) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => res(p)); }); s.on("error", rej); });
const ticks = 100; // USER_HZ on Linux
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / ticks;
}
function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portal-bench-"));
  const [api, portal, rpc] = [await freePort(), await freePort(), await freePort()];
  fs.writeFileSync(path.join(dir, "c.toml"), `data_dir = "${dir}/data"
[log]
format = "json"
level = "warn"
[management-api]
ip_address = "127.0.0.1"
port = ${api}
[portal]
ip_address = "127.0.0.1"
port = ${portal}
[dataplane]
rpc_address = "127.0.0.1:${rpc}"
`);
  const server = spawn(control, ["--config", path.join(dir, "c.toml")], { stdio: ["ignore", "ignore", "inherit"] });
  try {
    for (let i = 0; ; i++) {
      try { if ((await fetch(`http://127.0.0.1:${api}/healthz`)).ok) break; } catch {}
      if (i > 200) throw new Error("switchyard-control did not start");
      await new Promise(r => setTimeout(r, 50));
    }
    const creds = JSON.parse(fs.readFileSync(path.join(dir, "data", "super-service.json"), "utf8"));
    const call = async (method, p, body) => {
      const ts = Date.now(), cnonce = crypto.randomInt(0, 99999);
      const sig = Buffer.from(crypto.createHmac("sha256", creds.key).update(`${ts},${cnonce}`).digest("hex")).toString("base64");
      const r = await fetch(`http://127.0.0.1:${api}${p}`, { method, headers: { authorization: `MAuth realm=http://webrtc.intel.com,mauth_signature_method=HMAC_SHA256,mauth_serviceid=${creds.id},mauth_cnonce=${cnonce},mauth_timestamp=${ts},mauth_signature=${sig}`, "content-type": "application/json" }, body: JSON.stringify(body) });
      if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
      return r.text();
    };
    const room = JSON.parse(await call("POST", "/v1/rooms", { name: "bench" }))._id;
    const tokens = [];
    for (let i = 0; i < CLIENTS; i++) tokens.push(await call("POST", `/v1/rooms/${room}/tokens`, { user: `u${i}`, role: "presenter" }));

    // Phase 1: logins.
    const clients = [];
    const received = new Map(); // message -> count
    let waiter = null;
    const connect = (token) => new Promise((resolve, reject) => {
      const s = io(`http://127.0.0.1:${portal}`, { reconnection: false, forceNew: true, transports: ["websocket"] });
      s.once("connect_error", reject);
      s.once("connect", () => s.emit("login", { token, userAgent: { sdk: { type: "JavaScript", version: "5.0" } }, protocol: "1.2" }, (status, data) => {
        if (status !== "ok") return reject(new Error(`login: ${JSON.stringify(data)}`));
        s.on("text", (m) => {
          const n = (received.get(m.message) || 0) + 1;
          received.set(m.message, n);
          if (waiter && waiter.message === m.message && n === waiter.want) waiter.resolve();
        });
        resolve(s);
      }));
    });
    const cpu0 = cpuSeconds(server.pid);
    const t0 = performance.now();
    const loginLatency = [];
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < tokens.length) {
        const token = tokens[next++];
        const s0 = performance.now();
        clients.push(await connect(token));
        loginLatency.push(performance.now() - s0);
      }
    }));
    const loginWall = (performance.now() - t0) / 1000;
    const loginCpu = cpuSeconds(server.pid) - cpu0;
    loginLatency.sort((a, b) => a - b);

    // Phase 2: text fan-out to everyone else in the room, one message at a time.
    const sender = clients[0];
    const want = clients.length - 1;
    const fanout = [];
    const cpu1 = cpuSeconds(server.pid);
    const t1 = performance.now();
    for (let i = 0; i < MESSAGES; i++) {
      const message = `m${i}`;
      const done = new Promise(resolve => { waiter = { message, want, resolve }; });
      const s0 = performance.now();
      sender.emit("text", { to: "all", message }, () => {});
      await done;
      fanout.push(performance.now() - s0);
    }
    const textWall = (performance.now() - t1) / 1000;
    const textCpu = cpuSeconds(server.pid) - cpu1;
    fanout.sort((a, b) => a - b);
    const rss = rssMiB(server.pid);
    for (const c of clients) c.close();

    const results = {
      clients: CLIENTS,
      logins_per_s: CLIENTS / loginWall,
      login_p50_ms: pct(loginLatency, 0.5), login_p99_ms: pct(loginLatency, 0.99),
      login_server_cpu_s: loginCpu,
      logins_per_server_cpu_s: CLIENTS / loginCpu,
      messages: MESSAGES,
      fanout_p50_ms: pct(fanout, 0.5), fanout_p99_ms: pct(fanout, 0.99),
      deliveries_per_s: (MESSAGES * want) / textWall,
      text_server_cpu_s: textCpu,
      deliveries_per_server_cpu_s: (MESSAGES * want) / textCpu,
      server_rss_mib: rss,
    };
    console.log(`portal-bench${quick ? " (quick)" : ""}: ${CLIENTS} clients in one room`);
    console.log(`  logins   ${results.logins_per_s.toFixed(0)}/s  p50 ${results.login_p50_ms.toFixed(1)} ms  p99 ${results.login_p99_ms.toFixed(1)} ms  server CPU ${loginCpu.toFixed(2)} s  → ${results.logins_per_server_cpu_s.toFixed(0)} logins per server CPU-s`);
    console.log(`  text     ${MESSAGES} messages to ${want} each: fan-out p50 ${results.fanout_p50_ms.toFixed(1)} ms  p99 ${results.fanout_p99_ms.toFixed(1)} ms  ${results.deliveries_per_s.toFixed(0)} deliveries/s  → ${results.deliveries_per_server_cpu_s.toFixed(0)} per server CPU-s`);
    console.log(`  server RSS ${rss.toFixed(0)} MiB`);
    if (outPath) { fs.mkdirSync(path.dirname(outPath), { recursive: true }); fs.writeFileSync(outPath, JSON.stringify(results, null, 2)); console.log(`results written to ${outPath}`); }

    if (baselinePath) {
      const baseline = JSON.parse(fs.readFileSync(baselinePath, "utf8"));
      const margin = baseline.noise_margin;
      const base = baseline.portal || {};
      console.log(`against the baseline ${baselinePath} (noise margin ${Math.round(margin * 100)} %):`);
      let bad = false;
      for (const key of ["logins_per_server_cpu_s", "deliveries_per_server_cpu_s"]) {
        if (!(key in base)) { console.log(`  ${key}: no baseline`); continue; }
        const ratio = results[key] / base[key];
        const ok = ratio >= 1 - margin;
        bad ||= !ok;
        console.log(`  ${key.padEnd(28)} ${results[key].toFixed(0).padStart(8)} vs baseline ${String(base[key]).padStart(8)}: ${ratio.toFixed(2)}x  ${ok ? "ok" : "REGRESSION"}`);
      }
      if (bad) process.exitCode = 1;
    }
  } finally {
    server.kill("SIGTERM");
  }
}

main().catch(e => { console.error(e); process.exit(1); });
