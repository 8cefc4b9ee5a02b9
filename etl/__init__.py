"""ultravox-archiver: archive Ultravox calls, transcripts and recordings."""

__version__ = "0.1.0"
