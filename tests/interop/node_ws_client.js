'use strict';
// Node's ws as a client of a wscodec server. Usage: NODE_PATH=bench/node/node_modules node node_ws_client.js URL
// Offers permessage-deflate, sends a text, a 256-byte binary and a 1 MiB binary message, checks each echo,
// then closes with 4000 "client bye". Prints one JSON object: what it saw, and any error.

const WebSocket = require('ws');

const url = process.argv[2];
const MIB = 1 << 20;
const text = 'héllo from ws ✓ 🚀';
const small = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const big = Buffer.alloc(MIB);
for (let i = 0; i < MIB; i++) big[i] = (i * 7 + (i >> 8)) & 0xff;
const expected = [
  [text, false],
  [small, true],
  [big, true],
];

const out = { opened: false, extensions: null, echoes: [], close: null, errors: [] };
const ws = new WebSocket(url, { perMessageDeflate: true, maxPayload: 4 * MIB });
const timer = setTimeout(() => {
  out.errors.push('timeout');
  finish();
}, 20000);

function finish() {
  clearTimeout(timer);
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}

ws.on('open', () => {
  out.opened = true;
  out.extensions = ws.extensions;
  for (const [data, binary] of expected) ws.send(data, { binary });
});

ws.on('message', (data, isBinary) => {
  const [want, binary] = expected[out.echoes.length];
  const same = isBinary === binary && (binary ? Buffer.compare(data, want) === 0 : data.toString() === want);
  out.echoes.push({ binary: isBinary, length: data.length, same });
  if (out.echoes.length === expected.length) ws.close(4000, 'client bye');
});

ws.on('error', (err) => out.errors.push(String(err && err.message)));
ws.on('close', (code, reason) => {
  out.close = { code, reason: reason.toString() };
  finish();
});
