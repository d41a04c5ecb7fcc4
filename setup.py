"""Distribution ``medsage``: each top-level folder installs as ``medsage.<folder>``.

The folders stay flat in the repository (as the design card lays them out) while the
installed names live under one namespace, so nothing generic such as ``eval`` or
``plugins`` ever lands at the top of site-packages.
"""

import os
import sys
from pathlib import Path

from setuptools import find_packages, setup

FOLDERS = ("reward_fns", "plugins", "data_gen", "eval", "config", "explore")
# What MEDSAGE_COMPILE=1 compiles with mypyc (README "A compiled reward"): the modules the RL reward and the
# evaluation's scoring run, from the same source (about twice as fast; black and mypy ship this way).
COMPILED = ("reward_fns/scaffold.py", "reward_fns/answers.py", "reward_fns/rewards.py")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for folder in FOLDERS:
        for sub in [""] + [f".{p}" for p in find_packages(folder)]:
            packages.append(f"medsage.{folder}{sub}")
        package_dir[f"medsage.{folder}"] = folder
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()


def _compiled_reward() -> list:
    """mypyc extensions for :data:`COMPILED` when ``MEDSAGE_COMPILE=1``, else none."""
    if os.environ.get("MEDSAGE_COMPILE", "0") != "1":
        return []
    if "editable_wheel" in sys.argv:
        sys.exit("MEDSAGE_COMPILE=1 needs a regular install (pip install --no-build-isolation .), not -e: a "
                 "compiled module beside its source would be imported instead of the edited source")
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.exit("MEDSAGE_COMPILE=1 needs mypy in the installing environment: pip install mypy==2.4.1, then "
                 "install with --no-build-isolation")
    # mypyc names a module by its folders: seen through build/mypyc_src/medsage/, the sources compile under
    # their installed names (medsage.reward_fns.answers, ...); the C it writes goes to build/mypyc/
    stage = Path("build/mypyc_src/medsage")
    stage.mkdir(parents=True, exist_ok=True)
    (stage / "__init__.py").touch()
    for folder in ("reward_fns", "config"):  # what the compiled modules import
        link = stage / folder
        if not link.is_symlink():
            link.symlink_to(Path("../../..") / folder, target_is_directory=True)
    # the modules they import are read for their types, not checked (they are not compiled)
    return mypycify(["--follow-imports=silent", *(str(stage / path) for path in COMPILED)],
                    group_name="medsage_reward", target_dir="build/mypyc")

# Exact pins live in constraints.txt (the locked CPU/SFT stack, see README "Environment") and in the
# sft extra: LLaMA-Factory 0.9.5 needs transformers 5.5.x while verl[vllm] 0.9.1 pins 5.9.0, so
# install_requires keeps ranges both environments satisfy.
EXTRAS = {
    "sft": ["llamafactory==0.9.5", "torchaudio==2.11.0", "transformers==5.5.4"],
    "rl": ["verl[verl-core]==0.9.1", "ray"],
    "data": ["aiohttp", "pandas", "pyarrow", "pyyaml", "matplotlib", "tqdm"],
    "dev": ["pytest", "pytest-timeout", "hypothesis", "wheel", "websockets", "mypy"],
    # GPU clusters only, never installed in CI; see README "GPU clusters".
    "gpu": ["vllm", "flash-attn"],
}

COMPILED_EXTENSIONS = _compiled_reward()

setup(
    name="medsage",
    version="0.1.0",
    description="MEDSAGE: structured medical visual reasoning (LVKC scaffold, SFT + R-GRPO)",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        **{f"medsage.{f}": ["*.jinja", "*.json", "*.yaml", "templates/*"] for f in FOLDERS},
        "medsage.plugins.verl.config": ["*.yaml"],
        "medsage.explore": ["static/*"],
        # The self-check loop's instructions and verl's agent-loop registry: recipes name them pkg://...
        "medsage.plugins.verl": ["agent_loops.yaml", "templates/*.jinja"],
    },
    install_requires=[
        "torch>=2.11,<3",
        "torchvision>=0.26",
        "transformers>=5.5.4,<6",
        "numpy",
        "pillow",
        "pyyaml",
        "tqdm",
        # medsage-scorer-serve's HTTP side; verl and LLaMA-Factory bring them too, but a base install
        # must run its own console scripts
        "fastapi",
        "uvicorn",
    ],
    extras_require=EXTRAS,
    ext_modules=COMPILED_EXTENSIONS,
    # a compiled build keeps its own build folder, so no compiled module ever reaches a plain build's wheel
    options={"build": {"build_base": "build/mypyc/setuptools"}} if COMPILED_EXTENSIONS else {},
    entry_points={
        "console_scripts": [
            "medsage-tiny-model=medsage.plugins.tiny_model:main",
            "medsage-data=medsage.data_gen.cli:main",
            "medsage-eval=medsage.eval.cli:main",
            "medsage-explore=medsage.explore.cli:main",
            "medsage-rgrpo=medsage.plugins.verl.main:main",
            "medsage-scorer-train=medsage.reward_fns.consistency.cli:train_main",
            "medsage-scorer-serve=medsage.reward_fns.consistency.cli:serve_main",
        ]
    },
)
