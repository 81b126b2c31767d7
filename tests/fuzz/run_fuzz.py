"""Run the kernel fuzz target, or (re)write its seed corpus.

    python tests/fuzz/run_fuzz.py [SECONDS]        fuzz for SECONDS (default 60) over tests/fuzz/corpus
    python tests/fuzz/run_fuzz.py --make-corpus    rewrite the seed corpus (valid and invalid frames)

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


def make_corpus() -> None:
    if os.path.isdir(CORPUS):
        for name in os.listdir(CORPUS):
            os.remove(os.path.join(CORPUS, name))
    os.makedirs(CORPUS, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds())} seeds to {CORPUS}")


def fuzz(seconds: int) -> int:
    work = tempfile.mkdtemp(prefix="wscodec-fuzz-")
    new_inputs = os.path.join(work, "corpus")
    artifacts = os.path.join(work, "artifacts") + os.sep
    os.makedirs(new_inputs)
    os.makedirs(artifacts)
    cmd = [
        sys.executable,
        TARGET,
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}",
        "-max_len=4096",
        "-print_final_stats=1",
        new_inputs,  # the first directory receives new inputs: keep it out of the repository
        CORPUS,
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


def main(argv: list[str]) -> int:
    if argv[:1] == ["--make-corpus"]:
        make_corpus()
        return 0
    if not argv:
        return fuzz(60)
    seconds = argv[0].removeprefix("-max_total_time=")  # libFuzzer's spelling works too
    return fuzz(int(seconds))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
