"""The distribution installs everything under ``medsage.*`` and nothing generic at the top level,
its console scripts start from any directory, and the RL environment of README "GPU clusters"
resolves."""

import ast
import json
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# setup.py's own list: a folder added there is checked here too.
FOLDERS = next(
    ast.literal_eval(node.value)
    for node in ast.parse((REPO / "setup.py").read_text()).body
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FOLDERS"
)
SCRIPTS = sorted(e.name for e in distribution("medsage").entry_points if e.group == "console_scripts")


def test_wheel_holds_only_the_medsage_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("medsage-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"medsage"}
    for folder in FOLDERS:
        assert f"medsage/{folder}/__init__.py" in names
    assert "medsage/reward_fns/scaffold.py" in names
    assert {"medsage/plugins/verl/config/__init__.py", "medsage/plugins/verl/config/rgrpo.yaml"} <= names


def test_generic_names_are_not_importable_outside_the_repo(tmp_path):
    code = (
        "import importlib.util as u, medsage.reward_fns, medsage.plugins;"
        f"print([n for n in {FOLDERS!r} if u.find_spec(n) is not None])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_script_help_runs_outside_the_repo(script, tmp_path):
    command = [str(Path(sysconfig.get_path("scripts")) / script), "--help"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()


RL_LOCK_PYTHON = (3, 11)  # the Python constraints-rl.txt was resolved on (README, "GPU clusters")


@pytest.mark.timeout(1800)  # pip fetches every wheel of the vLLM stack to read its metadata
def test_rl_environment_resolves_with_verl_vllm(tmp_path):
    """setup.py must leave room for the transformers 5.9 that verl[vllm] pins (LLaMA-Factory's 5.5.x pin
    belongs to the sft extra only), within constraints-rl.txt, the RL environment's lock; a dry run
    resolves without installing anything, and every package it would install is locked. The lock is made on
    Python 3.11 (numpy 2.3.5 and others need it); on another Python the README says to install without it,
    and that is what is resolved there."""
    report = tmp_path / "report.json"
    locked_python = sys.version_info[:2] == RL_LOCK_PYTHON
    lock = ["-c", str(REPO / "constraints-rl.txt")] if locked_python else []
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), *lock, "-e", f"{REPO}[rl,data]", "verl[vllm]==0.9.1"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-4000:]
    installs = json.loads(report.read_text())["install"]
    versions = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installs}
    assert versions["transformers"].startswith("5.9."), versions["transformers"]
    if locked_python:
        locked = {line.split("==")[0] for line in (REPO / "constraints-rl.txt").read_text().splitlines() if "==" in line}
        unlocked = sorted(f"{name}=={version}" for name, version in versions.items() if name not in locked | {"medsage"})
        assert not unlocked, "add to constraints-rl.txt:\n" + "\n".join(unlocked)
