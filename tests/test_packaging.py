"""The distribution installs everything under ``medsage.*`` and nothing generic at the top level."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("reward_fns", "plugins", "data_gen", "eval")


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


def test_generic_names_are_not_importable_outside_the_repo(tmp_path):
    code = (
        "import importlib.util as u, medsage.reward_fns, medsage.plugins;"
        f"print([n for n in {FOLDERS!r} if u.find_spec(n) is not None])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
