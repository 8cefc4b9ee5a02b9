"""A BlockingSink (etl.api.responses) that keeps a streamed body in memory and counts its resets."""

from __future__ import annotations


class MemorySink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.resets = 0
        self.lengths: list[int | None] = []  # what `begin` was told, attempt by attempt

    def reset(self) -> None:
        self.data.clear()
        self.resets += 1

    def begin(self, length: int | None) -> None:
        self.lengths.append(length)

    def write(self, chunk: bytes | memoryview) -> None:
        self.data.extend(chunk)
