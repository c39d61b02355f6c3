"""Short descriptions of model and adapter headers (``llamart info``, ``llamart lora inspect``,
``Engine.lora_metadata``)."""

from __future__ import annotations

from .header import GGUFHeader

__all__ = ["adapter_summary", "model_summary"]


def _short_name(base_name: str) -> str:
    parts = base_name.split(".")
    if parts and parts[-1] == "weight":
        parts = parts[:-1]
    if len(parts) >= 3 and parts[0] == "blk" and parts[1].isdigit():
        parts = parts[2:]
    return ".".join(parts)


def adapter_summary(header: GGUFHeader) -> dict[str, object]:
    """alpha, rank (None if it varies), targets (short names like 'attn_q'), task_name,
    architecture of an adapter header."""
    alpha = header.value("adapter.lora.alpha", 0.0)
    task = header.value("adapter.lora.task_name")
    ranks: set[int] = set()
    targets: list[str] = []
    for t in header.tensors:
        if t.name.endswith(".lora_a"):
            base = t.name[:-7]
            short = _short_name(base)
            if short not in targets:
                targets.append(short)
            if not base.endswith("token_embd.weight"):
                ranks.add(t.ne[1])
    return {
        "alpha": float(alpha) if isinstance(alpha, (int, float)) else 0.0,
        "rank": ranks.pop() if len(ranks) == 1 else None,
        "targets": targets,
        "task_name": task if isinstance(task, str) else None,
        "architecture": header.architecture,
    }


def model_summary(header: GGUFHeader) -> dict[str, object]:
    """A short description of a model header for humans (``llamart info``)."""
    arch = header.architecture
    types: dict[str, int] = {}
    n_params = 0
    for t in header.tensors:
        types[t.type_name] = types.get(t.type_name, 0) + 1
        n_params += t.n_elements

    def arch_key(name: str) -> object:
        return header.value(f"{arch}.{name}") if arch else None

    name = header.value("general.name")
    return {
        "path": header.path,
        "architecture": arch,
        "name": name if isinstance(name, str) else None,
        "version": header.version,
        "n_tensors": len(header.tensors),
        "types": types,
        "context_length": arch_key("context_length"),
        "embedding_length": arch_key("embedding_length"),
        "block_count": arch_key("block_count"),
        "file_type": header.value("general.file_type"),
        "n_params": n_params,
        "file_size": header.file_size,
    }
