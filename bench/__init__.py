"""Benchmarks of the hub: ``python -m bench.run`` (end to end) and ``python -m bench.profile``."""
