"""Reproduce the ser-stream model from RAVDESS: `python -m train --data DIR`."""
