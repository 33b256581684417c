"""Numerical core: plain numpy/torch/dask functions, no HyperSpy."""
