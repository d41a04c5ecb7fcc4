"""The static site: page shells, one shared script and style, data in chunks, and the images shown.

A page opened from disk (``file://``) may not ``fetch()`` its data in Chromium, but it may load
scripts, so every data file is a script that calls ``MEDSAGE.register(key, value)``. Each page has
one small ``meta.js`` with every entry's facet codes (one character per entry and facet), so
filters, counts and the seeded random order run over all entries at once; the entry bodies sit in
chunks of :data:`CHUNK` entries and only the chunks a page of results needs are loaded, so a page of
100K entries opens about as fast as one of 1K (``tests/perf/bench_explore.py``).
"""

from __future__ import annotations

import html
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from PIL import Image

from medsage.reward_fns.scaffold import box_2d_to_pixels, groundings, parse, point_to_pixels

CHUNK = 100  # entries per data file: a page of 20 sparse matches loads at most 20 such files
MAX_SIDE = 768  # images larger than this are shown as a thumbnail of this size
STATIC = Path(__file__).parent / "static"
_CODE_BASE = 0x100  # facet value k is chr(_CODE_BASE + k): never a character JSON has to escape
_MAX_VALUES = 0xD7FF - _CODE_BASE  # below the surrogate range


@dataclass(frozen=True)
class Entry:
    """One thing a page shows: its body for the renderer, and the values the filters select on."""

    body: dict
    facets: dict[str, str]
    flags: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """A page kind's entries; ``kind`` names the renderer in ``explore.js``."""

    kind: str
    title: str
    facets: dict[str, str]  # name -> label, in the order the controls show them
    flags: dict[str, str]  # name -> label of a checkbox filter
    entries: Iterable[Entry]
    sources: tuple[str, ...]
    extra: dict = field(default_factory=dict)  # page-wide values the renderer needs


@dataclass(frozen=True)
class PageSummary:
    kind: str
    title: str
    entries: int
    chunks: int


class ImageStore:
    """Copies (hard-links where it can) or thumbnails each image once into ``images/`` of the site."""

    def __init__(self, out: Path):
        self.out = out
        self.done: dict[Path | str, tuple[str, int, int]] = {}

    def add(self, source: Path | bytes, name: str, size: tuple[int, int] | None = None) -> tuple[str, int, int]:
        """The site-relative path of the shown image and the original (width, height) boxes refer to."""
        key = source if isinstance(source, Path) else name
        if key not in self.done:
            size = size or image_size(source)
            self.done[key] = (self._write(source, name, size), *size)
        return self.done[key]

    def _write(self, source: Path | bytes, name: str, size: tuple[int, int]) -> str:
        rel = f"images/{name}"
        target = self.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if max(size) > MAX_SIDE:
            with _open(source) as img:
                img.thumbnail((MAX_SIDE, MAX_SIDE))
                img.save(target.with_suffix(".png"))
            return Path(rel).with_suffix(".png").as_posix()
        if isinstance(source, bytes):
            target.write_bytes(source)
            return rel
        target.unlink(missing_ok=True)  # a site written again: the image may have changed under its name
        try:
            os.link(source, target)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, target)
        return rel


def _open(source: Path | bytes) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def image_size(source: Path | bytes) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    with _open(source) as img:
        return img.size


def shapes(loc_text: str | None, width: int, height: int, kind: str, who: str) -> list[dict]:
    """The grounding objects of a ``<LOC>`` text as pixel shapes on a ``width`` x ``height`` image."""
    return [shape(g.box_2d, g.point, width, height, g.label, kind, who) for g in groundings(loc_text)]


def shape(box_2d, point, width: int, height: int, label: str, kind: str, who: str) -> dict:
    """A grid box or point as a pixel shape of a ``width`` x ``height`` image, for the SVG overlay."""
    if box_2d is not None:
        return box_shape(box_2d_to_pixels(box_2d, width, height), label, kind, who)
    cx, cy = point_to_pixels(point, width, height)
    return {"label": label, "kind": kind, "who": who, "cx": round(cx, 2), "cy": round(cy, 2)}


def box_shape(xyxy: tuple[float, float, float, float], label: str, kind: str, who: str) -> dict:
    """A pixel box ``(x1, y1, x2, y2)`` as the overlay's ``x, y, w, h``."""
    x1, y1, x2, y2 = xyxy
    return {"label": label, "kind": kind, "who": who,
            "x": round(x1, 2), "y": round(y1, 2), "w": round(x2 - x1, 2), "h": round(y2 - y1, 2)}


def stages(text: str) -> dict:
    """A response as the scaffold module reads it: the preamble and each stage in the order written,
    the problems found, and the raw text when there are any (so a broken response is seen as written)."""
    parsed = parse(text)
    segments = ([["", parsed.preamble]] if parsed.preamble else []) + [[t, parsed.sections[t]] for t in parsed.order]
    out: dict = {"segments": segments}
    if parsed.problems:
        out["problems"] = [str(p) for p in parsed.problems]
        out["raw"] = text
    return out


def _script(key: str, value: object) -> str:
    return f"MEDSAGE.register({json.dumps(key)}, {json.dumps(value, ensure_ascii=False, separators=(',', ':'))});\n"


def write_page(page: Page, out: Path) -> PageSummary:
    """Stream ``page.entries`` into chunk files and write the page's meta file; memory holds one chunk."""
    data = out / "data" / page.kind
    shutil.rmtree(data, ignore_errors=True)  # chunks of an earlier, larger site must not linger
    data.mkdir(parents=True)
    values: dict[str, dict[str, int]] = {name: {} for name in page.facets}
    codes: dict[str, list[str]] = {name: [] for name in page.facets}
    bits: dict[str, list[str]] = {name: [] for name in page.flags}
    chunk: list[dict] = []
    n = chunks = 0
    for entry in page.entries:
        for name in page.facets:
            index = values[name].setdefault(str(entry.facets.get(name, "")), len(values[name]))
            if index >= _MAX_VALUES:
                raise ValueError(f"facet {name!r} of {page.kind} has more than {_MAX_VALUES} values")
            codes[name].append(chr(_CODE_BASE + index))
        for name in page.flags:
            bits[name].append("1" if entry.flags.get(name) else "0")
        chunk.append(entry.body)
        n += 1
        if len(chunk) == CHUNK:
            _write_chunk(data, page.kind, chunks, chunk)
            chunks, chunk = chunks + 1, []
    if chunk:
        _write_chunk(data, page.kind, chunks, chunk)
        chunks += 1
    meta = {
        "kind": page.kind, "title": page.title, "n": n, "chunk": CHUNK, "sources": list(page.sources),
        "extra": page.extra, "code_base": _CODE_BASE,
        "facets": [{"name": k, "label": label, "values": list(values[k]), "codes": "".join(codes[k])}
                   for k, label in page.facets.items()],
        "flags": [{"name": k, "label": label, "bits": "".join(bits[k])} for k, label in page.flags.items()],
    }
    (data / "meta.js").write_text(_script(f"{page.kind}/meta", meta), encoding="utf-8")
    return PageSummary(page.kind, page.title, n, chunks)


def _write_chunk(data: Path, kind: str, k: int, bodies: list[dict]) -> None:
    (data / f"c{k}.js").write_text(_script(f"{kind}/c{k}", bodies), encoding="utf-8")


def _shell(title: str, body: str, scripts: str = "") -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="assets/explore.css"></head>
<body>{body}
{scripts}</body></html>
"""


def _nav(pages: list[PageSummary], current: str) -> str:
    here = ' class="here"'
    links = "".join(f'<a href="{p.kind}.html"{here if p.kind == current else ""}>{html.escape(p.title)} ({p.entries})</a>'
                    for p in pages)
    return f'<nav><a href="index.html">MEDSAGE explorer</a>{links}</nav>'


def write_site(pages: list[Page], out: Path) -> list[PageSummary]:
    """Write every page, its shell, the shared assets and ``index.html`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "assets").mkdir(exist_ok=True)
    for name in ("explore.js", "explore.css"):
        shutil.copyfile(STATIC / name, out / "assets" / name)
    summaries = [write_page(page, out) for page in pages]
    for page, summary in zip(pages, summaries):
        scripts = (f'<script src="assets/explore.js" charset="utf-8"></script>\n'
                   f'<script src="data/{page.kind}/meta.js" charset="utf-8"></script>\n'
                   f'<script>MEDSAGE.start({json.dumps(page.kind)});</script>')
        body = _nav(summaries, page.kind) + '<header id="controls"></header><div id="status"></div><main id="items"></main>'
        (out / f"{page.kind}.html").write_text(_shell(f"{page.title} - MEDSAGE explorer", body, scripts), encoding="utf-8")
    rows = "".join(f'<li><a href="{s.kind}.html">{html.escape(s.title)}</a>: {s.entries} entries, from '
                   f'{html.escape(", ".join(p.sources))}</li>' for s, p in zip(summaries, pages))
    index = _nav(summaries, "") + f"<main><h1>MEDSAGE explorer</h1><ul>{rows}</ul></main>"
    (out / "index.html").write_text(_shell("MEDSAGE explorer", index), encoding="utf-8")
    return summaries
