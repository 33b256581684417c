"""Edges: conversions to and from other tools (Atomap, HyperSpy markers)."""
