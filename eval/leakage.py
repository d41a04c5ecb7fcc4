"""Which benchmark questions show an image that is also in a training set (``medsage-eval leakage``).

Why: a redistributed VQA-RAD split once had every test image in train (notes/DATASETS.md), and a
training image that is a near copy of a benchmark image inflates every number of Table 1. Run
this on the SFT/RL training images before trusting a measured number. The comparison is
data_gen's perceptual hash (medsage.data_gen.leakage: 256-bit difference hash, pairs within
``max_distance`` bits), so a resized or re-encoded copy is caught, as the data build's own leakage
filter catches it; here it runs from the benchmark side, so every question whose image has a
near copy in training is counted, also when several questions share one image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from medsage.data_gen.config import LeakageConfig
from medsage.data_gen.leakage import dhash, hash_training_images, nearest_within

from .benchmarks import ImageRef, Item, load_benchmarks, load_image
from .config import EvalConfig
from .report import md_table

DEFAULT_MAX_DISTANCE = LeakageConfig().max_distance


@dataclass(frozen=True)
class ItemLeak:
    """A question whose image number ``image`` (0-based, in ``Item.images``) has a near copy in training."""

    id: str
    image: int
    train_image: str
    distance: int


@dataclass(frozen=True)
class BenchmarkLeakage:
    benchmark: str
    n_items: int
    leaks: list[ItemLeak]


def _image_key(ref: ImageRef) -> str:
    """Identical images hashed once: a path by name, embedded bytes by content."""
    return ref if isinstance(ref, str) else "sha1:" + hashlib.sha1(ref).hexdigest()


def leaked_items(test: Sequence[Item], train: Mapping[str, bytes], max_distance: int = DEFAULT_MAX_DISTANCE) -> list[ItemLeak]:
    """The questions of ``test`` with an image within ``max_distance`` bits of a ``train`` hash (as
    :func:`medsage.data_gen.leakage.hash_training_images` returns them), in question order; each
    with its closest match."""
    refs = {_image_key(ref): ref for item in test for ref in item.images}
    hashes = {key: dhash(load_image(ref)) for key, ref in refs.items()}
    matches = {key: (train_image, d) for key, train_image, d in nearest_within(hashes, dict(train), max_distance)}
    leaks = []
    for item in test:
        found = [(matches[k][1], i, matches[k][0]) for i, k in enumerate(map(_image_key, item.images)) if k in matches]
        if found:
            distance, image, train_image = min(found)
            leaks.append(ItemLeak(item.id, image, train_image, distance))
    return leaks


def check_leakage(
    config: EvalConfig, train_sources: Sequence[Path], max_distance: int = DEFAULT_MAX_DISTANCE,
    media_dir: Path | None = None,
) -> list[BenchmarkLeakage]:
    """Every benchmark of a recipe (with its limit and options) against the training images; the
    benchmarks load first, so a wrong path fails before a large training set is hashed."""
    benchmarks = [(s.name, items) for s, items in zip(config.benchmarks, load_benchmarks(config.benchmarks))]
    train: dict[str, bytes] = {}
    for source in train_sources:
        train.update(hash_training_images(source, media_dir))
    return [BenchmarkLeakage(name, len(items), leaked_items(items, train, max_distance)) for name, items in benchmarks]


def leakage_table(results: Sequence[BenchmarkLeakage]) -> str:
    """Markdown: leaked questions per benchmark."""
    rows = [[r.benchmark, r.n_items, len(r.leaks), f"{100 * len(r.leaks) / r.n_items:.1f}" if r.n_items else "—"]
            for r in results]
    return md_table(["benchmark", "questions", "leaked", "leaked %"], rows)


def write_leakage(results: Sequence[BenchmarkLeakage], path: Path, train_sources: Sequence[Path], max_distance: int) -> Path:
    """JSON with the settings and, per benchmark, the leaked question ids and their matches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "train": [str(s) for s in train_sources],
        "max_distance": max_distance,
        "benchmarks": [
            {"benchmark": r.benchmark, "questions": r.n_items, "leaked_ids": [leak.id for leak in r.leaks],
             "leaks": [asdict(leak) for leak in r.leaks]}
            for r in results
        ],
    }
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return path
