"""The command line: `python -m controller …`, one module per command group."""
