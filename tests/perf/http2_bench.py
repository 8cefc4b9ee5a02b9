"""Does HTTP/2 help our httpx AsyncClient against HTTP/1.1 keep-alive pools? A measurement.

    tests/perf/.venv-h2/bin/python tests/perf/http2_bench.py            # full sizes
    tests/perf/.venv-h2/bin/python tests/perf/http2_bench.py --quick    # small sizes

Run with the python of tests/perf/.venv-h2 (requirements-h2.txt; http2_case.py builds it): the
project's venv has neither the h2 package nor hypercorn, and neither should become a dependency.

The workload is the archiver's: many small JSON GETs (a page of 20 chat messages, ~10 KB) with up to
32 in flight. Two scenarios, each against one hypercorn server process shared by all protocols:

- `latency`: the server answers after 50 ms, the client paces itself to 190 requests/s (the API's
  rate limit). Throughput is capped by the pacing; the question is whether either protocol falls
  short of it, and at what CPU.
- `cpu`: no latency, no pacing, so the client is CPU-bound and CPU per request is what matters.

Protocols: `h1` (https, httpx's default HTTP/1.1 keep-alive pool of up to 32 connections, as the
archiver sends it), `h2` (https, ALPN-negotiated HTTP/2, as the real API would be reached) and `h2c`
(cleartext HTTP/2 with prior knowledge).

The server runs in its own process so `time.process_time()` here is the client's CPU alone; the
server's CPU is read from /proc for the same window. The server counts the TCP connections it saw
(distinct client address/port pairs in the ASGI scope). Prints one JSON line with everything.

hypercorn closes connections after 1000 requests by default (an h2 GOAWAY, as nginx does too); that
is off here unless --server-max-requests-per-conn is given, because httpcore 1.0.9 then fails a few
in-flight h2 requests (WriteError) instead of retrying them: worth knowing, but not protocol cost.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PERF_DIR = Path(__file__).resolve().parent
DATA_DIR = PERF_DIR.parent / "data"
CERT = DATA_DIR / "localhost-cert.pem"
KEY = DATA_DIR / "localhost-key.pem"
PROTOCOLS = ("h1", "h2", "h2c")
WARMUP_REQUESTS = 64
CLK_TCK = os.sysconf("SC_CLK_TCK")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def page_body() -> bytes:
    """A fixed page of 20 chat messages, ~10 KB of JSON, shaped like the API's."""
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. " * 5
    messages = [
        {
            "id": f"msg-{i:08d}",
            "conversation_id": "conv-000042",
            "author": {"id": f"user-{i % 7:04d}", "name": f"User {i % 7}"},
            "created_at": f"2026-11-26T14:{i:02d}:00.000Z",
            "text": text[: 380 + i],
            "reactions": [{"emoji": "thumbsup", "count": i % 3}],
        }
        for i in range(20)
    ]
    return json.dumps({"messages": messages, "next_cursor": "c-0000000021"}).encode()


# --- server side (runs in the child process started by `running_server`) ---------------------------


class PageApp:
    """GET /page: the fixed page after `latency_s`. GET /stats: counters since the last /stats."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.body = page_body()
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
        ]
        self._reset()

    def _reset(self) -> None:
        # A connection is one (host, port) pair for its whole life, in h1 and h2 alike.
        self.connections: set[tuple[str, int]] = set()
        self.versions: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["path"] == "/stats":
            # The stats connection itself is not part of the measured run.
            own = tuple(scope["client"])
            stats = {
                "connections": len(self.connections - {own}),
                "http_versions": dict(self.versions),
            }
            self._reset()
            body = json.dumps(stats).encode()
            await _respond(send, body, [(b"content-type", b"application/json")])
            return
        self.connections.add(tuple(scope["client"]))
        self.versions[scope["http_version"]] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        await _respond(send, self.body, self.headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(latency_ms: float, tls_fd: int, plain_fd: int, max_requests_per_conn: int) -> None:
    """Serve PageApp with hypercorn on inherited, already-listening sockets until SIGTERM."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    # The parent bound the sockets (port 0) and passed them down: no port race, and clients can
    # connect (into the backlog) before hypercorn is up.
    config.bind = [f"fd://{tls_fd}"]
    config.insecure_bind = [f"fd://{plain_fd}"]
    config.certfile = str(CERT)
    config.keyfile = str(KEY)
    config.accesslog = None  # one log line per request would be server CPU we don't want to count
    config.keep_alive_timeout = 30.0  # longer than any pause between runs of one protocol
    # hypercorn closes a connection after 1000 requests by default (GOAWAY in h2, as nginx does).
    # Unlimited by default here, so the runs compare protocols, not reconnection handling; the
    # option brings the limit back to see how the client copes with it.
    config.keep_alive_max_requests = max_requests_per_conn or sys.maxsize
    # Without a shutdown_trigger hypercorn installs SIGTERM/SIGINT handlers and shuts down gracefully.
    asyncio.run(hypercorn_serve(PageApp(latency_ms / 1000), config))  # type: ignore[arg-type]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    https_url: str
    http_url: str

    def cpu_s(self) -> float:
        """The server process's user+system CPU so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the ")" that ends the command name, utime and stime are the 12th and 13th fields.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


@contextmanager
def running_server(latency_ms: float, max_requests_per_conn: int) -> Iterator[Server]:
    tls_sock, plain_sock = (socket.create_server(("127.0.0.1", 0), backlog=1024) for _ in range(2))
    tls_port, plain_port = tls_sock.getsockname()[1], plain_sock.getsockname()[1]
    cmd = [
        sys.executable,
        __file__,
        "--serve",
        f"{tls_sock.fileno()},{plain_sock.fileno()}",
        "--latency-ms",
        str(latency_ms),
        "--server-max-requests-per-conn",
        str(max_requests_per_conn),
    ]
    process = subprocess.Popen(
        cmd, pass_fds=(tls_sock.fileno(), plain_sock.fileno()), stdout=subprocess.DEVNULL
    )
    tls_sock.close()
    plain_sock.close()
    try:
        yield Server(process, f"https://localhost:{tls_port}", f"http://127.0.0.1:{plain_port}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_stats(server: Server) -> dict[str, Any]:
    """Read and reset the server's counters; the first call also waits for the server to be up."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with httpx.Client(verify=client_ssl_context(), trust_env=False) as client:
                response = client.get(f"{server.https_url}/stats", timeout=10)
            response.raise_for_status()
            stats: dict[str, Any] = response.json()
            return stats
        except httpx.TransportError:
            if time.monotonic() > deadline or server.process.poll() is not None:
                raise
            time.sleep(0.1)


# --- client side -----------------------------------------------------------------------------------


def client_ssl_context() -> ssl.SSLContext:
    # A fresh context per client: httpcore sets the ALPN list on the context it is given, so h1 and
    # h2 clients must not share one.
    return ssl.create_default_context(cafile=str(CERT))


def make_client(protocol: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(
        http1=protocol.startswith("h1"),  # h2c needs http1=False: httpx then sends the h2 preface directly
        http2=not protocol.startswith("h1"),
        verify=client_ssl_context(),
        limits=limits,
        trust_env=False,  # no proxy from the environment between us and 127.0.0.1
        timeout=30.0,
    )


@dataclass
class RunState:
    remaining: int
    interval_s: float
    next_slot: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)


async def _worker(client: httpx.AsyncClient, url: str, state: RunState, body_len: int) -> None:
    loop = asyncio.get_running_loop()
    while state.remaining > 0:
        state.remaining -= 1
        if state.interval_s:
            # Token pacing: each request takes the next slot; no await between reading and moving
            # next_slot, so the workers never race. max() means a late start never bursts to catch up.
            now = loop.time()
            slot = max(now, state.next_slot)
            state.next_slot = slot + state.interval_s
            if slot > now:
                await asyncio.sleep(slot - now)
        started = time.perf_counter()
        try:
            response = await client.get(url)
        except httpx.HTTPError as exc:
            # By type and message: a GOAWAY, a reset stream and a refused connection differ.
            state.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
            continue
        state.latencies_s.append(time.perf_counter() - started)
        state.versions[response.http_version] += 1
        # The body is read in full by get(); the JSON is not parsed, as parsing costs the same for
        # every protocol and would only dilute the difference being measured.
        if response.status_code == 200 and len(response.content) == body_len:
            state.ok += 1
        else:
            state.errors[f"status {response.status_code}, {len(response.content)} bytes"] += 1


async def run_requests(
    protocol: str, base_url: str, requests: int, concurrency: int, rate: float
) -> tuple[RunState, float, float]:
    """`requests` GETs with `concurrency` workers on a fresh client; return state, wall s, CPU s."""
    state = RunState(remaining=requests, interval_s=1 / rate if rate else 0.0)
    body_len = len(page_body())
    url = f"{base_url}/page"
    # The client is created inside the timed window on purpose: opening connections (32 TLS
    # handshakes for h1 against 1 for h2) is part of what each protocol costs a run.
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with make_client(protocol, concurrency) as client:
        await asyncio.gather(*(_worker(client, url, state, body_len) for _ in range(concurrency)))
    return state, time.perf_counter() - wall0, time.process_time() - cpu0


def measure(server: Server, protocol: str, requests: int, concurrency: int, rate: float) -> dict[str, Any]:
    base_url = server.http_url if protocol == "h2c" else server.https_url
    # Warm-up on a throw-away client: lazy imports (h2, hpack) and first-use costs stay out of the
    # measured CPU.
    asyncio.run(run_requests(protocol, base_url, WARMUP_REQUESTS, concurrency, 0.0))
    server_stats(server)  # resets the server's counters
    server_cpu0 = server.cpu_s()
    state, wall_s, cpu_s = asyncio.run(run_requests(protocol, base_url, requests, concurrency, rate))
    server_cpu_s = server.cpu_s() - server_cpu0
    seen = server_stats(server)
    done = len(state.latencies_s)
    quantiles = statistics.quantiles(state.latencies_s, n=100) if done >= 2 else [0.0] * 99
    return {
        "requests": requests,
        "ok": state.ok,
        "errors": sum(state.errors.values()),
        "error_types": dict(state.errors),
        "wall_s": round(wall_s, 3),
        "req_per_s": round(state.ok / wall_s, 1),
        "client_cpu_s": round(cpu_s, 3),
        "client_cpu_ms_per_req": round(1000 * cpu_s / requests, 3),
        "server_cpu_s": round(server_cpu_s, 2),
        "server_cpu_ms_per_req": round(1000 * server_cpu_s / requests, 3),
        "server_connections": seen["connections"],
        "server_http_versions": seen["http_versions"],
        "client_http_versions": dict(state.versions),
        "latency_ms_p50": round(1000 * quantiles[49], 2),
        "latency_ms_p95": round(1000 * quantiles[94], 2),
        "latency_ms_p99": round(1000 * quantiles[98], 2),
    }


def run_scenario(
    latency_ms: float,
    rate: float,
    requests: int,
    concurrency: int,
    protocols: list[str],
    max_requests_per_conn: int,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "latency_ms": latency_ms,
        "rate_limit_req_per_s": rate or None,
        "concurrency": concurrency,
        "requests": requests,
        "server_max_requests_per_conn": max_requests_per_conn or None,
    }
    with running_server(latency_ms, max_requests_per_conn) as server:
        server_stats(server)  # waits until hypercorn answers
        for protocol in protocols:
            result[protocol] = measure(server, protocol, requests, concurrency, rate)
    return result


def versions() -> dict[str, str]:
    names = ("httpx", "httpcore", "h2", "h11", "hypercorn", "anyio", "sniffio")
    return {
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        **{name: importlib.metadata.version(name) for name in names},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small request counts, to try the harness")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="server latency, latency scenario")
    parser.add_argument("--rate", type=float, default=190.0, help="client pacing, latency scenario")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-requests", type=int, help="default 2000, 400 with --quick")
    parser.add_argument("--cpu-requests", type=int, help="default 5000, 1000 with --quick")
    parser.add_argument(
        "--server-max-requests-per-conn",
        type=int,
        default=0,
        help="server closes a connection after this many requests (hypercorn's default is 1000); 0: never",
    )
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated subset")
    parser.add_argument("--serve", metavar="TLS_FD,PLAIN_FD", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        tls_fd, plain_fd = (int(fd) for fd in args.serve.split(","))
        serve(args.latency_ms, tls_fd, plain_fd, args.server_max_requests_per_conn)
        return

    protocols = [p for p in args.protocols.split(",") if p]
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        parser.error(f"unknown protocols: {sorted(unknown)}")
    latency_requests = args.latency_requests or (400 if args.quick else 2000)
    cpu_requests = args.cpu_requests or (1000 if args.quick else 5000)
    max_per_conn = args.server_max_requests_per_conn
    started = time.monotonic()
    # The load average tells the reader whether other work shared the 2 cores during the run.
    load_before = os.getloadavg()
    report = {
        "versions": versions(),
        "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "latency": run_scenario(
            args.latency_ms, args.rate, latency_requests, args.concurrency, protocols, max_per_conn
        ),
        "cpu": run_scenario(0.0, 0.0, cpu_requests, args.concurrency, protocols, max_per_conn),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
