"""Benchmark-leakage check: perceptual hashes of training images against evaluation image folders.

Why: a redistributed VQA-RAD split once had every test image in train (notes/DATASETS.md); a
training image that is a near copy of an evaluation image inflates every reported number. A
256-bit difference hash (16 x 16 gradient signs) survives resizing, re-encoding and mild
intensity changes, yet separates different patients' scans, which look alike at 64 bits;
pairs within ``max_distance`` bits are reported and the training image is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class LeakMatch:
    train_image: str
    eval_image: str
    distance: int


def dhash(image: Image.Image | np.ndarray, size: int = 16) -> bytes:
    """Difference hash: signs of horizontal gradients on a (size+1) x size greyscale thumbnail."""
    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    small = np.asarray(im.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS), dtype=np.int16)
    return np.packbits(small[:, 1:] > small[:, :-1]).tobytes()


def hash_folders(folders: list[Path]) -> dict[str, bytes]:
    """Hashes of every readable image under ``folders`` (recursively), keyed by path."""
    hashes = {}
    for folder in folders:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"leakage.eval_dirs: {folder} is not a folder")
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    with Image.open(path) as im:
                        hashes[str(path)] = dhash(im)
                except (OSError, UnidentifiedImageError):
                    continue
    return hashes


def find_leaks(train: dict[str, bytes], evaluation: dict[str, bytes], max_distance: int) -> list[LeakMatch]:
    """Every training image within ``max_distance`` bits of an evaluation image (closest match)."""
    if not train or not evaluation:
        return []
    eval_paths = list(evaluation)
    eval_hashes = np.stack([np.frombuffer(evaluation[p], dtype=np.uint8) for p in eval_paths])
    matches = []
    for path, h in train.items():
        distances = np.bitwise_count(eval_hashes ^ np.frombuffer(h, dtype=np.uint8)).sum(axis=1)
        best = int(distances.argmin())
        if distances[best] <= max_distance:
            matches.append(LeakMatch(path, eval_paths[best], int(distances[best])))
    return matches
