"""A ByteSink (etl.api.responses) that keeps a streamed body in memory and counts its resets."""

from __future__ import annotations


class MemorySink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.resets = 0

    def reset(self) -> None:
        self.data.clear()
        self.resets += 1

    def write(self, chunk: bytes) -> None:
        self.data.extend(chunk)
