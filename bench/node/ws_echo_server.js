'use strict';
// Node's ws as an echo server, for bench/bench_echo.py (through bench/echo_servers.py, server `node-ws`) and
// tests/interop/test_node_ws.py. Installed with `npm ci --prefix bench/node`.
//
//   node bench/node/ws_echo_server.js [--host 127.0.0.1] [--port 0] [--deflate] [--lifetime SECONDS]
//                                     [--busy-poll SECONDS] [--max-payload BYTES]
//
// Written the way ws' README shows an echo server: text is echoed as text, binary as binary, on Node's own
// event loop (libuv). Once bound it prints `listening on PORT` and, on a second line, which native add-ons
// ws runs with (`add-ons: bufferutil=native|js utf8=buffer.isUtf8|utf-8-validate|js`), so a benchmark can
// say what it compared against. `--busy-poll` keeps the loop polling (setImmediate, so libuv polls with a
// zero timeout) for that long after each message: the same behaviour as wscodec's busy_poll option and the
// poller bench/echo_servers.py gives the Python peers. It exits after `--lifetime` (default 600) seconds.

const path = require('path');
const { WebSocketServer } = require('ws');

function parse(argv) {
  const options = { host: '127.0.0.1', port: 0, deflate: false, lifetime: 600, busyPoll: 0, maxPayload: 16 * 2 ** 20 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    if (name === '--deflate') options.deflate = true;
    else if (name === '--host') options.host = argv[++i];
    else if (name === '--port') options.port = Number(argv[++i]);
    else if (name === '--lifetime') options.lifetime = Number(argv[++i]);
    else if (name === '--busy-poll') options.busyPoll = Number(argv[++i]);
    else if (name === '--max-payload') options.maxPayload = Number(argv[++i]);
    else throw new Error(`unknown option ${name}`);
  }
  return options;
}

// ws loads bufferutil when it can; bufferutil itself falls back on JavaScript when its binary does not load.
function nativeAddOn(name) {
  try {
    require('node-gyp-build')(path.dirname(require.resolve(`${name}/package.json`)));
    return 'native';
  } catch {
    return 'js';
  }
}

function addOns() {
  const bufferutil = process.env.WS_NO_BUFFER_UTIL ? 'js' : nativeAddOn('bufferutil');
  // ws validates UTF-8 with buffer.isUtf8 (simdutf) where Node has it, else with utf-8-validate.
  let utf8 = 'buffer.isUtf8';
  if (!require('buffer').isUtf8) {
    utf8 = !process.env.WS_NO_UTF_8_VALIDATE && nativeAddOn('utf-8-validate') === 'native' ? 'utf-8-validate' : 'js';
  }
  return `bufferutil=${bufferutil} utf8=${utf8}`;
}

function busyPoller(seconds) {
  if (!(seconds > 0)) return () => {};
  const windowNs = BigInt(Math.round(seconds * 1e9));
  let until = 0n;
  let polling = false;
  const spin = () => {
    if (process.hrtime.bigint() < until) setImmediate(spin);
    else polling = false;
  };
  return () => {
    until = process.hrtime.bigint() + windowNs;
    if (!polling) {
      polling = true;
      setImmediate(spin);
    }
  };
}

const options = parse(process.argv.slice(2));
const touch = busyPoller(options.busyPoll);
const server = new WebSocketServer({
  host: options.host,
  port: options.port,
  perMessageDeflate: options.deflate,
  maxPayload: options.maxPayload,
});

server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
    touch();
  });
  ws.on('error', () => {}); // a peer's protocol error closes that connection (ws sends the close code)
});

server.on('listening', () => {
  process.stdout.write(`listening on ${server.address().port}\nadd-ons: ${addOns()}\n`);
});

setTimeout(() => process.exit(0), options.lifetime * 1000).unref();
process.on('SIGTERM', () => process.exit(0));
