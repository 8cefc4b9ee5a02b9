"""Recording bytes: a valid RIFF/WAVE file of an exact size, generated in chunks; pure functions.

A 2 GiB recording must stream in constant memory, so the payload is one random block per call,
rotated by a different offset in every chunk (cheap: a slice of the block written twice) rather than
fresh randomness for every byte.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator

HEADER_BYTES = 44
SAMPLE_RATE = 16_000
CHUNK_BYTES = 64 * 1024


def wav_header(total_bytes: int) -> bytes:
    data_bytes = total_bytes - HEADER_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        total_bytes - 8,
        b"WAVE",
        b"fmt ",
        16,  # PCM fmt chunk size
        1,  # PCM
        1,  # mono
        SAMPLE_RATE,
        SAMPLE_RATE * 2,  # byte rate
        2,  # block align
        16,  # bits per sample
        b"data",
        data_bytes,
    )


def wav_chunks(seed: int, total_bytes: int) -> Iterator[bytes | memoryview]:
    """The recording of `total_bytes` bytes (header included) in chunks of at most `CHUNK_BYTES`."""
    if total_bytes < HEADER_BYTES:
        raise ValueError("a WAV file needs at least 44 bytes")
    block_len = min(CHUNK_BYTES, max(total_bytes - HEADER_BYTES, 1))
    block = random.Random(seed).randbytes(block_len)
    doubled = memoryview(block + block)
    yield wav_header(total_bytes)
    remaining = total_bytes - HEADER_BYTES
    index = 0
    while remaining > 0:
        size = min(block_len, remaining)
        offset = (index * 7919) % block_len
        yield doubled[offset : offset + size]
        remaining -= size
        index += 1


def wav_sha256(seed: int, total_bytes: int) -> str:
    digest = hashlib.sha256()
    for chunk in wav_chunks(seed, total_bytes):
        digest.update(chunk)
    return digest.hexdigest()
