"""Where a recording may be downloaded from (etl.api.redirects): scheme, and every resolved address."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support.api_objects import client_options

from etl.api.client import ApiClient
from etl.api.redirects import DownloadPolicy, Resolver, parse_host_list
from etl.errors import FatalError, RetriableError

PUBLIC = ["52.216.1.2"]


def resolver(table: dict[str, list[str]]) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]

    return resolve


def check(policy: DownloadPolicy, url: str) -> None:
    policy.check(httpx.URL(url))


CLOUD = DownloadPolicy.for_api(
    "https://api.ultravox.ai/api",
    resolve=resolver(
        {
            "bucket.s3.amazonaws.com": PUBLIC,
            "internal.example": ["10.1.2.3"],
            "mixed.example": [*PUBLIC, "127.0.0.1"],
            "metadata.example": ["169.254.169.254"],
            "v6.example": ["fe80::1%eth0"],
            "minio.corp": ["10.9.9.9"],
            "localhost": ["127.0.0.1"],
        }
    ),
)


def test_a_public_https_host_is_allowed() -> None:
    check(CLOUD, "https://bucket.s3.amazonaws.com/rec.wav?X-Amz-Signature=s")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://bucket.s3.amazonaws.com/rec.wav", "only https"),
        ("ftp://bucket.s3.amazonaws.com/rec.wav", "only https"),
        ("https://127.0.0.1/rec.wav", "loopback"),
        ("https://[::1]/rec.wav", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::ffff:10.0.0.1]/rec.wav", "private"),
        ("https://192.168.1.20/rec.wav", "private"),
        ("https://internal.example/rec.wav", "private"),
        ("https://mixed.example/rec.wav", "loopback"),  # every address counts, not the first
        ("https://metadata.example/rec.wav", "link-local"),
        ("https://v6.example/rec.wav", "link-local"),
        ("https://localhost/rec.wav", "loopback"),
    ],
)
def test_unsafe_downloads_are_refused(url: str, why: str) -> None:
    with pytest.raises(FatalError, match=why) as caught:
        check(CLOUD, url)
    assert "Signature" not in str(caught.value)


def test_a_host_that_does_not_resolve_is_retried_not_followed() -> None:
    with pytest.raises(RetriableError, match="cannot resolve"):
        check(CLOUD, "https://nowhere.example/rec.wav")


def test_named_hosts_may_be_private() -> None:
    policy = DownloadPolicy.for_api(
        "https://api.ultravox.ai/api", parse_host_list("minio.corp, other.corp"), resolve=CLOUD.resolve
    )
    check(policy, "https://minio.corp/rec.wav")
    check(policy, "http://MINIO.corp./rec.wav")
    with pytest.raises(FatalError, match="private"):
        check(policy, "https://internal.example/rec.wav")


@pytest.mark.parametrize("api", ["http://127.0.0.1:8765/api", "https://localhost:8443/api"])
def test_loopback_storage_is_allowed_only_when_the_api_is_on_loopback_over_its_scheme(api: str) -> None:
    policy = DownloadPolicy.for_api(api, resolve=resolver({"localhost": ["127.0.0.1", "::1"]}))
    scheme = api.split(":", 1)[0]
    check(policy, f"{scheme}://127.0.0.1:8766/recordings/c.wav?sig=1")
    check(policy, f"{scheme}://localhost:8766/recordings/c.wav?sig=1")
    other = "https" if scheme == "http" else "http"
    if other == "http":
        with pytest.raises(FatalError, match="only https"):
            check(policy, "http://127.0.0.1:8766/recordings/c.wav")
    with pytest.raises(FatalError, match="private"):
        check(policy, f"{scheme}://10.0.0.8/recordings/c.wav")


def test_a_storage_redirect_to_the_metadata_service_is_refused_before_it_is_sent() -> None:
    sent: list[str] = []

    def storage(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data/iam"})

    options = client_options(max_connections=2, max_attempts=2)

    async def download() -> None:
        async with ApiClient(
            options,
            transport=httpx.MockTransport(lambda r: httpx.Response(500)),
            storage_transport=httpx.MockTransport(storage),
            resolve=resolver({"bucket.s3.amazonaws.com": PUBLIC}),
        ) as client:
            await client.download("https://bucket.s3.amazonaws.com/rec.wav?sig=s", _Sink())

    with pytest.raises(FatalError, match=r"only https|link-local"):
        asyncio.run(download())
    assert sent == ["https://bucket.s3.amazonaws.com/rec.wav?sig=s"]


class _Sink:
    def reset(self) -> None:
        return None

    def begin(self, length: int | None) -> None:
        return None

    def write(self, chunk: bytes | memoryview) -> None:
        return None
