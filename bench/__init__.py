"""Benchmarks of ser-stream; run them all with ``python -m bench`` from the checkout (see bench/__main__.py)."""
