"""The compiled reward (setup.py ``MEDSAGE_COMPILE=1``, README "A compiled reward") is the same reward:
built with the README's command, its modules load as extension modules, the reward's own tests pass on
it, and on random replies it gives every answer the source gives."""

import json
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import compiled_reward

TESTS = Path(__file__).resolve().parent
REWARD_TESTS = ("test_answers.py", "test_rewards.py", "test_scaffold.py", "test_properties.py")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compiled_reward.build(tmp_path_factory.mktemp("compiled_reward"))


def _run(site: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=compiled_reward.environment(site), cwd=TESTS.parent,
                          capture_output=True, text=True, timeout=900)


def test_the_build_holds_the_compiled_modules_and_only_medsage_names(site):
    suffix = EXTENSION_SUFFIXES[0]
    compiled = {path.relative_to(site).as_posix() for path in site.rglob(f"*{suffix}")}
    assert {f"{name.replace('.', '/')}{suffix}" for name in compiled_reward.MODULES} <= compiled
    assert {path.split("/")[0] for path in compiled} == {"medsage", f"medsage_reward__mypyc{suffix}"}


def test_the_reward_tests_pass_on_the_compiled_build(site):
    done = _run(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(str(TESTS / name) for name in REWARD_TESTS))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]


def test_random_replies_get_the_same_answers_as_from_the_source(site):
    done = _run(site, str(TESTS / "compiled_reward.py"))
    assert done.returncode == 0, done.stderr[-4000:]
    compiled = json.loads(done.stdout)
    for name, path in compiled["loaded_from"].items():
        assert path.startswith(str(site)) and path.endswith(EXTENSION_SUFFIXES[0]), (name, path)
    assert all(path.endswith(".py") for path in compiled_reward.loaded_from().values())  # this process: the source
    source = compiled_reward.results(compiled_reward.corpus())
    differing = [(case, mine, theirs) for case, mine, theirs in zip(compiled_reward.corpus(), source, compiled["results"])
                 if mine != theirs]
    assert len(compiled["results"]) == len(source) and not differing, differing[:3]
