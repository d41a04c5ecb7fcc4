"""Small build recipes over the phantom sources, for the data_gen tests."""

from pathlib import Path

import yaml


def write_recipe(path: Path, **overrides) -> Path:
    """A small build recipe over all three phantom formats; keyword sections replace the defaults."""
    recipe = {
        "output_dir": str(path.parent / "out"),
        "seed": 0,
        "sources": [
            {"kind": "phantom_deeplesion", "n": 10, "seed": 0},
            {"kind": "phantom_coco", "n": 6, "seed": 1},
            {"kind": "phantom_pubmedvision", "n": 4, "seed": 2},
        ],
        "instructions": {"per_record": 2},
        "generation": {"backend": "offline", "trajectories_per_sample": 3, "negatives_per_sample": 1},
        "exports": {"rl_size": 24, "val_fraction": 0.2},
    }
    recipe.update(overrides)
    path.write_text(yaml.safe_dump(recipe))
    return path
