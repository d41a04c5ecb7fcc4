"""The record every reader yields, and the log of what was skipped and why (paper A.3.1).

Metadata extraction treats each aligned image-label pair as an atomic unit. Whatever the
on-disk format (DeepLesion csv, Roboflow COCO/YOLO/VOC, PubMedVision or LLaVA json), a reader
turns it into :class:`Record` values with strong (box) or weak (text) regions of interest, so
everything downstream is format-agnostic. A row that cannot be read never vanishes: it is
either a :class:`DataError` naming file, row and field, or a counted entry in :class:`SkipLog`.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

Box = tuple[float, float, float, float]  # pixel x1, y1, x2, y2


class DataError(ValueError):
    """Bad input, located: ``file``, ``row`` (1-based line or record index) and ``field``; ``reason``
    names the skip it becomes when a reader counts it (default ``bad_field:<field>``)."""

    def __init__(self, file: Path | str, row: int | str | None, field: str | None, message: str,
                 reason: str | None = None) -> None:
        self.file, self.row, self.field, self.reason = str(file), row, field, reason
        where = self.file + (f", row {row}" if row is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class ROI:
    """One region of interest: a pixel box (strong) or a natural-language location (weak).

    ``kind`` says where it came from: ``annotated`` (the source's own box), ``perturbed``,
    ``expanded``, ``subregion`` (section 3.1 transforms), ``text`` (a location cue) or ``global``.
    """

    label: str
    box: Box | None = None
    text: str | None = None
    kind: str = "annotated"

    @property
    def strong(self) -> bool:
        return self.box is not None


@dataclass(frozen=True)
class Record:
    """One image with its annotations, whatever source it was read from."""

    record_id: str
    source: str
    image: Path
    modality: str
    rois: tuple[ROI, ...] = ()
    labels: tuple[str, ...] = ()
    question: str | None = None
    answer: str | None = None
    body_part: str = ""
    split: str = "train"
    group: str = ""  # records sharing a group (augmented copies, one patient) never straddle splits
    noisy: bool = False
    window: tuple[float, float] | None = None  # CT display window in HU for 16-bit sources
    meta: dict[str, object] = field(default_factory=dict)
    provenance: str = ""  # "file, row N": where to look when something about this record is wrong

    def to_json(self) -> dict:
        """JSON-ready fields: a finished sample is committed with its record, so exports never re-read sources."""
        # By hand, not ``dataclasses.asdict``: that deep-copies every value and was most of the cost of
        # committing a sample (one call per finished sample, on the event loop that drives the calls).
        data = {name: getattr(self, name) for name in _RECORD_FIELDS_ORDERED}
        data["image"] = str(self.image)
        data["rois"] = tuple({"label": r.label, "box": r.box, "text": r.text, "kind": r.kind} for r in self.rois)
        data["meta"] = copy.deepcopy(self.meta) if self.meta else {}
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        """Read back :meth:`to_json`; keys that are no longer fields (a work folder written by an
        older version, e.g. the removed ``size``) are ignored, so a resumed build still loads it."""
        data = {k: v for k, v in data.items() if k in _RECORD_FIELDS}
        tuples = {k: tuple(data[k]) if data.get(k) is not None else None for k in ("labels", "window")}
        rois = tuple(ROI(**{**r, "box": tuple(r["box"]) if r.get("box") is not None else None}) for r in data["rois"])
        return cls(**{**data, **tuples, "labels": tuples["labels"] or (), "rois": rois, "image": Path(data["image"])})


_RECORD_FIELDS_ORDERED = tuple(f.name for f in fields(Record))
_RECORD_FIELDS = frozenset(_RECORD_FIELDS_ORDERED)


def _reason(error: DataError, default: str) -> str:
    return error.reason or (f"{default}:{error.field}" if error.field else default)


def inside_image(box: Box, size: tuple[int, int] | None, tolerance: float = 1.0) -> bool:
    """Whether a pixel box lies within a ``(width, height)`` image, give or take ``tolerance`` px (unknown size: yes).

    A box outside is an annotation error (wrong image, swapped axes, another resolution); clipping
    it would put a lesion in the image's corner, so readers drop it and say where it came from.
    """
    if size is None:
        return True
    x1, y1, x2, y2 = box
    return x1 >= -tolerance and y1 >= -tolerance and x2 <= size[0] + tolerance and y2 <= size[1] + tolerance


def outside_error(file: Path | str, row: int | str | None, field: str, box: Box, size: tuple[int, int]) -> DataError:
    return DataError(file, row, field, f"box {[round(v, 1) for v in box]} lies outside the {size[0]}x{size[1]} image",
                     reason="box_outside_image")


def utf8_lines(raw, path: Path | str):
    """Decoded lines of a binary file; a line that is not UTF-8 is a :class:`DataError` naming file and line."""
    for n, line in enumerate(raw, start=1):
        try:
            yield line.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as err:
            raise DataError(path, n, None, f"not UTF-8 (byte {line[err.start]:#04x} at column {err.start + 1}); "
                                           "save the file as UTF-8", reason="not_utf8") from None


@dataclass
class SkipLog:
    """Counted skips with where each happened; ``seen == kept + skipped`` for every reader.

    A unit is a csv row, an image or a json record. ``dropped`` counts parts of a kept unit that
    were unusable (one malformed box among an image's annotations), by reason.
    """

    seen: int = 0
    kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 50

    def skip(self, reason: str, where: str, detail: str = "") -> None:
        self.reasons[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{where}: {reason}" + (f" ({detail})" if detail else ""))

    def drop(self, reason: str, where: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{where}: dropped {reason}" + (f" ({detail})" if detail else ""))

    def skip_error(self, error: DataError, reason: str = "bad_field") -> None:
        self.skip(_reason(error, reason), f"{error.file}, row {error.row}", str(error))

    def drop_error(self, error: DataError, reason: str = "bad_field") -> None:
        self.drop(_reason(error, reason), f"{error.file}, row {error.row}", str(error))

    @property
    def skipped(self) -> int:
        return sum(self.reasons.values())
