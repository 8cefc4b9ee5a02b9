"""What a run tells people and machines: the summary, the ledger that fills it in, the printed report,
the progress line, the archive's status, and the log format."""
