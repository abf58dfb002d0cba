"""The hub worker: faust wiring around the pure processor."""
