"""ROI normalisation (paper section 3.1, Eq. 1): the set R of plausible regions for one image.

Coordinate ROIs are varied by coordinate perturbation, context expansion and sub-region
sampling so the model learns to ground robustly rather than to copy one annotator's box; text
ROIs (language cues) are kept unchanged; the whole image is added as a global ROI for holistic
reasoning. Every box is clipped to the image and kept at least ``min_size_px`` on each side;
boxes reach the text only through the scaffold module's 0-1000 ``box_2d`` grid.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from medsage.data_gen.records import ROI, Box
from medsage.reward_fns.scaffold import Grounding, pixels_to_box_2d

GLOBAL_LABEL = "whole image"


@dataclass(frozen=True)
class ROIConfig:
    """How many variants of each annotated box, and how far they may move (fractions of the box)."""

    n_perturbed: int = 1
    n_expanded: int = 1
    n_subregion: int = 1
    jitter: float = 0.1
    expand_min: float = 0.2
    expand_max: float = 0.6
    subregion_min_frac: float = 0.6
    min_size_px: float = 8.0
    include_global: bool = True


def clip_box(box: Box, width: int, height: int, min_size: float) -> Box:
    """``box`` inside the image and at least ``min_size`` (or the image side, if smaller) wide and tall."""
    x1, y1, x2, y2 = box
    x1, x2 = _clip_span(min(x1, x2), max(x1, x2), width, min_size)
    y1, y2 = _clip_span(min(y1, y2), max(y1, y2), height, min_size)
    return (x1, y1, x2, y2)


def _clip_span(lo: float, hi: float, size: int, min_size: float) -> tuple[float, float]:
    lo, hi = min(max(lo, 0.0), float(size)), min(max(hi, 0.0), float(size))
    need = min(min_size, float(size))
    if hi - lo < need:
        centre = (lo + hi) / 2
        lo = min(max(centre - need / 2, 0.0), size - need)
        hi = lo + need
    return lo, hi


def perturb(box: Box, rng: random.Random, jitter: float, width: int, height: int, min_size: float) -> Box:
    """Move each edge by up to ``jitter`` of the box's width/height (annotator disagreement)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    moved = (x1 + rng.uniform(-jitter, jitter) * w, y1 + rng.uniform(-jitter, jitter) * h,
             x2 + rng.uniform(-jitter, jitter) * w, y2 + rng.uniform(-jitter, jitter) * h)
    return clip_box(moved, width, height, min_size)


def expand(box: Box, rng: random.Random, lo: float, hi: float, width: int, height: int, min_size: float) -> Box:
    """Grow the box by a random fraction in ``[lo, hi]`` of its size on every side (context)."""
    x1, y1, x2, y2 = box
    fx, fy = rng.uniform(lo, hi), rng.uniform(lo, hi)
    w, h = x2 - x1, y2 - y1
    return clip_box((x1 - fx * w, y1 - fy * h, x2 + fx * w, y2 + fy * h), width, height, min_size)


def subregion(box: Box, rng: random.Random, min_frac: float, width: int, height: int, min_size: float) -> Box:
    """A random sub-box covering at least ``min_frac`` of each side (a partial view of the finding)."""
    x1, y1, x2, y2 = box
    w, h = (x2 - x1) * rng.uniform(min_frac, 1.0), (y2 - y1) * rng.uniform(min_frac, 1.0)
    sx, sy = x1 + rng.uniform(0, (x2 - x1) - w), y1 + rng.uniform(0, (y2 - y1) - h)
    return clip_box((sx, sy, sx + w, sy + h), width, height, min_size)


def roi_set(rois: tuple[ROI, ...], width: int, height: int, config: ROIConfig, rng: random.Random) -> list[ROI]:
    """R for one image: each annotated box and its variants, each text ROI as is, and the global ROI."""
    out: list[ROI] = []
    m = config.min_size_px
    for roi in rois:
        if not roi.strong:
            out.append(roi)
            continue
        base = clip_box(roi.box, width, height, m)
        out.append(ROI(roi.label, base, roi.text, "annotated"))
        out += [ROI(roi.label, perturb(base, rng, config.jitter, width, height, m), None, "perturbed")
                for _ in range(config.n_perturbed)]
        out += [ROI(roi.label, expand(base, rng, config.expand_min, config.expand_max, width, height, m), None, "expanded")
                for _ in range(config.n_expanded)]
        out += [ROI(roi.label, subregion(base, rng, config.subregion_min_frac, width, height, m), None, "subregion")
                for _ in range(config.n_subregion)]
    if config.include_global or not out:
        out.append(ROI(GLOBAL_LABEL, (0.0, 0.0, float(width), float(height)), None, "global"))
    return out


def grounding(roi: ROI, width: int, height: int, label: str) -> Grounding | None:
    """The ``box_2d`` grounding object of a box ROI (None for a text ROI), labelled ``label``."""
    if not roi.strong:
        return None
    return Grounding(label=label, box_2d=tuple(float(v) for v in pixels_to_box_2d(roi.box, width, height)))
