// The client side of the server-to-client scenario in tests/_traffic.py, one module for two runtimes: the page
// apps/traffic.html imports it in headless Chromium, node_client.mjs (mode "traffic") in Node. It uses only
// the WebSocket API both share. The server, in this order:
//   sends three fragmented messages: a text message of str fragments, a text message of UTF-8 bytes cut
//     inside characters, a binary message from an async generator (ended by an empty frame);
//   sends a burst of BURST compressed text messages (context takeover: each looks like the one before);
//   sends a 1 MiB compressible text message;
// then the client sends "received", stays silent for IDLE_MS (the server's keepalive Pings must be answered
// meanwhile), sends AFTER_IDLE and checks its echo; then the server closes (server.close(): 1001).
// runTraffic(url) resolves with what the client saw; it never rejects.

export const BURST = 200;
export const IDLE_MS = 1500;
export const MIB = 1 << 20;
export const AFTER_IDLE = "after idle \u2713";
export const FRAGMENTED_TEXT = "fragmented \u2713 " + "\u00e9".repeat(3000) + " the end \ud83d\ude80";
export const SPLIT_TEXT = "split \u2192 \u2713 \ud83d\ude80";

export function burstText(i) {
  return "burst " + String(i).padStart(3, "0") + " " + "the quick brown fox jumps over the lazy dog ".repeat(4) + i * i;
}

export function bigText() {
  const lines = [];
  let length = 0;
  for (let i = 0; length < MIB; i++) {
    const line = i + " " + String.fromCharCode(97 + (i % 26)).repeat(i % 61) + "\n";
    lines.push(line);
    length += line.length;
  }
  return lines.join("").slice(0, MIB);
}

function binaryOk(data) {
  if (!(data instanceof ArrayBuffer) || data.byteLength !== 3000) return false;
  const view = new Uint8Array(data);
  for (let j = 0; j < 3000; j++) if (view[j] !== (((j % 1000) * 31 + Math.floor(j / 1000)) & 0xff)) return false;
  return true;
}

function describe(data) {
  return typeof data === "string" ? "text:" + data.slice(0, 40) : "binary:" + data.byteLength;
}

export function runTraffic(url, timeoutMs = 20000) {
  return new Promise((resolve) => {
    const out = {
      opened: false, extensions: null, fragments: { text: false, split_utf8: false, binary: false },
      burst: { count: 0, bad: [] }, big: { length: null, ok: false }, idle_ms: null, echo_after_idle: false,
      unexpected: [], close: null, errors: [],
    };
    const big = bigText();
    let count = 0;
    let silentSince = null;
    let done = false;
    const finish = () => { if (!done) { done = true; clearTimeout(timer); resolve(out); } };
    const timer = setTimeout(() => { out.errors.push("timeout"); finish(); }, timeoutMs);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      out.errors.push("constructor: " + err.message);
      finish();
      return;
    }
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { out.opened = true; out.extensions = ws.extensions; };
    ws.onmessage = (event) => {
      const data = event.data;
      const n = count++;
      if (n === 0) out.fragments.text = data === FRAGMENTED_TEXT;
      else if (n === 1) out.fragments.split_utf8 = data === SPLIT_TEXT;
      else if (n === 2) out.fragments.binary = binaryOk(data);
      else if (n < 3 + BURST) {
        out.burst.count += 1;
        if (data !== burstText(n - 3) && out.burst.bad.length < 5) out.burst.bad.push([n - 3, describe(data)]);
      } else if (n === 3 + BURST) {
        out.big = { length: typeof data === "string" ? data.length : null, ok: data === big };
        ws.send("received");
        silentSince = Date.now();
        setTimeout(() => { out.idle_ms = Date.now() - silentSince; ws.send(AFTER_IDLE); }, IDLE_MS);
      } else if (n === 4 + BURST) out.echo_after_idle = data === AFTER_IDLE;
      else out.unexpected.push(describe(data));
    };
    ws.onerror = (event) => {
      out.errors.push("error: " + (event.message || event.type));
      if (!out.opened) setTimeout(finish, 1000);  // no close event follows a failed opening handshake
    };
    ws.onclose = (event) => {
      out.close = { code: event.code, reason: event.reason, wasClean: event.wasClean };
      finish();
    };
  });
}
