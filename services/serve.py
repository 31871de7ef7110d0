"""``python -m services.serve <name>``: run one service of the table with uvicorn, refusing to
listen beyond this machine without an API key.

A service bound to a non-loopback address is reachable from the network; with no
``KRYPTOBOT_API_KEY`` anyone there could train, activate or trade. So it does not start
unless the operator says so explicitly (``KRYPTOBOT_ALLOW_OPEN=1``, e.g. inside a container
network whose ports are published on 127.0.0.1 only).

Environment: ``KRYPTOBOT_HOST`` (default 127.0.0.1), ``KRYPTOBOT_PORT`` (default the table's).
"""
from __future__ import annotations

import ipaddress
import sys

from kryptobot.settings import Settings
from services.table import spec


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def refusal(settings: Settings) -> str | None:
    """Why a service must not start with these settings (None: it may)."""
    host = settings.host
    if is_loopback(host) or settings.api_key or settings.allow_open:
        return None
    return (f"refusing to listen on {host} without an API key: anyone who can reach it could train, activate "
            "or trade. Set KRYPTOBOT_API_KEY, bind to 127.0.0.1 (KRYPTOBOT_HOST), or set KRYPTOBOT_ALLOW_OPEN=1 "
            "if the network in front of it is yours")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m services.serve <service>", file=sys.stderr)
        return 2
    try:
        service = spec(args[0])
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    settings = Settings()
    why = refusal(settings)
    if why:
        print(f"[{service.name}] {why}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(service.app, factory=True, host=settings.host, port=settings.port or service.port(), access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
