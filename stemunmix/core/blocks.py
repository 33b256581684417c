"""Splitting an image axis into the blocks every block-wise step shares."""

from __future__ import annotations


def block_bounds(n: int, block: int) -> list[tuple[int, int]]:
    """Output blocks along one axis: ``block`` pixels each, the last one merged
    into its neighbour when shorter than half a block."""
    edges = list(range(0, n, block)) + [n]
    if len(edges) > 2 and edges[-1] - edges[-2] < block / 2:
        del edges[-2]
    return list(zip(edges[:-1], edges[1:], strict=True))
