"""HTTP Basic Authentication (RFC 7617) before the upgrade: the part the asyncio and threaded servers share.

Each server wraps :class:`BasicAuth` in a ``process_request(connection, request)`` named ``basic_auth``,
as websockets does (``wscodec.asyncio.basic_auth``, ``wscodec.sync.basic_auth``): a request without valid
credentials gets 401 with a ``WWW-Authenticate`` challenge; a valid one goes on to the handshake with
``connection.username`` set. Passwords are compared in constant time. Browsers cannot set this header on
a WebSocket, but they send credentials they already hold for the site, or that the URL carries.
"""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .events import Request, Response
from .server_hooks import respond

__all__ = ["BasicAuth", "parse_authorization_basic"]

CheckCredentials = Callable[[str, str], bool | Awaitable[bool]]


def parse_authorization_basic(value: str) -> tuple[str, str]:
    """``(username, password)`` from an ``Authorization: Basic ...`` value; ValueError if it is not one."""
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "basic" or not token or " " in token:
        raise ValueError("not Basic credentials")
    try:
        decoded = b64decode(token.encode("ascii"), validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error) as exc:
        raise ValueError("malformed Basic credentials") from exc
    username, colon, password = decoded.partition(":")
    if not colon:
        raise ValueError("Basic credentials without a colon")
    return username, password


class BasicAuth:
    """Checks a request's credentials against ``credentials`` (one ``(username, password)`` pair or an
    iterable of them) or a ``check_credentials(username, password)`` function: give exactly one."""

    __slots__ = ("_check", "realm")

    _check: CheckCredentials

    def __init__(
        self,
        realm: str = "",
        credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
        check_credentials: CheckCredentials | None = None,
    ) -> None:
        if (credentials is None) == (check_credentials is None):
            raise ValueError("give either credentials or check_credentials")
        if '"' in realm or "\\" in realm or any(ord(c) < 32 or ord(c) == 127 for c in realm):
            raise ValueError("realm must not contain quotes, backslashes or control characters")
        self.realm = realm
        if credentials is not None:
            self._check = _checker(credentials)
        else:
            assert check_credentials is not None
            self._check = check_credentials

    def credentials(self, request: Request) -> tuple[str, str] | Response:
        """The request's ``(username, password)``, or the 401 to send when it carries none or garbage."""
        try:
            value = request.headers["Authorization"]
        except KeyError:
            return self.challenge("Missing credentials\n")
        except LookupError:  # several Authorization fields: ambiguous, refused
            return self.challenge("Unsupported credentials\n")
        try:
            return parse_authorization_basic(value)
        except ValueError:
            return self.challenge("Unsupported credentials\n")

    def check(self, username: str, password: str) -> bool | Awaitable[bool]:
        """Whether the pair is valid: what ``credentials`` or ``check_credentials`` says."""
        return self._check(username, password)

    def challenge(self, text: str = "Invalid credentials\n") -> Response:
        """A 401 with the ``WWW-Authenticate: Basic`` challenge of this realm."""
        response = respond(401, text)
        challenge = f'Basic realm="{self.realm}", charset="UTF-8"'
        return Response(401, response.reason, (*response.headers, ("WWW-Authenticate", challenge)), response.body)


def _checker(credentials: Any) -> Callable[[str, str], bool]:
    pairs = [credentials] if _is_pair(credentials) else list(credentials)
    if not pairs or not all(_is_pair(pair) for pair in pairs):
        raise TypeError("credentials must be a (username, password) pair of str or an iterable of them")
    expected = {username.encode("utf-8"): password.encode("utf-8") for username, password in pairs}

    def check(username: str, password: str) -> bool:
        # Constant time in the password; an unknown user is compared against a dummy for the same cost.
        known = expected.get(username.encode("utf-8"))
        same = hmac.compare_digest(known if known is not None else b"\0", password.encode("utf-8"))
        return known is not None and same

    return check


def _is_pair(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(isinstance(part, str) for part in value)
