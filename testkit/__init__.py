"""Real parts for the tests and the benchmarks: RAVDESS streams, daemons, subscribers, a virtual microphone.

Neither the product (not installed with it) nor a test module: `tests/` and `bench/` both import
it from the checkout, and neither imports the other.
"""
