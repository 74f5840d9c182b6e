"""Drives examples/python/tokenbroker_client.py against a running broker for test/python-client.test.ts.

usage: check_client.py HOST:PORT TENANT_ID

Prints one JSON object per line, flushed at once so the test can react
between steps. Tokens appear only as a SHA-256 digest and a length.
The test refreshes the token set after the first watch message; the script
then waits for the second one.
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python"))

from tokenbroker_client import (  # noqa: E402
    InvalidRequest,
    TenantNotFound,
    TokenBrokerClient,
    TokenBrokerError,
    pb,
)


def emit(step: str, **fields: object) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def describe(token: "pb.Token") -> dict:
    return {
        "sha256": hashlib.sha256(token.access_token.encode()).hexdigest(),
        "length": len(token.access_token),
        "tokenType": token.token_type,
        "connectionId": token.connection_id,
        "tenantIds": list(token.tenant_ids),
        "version": token.version,
        "expiresAtMs": token.expires_at.ToMilliseconds(),
    }


def error_fields(e: TokenBrokerError) -> dict:
    return {"error": type(e).__name__, "code": e.code.name, "message": e.message}


def main(target: str, tenant_id: str) -> int:
    with TokenBrokerClient(target, timeout=10.0) as broker:
        emit("get_token", **describe(broker.get_token(tenant_id)))

        updates = broker.watch(tenant_id)
        for n in (1, 2):
            update = next(updates)
            emit("watch", n=n, state=pb.ConnectionState.Name(update.state), **describe(update.token))
        updates.close()
        emit("watch_closed")

        try:
            broker.get_token("00000000-0000-0000-0000-000000000000")
            emit("not_found", error=None)
        except TenantNotFound as e:
            emit("not_found", **error_fields(e))

        try:
            broker.get_token("")
            emit("invalid_argument", error=None)
        except InvalidRequest as e:
            emit("invalid_argument", **error_fields(e))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
