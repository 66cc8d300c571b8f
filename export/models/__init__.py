"""The PyTorch networks a bundle is exported from: AnchorNet, the downstream classifiers, checkpoints and their cost."""
