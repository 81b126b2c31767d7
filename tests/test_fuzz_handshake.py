"""The HTTP handshake fuzz target's seed corpus, replayed through the target's own checks (no atheris needed).

``tests/fuzz/fuzz_handshake.py`` is what the CI fuzz run drives with atheris; its checks are plain Python,
so every test run replays the committed corpus (``tests/fuzz/corpus_handshake``, written by
``python tests/fuzz/run_fuzz.py --make-corpus``) and a few cut patterns of each seed through them.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

HERE = pathlib.Path(__file__).parent / "fuzz"
CORPUS = HERE / "corpus_handshake"

_spec = importlib.util.spec_from_file_location("wscodec_fuzz_handshake", HERE / "fuzz_handshake.py")
assert _spec is not None and _spec.loader is not None
fh = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fh)

SEEDS = sorted(p for p in CORPUS.iterdir() if p.is_file())


def test_corpus_covers_both_roles() -> None:
    roles = [fh.parse_input(p.read_bytes())[0] for p in SEEDS]
    assert roles.count("server") >= 15 and roles.count("client") >= 15, roles


@pytest.mark.parametrize("path", SEEDS, ids=[p.name for p in SEEDS])
def test_handshake_corpus_replay(path: pathlib.Path) -> None:
    fh.check_input(path.read_bytes())


@pytest.mark.parametrize("path", SEEDS, ids=[p.name for p in SEEDS])
def test_handshake_corpus_recut(path: pathlib.Path) -> None:
    """Each seed's HTTP bytes cut at other places: byte by byte for the head's first 64 bytes, then whole."""
    role, chunks = fh.parse_input(path.read_bytes())
    stream = b"".join(chunks)
    client = role == "client"
    fh.check_input(fh.build_input(stream, client=client, lengths=(1,) * 7))
    fh.check_input(fh.build_input(stream, client=client, lengths=(64, 0, 255, 255)))


def test_the_checks_catch_a_parser_that_depends_on_the_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay is not vacuous: a parser that looks for the end of the head only inside each read (and so
    misses a CRLF CRLF split across two reads) is caught."""
    from wscodec.handshake import HttpParser

    feed = HttpParser.feed

    def blind(self: HttpParser, data: bytes) -> bool:
        if not self.complete and b"\r\n\r\n" not in data:
            self._buffer += data
            return False
        return feed(self, data)

    stream = fh.parse_input((CORPUS / "req_minimal").read_bytes())[1][0]
    seed = fh.build_input(stream, lengths=(len(stream) - 2,))  # the last read is the final CRLF
    fh.check_input(seed)
    monkeypatch.setattr(HttpParser, "feed", blind)
    with pytest.raises(AssertionError, match="depends on how the head is cut"):
        fh.check_input(seed)


def test_reason_phrase_with_control_characters_is_refused() -> None:
    """Found by this fuzz target: a 101 whose reason phrase holds NUL or other control characters was
    accepted (RFC 7230 section 3.1.2: reason-phrase is HTAB, SP, VCHAR and obs-text only)."""
    from wscodec.errors import InvalidHandshake
    from wscodec.handshake import ClientHandshake, compute_accept

    def response(client: ClientHandshake, reason: str) -> bytes:
        return (
            f"HTTP/1.1 101 {reason}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {compute_accept(client.key)}\r\n\r\n"
        ).encode("latin-1")

    for reason in ("Switching\x00Protocols", "Switching\x01", "\x7f"):
        client = ClientHandshake("example.com", "/")
        with pytest.raises(InvalidHandshake, match="reason phrase"):
            client.receive_data(response(client, reason))
    for reason in ("Switching Protocols", "Sw\titching \xe9", ""):
        client = ClientHandshake("example.com", "/")
        assert client.receive_data(response(client, reason)) is not None


@pytest.mark.parametrize("code", ["\xb200", "1\u0663\u0663", "099", "20", "2000", "+20"])
def test_status_code_is_three_ascii_digits(code: str) -> None:
    """Found by this fuzz target: "\xb200" (a superscript two, latin-1) passed str.isdigit() and then
    int() raised ValueError out of the handshake (and out of Connection.receive_data)."""
    from wscodec import Connection
    from wscodec.errors import InvalidHandshake
    from wscodec.events import ProtocolViolation
    from wscodec.handshake import ClientHandshake

    head = f"HTTP/1.1 {code} OK\r\n\r\n".encode("utf-8" if code.isascii() else "latin-1", "replace")
    with pytest.raises(InvalidHandshake, match="status line"):
        ClientHandshake("example.com", "/").receive_data(head)
    events = Connection("client", host="example.com", path="/").receive_data(head)
    assert any(isinstance(e, ProtocolViolation) for e in events), events
