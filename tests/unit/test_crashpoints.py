import pytest
from support.crashing_archiver import CrashPoint

from etl.errors import ConfigError


def test_parse() -> None:
    assert CrashPoint.parse("put:messages/:2") == CrashPoint("put", "messages/", 2)
    assert CrashPoint.parse("delete:_state/open/:1") == CrashPoint("delete", "_state/open/", 1)


@pytest.mark.parametrize("spec", ["put:x", "get:x:1", "put:x:0", "put:x:n"])
def test_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigError):
        CrashPoint.parse(spec)
