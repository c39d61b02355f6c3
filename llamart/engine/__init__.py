"""The Engine and what it is made of: argument and state checks (engine.py), the loaded model
(model_state.py) with its adapters (adapter_set.py, adapter_cache.py), generations
(generation.py, async_generation.py; scheduled_run.py on a parallel engine), the scheduler that
owns a parallel engine's context (scheduler.py), and the bodies of its calls (inputs.py,
structured.py, embedding.py)."""

from .engine import FINISH_REASONS, Engine, default_backend_name, default_threads

__all__ = ["FINISH_REASONS", "Engine", "default_backend_name", "default_threads"]
