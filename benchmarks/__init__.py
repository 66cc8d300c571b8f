"""Benchmarks of the patch pipeline against the full image (build-time tools, not part of the runtime)."""
