"""Drives examples/python/tokenbroker_client.py against a broker that requires API keys, for test/python-client.test.ts.

usage: TOKENBROKER_KEY=<key for TENANT_ID> OTHER_KEY=<key for another tenant> check_auth.py HOST:PORT TENANT_ID

Prints one JSON object per line. Tokens appear only as a SHA-256 digest;
keys never appear at all (the test checks every line and standard error).
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python"))

from tokenbroker_client import (  # noqa: E402
    NotAuthorized,
    TokenBrokerClient,
    TokenBrokerError,
    pb,
)

# The shape of a key the broker never issued (tbk_ and 43 characters).
UNKNOWN_KEY = "tbk_" + "0" * 43


def emit(step: str, **fields: object) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def refused(step: str, call) -> None:
    """Runs `call`, which must raise; prints which exception, code and message."""
    try:
        call()
        emit(step, error=None)
    except TokenBrokerError as e:
        emit(step, error=type(e).__name__, notAuthorized=isinstance(e, NotAuthorized), code=e.code.name, message=e.message)


def main(target: str, tenant_id: str) -> int:
    # The key from TOKENBROKER_KEY, on every call: GetToken, ReportExpired, WatchToken.
    with TokenBrokerClient(target) as broker:
        token = broker.get_token(tenant_id)
        emit("get_token", sha256=sha256(token.access_token), version=token.version)
        report = broker.report_expired(tenant_id, token.access_token)
        emit("report_expired", refreshed=report.refreshed, sha256=sha256(report.token.access_token), version=report.token.version)
        updates = broker.watch(tenant_id)
        update = next(updates)
        emit("watch", state=pb.ConnectionState.Name(update.state), sha256=sha256(update.token.access_token), version=update.token.version)
        updates.close()

    # api_key="" sends no key, whatever TOKENBROKER_KEY says.
    with TokenBrokerClient(target, api_key="") as none:
        refused("no_key", lambda: none.get_token(tenant_id))
        refused("no_key_watch", lambda: next(none.watch(tenant_id)))

    with TokenBrokerClient(target, api_key=UNKNOWN_KEY) as unknown:
        refused("unknown_key", lambda: unknown.get_token(tenant_id))

    with TokenBrokerClient(target, api_key=os.environ["OTHER_KEY"]) as other:
        refused("other_tenant_key", lambda: other.get_token(tenant_id))
        refused("other_tenant_key_report", lambda: other.report_expired(tenant_id, "some-token"))

    # A key that cannot go into metadata is refused before any call, without echoing it.
    try:
        TokenBrokerClient(target, api_key=os.environ["OTHER_KEY"] + "\nx")
        emit("bad_key", error=None)
    except ValueError as e:
        emit("bad_key", error=type(e).__name__, message=str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
