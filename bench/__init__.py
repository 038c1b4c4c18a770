"""Benchmarks: the real three-process pipeline and a naive streamer on the same fake feed."""
