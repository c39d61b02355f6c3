"""A small LoRA trainer for SmolLM2 on JAX: ``python -m tools.train_lora --out DIR``."""
