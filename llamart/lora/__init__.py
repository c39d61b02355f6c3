"""The LoRA workflow: compare an adapter's drift from its base across scales (compare)."""
