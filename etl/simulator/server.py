"""Wires the simulator together: account, fault config, stats and the two listening origins."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from etl.simulator import wire
from etl.simulator.account import AccountSpec
from etl.simulator.api_routes import ApiOrigin
from etl.simulator.control import ControlOrigin
from etl.simulator.faults import FaultConfig
from etl.simulator.options import SimulatorOptions, option_names
from etl.simulator.signing import UrlSigner
from etl.simulator.state import Account
from etl.simulator.stats import Stats
from etl.simulator.storage import StorageOrigin
from etl.simulator.wire import Request, Response

LOOPBACK = "127.0.0.1"  # never reachable from outside the machine


@dataclass(frozen=True)
class ReadyInfo:
    api_base_url: str
    storage_url: str
    control_url: str
    api_key: str
    since: str  # first and last UTC day of the generated calls, YYYY-MM-DD
    until: str
    tls_cert: str | None  # the certificate to trust when the simulator serves https, else None

    def as_json(self) -> dict[str, Any]:
        return {"event": "ready", **dataclasses.asdict(self)}


ReadyCallback = Callable[[ReadyInfo], None]


def fault_config(options: SimulatorOptions) -> FaultConfig:
    return FaultConfig(**_options_named_like(FaultConfig, options))


def _options_named_like(target: type[Any], options: SimulatorOptions) -> dict[str, Any]:
    """The options that the dataclass `target` has a field of the same name for, as keywords."""
    names = option_names()
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(target) if f.name in names}


def _tls_context(options: SimulatorOptions) -> ssl.SSLContext | None:
    if not options.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(options.tls_cert, options.tls_key or None)
    return context


def _listening_socket(port: int) -> socket.socket:
    # Bound before the origins are built: the API must know the storage port to sign URLs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(
    options: SimulatorOptions, ready_callback: ReadyCallback, stop: asyncio.Event | None = None
) -> None:
    """Serve until `stop` is set (forever when None); `ready_callback` runs once both ports listen."""
    spec = AccountSpec(**_options_named_like(AccountSpec, options))
    account, config, stats = Account(spec), fault_config(options), Stats()
    api_sock, storage_sock = _listening_socket(options.port), _listening_socket(options.storage_port)
    tls = _tls_context(options)
    # Over TLS, the API's `next` links still say http (`paging.page_url`): like a proxy in front of
    # an API that forgets the scheme it was reached by.
    scheme = "https" if tls else "http"
    api_url = f"{scheme}://{LOOPBACK}:{api_sock.getsockname()[1]}"
    storage_url = f"{scheme}://{LOOPBACK}:{storage_sock.getsockname()[1]}"
    signer = UrlSigner(os.urandom(32), storage_url)
    api = ApiOrigin(
        account,
        config,
        stats,
        signer,
        api_key=options.api_key,
        page_size_max=options.page_size_max,
        seed=options.seed,
    )
    control = ControlOrigin(account, config, stats)
    storage = StorageOrigin(account, config, stats, signer, api_key=options.api_key, seed=options.seed)

    async def api_port(request: Request) -> Response:
        if request.path == "/_sim" or request.path.startswith("/_sim/"):
            return await control.handle(request)
        return await api.handle(request)

    servers = [
        await wire.start(api_port, api_sock, stats, tls),
        await wire.start(storage.handle, storage_sock, stats, tls),
    ]
    since, until = account.date_range()
    ready_callback(
        ReadyInfo(
            f"{api_url}/api",
            storage_url,
            f"{api_url}/_sim",
            options.api_key,
            since.isoformat(),
            until.isoformat(),
            options.tls_cert,
        )
    )
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        for server in servers:
            server.close()


def run(options: SimulatorOptions, ready_callback: ReadyCallback) -> int:
    """Blocking entry point: serve until SIGTERM or SIGINT, then return exit status 0."""

    async def until_signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(options, ready_callback, stop)

    asyncio.run(until_signalled())
    return 0
