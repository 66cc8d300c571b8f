"""The paper's method as small numpy steps, one module per section of docs/method.md.

`preprocess` (resize, crop, normalize), `decision` (the branch and class
vote), `lsp` (patch selection on a heatmap), `patches` (both for a batch, and
cutting the patches), `early_exit` and `budget` (two ways to classify fewer
patches). `anchor_edge.pipeline` runs them in order on a bundle's two models.
"""
