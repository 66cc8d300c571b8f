"""The bundle contract: what a bundle directory holds and how the run time reads, checks and writes it.

`schema` is bundle.json as typed records, `codec` their JSON form,
`load` opens a directory and checks every file's sha256, `atomic_write`
replaces a file without a half-written moment, and `check_set` holds the
images and FP32 answers that `anchor-edge verify` compares a device against.
`baselines` is the benchmarks' baselines.json, typed the same way.
"""

from anchor_edge.bundle.load import Bundle, load_bundle, sha256_of

__all__ = ["Bundle", "load_bundle", "sha256_of"]
