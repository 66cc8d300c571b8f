"""Training recipes for the default weights: AnchorNet, the downstream classifiers and the benchmark's baselines."""
