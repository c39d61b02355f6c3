"""Read and check a PEFT ``adapter_config.json`` (what ``PeftModel.save_pretrained`` writes).

Pure Python (json, re). Only what changes the math of a plain LoRA is interpreted: ``r``,
``lora_alpha``, ``use_rslora``, ``rank_pattern``, ``alpha_pattern``. Settings that make the
adapter something llama.cpp's LoRA cannot express are refused naming the key; keys this module
does not know are reported (they may change the math in a PEFT version newer than this code).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import AdapterError

CONFIG_NAME = "adapter_config.json"


class ConvertError(AdapterError):
    """A PEFT adapter cannot be converted; ``path`` names the file, ``reason`` says why."""

    def __init__(self, reason: str, path: str | os.PathLike[str] | None = None) -> None:
        spath = None if path is None else os.fspath(path)
        super().__init__(f"{spath}: {reason}" if spath else reason, path=spath, reason=reason)


# Keys that do not change the converted tensors (bookkeeping, training-only, or targeting rules
# whose result is already visible in which tensors were saved).
_HARMLESS = frozenset({
    "auto_mapping", "base_model_name_or_path", "revision", "task_type", "inference_mode",
    "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern",
    "lora_dropout", "megatron_config", "megatron_core", "loftq_config", "eva_config",
    "corda_config", "runtime_config", "peft_version", "qalora_group_size",
    "ensure_weight_tying", "r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern",
    "peft_type", "use_dora", "modules_to_save", "bias", "fan_in_fan_out", "lora_bias",
    "use_qalora", "trainable_token_indices", "layer_replication", "target_parameters",
    "alora_invocation_tokens", "init_lora_weights", "arrow_config",
})

# key -> (value that is fine, why any other value is refused)
_REFUSED: dict[str, tuple[Any, str]] = {
    "use_dora": (False, "DoRA (a learned magnitude vector) is not a plain LoRA; llama.cpp "
                 "cannot apply it"),
    "bias": ("none", "LoRA-trained biases are not expressible as a llama.cpp LoRA adapter"),
    "lora_bias": (False, "a bias on lora_B is not expressible as a llama.cpp LoRA adapter"),
    "modules_to_save": (None, "fully trained modules are saved alongside the LoRA; llama.cpp "
                        "adapters hold only lora_a/lora_b pairs (merge them into the base)"),
    "trainable_token_indices": (None, "trained token embeddings are not a LoRA pair"),
    "fan_in_fan_out": (False, "Conv1D-style (transposed) weights are not supported"),
    "use_qalora": (False, "QA-LoRA pools the input; llama.cpp cannot apply it"),
    "layer_replication": (None, "layer replication changes the base model's layer stack"),
    "target_parameters": (None, "LoRA on raw parameters (e.g. MoE experts) is not supported"),
    "arrow_config": (None, "Arrow routing over several adapters is not supported"),
    "alora_invocation_tokens": (None, "an activated LoRA (aLoRA) acts only after its "
                                "invocation tokens; llamart refuses aLoRA adapters rather than "
                                "apply one from the first token"),
}

# init_lora_weights values that train against a modified base (the saved adapter only fits
# that residual base unless PEFT converted it to a plain LoRA on save).
_MODIFIED_BASE_INITS = ("pissa", "olora", "corda", "loftq")


@dataclass(frozen=True)
class PeftConfig:
    """The parts of a LoRA config that set each module's scaling."""

    path: str
    r: int
    lora_alpha: float
    use_rslora: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    unknown_keys: tuple[str, ...] = ()

    def rank(self, module: str) -> int:
        """PEFT's rank for ``module`` (e.g. ``model.layers.0.self_attn.q_proj``)."""
        key = _pattern_key(self.rank_pattern, module)
        return int(self.rank_pattern[key]) if key is not None else self.r

    def alpha(self, module: str) -> float:
        key = _pattern_key(self.alpha_pattern, module)
        return float(self.alpha_pattern[key]) if key is not None else self.lora_alpha

    def scaling(self, module: str) -> float:
        """PEFT's multiplier of B @ A for ``module``: alpha/r, or alpha/sqrt(r) with rsLoRA."""
        r = self.rank(module)
        alpha = self.alpha(module)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r


def _pattern_key(patterns: dict[str, Any], module: str) -> str | None:
    """The first pattern key matching ``module`` the way PEFT's ``get_pattern_key`` does
    (``re.match(rf"(.*\\.)?({key})$", module)``), or None."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


def _number(cfg: dict[str, Any], key: str, path: str, *, positive_int: bool = False) -> Any:
    v = cfg.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConvertError(f"'{key}' must be a number, got {v!r}", path)
    if positive_int and (not isinstance(v, int) or v <= 0):
        raise ConvertError(f"'{key}' must be a positive integer, got {v!r}", path)
    return v


def _pattern(cfg: dict[str, Any], key: str, path: str, *, positive_int: bool) -> dict[str, Any]:
    v = cfg.get(key) or {}
    if not isinstance(v, dict):
        raise ConvertError(f"'{key}' must be an object of module pattern -> value", path)
    for k in v:
        _number(v, k, path, positive_int=positive_int)
        try:
            re.compile(k)
        except re.error as e:
            raise ConvertError(f"'{key}' has an invalid pattern {k!r} ({e})", path) from e
    return dict(v)


def read_config(folder: str | os.PathLike[str]) -> PeftConfig:
    """Read ``folder/adapter_config.json``; refuse what llama.cpp cannot apply, naming the key."""
    path = os.path.join(os.fspath(folder), CONFIG_NAME)
    if not os.path.isfile(path):
        raise ConvertError(f"missing {CONFIG_NAME} (not a PEFT adapter folder?)", path)
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"unreadable JSON ({e})", path) from e
    if not isinstance(cfg, dict):
        raise ConvertError("must hold a JSON object", path)
    peft_type = cfg.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        raise ConvertError(f"'peft_type' is {peft_type!r}: only LORA adapters convert", path)
    for key, (fine, why) in _REFUSED.items():
        v = cfg.get(key)
        if v is None or v == fine or (fine in (None, False) and v in ([], {}, False)):
            continue
        raise ConvertError(f"'{key}' is {json.dumps(v)}: {why}", path)
    init = cfg.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_MODIFIED_BASE_INITS):
        raise ConvertError(f"'init_lora_weights' is {init!r}: such an adapter was trained "
                           "against a modified base model (save it with PEFT's "
                           "path_initial_model_for_weight_conversion to get a plain LoRA)", path)
    use_rslora = cfg.get("use_rslora", False)
    if not isinstance(use_rslora, bool):
        raise ConvertError(f"'use_rslora' must be true or false, got {use_rslora!r}", path)
    return PeftConfig(
        path=path,
        r=_number(cfg, "r", path, positive_int=True),
        lora_alpha=float(_number(cfg, "lora_alpha", path)),
        use_rslora=use_rslora,
        rank_pattern=_pattern(cfg, "rank_pattern", path, positive_int=True),
        alpha_pattern=_pattern(cfg, "alpha_pattern", path, positive_int=False),
        unknown_keys=tuple(sorted(k for k in cfg if k not in _HARMLESS)),
    )
