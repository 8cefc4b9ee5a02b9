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


def test_detects_a_loop_whose_links_come_back_reordered() -> None:
    p = paginator()
    p.advance({"next": "https://api.ultravox.ai/api/calls?cursor=a&fromDate=x", "results": []})
    p.advance({"next": "https://api.ultravox.ai/api/calls?cursor=b&fromDate=x", "results": []})
    with pytest.raises(FatalError, match="loop"):
        p.advance({"next": "https://api.ultravox.ai/api/calls?fromDate=x&cursor=a", "results": []})


def test_stops_a_listing_that_never_ends_at_the_page_cap() -> None:
    p = Paginator(API, "calls of 2026-03-02", max_pages=3)
    for n in range(2):
        p.advance({"next": f"https://api.ultravox.ai/api/calls?cursor={n}", "results": []})
    with pytest.raises(FatalError, match="more than 3 pages"):
        p.advance({"next": "https://api.ultravox.ai/api/calls?cursor=new", "results": []})


@pytest.mark.parametrize(
    "next_url",
    [
        "https://api.ultravox.ai/api/calls?cursor=a\x01b",  # httpx.InvalidURL, which crashed the run
        "https://api.ultravox.ai/api/calls?cursor=a b",
        "https://api.ultravox.ai:99999/api/calls",  # urlsplit's port raises ValueError
        "https://[::1/api/calls",
        "https://api.ultravox.ai/api/calls?cursor=" + "a" * 10_000,
    ],
)
def test_refuses_a_next_url_that_is_not_one(next_url: str) -> None:
    with pytest.raises(FatalError, match="not a valid URL"):
        paginator().advance({"next": next_url, "results": []})


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
