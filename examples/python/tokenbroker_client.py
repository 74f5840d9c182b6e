"""A small tokenbroker client for Python channels, over gRPC (grpcio).

Copy this file next to your code and keep ``gen/python`` (the generated
stubs) where ``_GEN_PYTHON`` below points, or put it on ``sys.path`` yourself.
Needs ``grpcio`` and ``protobuf`` (Debian: ``apt install python3-grpcio
python3-protobuf``). The broker wants the channel's API key (``tokenbroker keys
create``): pass ``api_key=`` or set ``TOKENBROKER_KEY``; it is sent as
``authorization: Bearer <key>`` metadata on every call, and never printed::

    from tokenbroker_client import TokenBrokerClient, TenantNotFound

    with TokenBrokerClient("127.0.0.1:50051") as broker:   # the key from TOKENBROKER_KEY
        token = broker.get_token(tenant_id)
        headers = {"Authorization": f"Bearer {token.access_token}", "xero-tenant-id": tenant_id}
        # ... call Xero; on a 401:
        token = broker.report_expired(tenant_id, token.access_token).token
        # or keep a token pushed to you as soon as it changes:
        for update in broker.watch(tenant_id):
            token = update.token

Run as a script, it prints the token set's details (never the token itself)::

    TOKENBROKER_KEY=tbk_... /usr/bin/python3 examples/python/tokenbroker_client.py 127.0.0.1:50051 <tenant id>
"""

from __future__ import annotations

import os
import re
import sys
from typing import Iterator, Optional

# The generated stubs import `tokenbroker.v1...`, so gen/python must be on the path.
_GEN_PYTHON = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "gen", "python"))
if _GEN_PYTHON not in sys.path:
    sys.path.insert(0, _GEN_PYTHON)

import grpc  # noqa: E402
from google.protobuf.duration_pb2 import Duration  # noqa: E402
from tokenbroker.v1 import token_service_pb2 as pb  # noqa: E402
from tokenbroker.v1 import token_service_pb2_grpc as pb_grpc  # noqa: E402

__all__ = [
    "TokenBrokerClient",
    "TokenBrokerError",
    "InvalidRequest",
    "TenantNotFound",
    "NeedsReauthorization",
    "NotAuthorized",
    "Unauthenticated",
    "PermissionDenied",
    "BrokerUnavailable",
    "pb",
]


class TokenBrokerError(Exception):
    """A call to the broker failed. ``code`` is the ``grpc.StatusCode``, ``message`` the broker's text."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidRequest(TokenBrokerError):
    """INVALID_ARGUMENT: a bad tenant id or request; retrying will not help."""


class TenantNotFound(TokenBrokerError):
    """NOT_FOUND: the broker holds no such tenant; import its connection first."""


class NeedsReauthorization(TokenBrokerError):
    """FAILED_PRECONDITION: Xero rejected the connection's refresh token; a person must re-authorise it."""


class BrokerUnavailable(TokenBrokerError):
    """UNAVAILABLE: the broker or Xero cannot be reached right now; retry with backoff."""


class NotAuthorized(TokenBrokerError):
    """The broker refused the API key (``Unauthenticated`` or ``PermissionDenied``); retrying will not help."""


class Unauthenticated(NotAuthorized):
    """UNAUTHENTICATED: no API key was sent, or the broker does not know it (unknown or revoked)."""


class PermissionDenied(NotAuthorized):
    """PERMISSION_DENIED: the API key is valid but may not use that tenant."""


_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.NOT_FOUND: TenantNotFound,
    grpc.StatusCode.FAILED_PRECONDITION: NeedsReauthorization,
    grpc.StatusCode.UNAVAILABLE: BrokerUnavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}

# What the client adds to the broker's message, saying which key was used (never the key itself).
_HINTS = {
    (grpc.StatusCode.UNAUTHENTICATED, False): "no API key was sent: pass api_key= or set TOKENBROKER_KEY",
    (grpc.StatusCode.UNAUTHENTICATED, True): "the API key sent is unknown or revoked",
}

# An API key goes into gRPC metadata: visible ASCII only. grpcio would echo a bad
# value in its error, so the key is checked here, with a message that omits it.
_KEY_SHAPE = re.compile(r"[\x21-\x7e]+")


def _error(e: grpc.RpcError, has_key: bool) -> TokenBrokerError:
    """Maps a grpc error to the matching TokenBrokerError subclass."""
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (e.details() if isinstance(e, grpc.Call) else None) or str(e)
    hint = _HINTS.get((code, has_key))
    if hint:
        details = f"{details} ({hint})"
    return _ERRORS.get(code, TokenBrokerError)(code, details)


class TokenBrokerClient:
    """A connection to one tokenbroker; every method names the token set by Xero tenant id."""

    def __init__(self, target: str = "127.0.0.1:50051", timeout: float = 10.0, *, api_key: Optional[str] = None):
        """``target`` is ``host:port`` of the broker (cleartext); ``timeout`` the deadline of unary calls, in seconds.

        ``api_key`` is the channel's key (``tokenbroker keys create``); when it
        is None, the ``TOKENBROKER_KEY`` environment variable is used, and when
        that is unset or empty no key is sent (a broker run with
        ``--insecure-no-auth``). Raises ``ValueError`` for a key that cannot be
        sent (not visible ASCII); the message never contains the key.
        """
        key = (api_key if api_key is not None else os.environ.get("TOKENBROKER_KEY", "")).strip()
        if key and not _KEY_SHAPE.fullmatch(key):
            source = "api_key" if api_key is not None else "TOKENBROKER_KEY"
            raise ValueError(f"{source} is not an API key: it must be visible ASCII characters, without spaces")
        self._metadata = (("authorization", f"Bearer {key}"),) if key else ()
        self._channel = grpc.insecure_channel(target)
        self._stub = pb_grpc.TokenServiceStub(self._channel)
        self._timeout = timeout

    def get_token(self, tenant_id: str, min_valid_for: Optional[float] = None) -> pb.Token:
        """An access token for the tenant, valid for at least ``min_valid_for`` seconds (broker default 60)."""
        request = pb.GetTokenRequest(tenant_id=tenant_id)
        if min_valid_for is not None:
            request.min_valid_for.CopyFrom(Duration(seconds=int(min_valid_for)))
        try:
            return self._stub.GetToken(request, timeout=self._timeout, metadata=self._metadata).token
        except grpc.RpcError as e:
            raise _error(e, bool(self._metadata)) from None

    def report_expired(self, tenant_id: str, access_token: str) -> pb.ReportExpiredResponse:
        """Reports the token Xero answered 401 to; returns the token to use now (``.token``) and ``.refreshed``."""
        request = pb.ReportExpiredRequest(tenant_id=tenant_id, access_token=access_token)
        try:
            return self._stub.ReportExpired(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise _error(e, bool(self._metadata)) from None

    def watch(self, tenant_id: str) -> Iterator[pb.WatchTokenResponse]:
        """Yields the current token at once, then every new token as the broker stores it.

        The stream has no deadline. It ends with ``BrokerUnavailable`` when the
        broker shuts down: call ``watch`` again. Closing the generator (or the
        client) cancels the stream.
        """
        call = self._stub.WatchToken(pb.WatchTokenRequest(tenant_id=tenant_id), metadata=self._metadata)
        try:
            for update in call:
                yield update
        except grpc.RpcError as e:
            raise _error(e, bool(self._metadata)) from None
        finally:
            call.cancel()

    def close(self) -> None:
        """Closes the channel and every stream on it."""
        self._channel.close()

    def __enter__(self) -> "TokenBrokerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: [TOKENBROKER_KEY=<key>] tokenbroker_client.py HOST:PORT TENANT_ID", file=sys.stderr)
        return 2
    try:
        broker = TokenBrokerClient(argv[1])
    except ValueError as e:
        print(f"tokenbroker: {e}", file=sys.stderr)
        return 2
    with broker:
        try:
            token = broker.get_token(argv[2])
        except TokenBrokerError as e:
            print(f"tokenbroker: {e}", file=sys.stderr)
            return 1
    print(f"connection {token.connection_id}  version {token.version}  expires {token.expires_at.ToJsonString()}")
    print(f"tenants {' '.join(token.tenant_ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
