"""Synthetic scorer data: well-formed LVKC trajectories in data_gen's pairs.jsonl format."""

import json
import random
from pathlib import Path

from medsage.reward_fns.consistency.train import TrainConfig
from medsage.reward_fns.scaffold import Grounding, Scaffold

# organ -> (its finding, what medical knowledge says that finding is)
FINDINGS = {
    "liver": ("cyst", "a fluid filled sac"),
    "lung": ("nodule", "a small round opacity"),
    "kidney": ("stone", "a calcified deposit"),
}
ORGANS = list(FINDINGS)
SIDES = ["left", "right"]


def case(i: int, rng: random.Random) -> dict:
    """One sample: a question and a short trajectory whose stages agree on organ, finding and
    answer. The vocabulary is small so a random two-layer backbone learns the cross-stage links
    on CPU in about a minute; a pretrained backbone needs no such help."""
    organ, side = rng.choice(ORGANS), rng.choice(SIDES)
    finding, meaning = FINDINGS[organ]
    present = rng.random() < 0.5
    y, x = rng.randint(100, 700), rng.randint(100, 700)
    trajectory = Scaffold(
        loc=f"The {side} {organ}",
        groundings=(Grounding(label=f"{organ} {finding}", box_2d=(y, x, y + 120, x + 90)),),
        visual=f"A {finding} is seen in the {organ}." if present else f"The {organ} shows no {finding}.",
        knowledge=f"A {finding} of the {organ} is {meaning}.",
        con=f"The {organ} has {meaning}, a {finding}: yes." if present else f"The {organ} has no {meaning}: no.",
        answer="Yes" if present else "No",
    ).render()
    return {"sample_id": f"case-{i}", "question": f"Is there a {finding} in the {organ}?", "positive": trajectory}


def filtered_negative(sample: dict, rng: random.Random) -> str:
    """What verification rejects: a visual analysis that describes another organ's finding."""
    while True:
        other = case(-1, rng)
        if other["question"] != sample["question"]:
            break
    visual = lambda text: text[text.index("<VISUAL>") : text.index("</VISUAL>")]  # noqa: E731
    return sample["positive"].replace(visual(sample["positive"]), visual(other["positive"]))


def write_pairs(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            sample = case(i, rng)
            negative = filtered_negative(sample, rng)
            f.write(json.dumps({**sample, "negative": negative, "negative_reason": "cross-stage conflict"}) + "\n")
    return path


def tiny_train_config(backbone: Path, pairs: Path, output_dir: Path, **overrides) -> TrainConfig:
    """Settings that let the random tiny backbone learn on CPU in seconds."""
    settings = dict(
        backbone=str(backbone), pairs=[str(pairs)], output_dir=str(output_dir), eval_fraction=0.2,
        max_length=192, batch_size=8, micro_batch_size=8, learning_rate=2e-3, warmup_steps=10,
        epochs=10, save_every=50, seed=0,
    )
    return TrainConfig(**{**settings, **overrides})
