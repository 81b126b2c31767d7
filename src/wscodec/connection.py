"""The RFC 6455 state machine, sans-I/O: bytes in, events out, bytes to send.

:class:`Connection` never touches a socket, never blocks and never reads a clock. An I/O layer feeds it
what it reads (``receive_data``), acts on the events it returns and writes what ``data_to_send`` hands
back; timers such as keepalive pings live in that layer and call ``send_ping``/``close``.

The receive path is the product, so ``receive_data`` keeps one fast path: an unfragmented, uncompressed
data frame becomes its event in a handful of operations; everything else (fragments, compression,
control frames, errors) goes through :meth:`Connection._slow_frame`.

Memory follows the payload, not the fragment count: the decoder folds a run of continuation frames of one
read into one frame, a message being reassembled grows one ``bytearray``, and with ``stream_messages`` the
fragments of one message that arrive in one read come out as one event. A peer sending a message of a
million one-byte fragments costs about the message's size, as one sending it in one frame does.
"""

from __future__ import annotations

import codecs
import enum
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._kernels import ZERO_COPY_MIN, Frame, FrameDecoder, FrameQueue, Utf8Validator, encode_frame, validate_utf8
from .errors import (
    Close,
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    PayloadTooBig,
    ProtocolError,
    WebSocketError,
    _closed_during_handshake,
)
from .events import (
    BinaryFragment,
    BinaryMessage,
    Closed,
    CloseReceived,
    Event,
    Ping,
    Pong,
    ProtocolViolation,
    Request,
    Response,
    TextFragment,
    TextMessage,
)
from .extensions import ClientPerMessageDeflate, Extension, ServerPerMessageDeflate, _check_applicable
from .frames import build_close_payload, parse_close_payload
from .handshake import ClientHandshake, ServerHandshake

__all__ = ["CLOSED", "CLOSING", "CONNECTING", "OPEN", "ZERO_COPY_MIN", "Connection", "Role", "State"]

Role = Literal["client", "server"]
"""Which end of the connection: the client masks what it sends, the server accepts or rejects upgrades."""


class State(enum.IntEnum):
    """Connection states, numbered as the browser's ``WebSocket.readyState``."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


CONNECTING, OPEN, CLOSING, CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED
# The events of data messages (what drop_messages leaves out).
_DATA_EVENTS = (TextMessage, BinaryMessage, TextFragment, BinaryFragment)


def _without_data(events: list[Event]) -> list[Event]:
    return [event for event in events if type(event) not in _DATA_EVENTS]


_DEFAULT: Any = object()
#: Pings answered by one withheld Pong (see :meth:`Connection.hold_pongs`) beyond which the peer is
#: flooding: :attr:`Connection.flooded` tells the I/O layer to stop reading until the transport drains.
PING_FLOOD_LIMIT = 16
#: For the I/O layers: after failing a connection (a Close with 1002, 1007, 1009, 1011... and no Close from
#: the peer), how many seconds at most to read and drop the peer's input behind our half-closed side before
#: closing the socket. Closing with input unread makes the kernel send a reset, which can destroy our Close
#: frame before the peer reads it: the peer would see 1006 instead of the reason.
FAIL_LINGER = 2.0
#: Seconds an HTTP error response (400, 403, 431, 503...) of a server (asyncio or threaded) waits for the
#: client to stop sending, or over TLS for its close_notify, before the socket is closed: closing with unread
#: input makes the kernel send a reset, which can destroy the response.
REJECT_LINGER = 2.0
#: Unmasked payloads of at least this many bytes (``bytes`` only) are queued beside their header instead of
#: copied into one frame (see :meth:`Connection.data_to_send_buffers`): below it one copy costs less than
#: handing the transport a second buffer. (Defined by the kernels, which build the frames.)
ZERO_COPY_MIN = ZERO_COPY_MIN
_pack_header16 = struct.Struct("!BBH").pack
_pack_header64 = struct.Struct("!BBQ").pack


def _frame_header(opcode: int, length: int, fin: bool, rsv1: bool) -> bytes:
    """The header of an unmasked frame with a payload of ``length`` >= 126 bytes (RFC 6455 section 5.2)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 65536:
        return _pack_header16(b0, 126, length)
    return _pack_header64(b0, 127, length)


# Frozen events built through their slot descriptors: same objects, half the construction cost.
_new = object.__new__
_set_text = TextMessage.__dict__["data"].__set__
_set_binary = BinaryMessage.__dict__["data"].__set__
_set_text_data = TextFragment.__dict__["data"].__set__
_set_text_final = TextFragment.__dict__["final"].__set__
_set_binary_data = BinaryFragment.__dict__["data"].__set__
_set_binary_final = BinaryFragment.__dict__["final"].__set__


def _nbytes(payload: Any) -> int:
    """The length in bytes of a bytes-like payload (a memoryview's ``len`` counts its items)."""
    return len(payload) if type(payload) is bytes else memoryview(payload).nbytes


def check_utf8(payload: Any) -> None:
    """Bytes sent as text (``text=True``) must be UTF-8: RFC 6455 section 5.6; the peer fails with 1007."""
    if not validate_utf8(payload):
        raise ValueError("text=True needs UTF-8 bytes: this message is not valid UTF-8")


def _utf8_continued(tail: bytes, payload: Any, fin: bool, where: str) -> bytes:
    """Check ``payload`` as the next fragment of a text message sent as bytes, the last fragment having left
    ``tail`` (part of a character) unfinished; returns what this one leaves unfinished. Nothing is kept
    when it is refused (a ValueError): the caller may send a correct fragment instead. The fragment is not
    copied here (a large one sent as text costs its validation only)."""
    utf8 = Utf8Validator()
    if not (utf8.feed(tail) and utf8.feed(payload) and (not fin or utf8.finish())):
        raise ValueError(f"text=True needs UTF-8 bytes: this fragment is not valid UTF-8{where}")
    if fin:
        return b""
    # Valid up to its end: an unfinished character is a lead byte followed by fewer continuation bytes
    # (0b10xxxxxx) than it announces, at most three bytes from the end: the last four bytes tell.
    view = (tail + _last_bytes(payload, 4))[-4:]
    end = len(view)
    start = end - 1
    while start >= 0 and end - start <= 3 and view[start] & 0xC0 == 0x80:
        start -= 1
    if start < 0:
        return b""
    lead = view[start]
    size = 1 if lead < 0x80 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
    return view[start:end] if end - start < size else b""


def _last_bytes(payload: Any, count: int) -> bytes:
    """The last ``count`` bytes of any bytes-like object, without copying the rest (a strided view aside)."""
    if type(payload) is bytes:
        return payload[-count:]
    view = memoryview(payload)
    if view.c_contiguous:
        return view.cast("B")[-count:].tobytes()
    return bytes(view)[-count:]


def _text_message(data: str, final: bool = True) -> TextMessage:
    event = _new(TextMessage)
    _set_text(event, data)
    return event


def _binary_message(data: bytes, final: bool = True) -> BinaryMessage:
    event = _new(BinaryMessage)
    _set_binary(event, data)
    return event


def _text_fragment(data: str, final: bool) -> TextFragment:
    event = _new(TextFragment)
    _set_text_data(event, data)
    _set_text_final(event, final)
    return event


def _binary_fragment(data: bytes, final: bool) -> BinaryFragment:
    event = _new(BinaryFragment)
    _set_binary_data(event, data)
    _set_binary_final(event, final)
    return event


class Connection(FrameQueue):
    """One WebSocket connection, client or server side, from handshake to close.

    Client: ``Connection("client", host="example.com", path="/chat")`` queues the upgrade request at once;
    feed the server's bytes to :meth:`receive_data` until it returns a :class:`~wscodec.events.Response`.
    Server: feed bytes until a :class:`~wscodec.events.Request` comes back, then :meth:`accept` or
    :meth:`reject` it.

    ``extensions`` are extension factories (default: permessage-deflate offered/accepted; ``()`` for
    none). ``max_message_size`` bounds a reassembled, decompressed message, and each frame's payload as it comes
    (a compressed frame's too: an incompressible message within the limit may grow past it; None: no limit);
    ``max_header_size`` and ``max_headers`` bound the opening handshake's HTTP head (bytes, fields: 431
    beyond them on a server); ``fragment_size`` splits outgoing messages; ``stream_messages`` delivers data
    as it arrives, as :class:`~wscodec.events.TextFragment`/:class:`~wscodec.events.BinaryFragment` instead
    of whole messages
    (the fragments of one message that one :meth:`receive_data` call completes come as one event).

    **Errors in order** (``defer_errors=True``). By default a protocol violation fails the connection at
    once: ``receive_data`` returns the events before the bad frame, then
    :class:`~wscodec.events.ProtocolViolation` and :class:`~wscodec.events.Closed`, the Close frame
    queued. With ``defer_errors`` the error takes its place in the stream instead: ``receive_data``
    returns the events before the bad frame and *holds* the error (:attr:`pending_error`); the connection
    stays OPEN so the application can answer the messages it got, and everything after the bad frame is
    ignored (no Pong for a Ping behind it). The I/O layer stops reading and calls :meth:`fail_pending`
    once the application has consumed those messages (it asks for the next one), or when a bound it sets
    (a queue length, a timeout) runs out: then the Close (1002, 1007, ...) is queued behind the replies
    and the usual ProtocolViolation and Closed come back. ``close()`` while an error is pending fails
    with the error's code instead; ``fail()`` and EOF end it too.

    Invalid UTF-8 in a text frame that is still arriving fails the connection (1007) as soon as the
    bad bytes are read, not when the frame is complete (uncompressed messages; a compressed one is
    checked as it is inflated, frame by frame).
    """

    # Slots, not an instance dict, for every attribute (``_out`` and ``_fast_send`` are FrameQueue's). The
    # kernels' FrameQueue allocates the instance, and CPython 3.11 then never gives it the shared-key
    # "inline values" its attribute loads are specialised on: with a dict, every ``self.x`` of the hot
    # paths was the generic lookup (``dis.dis(Connection.receive_data, adaptive=True)`` showed all of them
    # unspecialised). A slot is a direct load on both backends. ``__dict__`` stays, for subclasses' and
    # applications' own attributes; tests/test_connection_send.py fails if an attribute is missing here.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_bytes_in",
        "_close_received",
        "_decoder",
        "_deflate",
        "_drop_messages",
        "_frag",
        "_fragment_size",
        "_handshake",
        "_held_pong",
        "_holding_pongs",
        "_inflate",
        "_is_client",
        "_messages_in",
        "_msg_buf",
        "_msg_compressed",
        "_msg_opcode",
        "_msg_size",
        "_peeked",
        "_pings_held",
        "_send_compressed",
        "_send_opcode",
        "_send_str",
        "_send_utf8",
        "_stream_messages",
        "_text_decoder",
        "_utf8",
        "close_code",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_reason",
        "close_sent",
        "defer_errors",
        "extensions",
        "max_message_size",
        "pending_error",
        "request",
        "response",
        "state",
        "subprotocol",
    )

    def __init__(
        self,
        role: Role = "server",
        *,
        host: str | None = None,
        path: str = "/",
        origin: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        subprotocols: Sequence[str] = (),
        extensions: Sequence[Any] | None = None,
        origins: Sequence[str | None] | None = None,
        max_message_size: int | None = 1 << 20,
        max_header_size: int = 8192,
        max_headers: int = 100,
        fragment_size: int | None = None,
        stream_messages: bool = False,
        defer_errors: bool = False,
    ) -> None:
        if role not in ("server", "client"):
            raise ValueError("role must be 'server' or 'client'")
        if max_message_size is not None and max_message_size < 0:
            raise ValueError("max_message_size must be >= 0 or None")
        if fragment_size is not None and fragment_size < 1:
            raise ValueError("fragment_size must be >= 1 or None")
        self._is_client = role == "client"
        self.max_message_size = max_message_size
        # Which one-step send path applies (see _update_fast_send); decided when the connection opens.
        self._fast_send = 0
        self._deflate: Extension | None = None
        self._send_opcode = 0  # opcode of a message being sent with send_fragment(), 0 if none
        self._fragment_size = fragment_size
        self._fast_receive: Any = None  # (FrameQueue's: the decoder while its one-step receive path applies)
        self.stream_messages = stream_messages  # (sets FrameQueue's record types too)
        self.defer_errors = defer_errors
        self._drop_messages = False
        self.state: State = CONNECTING
        self.subprotocol: str | None = None
        self.extensions: list[Extension] = []
        self.request: Request | None = None
        self.response: Response | None = None
        #: The peer's close code and reason once CLOSED: 1005 for a Close without code, 1006 for none.
        self.close_code: int | None = None
        self.close_reason: str = ""
        #: What we put in our own Close frame, if we sent one.
        self.close_sent: tuple[int | None, str] | None = None
        #: The peer's Close frame, once received (websockets' ``close_rcvd``).
        self.close_rcvd: Close | None = None
        #: With Close frames both ways: True if the peer's came first (websockets' ``close_rcvd_then_sent``).
        self.close_rcvd_then_sent: bool | None = None
        self._close_received = False
        self._out: list[bytes] = []
        self._messages_out = self._bytes_out = 0  # (FrameQueue's: messages_sent, payload_bytes_sent)
        self._decoder: Any = None
        self._inflate: Extension | None = None
        # Message being reassembled: opcode 0 means none in progress.
        self._msg_opcode = 0
        self._msg_buf: bytearray | None = None  # its payload so far (whole-message delivery)
        self._frag: Any = None  # with stream_messages: its data read in this call, not yet an event
        self._msg_size = 0
        self._msg_compressed = False
        # Messages received and their payload bytes, of those the kernels' decoder did not make records of
        # (it counts its own: see messages_received).
        self._messages_in = 0
        self._bytes_in = 0
        self._utf8 = Utf8Validator()
        self._peeked = 0  # bytes of the text frame in progress already fed to _utf8 (checked as they came)
        self._text_decoder: Any = None  # the incremental decoder of a text message streamed in fragments
        self._send_compressed = False  # a message being sent with send_fragment() is compressed
        self._send_str = False  # its fragments are str (not bytes-like)
        # While bytes-like fragments are sent as text: the bytes of a character the last one left unfinished.
        self._send_utf8: bytes | None = None
        # Automatic Pongs while the transport is full: only the latest Ping's is kept (see hold_pongs).
        self._holding_pongs = False
        self._held_pong: bytes | None = None
        self._pings_held = 0
        #: With ``defer_errors``: the peer's protocol violation held until :meth:`fail_pending`, else None.
        #: While it is set the I/O layer should stop reading: nothing the peer sent after the bad frame
        #: counts. Read it; the Connection sets it. (A plain attribute, not a property: the I/O layers read
        #: it on every read, and a property is a Python call.)
        self.pending_error: ProtocolError | None = None

        if extensions is None:
            extensions = [ClientPerMessageDeflate()] if self._is_client else [ServerPerMessageDeflate()]
        self._handshake: ClientHandshake | ServerHandshake
        if self._is_client:
            if host is None:
                raise ValueError("a client connection needs host=")
            self._handshake = ClientHandshake(
                host,
                path,
                origin=origin,
                subprotocols=subprotocols,
                extensions=extensions,
                extra_headers=extra_headers,
                max_header_size=max_header_size,
                max_headers=max_headers,
            )
            self.request = self._handshake.request
            self._out.append(self._handshake.request_bytes())
        else:
            self._handshake = ServerHandshake(
                subprotocols=subprotocols,
                extensions=extensions,
                origins=origins,
                max_header_size=max_header_size,
                max_headers=max_headers,
            )

    @classmethod
    def established(
        cls,
        role: Role = "server",
        *,
        extensions: Sequence[Extension] = (),
        subprotocol: str | None = None,
        **options: Any,
    ) -> Connection:
        """A connection already OPEN, the handshake having been done elsewhere (a proxy, a test).

        ``extensions`` are negotiated extension objects such as
        :class:`~wscodec.extensions.PerMessageDeflate`, not factories: at most one, and it must use RSV1
        (see :class:`~wscodec.extensions.Extension`; ValueError, TypeError otherwise).
        """
        if len(extensions) > 1:
            raise ValueError("wscodec applies at most one extension per connection (each one uses RSV1)")
        for extension in extensions:
            _check_applicable(extension)
        if role == "client":
            options.setdefault("host", "localhost")
        conn = cls(role, extensions=(), **options)
        conn._out.clear()
        conn.subprotocol = subprotocol
        conn._open(list(extensions))
        return conn

    # ------------------------------------------------------------------ state

    @property
    def role(self) -> str:
        """``"client"`` or ``"server"``."""
        return "client" if self._is_client else "server"

    @property
    def is_client(self) -> bool:
        return self._is_client

    @property
    def closed(self) -> bool:
        """True once CLOSED: the I/O layer should write what is queued and close the transport."""
        return self.state is CLOSED

    @property
    def sending_fragmented(self) -> bool:
        """True between the first and the last :meth:`send_fragment` of a message: no other message may go
        out meanwhile, and a Close would cut it short (an I/O layer fails the connection with 1011 instead)."""
        return bool(self._send_opcode)

    # Traffic counters, for logs and metrics. They are kept where each message is framed or parsed, in the
    # kernels for the one-step paths, so counting costs nothing per message on the I/O layer's hot path.

    @property
    def messages_received(self) -> int:
        """Data messages received whole so far (a fragmented message counts once, at its last frame)."""
        decoder = self._decoder
        return self._messages_in + (decoder._record_count if decoder is not None else 0)

    @property
    def payload_bytes_received(self) -> int:
        """Payload bytes of the data frames received so far: text as UTF-8, compressed messages inflated."""
        decoder = self._decoder
        return self._bytes_in + (decoder._record_bytes if decoder is not None else 0)

    @property
    def messages_sent(self) -> int:
        """Data messages queued so far (a message sent with :meth:`send_fragment` counts at ``fin``)."""
        return self._messages_out

    @property
    def payload_bytes_sent(self) -> int:
        """Payload bytes of the data messages queued so far: text as UTF-8, before compression."""
        return self._bytes_out

    def _open(self, extensions: list[Extension]) -> None:
        # At most one, and it uses RSV1: the handshake and established() see to it (see Extension).
        self.extensions = extensions
        rsv1 = bool(extensions)
        if rsv1:
            self._inflate = self._deflate = extensions[0]
        limit = self.max_message_size
        self._decoder = FrameDecoder(
            "client" if self._is_client else "server",
            limit,  # a data frame over it is refused on its header; control frames keep their 125 bytes
            allow_rsv1=rsv1,
            merge_continuations=True,
        )
        self.state = OPEN
        self._update_fast_send()
        self._update_fast_receive()

    @property
    def drop_messages(self) -> bool:
        """While True, data messages received are still checked (framing, UTF-8, limits) but not returned.

        For an I/O layer whose application closed the connection with messages still unread: it must keep
        reading until the peer's Close (RFC 6455 section 7.1.1), without holding any more of them. Control
        frames are handled as always."""
        return self._drop_messages

    @drop_messages.setter
    def drop_messages(self, value: bool) -> None:
        self._drop_messages = value
        self._update_fast_receive()

    @property
    def stream_messages(self) -> bool:
        """Deliver data as it arrives (:class:`~wscodec.events.TextFragment`/:class:`~wscodec.events.BinaryFragment`
        events) instead of whole messages."""
        return self._stream_messages

    @stream_messages.setter
    def stream_messages(self, value: bool) -> None:
        self._stream_messages = value
        # the events the kernels' decoder makes of whole messages (see FrameDecoder.feed_messages)
        if value:
            self._text_record, self._binary_record = TextFragment, BinaryFragment
        else:
            self._text_record, self._binary_record = TextMessage, BinaryMessage

    def _update_fast_receive(self) -> None:
        """Let the kernels' one-step receive path (``FrameQueue.receive_data``) take the next read only in the
        common state: OPEN, no Close received, no violation held, no fragmented message in progress and no
        text frame checked in part; every other read goes through :meth:`_receive_slow`."""
        if (
            self.state is OPEN
            and not self._close_received
            and self.pending_error is None
            and not self._drop_messages
            and not self._msg_opcode
            and not self._peeked
        ):
            self._fast_receive = self._decoder
        else:
            self._fast_receive = None

    @property
    def fragment_size(self) -> int | None:
        """Largest payload of an outgoing data frame (None: one frame per message)."""
        return self._fragment_size

    @fragment_size.setter
    def fragment_size(self, value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError("fragment_size must be >= 1 or None")
        self._fragment_size = value
        self._update_fast_send()

    def _update_fast_send(self) -> None:
        """send_text/send_binary take one step when OPEN and nothing but framing (and a client's mask)
        applies: 1 on a server, 2 on a client, 0 otherwise (closing, compression, fragmentation, a
        fragmented send under way). Called on every change of those; FrameQueue trusts it."""
        if self.state is not OPEN or self._deflate is not None or self._fragment_size is not None or self._send_opcode:
            self._fast_send = 0
        else:
            self._fast_send = 2 if self._is_client else 1

    # ------------------------------------------------------------------ handshake

    def accept(self, subprotocol: Any = _DEFAULT, extra_headers: Sequence[tuple[str, str]] = ()) -> list[Event]:
        """Server side: answer the received request with 101 and open the connection.

        Returns the events of any frames the client pipelined behind its request (usually none). Until
        then, what :meth:`receive_data` is given is kept whole, unbounded (RFC 6455 section 4.1 has the
        client wait for the 101 before sending): an I/O layer stops reading while it decides, as the
        asyncio and threaded servers do. Without ``subprotocol``, a server listing subprotocols that the
        client offered none of raises :class:`~wscodec.errors.NegotiationError` (still CONNECTING:
        :meth:`reject` it with 400).
        """
        hs = self._handshake
        if self._is_client or not isinstance(hs, ServerHandshake) or self.request is None:
            raise RuntimeError("accept() is for a server connection that has received a request")
        if self.state is not CONNECTING:
            raise RuntimeError("the handshake is already over")
        if subprotocol is _DEFAULT:
            data = hs.accept(extra_headers=extra_headers)
        else:
            data = hs.accept(subprotocol=subprotocol, extra_headers=extra_headers)
        self._out.append(data)
        self.subprotocol = hs.subprotocol
        self.response = hs.response
        self._open(list(hs.extensions))
        leftover = hs.leftover
        return self.receive_data(leftover) if leftover else []  # (OPEN now: frames)

    def reject(self, status: int = 403, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> None:
        """Server side: answer the request with any HTTP response instead of upgrading; then CLOSED."""
        hs = self._handshake
        if self._is_client or not isinstance(hs, ServerHandshake):
            raise RuntimeError("reject() is for a server connection")
        if self.state is not CONNECTING:
            raise RuntimeError("the handshake is already over")
        self._out.append(hs.reject(status, headers, body))
        self.response = hs.response if hasattr(hs, "response") else None
        self.state = CLOSED
        self.close_code = 1006

    def _receive_handshake(self, data: bytes) -> list[Event]:
        hs = self._handshake
        if isinstance(hs, ServerHandshake):
            if self.request is not None:
                if not data:  # the client left while the application was deciding
                    self.state = CLOSED
                    self.close_code = 1006
                    return [Closed(1006, "", was_clean=False)]
                # Waiting for accept()/reject(): keep what arrives for after the upgrade.
                hs.leftover += data
                return []
            try:
                request = hs.receive_data(data)
            except InvalidHandshake as exc:
                status = getattr(exc, "status", 400)
                headers = getattr(exc, "headers", ())
                self._out.append(hs.reject(status, headers, (str(exc) + "\n").encode()))
                self.response = hs.response  # (as after reject(): the answer the I/O layer's hooks see)
                return self._fail_handshake(exc)
            if request is None:
                if not data:  # EOF before a complete request
                    return self._fail_handshake(_closed_during_handshake("connection closed during the handshake"))
                return []
            self.request = request
            return [request]
        try:
            response = hs.receive_data(data)
        except InvalidStatus as exc:
            self.response = Response(exc.status_code, exc.reason, tuple(exc.headers), exc.body)
            return [self.response, *self._fail_handshake(exc)]
        except InvalidHandshake as exc:
            return self._fail_handshake(exc)
        if response is None:
            if not data:
                return self._fail_handshake(_closed_during_handshake("connection closed during the handshake"))
            return []
        self.response = response
        self.subprotocol = hs.subprotocol
        self._open(list(hs.extensions))
        events: list[Event] = [response]
        leftover = hs.leftover
        if leftover:
            events.extend(self.receive_data(leftover))  # (OPEN now: frames)
        return events

    def _fail_handshake(self, exc: WebSocketError) -> list[Event]:
        self.state = CLOSED
        self.close_code = 1006
        return [ProtocolViolation(exc), Closed(1006, str(exc), was_clean=False)]

    # ------------------------------------------------------------------ receiving

    # receive_data comes from FrameQueue (the kernels): its one-step path takes a read of whole messages in
    # the common state (see _update_fast_receive) without a Python frame; every other read lands here.
    if TYPE_CHECKING:

        def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]: ...

    def _receive_slow(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """A read the one-step path does not take: the handshake, EOF, after a Close or a violation, inside a
        fragmented message or a text frame checked in part."""
        try:
            state = self.state
            if state is not OPEN:
                if state is CONNECTING:
                    return self._receive_handshake(bytes(data))
                if state is CLOSED:
                    return []
            if not data:
                return self._receive_eof()
            if self._close_received or self.pending_error is not None:
                return []  # RFC 6455 section 5.5.1: nothing after the peer's Close (or a violation) counts
            error: ProtocolError | None = None
            try:
                # Each whole, uncompressed data message in one frame is already its event (a final fragment
                # when streaming); the frames left go through _slow_frame in _received.
                items, left = self._decoder.feed_messages(
                    data, self._msg_opcode != 0, self._text_record, self._binary_record
                )
            except ProtocolError as exc:
                items, left, error = exc.frames, -1, exc
            if self._peeked and items and type(items[0]) is not Frame:
                # The frame whose start was checked while it arrived is a whole message, decoded (and
                # checked) all again by the kernel; had it stayed a Frame, _slow_frame would skip what was
                # checked.
                self._peeked = 0
                self._utf8.reset()
            return self._received(items, left, error)
        finally:
            self._update_fast_receive()

    def _received(self, items: list[Any], left: int, error: ProtocolError | None) -> list[Event]:
        """The rest of a read once the decoder has it: ``items`` (events and ``left`` Frames; -1: not known,
        after the violation ``error``), the frames left through _slow_frame, the early checks of a frame still
        arriving, and the failure a violation brings."""
        try:
            if not left:
                events: list[Event] = items
            else:
                events = []
                append = events.append
                try:
                    for frame in items:
                        if type(frame) is not Frame:
                            append(frame)
                            continue
                        self._slow_frame(frame, append)
                        if self._close_received:
                            return _without_data(events) if self._drop_messages else events
                    if self._frag is not None:
                        self._flush_fragment(append, False)
                except ProtocolError as exc:
                    error = exc
            if error is None:
                b0 = self._decoder.partial_header()
                if b0 >= 0:
                    try:
                        self._check_partial_frame(b0)
                    except ProtocolError as exc:
                        error = exc
            if error is not None:
                if self._frag is not None:  # what came before the bad frame is delivered
                    self._flush_fragment(events.append, False)
                if self.defer_errors:
                    self.pending_error = error
                else:
                    events.extend(self._fail(error))
            return _without_data(events) if self._drop_messages else events
        finally:
            self._update_fast_receive()

    def fail_pending(self) -> list[Event]:
        """Fail the connection with the held :attr:`pending_error`: queue its Close frame (behind whatever
        the application sent meanwhile) and return ProtocolViolation and Closed. ``[]`` if none is held."""
        error = self.pending_error
        if error is None:
            return []
        return self._fail(error)

    def _receive_eof(self) -> list[Event]:
        if self.pending_error is not None:
            return self.fail_pending()
        self._msg_buf = None
        self._frag = None
        self.state = CLOSED
        self._fast_send = 0
        self._fast_receive = None
        if self._close_received:
            return []
        self.close_code = 1006
        self.close_reason = ""
        return [Closed(1006, "", was_clean=False)]

    def _check_partial_frame(self, b0: int) -> None:
        """Check the UTF-8 of the uncompressed text frame being received (first header byte ``b0``) as far
        as it has arrived, so that an impossible byte fails the connection when it is read, not when the
        frame is complete. A continuation that takes an uncompressed message past ``max_message_size`` fails
        with 1009 once its header is here, before its payload (as websockets does): which error a message
        that is both too large and not UTF-8 gets does not depend on how the peer's bytes were split."""
        opcode = b0 & 0x0F
        if opcode == 0 and self._msg_opcode and not self._msg_compressed and not b0 & 0x40:
            limit = self.max_message_size
            if limit is not None and self._msg_size + self._decoder.partial_length() > limit:
                raise PayloadTooBig(f"message of more than {limit} bytes", 1009)
        if opcode == 1:
            if self._msg_opcode or b0 & 0x40:
                return  # a protocol error (reported when the frame is complete), or compressed
        elif opcode != 0 or self._msg_opcode != 1 or self._msg_compressed:
            return
        more = self._decoder.partial_payload(self._peeked)
        if more:
            self._peeked += len(more)
            if not self._utf8.feed(more):
                raise ProtocolError("invalid UTF-8 in text message", 1007)

    def _slow_frame(self, frame: Any, append: Any) -> None:
        opcode = frame.opcode
        if opcode >= 8:
            if self._frag is not None:  # the data before this control frame comes before its event
                self._flush_fragment(append, False)
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a control frame")
            if opcode == 9:
                # RFC 6455 section 5.5.2: a Ping is answered unless the peer's Close came first (nothing after
                # it gets here), also once our Close is out: after it only data frames are forbidden (5.5.1).
                if self._holding_pongs:
                    # RFC 6455 section 5.5.3: a Pong for the most recent Ping answers the earlier ones.
                    self._held_pong = frame.payload
                    self._pings_held += 1
                else:
                    self._send_frame(10, frame.payload)
                append(Ping(frame.payload))
            elif opcode == 10:
                append(Pong(frame.payload))
            else:
                self._receive_close(frame.payload, append)
            return
        if opcode == 0:
            if not self._msg_opcode:
                raise ProtocolError("continuation frame without a message in progress")
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
        else:
            if self._msg_opcode:
                raise ProtocolError("new data frame while a fragmented message is in progress")
            self._msg_opcode = opcode
            self._msg_compressed = frame.rsv1
            self._msg_size = 0
            if frame.rsv1:
                inflate = self._inflate
                if inflate is None:  # the decoder only lets RSV1 through when an extension uses it
                    raise ProtocolError("RSV1 set without an extension that defines it")
                inflate.decode_start(True)
        payload = frame.payload
        fin = frame.fin
        limit = self.max_message_size
        if self._msg_compressed:
            remaining = None if limit is None else limit - self._msg_size
            assert self._inflate is not None
            payload = self._inflate.decode(payload, fin, remaining)
        self._msg_size += len(payload)
        if limit is not None and self._msg_size > limit:
            raise PayloadTooBig(f"message of more than {limit} bytes", 1009)
        if self._msg_opcode == 1:
            skip = self._peeked
            if skip:  # its first bytes were checked while the frame arrived
                self._peeked = 0
                valid = self._utf8.feed(memoryview(payload)[skip:])
            else:
                valid = self._utf8.feed(payload)
            if not valid:
                raise ProtocolError("invalid UTF-8 in text message", 1007)
            if fin and not self._utf8.finish():
                raise ProtocolError("text message ends inside a UTF-8 character", 1007)
        self._bytes_in += len(payload)
        self._messages_in += fin
        if self.stream_messages:
            # One event for the fragments of this message read in this call (see _flush_fragment).
            frag = self._frag
            if frag is None:
                self._frag = payload
            elif type(frag) is bytearray:
                frag += payload
            else:
                self._frag = bytearray(frag) + payload
            if fin:
                self._flush_fragment(append, True)
        else:
            buf = self._msg_buf
            if fin:
                if buf is not None:
                    buf += payload
                    payload = bytes(buf)
                    self._msg_buf = None
                if self._msg_opcode == 1:
                    append(_text_message(payload.decode("utf-8")))
                else:
                    append(_binary_message(payload))
            elif buf is None:
                self._msg_buf = bytearray(payload)
            else:
                buf += payload
        if fin:
            self._msg_opcode = 0
            self._utf8.reset()

    def _flush_fragment(self, append: Any, fin: bool) -> None:
        """Emit the data gathered in ``_frag`` as one fragment event (``fin``: the message ends with it)."""
        frag = self._frag
        self._frag = None
        append(self._fragment_event(bytes(frag) if type(frag) is bytearray else frag, fin))

    def _fragment_event(self, payload: bytes, fin: bool) -> Event:
        if self._msg_opcode == 2:
            return _binary_fragment(payload, fin)
        decoder = self._text_decoder
        if decoder is None:
            decoder = self._text_decoder = codecs.getincrementaldecoder("utf-8")()
        text = decoder.decode(payload, fin)
        if fin:
            decoder.reset()
        return _text_fragment(text, fin)

    def _receive_close(self, payload: bytes, append: Any) -> None:
        code, reason = parse_close_payload(payload)
        self._close_received = True
        self.close_code = code
        self.close_reason = reason
        self.close_rcvd = Close(code, reason)
        self.close_rcvd_then_sent = self.close_sent is None  # if it is, the answer below comes second
        append(CloseReceived(code, reason))
        if self.close_sent is None:
            # RFC 6455 section 5.5.1: answer with a Close, echoing the code.
            # Browsers report the reply's reason, so echo it too.
            reply_code = None if code == 1005 else code
            self._send_close(reply_code, reason if reply_code is not None else "")
        self.state = CLOSED
        self._fast_send = 0
        self._fast_receive = None
        append(Closed(code, reason, was_clean=True))

    def _fail(self, error: ProtocolError) -> list[Event]:
        """Fail the connection (RFC 6455 section 7.1.7): queue a Close with the error's code, then CLOSED."""
        if self.close_sent is None:
            reason = str(error)
            self._send_close(error.close_code, reason.encode("utf-8")[:123].decode("utf-8", "ignore"))
        self.state = CLOSED
        self._fast_send = 0
        self._fast_receive = None
        self.close_code = 1006
        self.close_reason = ""
        self._msg_buf = None
        self._frag = None
        self.pending_error = None
        return [ProtocolViolation(error), Closed(1006, str(error), was_clean=False)]

    # ------------------------------------------------------------------ sending

    @property
    def bytes_to_send(self) -> int:
        """How many bytes :meth:`data_to_send` would return now."""
        return sum(map(len, self._out))

    def _send_frame(self, opcode: int, payload: Any, fin: bool = True, rsv1: bool = False) -> None:
        if self._is_client:
            # mask=True: the key comes from the kernels' pool of os.urandom output (one system call per
            # 1024 frames, shared by every connection of the process); the payload is masked into the
            # frame, one copy, which masking needs anyway.
            self._out.append(encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=True))
        elif type(payload) is bytes and len(payload) >= ZERO_COPY_MIN:
            # (No check of its opcode or length here: send_ping and send_pong refuse more than 125 bytes.)
            self._out += (_frame_header(opcode, len(payload), fin, rsv1), payload)
        else:
            self._out.append(encode_frame(opcode, payload, fin=fin, rsv1=rsv1))

    def _check_can_send(self) -> None:
        if self.state is not OPEN:
            if self.state is CONNECTING:
                raise RuntimeError("cannot send before the handshake is complete")
            closing = self.closing_error() if self.close_code is None else None
            if closing is not None:  # our Close is out and the peer has not answered: not an abnormal 1006
                raise closing
            code = self.close_code if self.close_code is not None else 1006
            raise self.closed_error(code, self.close_reason, was_clean=self._close_received)

    def closing_error(self) -> ConnectionClosed | None:
        """What a send raises while our Close waits for the peer's answer: a clean close with our code and
        reason (1005 for a Close without code), as every layer reports it; None if we sent no Close."""
        sent = self.close_sent
        if sent is None:
            return None
        return self.closed_error(sent[0] if sent[0] is not None else 1005, sent[1], was_clean=True)

    def closed_error(self, code: int, reason: str = "", *, was_clean: bool) -> ConnectionClosed:
        """``ConnectionClosed(code, reason)`` carrying the Close frames this connection has received and sent
        so far (``rcvd``, ``sent``, ``rcvd_then_sent``): how every I/O layer builds the error it raises."""
        sent = self.close_sent
        return ConnectionClosed(
            code,
            reason,
            was_clean=was_clean,
            rcvd=self.close_rcvd,
            sent=None if sent is None else Close(1005 if sent[0] is None else sent[0], sent[1]),
            rcvd_then_sent=self.close_rcvd_then_sent,
        )

    def _check_can_send_message(self) -> None:
        self._check_can_send()
        if self._send_opcode:
            raise RuntimeError("a fragmented message is being sent; finish it with send_fragment(fin=True)")

    # send_text, send_binary, data_to_send and data_to_send_buffers come from FrameQueue (the kernels):
    # their one-step path runs compiled; everything else lands here.

    def _send_slow(self, opcode: int, data: Any) -> None:
        """A send the one-step path does not take: not OPEN, compression, fragmentation, odd buffers."""
        self._check_can_send_message()
        self._send_message(opcode, data.encode() if opcode == 1 else data)

    def send_message(
        self, data: str | bytes | bytearray | memoryview, *, compress: bool = True, text: bool | None = None
    ) -> None:
        """Queue a text (str) or binary message; ``compress=False`` skips compression for this one.

        ``text`` overrides the frame type, as websockets' ``send(text=...)``: True sends bytes that are
        already UTF-8 (JSON from orjson, say) as a Text frame without decoding them, False sends a str as a
        Binary frame. Bytes sent as text must be valid UTF-8 (RFC 6455 section 5.6; the peer would fail
        the connection with 1007): a ValueError here otherwise, before anything is queued."""
        self._check_can_send_message()
        if isinstance(data, str):
            self._send_message(2 if text is False else 1, data.encode("utf-8"), compress)
        elif text:
            check_utf8(data)
            self._send_message(1, data, compress)
        else:
            self._send_message(2, data, compress)

    def _send_message(self, opcode: int, payload: Any, compress: bool = True) -> None:
        rsv1 = False
        length = _nbytes(payload)
        deflate = self._deflate
        if deflate is not None and compress:
            payload, rsv1 = deflate.encode(payload)
        size = self._fragment_size
        if size is None or len(payload) <= size:
            self._send_frame(opcode, payload, True, rsv1)
        else:
            view = memoryview(payload).cast("B")
            total = len(view)
            for start in range(0, total, size):
                self._send_frame(opcode if start == 0 else 0, view[start : start + size], start + size >= total, rsv1)
                rsv1 = False
        self._messages_out += 1
        self._bytes_out += length

    def send_encoded(self, frame: bytes, payload_size: int) -> None:
        """Queue a whole message already framed by :func:`~wscodec._pure.encode_frame` (unmasked, uncompressed,
        FIN set) and count it as a message of ``payload_size`` bytes in :attr:`messages_sent` and
        :attr:`payload_bytes_sent`: a broadcast frames a message once for every connection. The frame is
        not checked. Server role only (a client masks every frame), while no fragmented message is being
        sent; as :meth:`send_message`, an error when the connection cannot send."""
        if self.is_client:
            raise RuntimeError("a client masks every frame: send_message() frames it")
        self._check_can_send_message()
        self._out.append(frame)
        self._messages_out += 1
        self._bytes_out += payload_size

    def send_fragment(
        self,
        data: str | bytes | bytearray | memoryview,
        *,
        fin: bool,
        compress: bool = True,
        text: bool | None = None,
    ) -> None:
        """Queue one fragment of a message the caller streams; ``fin`` ends it.

        The first fragment's type (str or bytes) decides the message type, unless its ``text`` overrides
        it as in :meth:`send_message`; every fragment has the first one's type, and the later ones'
        ``text`` is ignored. Bytes-like fragments sent as text are checked as UTF-8 as they come
        (a character may straddle two of them): a ValueError for one that cannot be, or for a last one
        that leaves a character unfinished, before that fragment is queued. Where permessage-deflate was
        negotiated the message is compressed (RSV1 on its first frame only, RFC 7692 section 6.1) unless
        the first fragment says ``compress=False``; the later fragments follow the first one's choice.
        """
        self._check_can_send()
        is_str = isinstance(data, str)
        payload: Any = data.encode("utf-8") if isinstance(data, str) else data
        length = _nbytes(payload)  # (a TypeError for what is not bytes-like, before any state changes)
        rsv1 = False
        if self._send_opcode:
            if is_str != self._send_str:
                raise TypeError("all fragments of a message must be of the same type")
            opcode = 0
            if self._send_utf8 is not None:
                self._send_utf8 = _utf8_continued(self._send_utf8, payload, fin, " after the others")
        else:
            opcode = (2 if text is False else 1) if is_str else (1 if text else 2)
            if opcode == 1 and not is_str:
                tail = _utf8_continued(b"", payload, fin, "")
                self._send_utf8 = None if fin else tail
            self._send_opcode = opcode
            self._send_str = is_str
            self._send_compressed = rsv1 = compress and hasattr(self._deflate, "encode_fragment")
            self._update_fast_send()
        if self._send_compressed:
            deflate: Any = self._deflate
            payload = deflate.encode_fragment(payload, fin)
        self._send_frame(opcode, payload, fin, rsv1)
        self._bytes_out += length
        if fin:
            self._messages_out += 1
            self._send_opcode = 0
            self._send_compressed = False
            self._send_utf8 = None
            self._update_fast_send()

    def _send_close(self, code: int | None, reason: str) -> None:
        """Queue our Close frame, a withheld Pong before it (only the Pongs of Pings that arrive while we wait
        for the peer's Close may follow it)."""
        payload = build_close_payload(code, reason)  # ValueError for a code or reason not allowed on the wire
        self._release_held_pong()
        self._send_frame(8, payload)
        self.close_sent = (code, reason)

    # ------------------------------------------------------------------ automatic Pongs under backpressure

    def hold_pongs(self) -> None:
        """The transport cannot take more bytes: from now on keep only the Pong of the latest Ping.

        An I/O layer calls this when its transport pauses writing, and :meth:`release_pongs` when it
        resumes. A peer that pings without reading our answers then costs one Pong of memory, not one
        per Ping (RFC 6455 section 5.5.3 lets a Pong for the most recent Ping answer the earlier ones).
        """
        self._holding_pongs = True

    def release_pongs(self) -> None:
        """The transport drained: queue the withheld Pong, if any, and answer Pings at once again."""
        self._holding_pongs = False
        self._release_held_pong()

    def _release_held_pong(self) -> None:
        held = self._held_pong
        self._held_pong = None
        self._pings_held = 0
        if held is not None:
            self._send_frame(10, held)

    @property
    def flooded(self) -> bool:
        """True while Pongs are held and the peer sent more than ``PING_FLOOD_LIMIT`` Pings since:
        the I/O layer should stop reading until its transport drains (then :meth:`release_pongs`)."""
        return self._pings_held > PING_FLOOD_LIMIT

    def send_ping(self, data: bytes = b"") -> None:
        """Queue a Ping (at most 125 bytes). Also while CLOSING: RFC 6455 section 5.5.1 ends only data
        frames with our Close, and websockets' sans-I/O protocol allows it the same way."""
        if self.state is not CLOSING:
            self._check_can_send()
        if len(data) > 125:  # (a large payload skips encode_frame, which checks this: see _send_frame)
            raise ValueError("control frame payload longer than 125 bytes")
        self._send_frame(9, data)

    def send_pong(self, data: bytes = b"") -> None:
        """Queue an unsolicited Pong (at most 125 bytes); while CLOSING too, as :meth:`send_ping`."""
        if self.state is not CLOSING:
            self._check_can_send()
        if len(data) > 125:  # RFC 6455 section 5.5 (as in send_ping)
            raise ValueError("control frame payload longer than 125 bytes")
        self._send_frame(10, data)

    def close(self, code: int | None = 1000, reason: str = "") -> None:
        """Start the closing handshake: queue a Close frame and move to CLOSING.

        ``code=None`` sends a Close without a status code. Does nothing once a Close was sent; before
        the handshake a server uses :meth:`reject` instead.
        """
        if self.state is CONNECTING:
            raise RuntimeError("close() before the handshake; a server uses reject()")
        if self.close_sent is not None or self.state is CLOSED:
            return
        error = self.pending_error
        if error is not None:
            # The peer broke the protocol: our Close says so, and nothing it sends will be read. The
            # error stays pending until fail_pending() reports it.
            self._fail(error)
            self.pending_error = error
            return
        self._send_close(code, reason)
        self.state = CLOSING
        self._fast_send = 0
        self._fast_receive = None

    def fail(self, code: int = 1011, reason: str = "") -> None:
        """Fail the connection from our side (internal error, heartbeat timeout): Close, then CLOSED."""
        if self.state is CLOSED:
            return
        self.pending_error = None
        if self.state is not CONNECTING and self.close_sent is None:
            self._send_close(code, reason)
        self.state = CLOSED
        self._fast_send = 0
        self._fast_receive = None
        if self.close_code is None:
            self.close_code = 1006
