"""What a server's hooks are called with and may return, shared by the asyncio and threaded servers.

``process_request`` and ``select_subprotocol`` are called the way websockets calls them, with the
connection first (``process_request(connection, request)``, ``select_subprotocol(connection, offered)``),
so that code moving from websockets is a rename; the shorter forms without the connection, which
wscodec has always taken, keep working. Which form a hook takes is read once from its signature.

An HTTP answer may be a :class:`~wscodec.events.Response` (what :func:`respond` builds, like websockets'
``connection.respond()``), any object with ``status_code``, ``headers`` and ``body`` (websockets' own
Response among them), or a ``(status, headers, body)`` tuple.
"""

from __future__ import annotations

import http
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .events import Headers, Request, Response
from .handshake import HandshakeRejected, HttpParser, _serialize, http_answer, parse_request_line

__all__ = [
    "as_response",
    "going_away_reason",
    "hook_request",
    "phrase",
    "respond",
    "response_bytes",
    "takes_connection",
]

#: The answer to a hook that raised or returned something that is not a response.
INTERNAL_ERROR = Response(500, "Internal Server Error", (("Content-Type", "text/plain"),), b"Internal Server Error\n")


def hook_request(parser: HttpParser) -> Request | None:
    """The request ``process_request`` is given, from a complete head, before the upgrade itself is checked:
    a health check is a plain GET, and a hook may answer HEAD or another method as an HTTP server does.
    None when the request line is malformed (a target with control characters among them): no hook runs,
    and the Connection answers 400."""
    try:
        method, target, version = parse_request_line(parser.start_line)
    except HandshakeRejected:
        return None
    return Request(method, target, parser.headers, version)


def takes_connection(hook: Callable[..., Any]) -> bool:
    """True if ``hook`` takes the connection before its other argument (websockets' form): two or more
    positional parameters without a default, or ``*args``."""
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): the short form
        return False
    required = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            required += parameter.default is inspect.Parameter.empty
    return required >= 2


def phrase(status: int) -> str:
    """The standard reason phrase of ``status``; empty for a code HTTP does not name."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def respond(status: int | http.HTTPStatus, text: str) -> Response:
    """A plain-text HTTP response for ``process_request`` or ``process_response`` to return instead of
    the upgrade (websockets' ``connection.respond()``). Content-Length and ``Connection: close`` are added
    when it is sent; add headers with ``dataclasses.replace(response, headers=(*response.headers, ...))``."""
    code = int(status)
    return Response(code, phrase(code), (("Content-Type", "text/plain; charset=utf-8"),), text.encode("utf-8"))


def as_response(value: Any, *, upgrade: bool = False) -> Response:
    """A hook's HTTP answer as a :class:`~wscodec.events.Response` (TypeError or ValueError if it is none).
    A 101 only with ``upgrade`` (``process_response`` may return the 101 it got; ``process_request``
    answers instead of the upgrade)."""
    if isinstance(value, Response):
        return value
    if hasattr(value, "status_code") and hasattr(value, "headers"):  # websockets' Response, or alike
        status, headers, body = value.status_code, value.headers, getattr(value, "body", b"")
        raw_items = getattr(headers, "raw_items", None)
        if raw_items is not None:
            headers = list(raw_items())
    else:
        status, headers, body = value
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    if isinstance(body, str):
        body = body.encode("utf-8")
    code = int(status)
    if not (200 <= code <= 599 or (upgrade and code == 101)):  # (another 1xx is only ever interim: no answer)
        raise ValueError(f"invalid HTTP status {code}")
    fields = Headers(tuple((str(name), str(field)) for name, field in headers))
    return Response(code, phrase(code), fields, bytes(body or b""))


def response_bytes(response: Response) -> bytes:
    """The wire form of a hook's response: a 101 keeps no body; any other is framed as the handshake's own
    refusals are (``handshake.http_answer``)."""
    if response.status_code == 101:
        return _serialize(f"HTTP/1.1 101 {response.reason or 'Switching Protocols'}", response.headers)
    reason = response.reason or phrase(response.status_code)
    return http_answer(response.status_code, reason, response.headers, response.body)[2]


def going_away_reason(code: int, reason: str | None) -> str:
    """The reason a server's shutdown sends (both servers): as given, else "going away" for 1001 (where
    websockets sends none: a reason a person can read in a client's log) and none for another code."""
    if reason is not None:
        return reason
    return "going away" if code == 1001 else ""
