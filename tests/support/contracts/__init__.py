"""Tests every storage backend must pass: subclassed once per backend, in unit and integration."""
