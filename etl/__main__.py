"""`python -m etl` is the `ultravox-archiver` command."""

from etl.cli import main

main()
