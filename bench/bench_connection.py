"""Connection-level throughput, wscodec beside websockets' and wsproto's sans-I/O layers, in one run.

Receive: a 16 MiB buffer of masked client text frames (16 B, 125 B, 1 KiB payloads) fed in 64 KiB chunks
to a server connection; messages per second, UTF-8 checked by every implementation that checks it.
Send: ``send_text`` + ``data_to_send`` of 16 B and 1 KiB messages on a server connection; ``send_binary`` +
``data_to_send`` against ``encode_frame`` alone (the cost of the Connection around the framing).
picows: its WSTransport.send and its WSProtocol parser driven without a network, side by side.

    python bench/bench_connection.py [--quick]

Prints ratios (ours / peer) and PASS/FAIL against the issue's targets: receive >= 5x websockets and >= 15x
wsproto on the compiled backend, send >= 3x websockets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import timeit
from collections.abc import Callable

CHUNK = 64 * 1024
TOTAL = 16 * 1024 * 1024
MASK = b"\x12\x34\x56\x78"


def _make_stream(size: int) -> tuple[list[bytes], int]:
    from wscodec._pure import encode_frame

    text = ("wscodec-" * (size // 8 + 1))[:size].encode()
    frame = encode_frame(1, text, mask=MASK)
    count = TOTAL // len(frame)
    stream = frame * count
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)], count


def _best_rate(run: Callable[[], int], seconds: float) -> float:
    """Best messages/s over repeated runs within ``seconds``."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 2 or (time.perf_counter() < deadline and runs < 50):
        start = time.perf_counter()
        count = run()
        elapsed = time.perf_counter() - start
        best = max(best, count / elapsed)
        runs += 1
    return best


# --------------------------------------------------------------------------- receive


def _ours_receive(chunks: list[bytes], expected: int) -> Callable[[], int]:
    from wscodec.connection import Connection

    def run() -> int:
        conn = Connection.established("server", max_message_size=None)
        receive = conn.receive_data
        count = 0
        for chunk in chunks:
            count += len(receive(chunk))
        assert count == expected, (count, expected)
        return count

    return run


_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _websockets_server() -> object:
    from websockets.server import ServerProtocol

    proto = ServerProtocol(max_size=None)
    proto.receive_data(_UPGRADE)
    (request,) = proto.events_received()
    proto.send_response(proto.accept(request))
    proto.data_to_send()
    return proto


def _websockets_receive(chunks: list[bytes], expected: int) -> Callable[[], int]:
    def run() -> int:
        proto = _websockets_server()
        count = 0
        for chunk in chunks:
            proto.receive_data(chunk)  # type: ignore[attr-defined]
            count += len(proto.events_received())  # type: ignore[attr-defined]
        assert count == expected, (count, expected)
        return count

    return run


def _wsproto_server() -> object:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection

    conn = WSConnection(ConnectionType.SERVER)
    conn.receive_data(_UPGRADE)
    list(conn.events())
    conn.send(AcceptConnection())
    return conn


def _wsproto_receive(chunks: list[bytes], expected: int) -> Callable[[], int]:
    def run() -> int:
        conn = _wsproto_server()
        count = 0
        for chunk in chunks:
            conn.receive_data(chunk)  # type: ignore[attr-defined]
            # wsproto hands over partial messages at chunk boundaries: count whole ones only
            count += sum(1 for event in conn.events() if event.message_finished)  # type: ignore[attr-defined]
        assert count == expected, (count, expected)
        return count

    return run


# --------------------------------------------------------------------------- send

SEND_COUNT = 100_000


def _ours_send(text: str) -> Callable[[], int]:
    from wscodec.connection import Connection

    def run() -> int:
        conn = Connection.established("server")
        send, drain = conn.send_text, conn.data_to_send
        for _ in range(SEND_COUNT):
            send(text)
            drain()
        return SEND_COUNT

    return run


def _websockets_send(text: str) -> Callable[[], int]:
    def run() -> int:
        proto = _websockets_server()
        send, drain = proto.send_text, proto.data_to_send  # type: ignore[attr-defined]
        for _ in range(SEND_COUNT):
            send(text.encode())
            drain()
        return SEND_COUNT

    return run


def _wsproto_send(text: str) -> Callable[[], int]:
    from wsproto.events import TextMessage

    def run() -> int:
        conn = _wsproto_server()
        send = conn.send  # type: ignore[attr-defined]
        for _ in range(SEND_COUNT):
            send(TextMessage(data=text))
        return SEND_COUNT

    return run


def _send_vs_encode(seconds: float) -> dict[str, dict[str, float]]:
    """``send_binary`` + drain against ``encode_frame`` alone (the issue's 1.3x budget), per call, interleaved.

    Returns ``{"SIZE/ROLE": {"encode": ns, "send": ns}}`` (send: the cheaper of the two drains)."""
    import timeit

    from wscodec import encode_frame
    from wscodec.connection import Connection

    server = Connection.established("server", max_message_size=None)
    client = Connection.established("client", max_message_size=None)
    print("\nsend_binary + drain vs encode_frame alone (ns per message, best of interleaved repeats)")
    print(f"{'payload':>8} {'role':<7} {'encode_frame':>13} {'+data_to_send':>14} {'+..._buffers':>13} {'ratio':>6}")
    found: dict[str, dict[str, float]] = {}
    for size in (16, 1024, 65536):
        data = bytes(size)
        number = 20_000 if size < 65536 else 500
        cases = {
            "encode server": "encode_frame(2, data)",
            "send server": "server.send_binary(data); server.data_to_send()",
            "buffers server": "server.send_binary(data); server.data_to_send_buffers()",
            "encode client": "encode_frame(2, data, mask=True)",
            "send client": "client.send_binary(data); client.data_to_send()",
            "buffers client": "client.send_binary(data); client.data_to_send_buffers()",
        }
        names = {"encode_frame": encode_frame, "server": server, "client": client, "data": data}
        best = dict.fromkeys(cases, float("inf"))
        deadline = time.perf_counter() + seconds
        rounds = 0
        while rounds < 3 or (time.perf_counter() < deadline and rounds < 30):
            for name, stmt in cases.items():
                best[name] = min(best[name], timeit.timeit(stmt, number=number, globals=names) / number * 1e9)
            rounds += 1
        for role in ("server", "client"):
            enc, send, bufs = best[f"encode {role}"], best[f"send {role}"], best[f"buffers {role}"]
            print(f"{size:>7}B {role:<7} {enc:>13.0f} {send:>14.0f} {bufs:>13.0f} {min(send, bufs) / enc:>6.2f}")
            found[f"{size}/{role}"] = {"encode": enc, "send": min(send, bufs)}
    return found


# --------------------------------------------------------------------------- side by side with picows

# picows has no sans-I/O layer: its parser and framer live in WSProtocol/WSTransport, driven here without
# a network. Like with like: its transport reports a non-empty write buffer, so picows hands each frame to
# the same Python ``write`` sink as ours (its direct send() shortcut belongs to the echo benchmark), and its
# listener asks for each payload as the application would: bytes, or UTF-8 text (decoded and validated,
# as our TextMessage is).


class _PicowsSink:
    """The asyncio transport picows writes to: swallows everything, holds a real (idle) TCP socket."""

    def __init__(self, sock: object) -> None:
        self.sock = sock

    def write(self, data: object) -> None:
        pass

    def writelines(self, data: object) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 1

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"socket": self.sock, "peername": ("127.0.0.1", 1), "sockname": ("127.0.0.1", 2)}.get(name, default)

    def is_closing(self) -> bool:
        return False


def _picows_side_by_side(seconds: float) -> dict[str, dict[str, dict[str, float]]]:
    """Send and receive beside picows. Returns ``{"send": {"SIZE/ROLE": {"picows": ns, "ours": ns}},
    "receive": {"SIZE/KIND": {"picows": msgs/s, "ours": msgs/s}}}`` (empty without picows)."""
    import asyncio
    import logging
    import socket

    try:
        import picows
        from picows import WSMsgType, WSTransport
        from picows.picows import WSProtocol  # type: ignore[import-not-found]
    except ImportError:
        print("\npicows is not installed (pip install 'wscodec[bench]'): its side-by-side rows are skipped")
        return {}
    from wscodec import encode_frame
    from wscodec.connection import Connection

    listener_sock = socket.create_server(("127.0.0.1", 0))
    sock = socket.create_connection(listener_sock.getsockname())
    logger = logging.getLogger("bench.picows")
    found: dict[str, dict[str, dict[str, float]]] = {"send": {}, "receive": {}}

    async def measure() -> None:
        loop = asyncio.get_running_loop()
        print(f"\nside by side with picows {picows.__version__}: one frame sent, handed to a transport's write")
        print(f"{'payload':>8} {'role':<7} {'picows ns':>10} {'ours ns':>8} {'ratio':>6}   (ratio: picows / ours)")
        sink = _PicowsSink(sock)
        write = sink.write
        for size in (16, 1024, 65536):
            data = bytes(size)
            for role in ("server", "client"):
                pw = WSTransport(role == "client", sink, logger, loop)
                ours = Connection.established(role, max_message_size=None)
                drain = ours.data_to_send_buffers if size >= 65536 and role == "server" else ours.data_to_send
                names = {"pw": pw, "B": WSMsgType.BINARY, "data": data, "ours": ours, "drain": drain, "write": write}
                cases = {"picows": "pw.send(B, data)", "ours": "ours.send_binary(data); write(drain())"}
                number = 20_000 if size < 65536 else 1000
                best = dict.fromkeys(cases, float("inf"))
                deadline = time.perf_counter() + seconds
                rounds = 0
                while rounds < 3 or (time.perf_counter() < deadline and rounds < 30):
                    for name, stmt in cases.items():
                        t = timeit.timeit(stmt, number=number, globals=names) / number * 1e9
                        best[name] = min(best[name], t)
                    rounds += 1
                ratio = best["picows"] / best["ours"]
                print(f"{size:>7}B {role:<7} {best['picows']:>10.0f} {best['ours']:>8.0f} {ratio:>6.2f}")
                found["send"][f"{size}/{role}"] = best

        print("\nreceive: 16 MiB of masked client frames in 64 KiB chunks, messages/s (ratio: ours / picows)")
        print(f"{'payload':>8} {'kind':<7} {'picows':>12} {'ours':>12} {'ratio':>6}")
        upgrade = _UPGRADE
        for size in (16, 1024):
            for opcode, kind in ((2, "binary"), (1, "text")):
                text = ("wscodec-" * (size // 8 + 1))[:size].encode()
                one = encode_frame(opcode, text, mask=MASK)
                count = TOTAL // len(one)
                stream = one * count
                chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]

                def picows_run(chunks: list[bytes] = chunks, count: int = count, opcode: int = opcode) -> int:
                    got = [0]

                    class Listener(picows.WSListener):  # type: ignore[misc]
                        if opcode == 1:

                            def on_ws_frame(self, transport: object, frame: object) -> None:
                                frame.get_payload_as_utf8_text()  # type: ignore[attr-defined]
                                got[0] += 1

                        else:

                            def on_ws_frame(self, transport: object, frame: object) -> None:
                                frame.get_payload_as_bytes()  # type: ignore[attr-defined]
                                got[0] += 1

                    proto = WSProtocol(
                        None,
                        None,
                        False,
                        lambda request: Listener(),
                        logger,
                        True,
                        5.0,
                        False,
                        10.0,
                        10.0,
                        picows.WSAutoPingStrategy.PING_WHEN_IDLE,
                        True,
                        1 << 20,
                        None,
                        64 * 1024,
                    )
                    proto.connection_made(_PicowsSink(sock))
                    for data in (upgrade, *chunks):
                        view = memoryview(data)
                        while view:
                            buf = proto.get_buffer(-1)
                            n = min(len(buf), len(view))
                            buf[:n] = view[:n]
                            proto.buffer_updated(n)
                            view = view[n:]
                    assert got[0] == count, (got[0], count)
                    return count

                rates = {"picows": 0.0, "ours": 0.0}
                deadline = time.perf_counter() + seconds
                rounds = 0
                while rounds < 3 or (time.perf_counter() < deadline and rounds < 20):
                    for name, run in (("picows", picows_run), ("ours", _ours_receive(chunks, count))):
                        start = time.perf_counter()
                        n = run()
                        rates[name] = max(rates[name], n / (time.perf_counter() - start))
                    rounds += 1
                ratio = rates["ours"] / rates["picows"]
                print(f"{size:>7}B {kind:<7} {rates['picows']:>12,.0f} {rates['ours']:>12,.0f} {ratio:>6.2f}")
                found["receive"][f"{size}/{kind}"] = rates

    try:
        asyncio.run(measure())
    finally:
        sock.close()
        listener_sock.close()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier)")
    parser.add_argument("--live-only", action="store_true", help="skip the pure-Python rerun")
    parser.add_argument("--json", metavar="FILE", help="also write the send and picows measurements as JSON")
    args = parser.parse_args(argv)
    import wscodec

    seconds = 0.5 if args.quick else 2.0
    ours = f"wscodec ({wscodec.BACKEND})"
    compiled = wscodec.BACKEND == "cython"
    failures = 0

    print(f"Connection.receive_data, 16 MiB of masked text frames in 64 KiB chunks, backend {wscodec.BACKEND}")
    print(f"{'payload':>8} {'implementation':<20} {'msgs/s':>12} {'vs websockets':>14} {'vs wsproto':>11}")
    for size in (16, 125, 1024):
        chunks, count = _make_stream(size)
        peers = {
            "websockets": _best_rate(_websockets_receive(chunks, count), seconds),
            "wsproto": _best_rate(_wsproto_receive(chunks, count), seconds),
        }
        for name, rate in peers.items():
            print(f"{size:>7}B {name:<20} {rate:>12,.0f}")
        rate = _best_rate(_ours_receive(chunks, count), seconds)
        r_ws, r_wp = rate / peers["websockets"], rate / peers["wsproto"]
        verdict = ""
        if compiled:
            ok = r_ws >= 5 and r_wp >= 15
            failures += not ok
            verdict = "PASS" if ok else "FAIL (target 5x / 15x)"
        print(f"{size:>7}B {ours:<20} {rate:>12,.0f} {r_ws:>13.2f}x {r_wp:>10.2f}x  {verdict}")

    print(f"\nsend_text + data_to_send on a server connection, backend {wscodec.BACKEND}")
    print(f"{'payload':>8} {'implementation':<20} {'msgs/s':>12} {'vs websockets':>14} {'vs wsproto':>11}")
    for size in (16, 1024):
        text = "x" * size
        peers = {
            "websockets": _best_rate(_websockets_send(text), seconds),
            "wsproto": _best_rate(_wsproto_send(text), seconds),
        }
        for name, rate in peers.items():
            print(f"{size:>7}B {name:<20} {rate:>12,.0f}")
        rate = _best_rate(_ours_send(text), seconds)
        r_ws, r_wp = rate / peers["websockets"], rate / peers["wsproto"]
        verdict = ""
        if compiled:
            ok = r_ws >= 3
            failures += not ok
            verdict = "PASS" if ok else "FAIL (target 3x)"
        print(f"{size:>7}B {ours:<20} {rate:>12,.0f} {r_ws:>13.2f}x {r_wp:>10.2f}x  {verdict}")

    found: dict[str, object] = {"backend": wscodec.BACKEND, "send_vs_encode": _send_vs_encode(seconds)}
    found["picows"] = _picows_side_by_side(seconds)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(found, fh, indent=1)

    if compiled and not args.live_only:
        print("\n--- the same with the pure-Python backend (WSCODEC_PURE_PYTHON=1) ---", flush=True)
        env = dict(os.environ, WSCODEC_PURE_PYTHON="1")
        command = [sys.executable, __file__, "--live-only", *(["--quick"] if args.quick else [])]
        subprocess.run(command, env=env, check=False)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
