"""PubMedVision and LLaVA/sharegpt json (appendix A.1, weak-ROI sources).

PubMedVision records are ``{id, image: [paths], conversations: [{from, value}], modality,
body_part}``; LLaVA records are ``{id, image: path | [paths], conversations}`` with ``<image>``
tokens in the human turn. Neither has boxes: location phrases in the question or answer
("in the right lower lobe", "the arrow") become weak, text ROIs (the paper's language-based cues).
Only single-image records are read; others are counted as ``multi_image`` skips, and the data
card says how many. LLaMA-Factory (several ``<image>`` tokens) and verl (an image list) would take
them, but a sample here is one image: its ROI set, crops, stage prompts, pixel statistics for the
offline generator and leakage hash are all per image.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from medsage.data_gen.records import ROI, DataError, Record, SkipLog

_SIDE = r"(?:left|right|upper|lower|middle|anterior|posterior|medial|lateral|central|superior|inferior|bilateral|proximal|distal)"
_PLACE = (
    r"(?:lobe|lobes|lung|lungs|quadrant|kidney|hemisphere|ventricle|atrium|breast|lobe|field|fields|zone|side|"
    r"aspect|wall|region|margin|border|portion|pole|segment|knee|hip|shoulder|femur|tibia|liver|abdomen|thorax|"
    r"chest|pelvis|orbit|hilum|base|apex|cortex|lobule|sinus|gland|retroperitoneum|midline)"
)
_CUE_RE = re.compile(rf"\b({_SIDE}(?:[\s-]+(?:{_SIDE}|[a-z]+)){{0,3}}?\s+{_PLACE})\b", re.IGNORECASE)
_ARROW_RE = re.compile(r"\b((?:the\s+)?(?:red|white|black|yellow|blue)?\s*arrows?(?:\s*head)?\s+(?:pointing|indicat\w+|show\w*|at|in|on)[^.;,]{0,60})", re.IGNORECASE)
_MODALITIES = {
    "computed tomography": "CT",
    "magnetic resonance imaging": "MRI",
    "x-ray": "X-ray",
    "digital radiography": "X-ray",
    "ultrasound": "Ultrasound",
    "microscopy images": "Microscopy",
}


def location_cues(text: str) -> list[str]:
    """Natural-language location phrases in ``text``, in order, without duplicates."""
    found = [m.group(1).strip() for m in _CUE_RE.finditer(text or "")]
    found += [" ".join(m.group(1).split()) for m in _ARROW_RE.finditer(text or "")]
    return list(dict.fromkeys(found))


def _load(path: Path) -> list:
    if not Path(path).is_file():
        raise DataError(path, None, None, "json file not found")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as err:
        raise DataError(path, None, None, f"not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise DataError(path, None, None, "expected a JSON array of records")
    return data


def _turns(path: Path, n: int, item: dict) -> tuple[str, str]:
    conv = item.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise DataError(path, n, "conversations", "expected a non-empty list")
    human = next((t.get("value") for t in conv if isinstance(t, dict) and t.get("from") in ("human", "user")), None)
    gpt = next((t.get("value") for t in conv if isinstance(t, dict) and t.get("from") in ("gpt", "assistant")), None)
    if not isinstance(human, str) or not isinstance(gpt, str) or not human.strip() or not gpt.strip():
        raise DataError(path, n, "conversations", "needs one human and one gpt turn with text")
    return human.replace("<image>", "").strip(), gpt.strip()


def _images(path: Path, n: int, item: dict) -> list[str]:
    image = item.get("image", item.get("images"))
    images = [image] if isinstance(image, str) else image
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        raise DataError(path, n, "image", "expected a path or a list of paths")
    return images


def _read(path: Path, image_root: Path, skips: SkipLog, source: str, default_modality: str) -> Iterator[Record]:
    for n, item in enumerate(_load(path)):
        skips.seen += 1
        try:
            if not isinstance(item, dict):
                raise DataError(path, n, None, "record is not an object")
            images = _images(path, n, item)
            question, answer = _turns(path, n, item)
        except DataError as err:
            skips.skip_error(err)
            continue
        if len(images) != 1:
            skips.skip("multi_image", f"{path}, row {n}", f"{len(images)} images")
            continue
        image = Path(image_root) / images[0]
        if not image.is_file():
            skips.skip("missing_image", f"{path}, row {n}", str(image))
            continue
        modality = str(item.get("modality") or default_modality)
        cues = location_cues(f"{question} {answer}")
        skips.kept += 1
        yield Record(
            record_id=f"{source}/{item.get('id', n)}",
            source=source,
            image=image,
            modality=_MODALITIES.get(modality.lower(), modality),
            rois=tuple(ROI(label=cue, text=cue, kind="text") for cue in cues),
            question=question,
            answer=answer,
            body_part=str(item.get("body_part") or ""),
            group=f"{source}/{images[0]}",
            provenance=f"{path}, row {n}",
        )


def read_pubmedvision(json_path: Path, image_root: Path, skips: SkipLog) -> Iterator[Record]:
    """Yield records of a PubMedVision VQA json (paths relative to ``image_root``)."""
    yield from _read(Path(json_path), Path(image_root), skips, "pubmedvision", "")


def read_llava(json_path: Path, image_root: Path, skips: SkipLog, *, modality: str = "") -> Iterator[Record]:
    """Yield records of a LLaVA/sharegpt-style json (``image`` relative to ``image_root``)."""
    yield from _read(Path(json_path), Path(image_root), skips, "llava", modality)
