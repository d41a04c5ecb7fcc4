"""Fixtures for the consistency scorer: a pairs file and one tiny scorer trained per session."""

from pathlib import Path

import pytest
import torch
from scorer_data import tiny_train_config, write_pairs

from medsage.reward_fns.consistency.model import ConsistencyScorer
from medsage.reward_fns.consistency.train import train


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", n=320)


@pytest.fixture(scope="session")
def trained_scorer(tiny_model_dir, pairs_file, tmp_path_factory):
    """(checkpoint dir, held-out metrics) of a scorer trained once per session."""
    out, threads = tmp_path_factory.mktemp("scorer"), torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: faster on a shared 2-core machine, and reproducible
    try:
        metrics = train(tiny_train_config(tiny_model_dir, pairs_file, out))
    finally:
        torch.set_num_threads(threads)
    return out, metrics


@pytest.fixture(scope="session")
def scorer(trained_scorer) -> ConsistencyScorer:
    """The trained scorer loaded once, for the services and as the direct reference."""
    return ConsistencyScorer.load(trained_scorer[0])
