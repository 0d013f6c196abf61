"""Training and fine-tuning of Kinema4D (docs/training.md).

- ``config``: the frozen training configuration (YAML + ``--set key=value``), validated.
- ``data``: episodes (sim world, replay folders, Robo4D folders) -> ``TrainSample`` at the model size.
- ``cache``: VAE + CLIP latents encoded once into resumable safetensors shards.
- ``model_setup``: the transformer to train (LoRA fine-tune or from scratch) and its trainable set.
- ``trainer``: flow matching on ``accelerate`` (CPU -> multi-GPU), checkpoints, TensorBoard, validation videos.
- ``export``: the released checkpoint layout (pytorch_lora_weights + added_weights).

Import the submodules directly; this package import is light (no torch).
"""
