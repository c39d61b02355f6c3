"""Write trained LoRA matrices in PEFT's layout (what ``PeftModel.save_pretrained`` writes)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from safetensors.numpy import save_file

from .model import PEFT_PARENT

BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"


def peft_name(layer: int, module: str, half: str) -> str:
    """PEFT's tensor name for a layer's module (``half`` is "A" or "B")."""
    return (f"base_model.model.model.layers.{layer}.{PEFT_PARENT[module]}.{module}"
            f".lora_{half}.weight")


def save_peft(folder: str, lora: Mapping[str, jax.Array], *, rank: int, alpha: float,
              targets: list[str], extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """adapter_config.json + adapter_model.safetensors (A: (r, in), B: (out, r), float32, Hugging
    Face row order since the model trains in that convention).  Returns the two paths."""
    os.makedirs(folder, exist_ok=True)
    tensors: dict[str, np.ndarray] = {}
    for module in targets:
        a = np.asarray(lora[f"{module}.A"], np.float32)
        b = np.asarray(lora[f"{module}.B"], np.float32)
        for i in range(a.shape[0]):
            tensors[peft_name(i, module, "A")] = np.ascontiguousarray(a[i])
            tensors[peft_name(i, module, "B")] = np.ascontiguousarray(b[i])
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": BASE_NAME,
        "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0, "target_modules": targets,
        "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
        "modules_to_save": None, "init_lora_weights": True, "inference_mode": True,
        "rank_pattern": {}, "alpha_pattern": {},
    }
    paths = {"config": os.path.join(folder, "adapter_config.json"),
             "weights": os.path.join(folder, "adapter_model.safetensors")}
    with open(paths["config"], "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    meta = {"format": "pt"}
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    save_file(tensors, paths["weights"], metadata=meta)
    return paths
