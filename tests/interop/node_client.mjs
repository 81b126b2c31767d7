// Node's built-in WebSocket client (node >= 20 with --experimental-websocket, 22+ without) against a
// wscodec server. Usage: node --experimental-websocket node_client.mjs ws://127.0.0.1:PORT/ [traffic]
// With "traffic", runs apps/traffic.mjs (the server-to-client scenario of tests/_traffic.py, which the
// Chromium test runs too) and prints {node, traffic}. Without, runs two sessions and prints one JSON object
// with what it saw:
//   client: offers ["chat", "superchat"], sends a text, a binary (ArrayBuffer) and a 1 MiB binary message,
//           checks the echoes, then closes with 4000 "client bye".
//   server: sends "please close"; the server closes with 4001 "server bye".

const url = process.argv[2];
const MIB = 1 << 20;

if (process.argv[3] === "traffic") {
  const { runTraffic } = await import("./apps/traffic.mjs");
  console.log(JSON.stringify({ node: process.version, traffic: await runTraffic(url) }));
  process.exit(0);
}

function session(protocols, onOpen, onMessage) {
  return new Promise((resolve) => {
    const out = { opened: false, protocol: null, extensions: null, messages: [], close: null, errors: [] };
    const ws = new WebSocket(url, protocols);
    ws.binaryType = "arraybuffer";
    const timer = setTimeout(() => { out.errors.push("timeout"); resolve(out); }, 15000);
    ws.onopen = () => {
      out.opened = true;
      out.protocol = ws.protocol;
      out.extensions = ws.extensions;
      onOpen(ws);
    };
    ws.onmessage = (event) => onMessage(ws, event.data, out);
    ws.onerror = (event) => {
      out.errors.push("error: " + (event.message || event.type));
      if (!out.opened) setTimeout(() => { clearTimeout(timer); resolve(out); }, 1000);  // no close event follows
    };
    ws.onclose = (event) => {
      clearTimeout(timer);
      out.close = { code: event.code, reason: event.reason, wasClean: event.wasClean };
      resolve(out);
    };
  });
}

const text = "héllo from node ✓ 🚀";
const small = new Uint8Array(256).map((_, i) => i);
const big = new Uint8Array(MIB).map((_, i) => (i * 7 + (i >> 8)) & 0xff);

function sameBytes(data, expected) {
  if (!(data instanceof ArrayBuffer) || data.byteLength !== expected.length) return false;
  const view = new Uint8Array(data);
  for (let i = 0; i < expected.length; i++) if (view[i] !== expected[i]) return false;
  return true;
}

const client = await session(
  ["chat", "superchat"],
  (ws) => { ws.send(text); ws.send(small.buffer); ws.send(big.buffer); },
  (ws, data, out) => {
    const n = out.messages.length;
    if (n === 0) out.messages.push({ kind: typeof data, ok: data === text });
    else if (n === 1) out.messages.push({ kind: "binary", ok: sameBytes(data, small) });
    else if (n === 2) {
      out.messages.push({ kind: "binary", size: data.byteLength, ok: sameBytes(data, big) });
      ws.close(4000, "client bye");
    }
  },
);

const server = await session(
  ["chat"],
  (ws) => ws.send("please close"),
  (ws, data, out) => out.messages.push({ kind: typeof data, data: typeof data === "string" ? data : null }),
);

console.log(JSON.stringify({ node: process.version, client, server }));
