"""Close-frame payloads (RFC 6455 sections 5.5.1 and 7.4): ``build_close_payload``, ``parse_close_payload``."""

from __future__ import annotations

import pytest

from wscodec.errors import ProtocolError
from wscodec.frames import CloseCode, Opcode, build_close_payload, is_valid_close_code, parse_close_payload

# section 7.4.1 defines 1000-1003 and 1007-1011 for use on the wire; 1004 is reserved and 1005, 1006, 1015
# "MUST NOT be set as a status code in a Close control frame by an endpoint". 1012-1014 are registered with
# IANA (section 11.7) and sent by real servers. 3000-4999 are for libraries and applications (section 7.4.2).
VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_rfc6455_7_4_valid_codes(code):
    assert is_valid_close_code(code) is True
    payload = build_close_payload(code, "bye")
    assert payload == code.to_bytes(2, "big") + b"bye"
    assert parse_close_payload(payload) == (code, "bye")


@pytest.mark.parametrize("code", INVALID_CODES)
def test_rfc6455_7_4_invalid_codes(code):
    assert is_valid_close_code(code) is False
    with pytest.raises(ValueError, match=rf"^invalid close code {code}$"):
        build_close_payload(code)
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(code.to_bytes(2, "big") + b"reason")
    assert str(info.value) == f"invalid close code {code}"
    assert info.value.close_code == 1002


def test_rfc6455_5_5_1_empty_payload_is_1005():
    # section 7.1.5: no status code in the Close frame -> the close code is considered to be 1005
    assert parse_close_payload(b"") == (1005, "")
    assert build_close_payload() == b""
    assert build_close_payload(None) == b""


def test_rfc6455_5_5_1_code_without_reason():
    assert build_close_payload(1000) == b"\x03\xe8"
    assert parse_close_payload(b"\x03\xe8") == (1000, "")


def test_rfc6455_5_5_1_one_byte_payload():
    # "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned integer"
    for payload in (b"\x03", b"\x00", b"\xff"):
        with pytest.raises(ProtocolError) as info:
            parse_close_payload(payload)
        assert str(info.value) == "close frame payload of 1 byte"
        assert info.value.close_code == 1002


@pytest.mark.parametrize(("code", "reason"), [(1000.0, ""), ("1000", ""), (True, ""), (1000, None), (1000, b"bytes")])
def test_close_arguments_of_the_wrong_type_are_a_type_error(code, reason):
    with pytest.raises(TypeError, match=r"^close (code must be an int|reason must be a str), not "):
        build_close_payload(code, reason)


def test_rfc6455_5_5_1_reason_without_code_rejected():
    with pytest.raises(ValueError, match=r"^a close reason needs a close code$"):
        build_close_payload(None, "why")


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80"])
def test_rfc6455_7_1_6_reason_not_utf8_is_1007(reason):
    with pytest.raises(ProtocolError) as info:
        parse_close_payload(b"\x03\xe8" + reason)
    assert str(info.value) == "close reason is not valid UTF-8"
    assert info.value.close_code == 1007


def test_rfc6455_5_5_1_utf8_reason_round_trip():
    reason = "adiós — 再见 𝄞"
    payload = build_close_payload(1001, reason)
    assert payload == b"\x03\xe9" + reason.encode("utf-8")
    assert parse_close_payload(payload) == (1001, reason)
    assert parse_close_payload(bytearray(payload)) == (1001, reason)
    assert parse_close_payload(memoryview(payload)) == (1001, reason)


def test_rfc6455_5_5_reason_length_limit():
    # control frame payloads are at most 125 bytes: 2 for the code, 123 for the reason once encoded
    assert len(build_close_payload(1000, "r" * 123)) == 125
    with pytest.raises(ValueError, match=r"^close reason is longer than 123 bytes once encoded$"):
        build_close_payload(1000, "r" * 124)
    assert len(build_close_payload(1000, "é" * 61 + "x")) == 125  # 61 * 2 + 1 bytes
    with pytest.raises(ValueError, match=r"^close reason is longer than 123 bytes once encoded$"):
        build_close_payload(1000, "é" * 62)  # 62 characters, 124 bytes


def test_close_code_enum_values():
    assert CloseCode.NORMAL_CLOSURE == 1000
    assert CloseCode.NO_STATUS_RCVD == 1005
    assert CloseCode.INVALID_FRAME_PAYLOAD_DATA == 1007
    assert CloseCode.MESSAGE_TOO_BIG == 1009
    assert build_close_payload(CloseCode.GOING_AWAY) == b"\x03\xe9"
    assert is_valid_close_code(CloseCode.NO_STATUS_RCVD) is False
    assert is_valid_close_code(CloseCode.ABNORMAL_CLOSURE) is False
    assert is_valid_close_code(CloseCode.TLS_HANDSHAKE) is False


def test_rfc6455_5_2_opcode_values():
    assert [int(o) for o in Opcode] == [0x0, 0x1, 0x2, 0x8, 0x9, 0xA]
    assert [o.is_control for o in Opcode] == [False, False, False, True, True, True]
