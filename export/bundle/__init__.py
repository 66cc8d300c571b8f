"""Assemble a bundle directory: export both models, verify them, write bundle.json through anchor_edge.bundle.schema."""
