"""Shared pytest fixtures. Everything is built locally: no test downloads a model or a dataset."""

import os

# Must precede the first huggingface_hub import (it reads the flag once): a stray hub lookup fails fast.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from medsage.plugins.tiny_model import build_tiny_qwen2_5_vl  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2.5-VL checkpoint (model, tokenizer, processor), built once per session."""
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"), seed=0)
