"""Video on top of the pipeline: frame sources, the frame-by-frame stream and the annotated video writer.

Nothing in the core imports this package; `Pipeline.stream` imports it when
it is called, so `import anchor_edge` never loads the video code.
"""
