"""Wires the stages: plan days -> list calls -> transcripts and recordings -> rows -> partition -> state."""
