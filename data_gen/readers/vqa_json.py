"""PubMedVision and LLaVA/sharegpt json (appendix A.1, weak-ROI sources).

PubMedVision records are ``{id, image: [paths], conversations: [{from, value}], modality,
body_part}``; LLaVA records are ``{id, image: path | [paths], conversations}`` with ``<image>``
tokens in the human turn. Neither has boxes: location phrases in the question or answer
("in the right lower lobe", "the arrow") become weak, text ROIs (the paper's language-based cues).
Every question/answer turn of a record becomes a record of its own (``<id>#<k>`` from the second
turn on); a turn without its partner is dropped and counted. Records are read one at a time
(:func:`iter_json_array`), never the whole file at once.
Only single-image records are read; others are counted as ``multi_image`` skips, and the data
card says how many. LLaMA-Factory (several ``<image>`` tokens) and verl (an image list) would take
them, but a sample here is one image: its ROI set, crops, stage prompts, pixel statistics for the
offline generator and leakage hash are all per image.
"""

from __future__ import annotations

import codecs
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
_CUE = rf"\b({_SIDE}(?:[\s-]+(?:{_SIDE}|[a-z]+)){{0,3}}?\s+{_PLACE})\b"
_ARROW = r"\b((?:the\s+)?(?:red|white|black|yellow|blue)?\s*arrows?(?:\s*head)?\s+(?:pointing|indicat\w+|show\w*|at|in|on)[^.;,]{0,60})"
# Case-sensitive patterns run on the lower-cased text (4x faster than IGNORECASE; every record of a
# 647,031-record json is read twice per build); the IGNORECASE ones where lower-casing changes the length.
_CUE_RE, _ARROW_RE = re.compile(_CUE), re.compile(_ARROW)
_CUE_RE_I, _ARROW_RE_I = re.compile(_CUE, re.IGNORECASE), re.compile(_ARROW, re.IGNORECASE)
_MODALITIES = {
    "computed tomography": "CT",
    "magnetic resonance imaging": "MRI",
    "x-ray": "X-ray",
    "digital radiography": "X-ray",
    "ultrasound": "Ultrasound",
    "microscopy images": "Microscopy",
}


def location_cues(text: str) -> list[str]:
    """Natural-language location phrases in ``text`` (as written), in order, without duplicates."""
    text = text or ""
    low = text.lower()
    cue, arrow, searched = (_CUE_RE, _ARROW_RE, low) if len(low) == len(text) else (_CUE_RE_I, _ARROW_RE_I, text)
    found = [text[m.start(1):m.end(1)].strip() for m in cue.finditer(searched)]
    if "arrow" in low:
        found += [" ".join(text[m.start(1):m.end(1)].split()) for m in arrow.finditer(searched)]
    return list(dict.fromkeys(found))


CHUNK_CHARS = 1 << 20
MAX_RECORD_CHARS = 64 << 20


def iter_json_array(path: Path) -> Iterator[object]:
    """The elements of a JSON array file, one at a time, in memory bounded by the largest element.

    PubMedVision's 722 MB json holds ~2.3 GB as Python objects when loaded whole; read this way a
    build holds one record at a time. Text that is not UTF-8, or not a JSON array, is a
    :class:`DataError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "json file not found")
    reader = _ArrayReader(path)
    with path.open("rb") as raw:
        yield from reader.elements(raw)


class _ArrayReader:
    """Incremental UTF-8 decoding and ``raw_decode`` over a sliding text buffer, with line numbers for errors."""

    def __init__(self, path: Path):
        self.path, self.buf, self.pos, self.lines_before = path, "", 0, 0
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.json = json.JSONDecoder()
        self.eof = False

    def elements(self, raw) -> Iterator[object]:
        self._expect(raw, "[", "expected a JSON array of records")
        if self._peek(raw) == "]":
            return
        while True:
            yield self._value(raw)
            sep = self._peek(raw)
            if sep == "]":
                return
            self._expect(raw, ",", "expected ',' or ']' between records")

    def _fill(self, raw) -> bool:
        """Read one more chunk into the buffer (dropping what was consumed); False at the end of the file."""
        if self.eof:
            return False
        chunk = raw.read(CHUNK_CHARS)
        try:
            text = self.decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as err:
            line = self.lines_before + self.buf.count("\n") + chunk[: err.start].count(b"\n") + 1
            raise DataError(self.path, None, None, f"line {line}: not UTF-8 (byte {chunk[err.start]:#04x}); "
                                                   "save the file as UTF-8", reason="not_utf8") from None
        self.lines_before += self.buf.count("\n", 0, self.pos)
        self.buf, self.pos, self.eof = self.buf[self.pos:] + text, 0, not chunk
        return bool(chunk) or bool(text)

    def _peek(self, raw) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill(raw):
                self._fail(self.pos, "the file ends before the array closes")

    def _expect(self, raw, char: str, message: str) -> None:
        if self._peek(raw) != char:
            self._fail(self.pos, message)
        self.pos += 1

    def _value(self, raw) -> object:
        self._peek(raw)
        while True:
            try:
                value, end = self.json.raw_decode(self.buf, self.pos)
                self.pos = end
                return value
            except json.JSONDecodeError as err:  # an incomplete record: read on; at the end, a malformed one
                if self.eof or len(self.buf) - self.pos > MAX_RECORD_CHARS:
                    self._fail(err.pos, f"not valid JSON: {err.msg}")
                self._fill(raw)

    def _fail(self, pos: int, message: str):
        line = self.lines_before + self.buf.count("\n", 0, pos) + 1
        raise DataError(self.path, None, None, f"line {line}: {message}")


def _text(turn: object, roles: tuple[str, ...]) -> str | None:
    if isinstance(turn, dict) and turn.get("from") in roles and isinstance(turn.get("value"), str) and turn["value"].strip():
        return turn["value"].replace("<image>", "").strip()
    return None


def _turns(path: Path, n: int, item: dict, skips: SkipLog) -> list[tuple[str, str]]:
    """Every human turn answered by the next gpt turn; a turn without its partner is dropped and counted."""
    conv = item.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise DataError(path, n, "conversations", "expected a non-empty list")
    pairs, i = [], 0
    while i < len(conv):
        question = _text(conv[i], ("human", "user"))
        answer = _text(conv[i + 1], ("gpt", "assistant")) if i + 1 < len(conv) else None
        if question is not None and answer is not None:
            pairs.append((question, answer))
            i += 2
        else:
            skips.drop("unpaired_turn", f"{path}, row {n}, turn {i}")
            i += 1
    if not pairs:
        raise DataError(path, n, "conversations", "needs a human turn followed by a gpt turn, both with text")
    return pairs


def _images(path: Path, n: int, item: dict) -> list[str]:
    image = item.get("image", item.get("images"))
    images = [image] if isinstance(image, str) else image
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        raise DataError(path, n, "image", "expected a path or a list of paths")
    return images


def _read(path: Path, image_root: Path, skips: SkipLog, source: str, default_modality: str) -> Iterator[Record]:
    for n, item in enumerate(iter_json_array(path)):
        skips.seen += 1
        try:
            if not isinstance(item, dict):
                raise DataError(path, n, None, "record is not an object")
            images = _images(path, n, item)
            turns = _turns(path, n, item, skips)
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
        skips.kept += 1
        name = item.get("id", images[0])  # not the position: ids stay put when rows are added or removed
        for k, (question, answer) in enumerate(turns):
            yield _record(source, f"{source}/{name}" + (f"#{k}" if k else ""), image, modality, item, question, answer,
                          f"{path}, row {n}" + (f", turn {2 * k}" if k else ""), images[0])


def _record(source: str, record_id: str, image: Path, modality: str, item: dict, question: str, answer: str,
            provenance: str, image_name: str) -> Record:
    cues = location_cues(f"{question} {answer}")
    return Record(
        record_id=record_id,
        source=source,
        image=image,
        modality=_MODALITIES.get(modality.lower(), modality),
        rois=tuple(ROI(label=cue, text=cue, kind="text") for cue in cues),
        question=question,
        answer=answer,
        body_part=str(item.get("body_part") or ""),
        group=f"{source}/{image_name}",
        provenance=provenance,
    )


def read_pubmedvision(json_path: Path, image_root: Path, skips: SkipLog) -> Iterator[Record]:
    """Yield records of a PubMedVision VQA json (paths relative to ``image_root``)."""
    yield from _read(Path(json_path), Path(image_root), skips, "pubmedvision", "")


def read_llava(json_path: Path, image_root: Path, skips: SkipLog, *, modality: str = "") -> Iterator[Record]:
    """Yield records of a LLaVA/sharegpt-style json (``image`` relative to ``image_root``)."""
    yield from _read(Path(json_path), Path(image_root), skips, "llava", modality)
