"""recipes/env.sh picks an interpreter the locked stack installs on (Python 3.11 or 3.12) before it builds
the environment: on any other, pip only says "ResolutionImpossible" after a venv was half made."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _fake_python(folder: Path, name: str, version: str, log: Path) -> None:
    """An interpreter stand-in: ``-V`` prints ``version``, the version check passes only for 3.11/3.12,
    and any other call (``-m venv``) is logged and fails, so nothing is installed."""
    fits = "0" if version.startswith(("3.11", "3.12")) else "1"
    script = folder / name
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -V ]; then echo "Python {version}"; exit 0; fi\n'
        f'if [ "$1" = -c ]; then exit {fits}; fi\n'
        f'echo "{name} $*" >> "{log}"; exit 3\n'
    )
    script.chmod(0o755)


def _source_env(tmp_path: Path, fakes: dict[str, str], python: str | None = None) -> tuple[subprocess.CompletedProcess, str]:
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name, version in fakes.items():
        _fake_python(bin_dir, name, version, log)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "MEDSAGE_VENV": str(tmp_path / "venv"), "HOME": str(tmp_path)}
    if python:
        env["PYTHON"] = python
    done = subprocess.run(["bash", "-c", "set -euo pipefail; source recipes/env.sh"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    return done, log.read_text() if log.exists() else ""


def test_an_unsupported_python_is_refused_by_name_before_any_venv_is_made(tmp_path: Path) -> None:
    done, calls = _source_env(tmp_path, {"python3": "3.10.12", "python3.12": "3.13.0", "python3.11": "3.10.12"})
    assert done.returncode == 1
    assert "needs Python 3.11 or 3.12" in done.stderr
    assert "python3 (Python 3.10.12)" in done.stderr and "python3.12 (Python 3.13.0)" in done.stderr
    assert "PYTHON=" in done.stderr
    assert calls == "" and not (tmp_path / "venv").exists()


def test_the_first_fitting_interpreter_builds_the_venv(tmp_path: Path) -> None:
    done, calls = _source_env(tmp_path, {"python3": "3.10.12", "python3.12": "3.12.3", "python3.11": "3.11.9"})
    assert "Python 3.12.3" in done.stdout
    assert calls.splitlines() == [f"python3.12 -m venv {tmp_path / 'venv'}"]


def test_an_explicit_python_is_the_only_one_tried(tmp_path: Path) -> None:
    done, calls = _source_env(tmp_path, {"python3.11": "3.11.9", "python3.10": "3.10.12"}, python="python3.10")
    assert done.returncode == 1 and "tried: python3.10 (Python 3.10.12)" in done.stderr and calls == ""


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    done, _ = _source_env(tmp_path, {}, python=str(tmp_path / "nope"))
    assert done.returncode == 1 and f"tried: {tmp_path / 'nope'} (not found)" in done.stderr
