import pytest

from etl.errors import FatalError
from etl.pagination import Paginator, origin_of

API = origin_of("https://api.ultravox.ai/api")


def paginator() -> Paginator:
    return Paginator(API, "calls of 2026-03-02")


def test_follows_next_until_null() -> None:
    p = paginator()
    assert p.advance({"next": "https://api.ultravox.ai/api/calls?cursor=abc", "results": []}) == (
        "https://api.ultravox.ai/api/calls?cursor=abc"
    )
    assert p.advance({"next": None, "results": []}) is None
    assert p.advance({"results": []}) is None


def test_default_port_is_same_origin() -> None:
    assert origin_of("https://API.ultravox.ai:443/x") == API


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/api/calls?cursor=1",
        "https://api.ultravox.ai:8443/api/calls?cursor=1",
        "http://api.ultravox.ai:8080/api/calls?cursor=1",  # http on another port: another server
        "http://evil.example/api/calls?cursor=1",
        "http://user@api.ultravox.ai/api/calls?cursor=1",
    ],
)
def test_refuses_off_origin_next(next_url: str) -> None:
    with pytest.raises(FatalError, match="another origin"):
        paginator().advance({"next": next_url, "results": []})


def test_detects_a_loop() -> None:
    p = paginator()
    page = {"next": "https://api.ultravox.ai/api/calls?cursor=same", "results": []}
    p.advance(page)
    with pytest.raises(FatalError, match="loop"):
        p.advance(page)


@pytest.mark.parametrize("page", [[], "text", {"results": None}, {"next": None}])
def test_rejects_malformed_pages(page: object) -> None:
    with pytest.raises(FatalError, match="calls of 2026-03-02"):
        paginator().results(page)


def test_rejects_non_string_next() -> None:
    with pytest.raises(FatalError, match="not a URL"):
        paginator().advance({"next": 3, "results": []})


@pytest.mark.parametrize(
    "next_url",
    [
        "http://api.ultravox.ai/api/calls?cursor=1",
        "http://API.ultravox.ai:80/api/calls?cursor=1",
        "http://api.ultravox.ai:443/api/calls?cursor=1",
    ],
)
def test_a_next_link_dropping_to_http_on_the_api_host_is_followed_over_https(next_url: str) -> None:
    assert paginator().advance({"next": next_url, "results": []}) == (
        "https://api.ultravox.ai:443/api/calls?cursor=1"
    )


def test_an_http_api_keeps_its_http_links() -> None:
    loopback = Paginator(origin_of("http://127.0.0.1:8765/api"), "calls")
    url = "http://127.0.0.1:8765/api/calls?cursor=1"
    assert loopback.advance({"next": url, "results": []}) == url
