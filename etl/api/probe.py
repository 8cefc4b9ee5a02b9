"""One small request before a run, to find out whether the API can be used at all.

A wrong base URL, a key the API rejects or a host that cannot be reached would otherwise show up
only after the run's full retry policy has been spent on them (8 attempts, ~40 s for a host that
refuses connections). The probe asks for one call of the list endpoint with a short timeout and a
few quick attempts; what it finds is for the caller (`etl.pipeline.preflight`) to explain.
"""

from __future__ import annotations

import dataclasses

import httpx

from etl.api.client import ApiClient, ClientOptions
from etl.api.retry_budget import RetryBudget

# A few quick attempts: a host that refuses connections is reported in about a second, one that
# drops them within ~3 connect timeouts, instead of after the run's backoff up to 30 s a retry.
PROBE_ATTEMPTS = 3
PROBE_TIMEOUT_S = 5.0


def probe_options(options: ClientOptions) -> ClientOptions:
    return dataclasses.replace(
        options,
        max_attempts=PROBE_ATTEMPTS,
        timeout_s=min(options.timeout_s, PROBE_TIMEOUT_S),
        retry_initial_s=min(options.retry_initial_s, 0.25),
        retry_max_s=min(options.retry_max_s, 1.0),
        retry_after_max_s=min(options.retry_after_max_s, 1.0),
        max_connections=1,
        storage_connections=1,
    )


async def probe_list_endpoint(
    options: ClientOptions, *, transport: httpx.AsyncBaseTransport | None = None
) -> None:
    """`GET {base}/calls?pageSize=1`. Raises what the client raises: AuthError (401/403), FatalError
    (another 4xx, or an answer that is not JSON), Unreachable (no connection), RetriableError (429,
    5xx or timeouts that outlasted the probe's attempts)."""
    bounded = probe_options(options)
    async with ApiClient(bounded, transport=transport, retry_budget=RetryBudget(None)) as client:
        await client.get_json(client.url("calls"), {"pageSize": 1})
