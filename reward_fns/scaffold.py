"""The LVKC scaffold: the one place that knows the stage tags (paper section 3.2, Figure 12).

A response is a free-text preamble (the global context sentence of Figure 12) followed by
five tagged stages, in this order::

    <LOC>..</LOC><VISUAL>..</VISUAL><KNOWLEDGE>..</KNOWLEDGE><CON>..</CON><ANSWER>..</ANSWER>

``<LOC>`` may carry grounding objects on the 0-1000 grid used by the paper's examples:
``{"box_2d": [ymin, xmin, ymax, xmax], "label": ...}`` and ``{"point": [y, x], "label": ...}``.

Model output is never trusted to be well formed, so :func:`parse` never raises: every defect
(missing, repeated, unclosed, misordered, empty stage; a stray closing tag; a stage closed with
its own opening tag, as two of the paper's Figure 12 outputs do) becomes a :class:`Problem`
and the content is still recovered wherever it can be.

The self-check span of R-GRPO (section 3.3) has its own tags, defined here too: an outer
``<CHECK>`` holding one tag per review dimension (visual grounding, visual analysis, medical
knowledge consistency); the injected instruction names them and nothing grades the span's format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

from .word_patterns import any_word_pattern

# The stage tags; other modules name a stage by these constants, never by a string of their own.
LOC, VISUAL, KNOWLEDGE, CON, ANSWER = "LOC", "VISUAL", "KNOWLEDGE", "CON", "ANSWER"
STAGES: tuple[str, ...] = (LOC, VISUAL, KNOWLEDGE, CON, ANSWER)
REASONING_STAGES: tuple[str, ...] = STAGES[:-1]  # the evidence the answer rests on
STAGE_TITLES: dict[str, str] = {
    LOC: "Localization",
    VISUAL: "Visual analysis",
    KNOWLEDGE: "Knowledge",
    CON: "Conclusion",
    ANSWER: "Answer",
}

SELF_CHECK_TAG = "CHECK"
SELF_CHECK_DIMENSIONS: dict[str, str] = {
    "GROUNDING": "visual grounding",
    "ANALYSIS": "visual analysis",
    "CONSISTENCY": "medical knowledge consistency",
}

GRID = 1000  # grounding coordinates live on a 0..GRID grid, independent of image resolution

# Bounded whitespace keeps the scan linear on adversarial input.
_TAG_RE_CACHE: dict[tuple[str, ...], re.Pattern[str]] = {}
_GROUNDING_RE = re.compile(r"\{[^{}]{0,400}\}")
_REGION_WORDS = (
    "left right upper lower middle central centre center anterior posterior medial lateral superior inferior proximal "
    "distal apical basal bilateral peripheral quadrant lobe region zone segment margin border wall area side field "
    "compartment base apex hilum hilar periphery cortex space level near adjacent along within between beneath above "
    "below"
).split()
_REGION_WORDS_RE = re.compile(any_word_pattern(_REGION_WORDS), re.IGNORECASE)


class Problem(NamedTuple):
    """One defect found while parsing; ``kind`` is a stable machine-readable name (a named tuple, as
    :class:`Parsed` is: malformed responses are common early in RL, and each may carry several)."""

    kind: str  # missing | repeated | unclosed | misordered | empty | stray_close | closed_with_open_tag
    tag: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} <{self.tag}>" + (f": {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Grounding:
    """A region named in ``<LOC>``: a box ``[ymin, xmin, ymax, xmax]`` or a point ``[y, x]`` on the grid."""

    label: str
    box_2d: tuple[float, float, float, float] | None = None
    point: tuple[float, float] | None = None

    def to_json(self) -> str:
        body: dict[str, object] = {}
        if self.box_2d is not None:
            body["box_2d"] = [_int_if_whole(v) for v in self.box_2d]
        if self.point is not None:
            body["point"] = [_int_if_whole(v) for v in self.point]
        body["label"] = self.label
        return json.dumps(body, ensure_ascii=False)


class Parsed(NamedTuple):
    """What was recovered from one text for one tag set (a named tuple: the reward makes one per
    response, and a tuple is made several times faster than a frozen dataclass)."""

    preamble: str
    sections: dict[str, str]
    order: tuple[str, ...]
    problems: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        return not self.problems

    def get(self, tag: str) -> str | None:
        return self.sections.get(tag)


@dataclass(frozen=True)
class Scaffold:
    """A full LVKC response, for rendering training targets."""

    loc: str
    visual: str
    knowledge: str
    con: str
    answer: str
    preamble: str = ""
    groundings: tuple[Grounding, ...] = field(default_factory=tuple)

    def render(self) -> str:
        loc = " ".join([self.loc.strip(), *(g.to_json() for g in self.groundings)]).strip()
        texts = (loc, self.visual, self.knowledge, self.con, self.answer)
        return render_sections({tag: text.strip() for tag, text in zip(STAGES, texts)}, self.preamble.strip())


def tagged(tag: str, text: str) -> str:
    """``text`` wrapped in one stage's (or self-check dimension's) opening and closing tags."""
    return f"<{tag}>{text}</{tag}>"


def render_sections(sections: Mapping[str, str], preamble: str = "") -> str:
    """Stage sections in scaffold order after the preamble; a missing stage is left out, so a
    corrupted negative (a dropped stage) renders through here too."""
    body = "".join(tagged(tag, sections[tag]) for tag in STAGES if tag in sections)
    return f"{preamble} {body}" if preamble else body


def _tag_re(tags: tuple[str, ...]) -> re.Pattern[str]:
    pattern = _TAG_RE_CACHE.get(tags)
    if pattern is None:
        names = "|".join(sorted(tags, key=len, reverse=True))
        pattern = re.compile(rf"<[ \t]{{0,3}}(/?)[ \t]{{0,3}}({names})[ \t]{{0,3}}>", re.IGNORECASE)
        _TAG_RE_CACHE[tags] = pattern
    return pattern


_WELL_FORMED_CACHE: dict[tuple[str, ...], tuple[str, ...] | None] = {}
_PLAIN_TAG_RE = re.compile(r"[A-Z][A-Z0-9_]*")


def _well_formed_pieces(tags: tuple[str, ...]) -> tuple[str, ...] | None:
    """How the text after each "<" begins when the text's only "<" characters open its tags, ``<T>..</T>``
    once for each tag, in order and written in upper case (a policy's usual response): "T>", "/T>" for
    each tag. Then those are the only tags the loop of :func:`parse_tags`
    meets (every tag starts at a "<" and holds no other). None when ``tags`` are not distinct upper-case
    names (the loop keys sections by the name upper-cased)."""
    if tags not in _WELL_FORMED_CACHE:
        plain = tags and len(set(tags)) == len(tags) and all(
            isinstance(t, str) and _PLAIN_TAG_RE.fullmatch(t) for t in tags)
        _WELL_FORMED_CACHE[tags] = tuple(f"{slash}{t}>" for t in tags for slash in ("", "/")) if plain else None
    return _WELL_FORMED_CACHE[tags]


def _starts(text: str, pieces: tuple[str, ...]) -> list[int] | None:
    """Where each "<" of ``text`` is, when they are exactly one per piece and each is followed by its piece
    (:func:`_well_formed_pieces`); None otherwise. Each "<" is found by one ``str.find``, a memchr."""
    starts, at = [], text.find("<")
    for piece in pieces:
        if at < 0 or not text.startswith(piece, at + 1):
            return None
        starts.append(at)
        at = text.find("<", at + len(piece) + 1)
    return starts if at < 0 else None


def parse_tags(text: object, tags: tuple[str, ...]) -> Parsed:
    """Recover tagged sections of ``text`` in any order; never raises.

    The first occurrence of a section wins; later ones are reported as ``repeated``. An opening
    tag met while the same section is open is read as its close (``closed_with_open_tag``); any
    other tag met while a section is open ends it (``unclosed`` unless it is the proper close).
    So a section's content is always the text between its opening tag and the next tag, which
    is what one ``re.split`` yields: ``[preamble, slash, name, text_after, slash, name, ...]``.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    well_formed = _well_formed_pieces(tags)
    starts = _starts(text, well_formed) if well_formed is not None else None
    if starts is not None:  # the common case: what the loop below reads, without splitting the text
        found = {tag: text[start + len(tag) + 2 : end].strip() for tag, start, end in zip(tags, starts[::2], starts[1::2])}
        empty = () if all(found.values()) else tuple(Problem("empty", t) for t in tags if not found[t])
        return Parsed(text[: starts[0]].strip(), found, tags, empty)
    parts = _tag_re(tags).split(text)
    sections: dict[str, str] = {}
    order: list[str] = []
    problems: list[Problem] = []
    open_tag: str | None = None
    content = ""
    for i in range(1, len(parts), 3):
        slash, tag, after = parts[i], parts[i + 1].upper(), parts[i + 2]
        closing = open_tag
        if slash:
            if open_tag is None:
                problems.append(Problem("stray_close", tag))
            elif open_tag != tag:
                problems.append(Problem("unclosed", open_tag, f"closed by </{tag}>"))
            open_tag = None
        elif open_tag == tag:
            problems.append(Problem("closed_with_open_tag", tag))
            open_tag = None
        else:
            if open_tag is not None:
                problems.append(Problem("unclosed", open_tag, f"<{tag}> opened inside it"))
            open_tag = tag
        if closing is not None:
            _close(closing, content, sections, order, problems)
        if open_tag is not None and open_tag != closing:
            content = after
    if open_tag is not None:
        problems.append(Problem("unclosed", open_tag, "at end of text"))
        _close(open_tag, content, sections, order, problems)

    for tag in tags:
        if tag not in sections:
            problems.append(Problem("missing", tag))
        elif not sections[tag]:
            problems.append(Problem("empty", tag))
    if order != [t for t in tags if t in sections]:
        problems.append(Problem("misordered", order[0] if order else "", " -> ".join(order)))
    return Parsed(parts[0].strip(), sections, tuple(order), tuple(problems))


def _close(tag: str, content: str, sections: dict[str, str], order: list[str], problems: list[Problem]) -> None:
    if tag in sections:
        problems.append(Problem("repeated", tag))
    else:
        sections[tag] = content.strip()
        order.append(tag)


def parse(text: object) -> Parsed:
    """Parse an LVKC response (the five stages of :data:`STAGES`)."""
    return parse_tags(text, STAGES)


def answer_text(text: object) -> str | None:
    """The ``<ANSWER>`` content, or None when the response has none; the reward reads only this."""
    return parse(text).get("ANSWER")


def groundings(loc_text: object) -> list[Grounding]:
    """Grounding objects found in ``<LOC>`` text; malformed or off-grid objects are skipped."""
    if not isinstance(loc_text, str):
        return []
    found = []
    for m in _GROUNDING_RE.finditer(loc_text):
        try:
            obj = json.loads(m.group(0))
        except ValueError:
            continue
        if isinstance(obj, dict):
            g = _grounding_from_dict(obj)
            if g is not None:
                found.append(g)
    return found


def names_region(loc_text: object) -> bool:
    """Whether ``<LOC>`` text names a region: anatomical location words or a grounding object. The
    words are looked for first: they decide most ``<LOC>`` stages without decoding any JSON."""
    if not isinstance(loc_text, str) or not loc_text:
        return False
    return _REGION_WORDS_RE.search(loc_text) is not None or bool(groundings(loc_text))


def _grounding_from_dict(obj: dict) -> Grounding | None:
    label = obj.get("label", "")
    label = label if isinstance(label, str) else str(label)
    box, point = _numbers(obj.get("box_2d"), 4), _numbers(obj.get("point"), 2)
    if box is not None and not (box[0] < box[2] and box[1] < box[3]):
        box = None
    if box is None and point is None:
        return None
    return Grounding(label=label, box_2d=box, point=point)


def _numbers(value: object, n: int) -> tuple | None:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    if not all(0 <= v <= GRID for v in value):
        return None
    return tuple(float(v) for v in value)


def _int_if_whole(v: float) -> int | float:
    return int(v) if float(v).is_integer() else round(v, 1)


def pixels_to_box_2d(xyxy: tuple[float, float, float, float], width: int, height: int) -> tuple[int, ...]:
    """Pixel box ``(x1, y1, x2, y2)`` -> ``box_2d`` ``(ymin, xmin, ymax, xmax)`` on the grid, clipped."""
    x1, y1, x2, y2 = xyxy
    scale = lambda v, size: int(round(min(max(v / size, 0.0), 1.0) * GRID))  # noqa: E731
    return (scale(y1, height), scale(x1, width), scale(y2, height), scale(x2, width))


def box_2d_to_pixels(box_2d: tuple[float, ...], width: int, height: int) -> tuple[float, float, float, float]:
    """``box_2d`` ``(ymin, xmin, ymax, xmax)`` on the grid -> pixel box ``(x1, y1, x2, y2)``."""
    ymin, xmin, ymax, xmax = box_2d
    return (xmin * width / GRID, ymin * height / GRID, xmax * width / GRID, ymax * height / GRID)


def point_to_pixels(point: tuple[float, float], width: int, height: int) -> tuple[float, float]:
    """``point`` ``(y, x)`` on the grid -> pixel ``(x, y)``."""
    y, x = point
    return (x * width / GRID, y * height / GRID)
