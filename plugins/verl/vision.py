"""Keep the vision tower frozen during R-GRPO (paper appendix B.1: "we optimize all parameters of the
language model while keeping the vision encoder frozen throughout RL training").

verl 0.9.1 declares ``actor.freeze_vision_tower`` but nothing reads it. The actor's model is built
inside ``ActorRolloutRefWorker.init_model`` by its ``actor_worker_cls`` (a ``TrainingWorker``), so the
R-GRPO worker (``worker.py``) builds its actor with :class:`FrozenVisionTrainingWorker`, which freezes
the tower right after the engine is built. Under FSDP2 a parameter with ``requires_grad=False`` gets no gradient and no
reduce-scatter, and the optimizer skips parameters without gradients, so the tower stays bit-exact.
(FSDP1 flattens parameters and cannot freeze part of a unit after wrapping, hence ``strategy: fsdp2``.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from verl.single_controller.base.decorator import Dispatch, register
from verl.workers.engine_workers import TrainingWorker

# Attribute names of the vision encoder in the HF VLM classes (Qwen2/2.5/3-VL: ``visual``).
VISION_TOWER_NAMES: tuple[str, ...] = ("visual", "vision_tower", "vision_model")


def vision_tower(model: nn.Module) -> nn.Module:
    """The model's vision encoder (with its patch merger); the outermost match wins."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in VISION_TOWER_NAMES:
            return module
    raise ValueError(f"{type(model).__name__} has no vision tower named any of {VISION_TOWER_NAMES}")


def freeze_vision_tower(model: nn.Module) -> int:
    """Stop gradients into the vision tower; returns the number of parameters frozen."""
    params = list(vision_tower(model).parameters())
    for param in params:
        param.requires_grad_(False)
    return sum(p.numel() for p in params)


class FrozenVisionTrainingWorker(TrainingWorker):
    """verl's TrainingWorker whose model has its vision tower frozen once the engine is built."""

    @register(dispatch_mode=Dispatch.ONE_TO_ALL)
    def reset(self):
        super().reset()
        frozen = freeze_vision_tower(self.engine.module)
        print(f"[medsage] vision tower frozen: {frozen} parameters")


def changed_tensors(before: str | Path, after: str | Path) -> tuple[list[str], list[str]]:
    """Names of the tensors that differ between two Hugging Face checkpoints, split into the vision
    tower's and the rest; the check a cluster run makes that the tower stayed frozen."""
    old, new = _safetensors(before), _safetensors(after)
    if old.keys() != new.keys():
        raise ValueError(f"{before} and {after} hold different tensors: {sorted(old.keys() ^ new.keys())[:5]}")
    changed = [name for name in old if not torch.equal(old[name], new[name])]
    in_tower = lambda name: any(part in VISION_TOWER_NAMES for part in name.split("."))  # noqa: E731
    return [n for n in changed if in_tower(n)], [n for n in changed if not in_tower(n)]


def _safetensors(folder: str | Path) -> dict[str, torch.Tensor]:
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no *.safetensors (merge a verl checkpoint with `python -m verl.model_merger merge`)")
    return {name: tensor for f in files for name, tensor in load_file(f).items()}


def main(argv: list[str] | None = None) -> int:
    """``python -m medsage.plugins.verl.vision BEFORE AFTER``: exit 1 if the vision tower changed."""
    parser = argparse.ArgumentParser(description="Check that the vision tower did not change between two checkpoints.")
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    tower, rest = changed_tensors(args.before, args.after)
    print(f"[medsage] changed tensors: {len(tower)} in the vision tower, {len(rest)} elsewhere")
    if tower:
        print(f"[medsage] the vision tower changed: {tower[:5]}", file=sys.stderr)
    return 1 if tower else 0


if __name__ == "__main__":
    sys.exit(main())
