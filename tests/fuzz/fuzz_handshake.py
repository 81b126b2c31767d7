"""Fuzz target for the HTTP side of the opening handshake, both roles: what a server reads from a client
(the request head) and what a client reads from a server (the response head and a refusal's body).

Run it with atheris (libFuzzer flags pass through)::

    python tests/fuzz/fuzz_handshake.py -max_total_time=60 tests/fuzz/corpus_handshake

or through ``tests/fuzz/run_fuzz.py``, which runs every target and keeps artifacts out of the tree. The
checks are plain Python and need no atheris: ``tests/test_fuzz_handshake.py`` replays the seed corpus
through :func:`check_input` on every test run.

Input layout (read by :func:`parse_input`, no ``FuzzedDataProvider``): byte 0 holds the flags (bit 0:
client role, i.e. the bytes are a server's response), byte 1 the number of chunk lengths (mod 8), then
one byte per chunk length; the rest is the HTTP bytes. In the client role the placeholder ``{ACCEPT}``
is replaced by the right ``Sec-WebSocket-Accept`` for the client's key, so that inputs reach the checks
behind it.

What must hold, for every input, however it is cut into reads:

- only :class:`~wscodec.errors.InvalidHandshake` (the server's :class:`HandshakeRejected` with a 4xx/5xx
  status, the client's :class:`InvalidStatus`...) leaves the handshake objects; anything else is a finding;
- the outcome (a Request/Response and its fields, or a refusal) does not depend on the cuts;
- the parser never holds more than ``max_header_size`` bytes of an unfinished head;
- an accepted request or response has a clean start line and header fields (no CR, LF or NUL), and a
  request re-serialized by our own writer parses back to itself;
- :class:`~wscodec.Connection` in the same role never raises from ``receive_data``: it accepts exactly
  what the handshake object accepts, and answers a refused request with an HTTP error status.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from typing import Any

PLACEHOLDER = b"{ACCEPT}"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEADER_SIZE = 8192


def parse_input(data: bytes) -> tuple[str, list[bytes]]:
    """(role, chunks) from a raw fuzzer input; the chunks cut the HTTP bytes at the given lengths."""
    if len(data) < 2:
        return "server", [data]
    role = "client" if data[0] & 1 else "server"
    count = data[1] % 8
    lengths = list(data[2 : 2 + count])
    stream = data[2 + count :]
    chunks = []
    pos = 0
    for n in lengths:
        chunks.append(stream[pos : pos + n])
        pos += n
    chunks.append(stream[pos:])
    return role, chunks


def build_input(stream: bytes, *, client: bool = False, lengths: tuple[int, ...] = ()) -> bytes:
    """The fuzzer input that :func:`parse_input` reads back as these settings (for the seed corpus)."""
    return bytes([int(client), len(lengths), *lengths]) + stream


def _clean(text: str) -> bool:
    return not any(c in text for c in "\r\n\x00")


def _server_outcome(chunks: list[bytes]) -> tuple[Any, ...]:
    from wscodec.extensions import ServerPerMessageDeflate
    from wscodec.handshake import HandshakeRejected, ServerHandshake, _serialize

    handshake = ServerHandshake(extensions=[ServerPerMessageDeflate()])  # what Connection("server") uses
    for index, chunk in enumerate(chunks):
        try:
            request = handshake.receive_data(chunk)
        except HandshakeRejected as exc:
            assert 400 <= exc.status <= 599, exc.status
            return ("rejected",)
        if request is not None:
            assert request.method == "GET" and request.http_version == "HTTP/1.1", request
            assert _clean(request.path) and all(_clean(k) and _clean(v) for k, v in request.headers), request
            again = ServerHandshake(extensions=[ServerPerMessageDeflate()])
            wire = _serialize(f"GET {request.path} HTTP/1.1", request.headers)
            assert again.receive_data(wire) == request, (wire, request)
            for later in chunks[index + 1 :]:
                assert handshake.receive_data(later) is None  # bytes after the head: kept as leftover
            return ("request", request, handshake.leftover)
        buffered = len(handshake._parser._buffer)
        assert buffered <= MAX_HEADER_SIZE, f"the parser holds {buffered} bytes of an unfinished head"
    return ("incomplete",)


def _client_outcome(chunks: list[bytes], key: str | None = None) -> tuple[Any, ...]:
    from wscodec.errors import InvalidHandshake, InvalidStatus
    from wscodec.extensions import ClientPerMessageDeflate
    from wscodec.handshake import ClientHandshake

    handshake = ClientHandshake("example.com", "/chat", extensions=[ClientPerMessageDeflate()])
    if key is not None:
        handshake.key = key  # the same key for every cut, so that {ACCEPT} means the same everywhere
    reads = [*(c for c in chunks if c), b""]  # b"" at the end: EOF
    for index, chunk in enumerate(reads):
        try:
            response = handshake.receive_data(chunk)
        except InvalidStatus as exc:
            assert exc.status_code != 101 and 100 <= exc.status_code <= 999, exc.status_code
            return ("status", exc.status_code, bytes(exc.body))
        except InvalidHandshake as exc:
            return ("invalid", type(exc).__name__)
        if response is not None:
            assert response.status_code == 101 and _clean(response.reason), response
            assert all(_clean(k) and _clean(v) for k, v in response.headers), response
            # Bytes after the head (frames) are the Connection's: the head's leftover plus later reads.
            return ("response", response, handshake.leftover + b"".join(reads[index + 1 :]))
        buffered = len(handshake._parser._buffer)
        assert buffered <= MAX_HEADER_SIZE, f"the parser holds {buffered} bytes of an unfinished head"
    return ("incomplete",)


def _connection_check(conn: Any, role: str, chunks: list[bytes], outcome: tuple[Any, ...]) -> None:
    """``conn`` (a fresh Connection in ``role``) fed ``chunks`` agrees with the handshake object's ``outcome``."""
    from wscodec.events import ProtocolViolation, Request, Response

    events: list[Any] = []
    for chunk in chunks:
        if chunk:  # b"" is EOF for a Connection
            events += conn.receive_data(chunk)
    kinds = {type(e) for e in events}
    if role == "server":
        accepted = outcome[0] == "request"
        assert (Request in kinds) == accepted, (outcome, events)
        if outcome[0] == "rejected":
            assert ProtocolViolation in kinds, events
            reply = conn.data_to_send()
            assert reply.startswith(b"HTTP/1.1 ") and reply[9:10] in b"45", reply[:100]
        elif accepted:
            conn.accept()
            assert conn.data_to_send().startswith(b"HTTP/1.1 101 ")
    else:
        responses = [e for e in events if type(e) is Response]
        assert any(r.status_code == 101 for r in responses) == (outcome[0] == "response"), (outcome, events)
        if outcome[0] == "status":  # a refusal is reported with its status and body (once complete)
            assert all((r.status_code, r.body) == outcome[1:] for r in responses), (outcome, events)


def check_input(data: bytes) -> None:
    """Every check of one raw input (what the atheris target and the corpus replay test run)."""
    role, chunks = parse_input(data)
    if role == "server":
        outcome = _server_outcome(chunks)
        assert _server_outcome([b"".join(chunks)]) == outcome, "the outcome depends on how the head is cut"
        from wscodec import Connection

        _connection_check(Connection("server"), role, chunks, outcome)
        return
    from wscodec import Connection

    conn = Connection("client", host="example.com", path="/chat")
    assert conn.request is not None
    key = conn.request.header("Sec-WebSocket-Key")
    assert key is not None
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest())
    chunks = [c.replace(PLACEHOLDER, accept) for c in chunks]  # a placeholder split by a cut stays as it is
    outcome = _client_outcome(chunks, key)
    whole = _client_outcome([b"".join(chunks)], key)
    if PLACEHOLDER not in b"".join(chunks):
        assert whole == outcome, f"the outcome depends on how the head is cut: {whole} != {outcome}"
    _connection_check(conn, role, chunks, outcome)  # the same key: the Connection's own


def _safe_argv(argv: list[str]) -> list[str]:
    """libFuzzer flags with crash artifacts and new inputs kept out of the repository (see fuzz_kernels)."""
    import tempfile

    args = list(argv[1:])
    work = tempfile.mkdtemp(prefix="wscodec-fuzz-handshake-")
    if not any(a.startswith("-artifact_prefix=") for a in args):
        os.makedirs(os.path.join(work, "artifacts"))
        args.insert(0, f"-artifact_prefix={os.path.join(work, 'artifacts')}{os.sep}")
    dirs = [i for i, a in enumerate(args) if not a.startswith("-")]
    seed_corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus_handshake")
    if dirs and os.path.abspath(args[dirs[0]]) == seed_corpus:
        os.makedirs(os.path.join(work, "corpus"))
        args.insert(dirs[0], os.path.join(work, "corpus"))
    print(f"fuzz_handshake: artifacts and new inputs under {work}", file=sys.stderr)
    return [argv[0], *args]


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["wscodec"]):
        import wscodec.connection
        import wscodec.handshake  # noqa: F401

    atheris.Setup(_safe_argv(sys.argv), check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(os.path.dirname(os.path.dirname(here)), "src")
    if importlib.util.find_spec("wscodec") is None and os.path.isdir(src):
        sys.path.insert(0, src)  # a checkout without an installed wscodec
    main()
