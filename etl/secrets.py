"""The API key as a type whose printed forms never show it."""

from __future__ import annotations

MASK = "********"


class Secret:
    """Wraps a secret string. `str`, `repr` and f-strings show a mask; only `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """Replace every occurrence of the secret in `text` (defence in depth for logs and errors)."""
        if not self._value:
            return text
        return text.replace(self._value, MASK)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    # Pickling or copying must not be a way around the mask in a traceback or a dump.
    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values are not picklable")
