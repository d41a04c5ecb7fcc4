"""Benchmark-leakage check: perceptual hashes of training images against evaluation images.

Why: a redistributed VQA-RAD split once had every test image in train (notes/DATASETS.md); a
training image that is a near copy of an evaluation image inflates every reported number. A
256-bit difference hash (16 x 16 gradient signs) survives resizing, re-encoding and mild
intensity changes, yet separates different patients' scans, which look alike at 64 bits;
pairs within ``max_distance`` bits are reported. Two users: the data build drops the training
images that match an evaluation folder (:func:`find_leaks`), and ``medsage-eval leakage`` reports
the benchmark questions whose image appears in a training set (:func:`nearest_within` from the
evaluation side, with :func:`hash_training_images` reading that set).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medsage.data_gen.readers.vqa_json import _images, iter_json_array
from medsage.data_gen.records import DataError

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


def nearest_within(queries: dict[str, bytes], references: dict[str, bytes], max_distance: int) -> list[tuple[str, str, int]]:
    """``(query, closest reference, distance)`` for every query within ``max_distance`` bits of a reference."""
    if not queries or not references:
        return []
    ref_paths = list(references)
    ref_hashes = np.stack([np.frombuffer(references[p], dtype=np.uint8) for p in ref_paths])
    matches = []
    for path, h in queries.items():
        distances = np.bitwise_count(ref_hashes ^ np.frombuffer(h, dtype=np.uint8)).sum(axis=1)
        best = int(distances.argmin())
        if distances[best] <= max_distance:
            matches.append((path, ref_paths[best], int(distances[best])))
    return matches


def find_leaks(train: dict[str, bytes], evaluation: dict[str, bytes], max_distance: int) -> list[LeakMatch]:
    """Every training image within ``max_distance`` bits of an evaluation image (closest match)."""
    return [LeakMatch(*match) for match in nearest_within(train, evaluation, max_distance)]


def hash_sharegpt_images(json_path: Path, media_dir: Path | None = None) -> dict[str, bytes]:
    """Hashes of the images a LLaMA-Factory sharegpt (or LLaVA) json names in ``images`` (or
    ``image``), resolved against ``media_dir`` (LLaMA-Factory's key; default: the json's folder,
    where data_gen's SFT export writes ``dataset_info.json``). A missing or unreadable image is an
    error naming the row, so a partly copied training set is never reported as leak-free."""
    json_path = Path(json_path)
    root = Path(media_dir) if media_dir is not None else json_path.parent
    hashes = {}
    for row, record in enumerate(iter_json_array(json_path)):
        if not isinstance(record, dict):
            raise DataError(json_path, row, None, "expected an object")
        for name in _images(json_path, row, record):
            path = root / name
            try:
                with Image.open(path) as im:
                    hashes[str(path)] = dhash(im)
            except (OSError, UnidentifiedImageError) as err:
                raise DataError(json_path, row, "images", f"cannot read image {path}: {err}") from None
    return hashes


def hash_training_images(source: Path, media_dir: Path | None = None) -> dict[str, bytes]:
    """Hashes of a training set given as a folder of images (recursively) or a sharegpt json."""
    source = Path(source)
    if source.is_dir():
        return hash_folders([source])
    if source.is_file():
        return hash_sharegpt_images(source, media_dir)
    raise FileNotFoundError(f"training set not found: {source} (expected a folder of images or a sharegpt json)")
