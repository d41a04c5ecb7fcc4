"""Fixtures for the consistency scorer: well-formed LVKC trajectories in data_gen's pairs format,
and one trained tiny scorer shared by the tests that need trained weights."""

import json
import random
from pathlib import Path

import pytest

from medsage.reward_fns.consistency.train import TrainConfig, train
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
    """What verification rejects: the visual analysis speaks of another organ than the rest."""
    other = rng.choice([o for o in ORGANS if o not in sample["question"]])
    start, end = sample["positive"].index("<VISUAL>"), sample["positive"].index("</VISUAL>")
    visual = sample["positive"][start:end]
    for organ in ORGANS:
        visual = visual.replace(organ, other)
    return sample["positive"][:start] + visual + sample["positive"][end:]


def write_pairs(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n):
            sample = case(i, rng)
            negative = filtered_negative(sample, rng)
            f.write(json.dumps({**sample, "negative": negative, "negative_reason": "cross-stage conflict"}) + "\n")
    return path


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", n=320)


def tiny_train_config(backbone: Path, pairs: Path, output_dir: Path, **overrides) -> TrainConfig:
    """Settings that let the random tiny backbone learn on CPU in seconds."""
    settings = dict(
        backbone=str(backbone), pairs=[str(pairs)], output_dir=str(output_dir), eval_fraction=0.2,
        max_length=192, batch_size=8, micro_batch_size=8, learning_rate=2e-3, warmup_steps=10,
        epochs=6, save_every=50, seed=0,
    )
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="session")
def trained_scorer(tiny_model_dir, pairs_file, tmp_path_factory):
    """(checkpoint dir, held-out metrics) of a scorer trained once per session."""
    out = tmp_path_factory.mktemp("scorer")
    metrics = train(tiny_train_config(tiny_model_dir, pairs_file, out))
    return out, metrics
