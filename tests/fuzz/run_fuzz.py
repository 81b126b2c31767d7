"""Run the fuzz targets, or (re)write their seed corpora.

    python tests/fuzz/run_fuzz.py [SECONDS]        fuzz each target for SECONDS (default 60) over its corpus
    python tests/fuzz/run_fuzz.py --make-corpus    rewrite the seed corpora (frames; HTTP heads, both roles)

The targets: ``fuzz_kernels.py`` (the frame decoder, UTF-8 and masking kernels, compiled against pure) over
``corpus/``, and ``fuzz_handshake.py`` (the HTTP request and response parsing of the opening handshake,
server and client role) over ``corpus_handshake/``.

New inputs found while fuzzing go to a temporary directory, and crash artifacts to another one (printed at
the end), so a run never writes into the repository: the committed corpus changes only through
``--make-corpus``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
TARGET = os.path.join(HERE, "fuzz_kernels.py")
HANDSHAKE_CORPUS = os.path.join(HERE, "corpus_handshake")
HANDSHAKE_TARGET = os.path.join(HERE, "fuzz_handshake.py")
KEY = b"\x37\xfa\x21\x3d"


def _wire(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, key: bytes | None = None) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if key is not None else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 65536:
        head = bytes([b0, m | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, m | 127]) + n.to_bytes(8, "big")
    if key is None:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def seeds() -> dict[str, bytes]:
    """Named fuzzer inputs: a stream of frames plus the settings :func:`fuzz_kernels.build_input` encodes."""
    sys.path.insert(0, HERE)
    from fuzz_kernels import MAX_SIZES, build_input

    idx = {size: i for i, size in enumerate(MAX_SIZES)}
    c = {"client": True}  # unmasked frames are what a client receives
    hello_masked = _wire(1, b"Hello", key=KEY)
    out = {
        # RFC 6455 section 5.7 examples
        "rfc_unmasked_hello": build_input(bytes.fromhex("810548656c6c6f"), **c),
        "rfc_masked_hello": build_input(bytes.fromhex("818537fa213d7f9f4d5158")),
        "rfc_fragmented_hello": build_input(bytes.fromhex("010348656c80026c6f"), **c, lengths=(3, 4)),
        "rfc_ping": build_input(bytes.fromhex("890548656c6c6f"), **c),
        "rfc_masked_pong": build_input(bytes.fromhex("8a8537fa213d7f9f4d5158")),
        "rfc_256_binary": build_input(_wire(2, bytes(range(256))), **c, lengths=(2, 2, 100)),
        "rfc_64k_binary_header": build_input(_wire(2, bytes(65536))[:10] + bytes(64), **c),
        # length boundaries, split inside the extended length
        "len_125": build_input(_wire(2, b"a" * 125, key=KEY), lengths=(1, 1)),
        "len_126": build_input(_wire(2, b"b" * 126, key=KEY), lengths=(3,)),
        "len_65535_header": build_input(_wire(2, b"c" * 65535)[:4] + b"c" * 40, **c, max_index=idx[65535]),
        "empty_frames": build_input(_wire(2, b"") + _wire(0, b"") + _wire(9, b""), **c, byte_by_byte=True),
        "many_small": build_input(b"".join(_wire(2, bytes([i])) for i in range(40)), **c, lengths=(5, 7, 11)),
        "masked_stream_bytewise": build_input(hello_masked * 3, byte_by_byte=True),
        # violations
        "unmasked_to_server": build_input(_wire(1, b"Hi")),
        "masked_to_client": build_input(hello_masked, **c),
        "reserved_opcode_3": build_input(_wire(3, b"", key=KEY)),
        "reserved_opcode_11": build_input(_wire(11, b""), **c),
        "rsv1_not_allowed": build_input(_wire(1, b"x", rsv=0x40), **c),
        "rsv2_not_allowed": build_input(_wire(2, b"y", rsv=0x20, key=KEY), allow=(True, False, True)),
        "rsv3_not_allowed": build_input(_wire(0, b"z", rsv=0x10), **c, allow=(True, True, False)),
        "rsv1_allowed": build_input(_wire(1, b"x", rsv=0x40), **c, allow=(True, False, False)),
        "rsv23_allowed": build_input(_wire(1, b"x", rsv=0x30, key=KEY), allow=(False, True, True)),
        "fragmented_ping": build_input(_wire(9, b"p", fin=False), **c),
        "control_126": build_input(_wire(8, b"\x03\xe8" + b"r" * 124), **c),
        "length_msb_set": build_input(bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"), **c, max_index=idx[None]),
        "too_big_header_only": build_input(bytes([0x82, 0xFE, 0x01, 0x00]), max_index=idx[125]),
        "too_big_64bit": build_input(bytes([0x82, 127]) + (1 << 40).to_bytes(8, "big"), **c),
        "valid_then_error": build_input(_wire(1, b"ok") * 2 + _wire(5, b""), **c, lengths=(4,)),
        "zero_limit": build_input(_wire(1, b"a") + _wire(1, b""), **c, max_index=idx[0]),
        # UTF-8 material (the same bytes go through Utf8Validator)
        "utf8_valid_mix": build_input("aé€𝄞\U0010ffff".encode(), lengths=(2, 1, 3)),
        "utf8_surrogate_split": build_input(b"ab\xed\xa0\x80", lengths=(3,)),
        "utf8_above_max_split": build_input(b"\xf4\x90\x80\x80", lengths=(1,)),
        "utf8_overlong": build_input(b"\xc0\x80\xe0\x80\x80"),
        "utf8_truncated": build_input(b"abc\xf0\x9d\x84", lengths=(4, 1)),
        "close_frame_utf8_reason": build_input(_wire(8, b"\x03\xe8" + "fin ✓".encode(), key=KEY)),
    }
    return out


RFC_REQUEST = (
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
RESPONSE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: {ACCEPT}\r\n"
)


def handshake_seeds() -> dict[str, bytes]:
    """Named inputs of ``fuzz_handshake.py``: request heads (server role) and responses (client role)."""
    sys.path.insert(0, HERE)
    from fuzz_handshake import build_input

    req = RFC_REQUEST
    minimal = (
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nSec-WebSocket-Version: 13\r\n"
    )
    end = b"\r\n"
    c = {"client": True}
    return {
        # server role: what a client sends
        "req_rfc_example": build_input(req),
        "req_rfc_cut": build_input(req, lengths=(1, 3, 14, 2, 60, 1)),
        "req_minimal": build_input(minimal + end),
        "req_deflate_offer": build_input(
            minimal + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, x-other\r\n" + end
        ),
        "req_deflate_bad_params": build_input(
            minimal + b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=7\r\n" + end
        ),
        "req_then_frame": build_input(minimal + end + bytes.fromhex("818537fa213d7f9f4d5158"), lengths=(40,)),
        "req_then_frame_next_read": build_input(
            minimal + end + bytes.fromhex("818537fa213d7f9f4d5158"), lengths=(len(minimal + end),)
        ),
        "req_http10": build_input(minimal.replace(b"HTTP/1.1", b"HTTP/1.0") + end),
        "req_version_8": build_input(minimal.replace(b"Version: 13", b"Version: 8") + end),
        "req_no_host": build_input(minimal.replace(b"Host: a\r\n", b"") + end),
        "req_two_keys": build_input(minimal + b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n" + end),
        "req_short_key": build_input(minimal.replace(b"AQIDBAUGBwgJCgsMDQ4PEA==", b"AQID") + end),
        "req_bare_lf": build_input(minimal.replace(b"Host: a\r\n", b"Host: a\n") + end),
        "req_obs_fold": build_input(minimal + b"X-Folded: a\r\n b\r\n" + end),
        "req_nul_in_value": build_input(minimal + b"X-Nul: a\x00b\r\n" + end),
        "req_space_before_colon": build_input(minimal + b"X-Space : a\r\n" + end),
        "req_post": build_input(minimal.replace(b"GET", b"POST") + end),
        "req_absolute_target": build_input(minimal.replace(b"GET /", b"GET http://a/x") + end),
        "req_double_space": build_input(minimal.replace(b"GET /", b"GET  /") + end),
        "req_no_upgrade": build_input(minimal.replace(b"Upgrade: websocket\r\n", b"") + end),
        "req_latin1_value": build_input(minimal + b"X-Latin: caf\xe9\r\n" + end),
        "req_too_many_fields": build_input(minimal + b"X: y\r\n" * 101 + end),
        "req_head_over_limit": build_input(minimal + b"X-Pad: " + b"a" * 8200 + b"\r\n" + end, lengths=(200,)),
        "req_head_unfinished": build_input(minimal, lengths=(5, 5)),
        "req_empty_start_line": build_input(b"\r\n" + minimal + end),
        # client role: what a server answers ({ACCEPT} becomes the right accept key)
        "resp_101": build_input(RESPONSE_101 + end, **c),
        "resp_101_cut": build_input(RESPONSE_101 + end, **c, lengths=(1, 12, 2, 40)),
        "resp_101_deflate": build_input(
            RESPONSE_101 + b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n" + end, **c
        ),
        "resp_101_deflate_bad": build_input(
            RESPONSE_101 + b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=20\r\n" + end, **c
        ),
        "resp_101_unknown_extension": build_input(RESPONSE_101 + b"Sec-WebSocket-Extensions: x-zip\r\n" + end, **c),
        "resp_101_subprotocol_not_offered": build_input(RESPONSE_101 + b"Sec-WebSocket-Protocol: chat\r\n" + end, **c),
        "resp_101_then_frames": build_input(RESPONSE_101 + end + bytes.fromhex("810548656c6c6f8900"), **c),
        "resp_101_wrong_accept": build_input(
            RESPONSE_101.replace(b"{ACCEPT}", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") + end, **c
        ),
        "resp_101_http10": build_input(RESPONSE_101.replace(b"HTTP/1.1", b"HTTP/1.0") + end, **c),
        "resp_101_no_upgrade": build_input(RESPONSE_101.replace(b"Upgrade: websocket\r\n", b"") + end, **c),
        "resp_101_reason_control_chars": build_input(RESPONSE_101.replace(b"Protocols", b"Prot\x01\x00ols") + end, **c),
        "resp_status_unicode_digit": build_input(b"HTTP/1.1 \xb200 OK\r\n\r\n", **c),
        "resp_bad_status": build_input(b"HTTP/1.1 1O1 Switching\r\n\r\n", **c),
        "resp_404_length": build_input(b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!", **c),
        "resp_500_until_eof": build_input(b"HTTP/1.1 500 Oops\r\n\r\nsomething broke", **c, lengths=(20,)),
        "resp_301_chunked": build_input(
            b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", **c
        ),
        "resp_204": build_input(b"HTTP/1.1 204 No Content\r\n\r\n", **c),
        "resp_two_lengths": build_input(b"HTTP/1.1 403 No\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", **c),
        "resp_head_over_limit": build_input(b"HTTP/1.1 200 OK\r\nX: " + b"b" * 8300 + b"\r\n\r\n", **c),
    }


def make_corpus() -> None:
    for directory, named in ((CORPUS, seeds()), (HANDSHAKE_CORPUS, handshake_seeds())):
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                os.remove(os.path.join(directory, name))
        os.makedirs(directory, exist_ok=True)
        for name, data in sorted(named.items()):
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        print(f"wrote {len(named)} seeds to {directory}")


def fuzz(seconds: int, target: str = TARGET, corpus: str = CORPUS, max_len: int = 4096) -> int:
    work = tempfile.mkdtemp(prefix="wscodec-fuzz-")
    new_inputs = os.path.join(work, "corpus")
    artifacts = os.path.join(work, "artifacts") + os.sep
    os.makedirs(new_inputs)
    os.makedirs(artifacts)
    cmd = [
        sys.executable,
        target,
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}",
        f"-max_len={max_len}",
        "-print_final_stats=1",
        new_inputs,  # the first directory receives new inputs: keep it out of the repository
        corpus,
    ]
    print(" ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=work)
    crashes = os.listdir(artifacts)
    if crashes:
        print(f"fuzz: {len(crashes)} artifact(s) in {artifacts}: {crashes}")
    else:
        print(f"fuzz: no crash; {len(os.listdir(new_inputs))} new inputs in {new_inputs}")
        if rc == 0:
            shutil.rmtree(work, ignore_errors=True)
    return rc


def fuzz_all(seconds: int) -> int:
    """Every target for ``seconds`` each; the first failure's status (all targets run regardless)."""
    rc = fuzz(seconds)
    rc_handshake = fuzz(seconds, HANDSHAKE_TARGET, HANDSHAKE_CORPUS, max_len=16384)
    return rc or rc_handshake


def main(argv: list[str]) -> int:
    if argv[:1] == ["--make-corpus"]:
        make_corpus()
        return 0
    if not argv:
        return fuzz_all(60)
    seconds = argv[0].removeprefix("-max_total_time=")  # libFuzzer's spelling works too
    return fuzz_all(int(seconds))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
