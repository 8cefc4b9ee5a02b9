"""Recording bytes: a valid RIFF/WAVE file of an exact size, generated in chunks; pure functions.

A 2 GiB recording must stream in constant memory, so the payload is one random block per call,
rotated by a different offset in every chunk (cheap: a slice of the block written twice) rather than
fresh randomness for every byte.

The API reference says nothing about the recordings' format, so the simulator varies it per call
(`pick_format`): the archiver must not assume one sample rate, channel count or size.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass

HEADER_BYTES = 44
SAMPLE_RATE = 16_000
CHUNK_BYTES = 64 * 1024
SAMPLE_BYTES = 2  # 16-bit PCM


@dataclass(frozen=True, slots=True)
class WavFormat:
    sample_rate: int = SAMPLE_RATE
    channels: int = 1

    @property
    def block_align(self) -> int:
        """Bytes per frame (one sample of every channel)."""
        return self.channels * SAMPLE_BYTES

    @property
    def byte_rate(self) -> int:
        return self.sample_rate * self.block_align

    def size_for(self, duration_s: float) -> int:
        """Bytes of a recording of `duration_s` seconds: the header plus whole frames."""
        return HEADER_BYTES + round(duration_s * self.sample_rate) * self.block_align

    def whole_frames(self, size: int) -> int:
        """`size` rounded down to header + whole frames (at least one frame)."""
        frames = max(1, (size - HEADER_BYTES) // self.block_align)
        return HEADER_BYTES + frames * self.block_align


MONO_16K = WavFormat()
TELEPHONY = WavFormat(8_000, 1)
# Web media: mostly 16 kHz mono, as the speech models run; some deployments keep 24 or 48 kHz, and a
# few record both parties as two channels. Weights are a guess the reference leaves open.
_WEB_FORMATS: tuple[tuple[WavFormat, float], ...] = (
    (MONO_16K, 0.70),
    (WavFormat(24_000, 1), 0.10),
    (WavFormat(48_000, 1), 0.10),
    (WavFormat(16_000, 2), 0.06),
    (WavFormat(48_000, 2), 0.04),
)


def pick_format(rng: random.Random, telephony: bool) -> WavFormat:
    """The recording format of one call; phone calls (Twilio media) are 8 kHz mono."""
    formats, weights = zip(*_WEB_FORMATS, strict=True)
    chosen = rng.choices(formats, weights)[0]  # drawn for every call, so later draws do not shift
    return TELEPHONY if telephony else chosen


def wav_header(total_bytes: int, fmt: WavFormat = MONO_16K) -> bytes:
    data_bytes = total_bytes - HEADER_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        total_bytes - 8,
        b"WAVE",
        b"fmt ",
        16,  # PCM fmt chunk size
        1,  # PCM
        fmt.channels,
        fmt.sample_rate,
        fmt.byte_rate,
        fmt.block_align,
        SAMPLE_BYTES * 8,  # bits per sample
        b"data",
        data_bytes,
    )


def wav_chunks(seed: int, total_bytes: int, fmt: WavFormat = MONO_16K) -> Iterator[bytes | memoryview]:
    """The recording of `total_bytes` bytes (header included) in chunks of at most `CHUNK_BYTES`."""
    if total_bytes < HEADER_BYTES:
        raise ValueError("a WAV file needs at least 44 bytes")
    block_len = min(CHUNK_BYTES, max(total_bytes - HEADER_BYTES, 1))
    block = random.Random(seed).randbytes(block_len)
    doubled = memoryview(block + block)
    yield wav_header(total_bytes, fmt)
    remaining = total_bytes - HEADER_BYTES
    index = 0
    while remaining > 0:
        size = min(block_len, remaining)
        offset = (index * 7919) % block_len
        yield doubled[offset : offset + size]
        remaining -= size
        index += 1


def wav_sha256(seed: int, total_bytes: int, fmt: WavFormat = MONO_16K) -> str:
    digest = hashlib.sha256()
    for chunk in wav_chunks(seed, total_bytes, fmt):
        digest.update(chunk)
    return digest.hexdigest()
