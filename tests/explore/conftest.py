"""The explorer tests' inputs, written once per session (:mod:`explore_inputs`)."""

from pathlib import Path

import pytest
from explore_inputs import base_answer, run_eval, trained_answer, write_build, write_sessions

from medsage.data_gen.phantom import write_phantom_benchmark


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explore_inputs")
    benchmark = write_phantom_benchmark(root / "benchmark", n=6, seed=0)
    return {
        "build": write_build(root / "data"),
        "sessions": write_sessions(root / "rl" / "sessions"),
        "base": run_eval(benchmark, root / "eval_base", "base", base_answer),
        "trained": run_eval(benchmark, root / "eval_trained", "trained", trained_answer),
        "root": root,
        "benchmark": benchmark,
    }
