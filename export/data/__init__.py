"""Images the export and the benchmarks use: the real photos that ship with dependencies, and the digits benchmark."""
