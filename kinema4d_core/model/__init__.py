"""The Kinema4D 4D generative model on diffusers: transformer, pipeline, checkpoints, tiny preset.

Import the submodules directly (``kinema4d_core.model.transformer`` ...); this package import is
light so that CLI argument checks run before torch/diffusers load.
"""
