"""Benchmark loaders: the public on-disk formats of the paper's Table 1 benchmarks (section 4.1) and
OmniMedVQA (appendix B.2), read into one :class:`Item` record.

Each loader reads the format as the dataset is distributed (HF parquet, SLAKE json, PMC-VQA csv,
MMMU parquet per subject, OmniMedVQA json per source dataset), and the layouts users have besides
(an HF dataset written by ``save_to_disk``, PathVQA's split called val or validation, PMC-VQA
images in ``figures/`` or ``images/``), and fails with an error that names the file, the row and
the field at fault, so a half-downloaded benchmark never turns into a silently smaller denominator.

Images travel as an :data:`ImageRef`: a file path (``str``) or the encoded bytes that HF parquet
files embed. :func:`load_image` is the one place that opens either.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
from PIL import Image

from medsage.config import missing_paths
from medsage.reward_fns.answers import LETTERS, AnswerType, answer_type, normalize, question_choices

if TYPE_CHECKING:
    from .config import BenchmarkSpec

ImageRef = str | bytes

MMMU_MEDICAL_SUBJECTS: tuple[str, ...] = (
    "Basic_Medical_Science",
    "Clinical_Medicine",
    "Diagnostics_and_Laboratory_Medicine",
    "Pharmacy",
    "Public_Health",
)


class BenchmarkFormatError(ValueError):
    """A benchmark file is missing, or a row lacks a field it must have."""


@dataclass(frozen=True)
class Item:
    """One benchmark question; ``answer`` is the option letter for multiple choice.

    ``choices`` are the two alternatives of a closed "A or B" question (scored as a choice, not by
    the lenient open matcher); ``rules`` names the open-question rules ("mmmu" for MMMU's own
    number-aware ones); ``subject``/``subfield`` are reported as slices (MMMU).
    """

    benchmark: str
    id: str
    question: str
    answer: str
    images: tuple[ImageRef, ...]
    options: dict[str, str] = field(default_factory=dict)
    closed: bool = True
    modality: str = ""
    question_type: str = ""
    choices: tuple[str, ...] = ()
    rules: str = "medsage"
    subject: str = ""
    subfield: str = ""
    # a copy asked again (see :func:`repeat_items`): the question it copies, its option rotation, its sample
    base_id: str = ""
    rotation: int = -1  # -1: options as published; 0..n-1: CircularEval rotation
    sample: int = 0

    @cached_property
    def kind(self) -> AnswerType:
        return answer_type(self.answer, self.options, self.choices)


def load_image(ref: ImageRef) -> Image.Image:
    """Open an image given by path or by encoded bytes, as RGB."""
    source = io.BytesIO(ref) if isinstance(ref, bytes) else ref
    with Image.open(source) as img:
        return img.convert("RGB")


# ---------------------------------------------------------------------------------------------
# helpers


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise BenchmarkFormatError(f"{what}: file not found: {path}")
    return path


def _need_columns(frame: pd.DataFrame, columns: tuple[str, ...], source: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BenchmarkFormatError(f"{source}: missing column(s) {missing}; found {list(frame.columns)}")


# Users name the held-out split either way (PathVQA's hub split is "validation").
_SPLIT_ALIASES = (("val", "validation", "valid", "dev"),)


def _split_names(split: str) -> tuple[str, ...]:
    for group in _SPLIT_ALIASES:
        if split in group:
            return (split, *(name for name in group if name != split))
    return (split,)


def _hf_tables(root: Path, split: str) -> list[tuple[Path, pd.DataFrame]]:
    """An HF dataset's split as (source file, frame) pairs, in either layout users have: the hub's
    parquet files (``<root>/data/<split>-00000-of-0000N-*.parquet``, or one file) or a folder
    written by ``datasets``' ``save_to_disk`` (a DatasetDict with ``dataset_dict.json``, or one
    Dataset with ``state.json``; Arrow stream files)."""
    if root.is_file():
        return [(root, pd.read_parquet(root))]
    names = _split_names(split)
    if (root / "dataset_dict.json").is_file():
        saved = json.loads((root / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        chosen = next((name for name in names if name in saved), None)
        if chosen is None:
            raise BenchmarkFormatError(f"{root / 'dataset_dict.json'}: no split {split!r} (aliases {names}); has {saved}")
        return _saved_dataset(root / chosen)
    if (root / "state.json").is_file():
        return _saved_dataset(root)
    for name in names:
        files = sorted(root.rglob(f"{name}-*.parquet"))
        if files:
            return [(path, pd.read_parquet(path)) for path in files]
    raise BenchmarkFormatError(
        f"no '{split}-*.parquet' file (nor a save_to_disk folder) under {root}; split names tried: {names}"
    )


def _saved_dataset(folder: Path) -> list[tuple[Path, pd.DataFrame]]:
    """One ``save_to_disk`` Dataset: the Arrow files its ``state.json`` lists, in order."""
    state = json.loads(_need_file(folder / "state.json", "saved HF dataset").read_text(encoding="utf-8"))
    tables = []
    for entry in state.get("_data_files", []):
        path = _need_file(folder / entry["filename"], f"{folder / 'state.json'}, '_data_files'")
        with pa.memory_map(str(path)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(source).read_all()
        tables.append((path, table.to_pandas()))
    if not tables:
        raise BenchmarkFormatError(f"{folder / 'state.json'}: lists no data file")
    return tables


def _first_file(paths: list[Path], what: str) -> Path:
    found = next((p for p in paths if p.is_file()), None)
    if found is None:
        raise BenchmarkFormatError(f"{what}: file not found in any of {[str(p) for p in paths]}")
    return found


def _image_bytes(cell: object, source: Path, row: int, column: str) -> bytes:
    """An HF ``Image`` feature cell: a struct ``{bytes, path}`` (or raw bytes)."""
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    if isinstance(cell, dict) and isinstance(cell.get("bytes"), (bytes, bytearray)):
        return bytes(cell["bytes"])
    raise BenchmarkFormatError(f"{source}, row {row}, field '{column}': no embedded image bytes")


def _text(value: object, source: Path, row: int, column: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        raise BenchmarkFormatError(f"{source}, row {row}, field '{column}': empty")
    return str(value).strip()


def _letter_of(answer: str, options: dict[str, str], source: Path, row: int, column: str) -> str:
    """The option letter an answer names: the letter itself ("B", "B:...") or the option's text."""
    head = re.match(r"^\s*\(?([A-J])\)?\s*(?:[:.)]|$)", answer)
    if head and head.group(1) in options:
        return head.group(1)
    by_text = [k for k, v in options.items() if normalize(v) == normalize(answer)]
    if len(by_text) == 1:
        return by_text[0]
    raise BenchmarkFormatError(f"{source}, row {row}, field '{column}': {answer!r} names none of the options {options}")


def _yes_no_closed(answer: str) -> bool:
    """VQA-RAD / PathVQA ship no closed flag: a question is closed when its answer is yes/no (as the matcher decides)."""
    return answer_type(answer) is AnswerType.YES_NO


# ---------------------------------------------------------------------------------------------
# loaders


def load_hf_vqa(name: str, root: str | Path, split: str = "test") -> list[Item]:
    """VQA-RAD / PathVQA as HF parquet (``image``, ``question``, ``answer``); closed = yes/no answer."""
    items = []
    for source, frame in _hf_tables(Path(root), split):
        _need_columns(frame, ("image", "question", "answer"), source)
        for row, rec in enumerate(frame.to_dict("records")):
            answer = _text(rec["answer"], source, row, "answer")
            items.append(
                Item(
                    benchmark=name,
                    id=f"{name}-{source.stem}-{row}",
                    question=_text(rec["question"], source, row, "question"),
                    answer=answer,
                    images=(_image_bytes(rec["image"], source, row, "image"),),
                    closed=_yes_no_closed(answer),
                    question_type="closed" if _yes_no_closed(answer) else "open",
                )
            )
    return items


def load_vqa_rad(root: str | Path, split: str = "test") -> list[Item]:
    """VQA-RAD (HF ``flaviagiammarino/vqa-rad``; 451 test questions)."""
    return load_hf_vqa("vqa_rad", root, split)


def load_pathvqa(root: str | Path, split: str = "test") -> list[Item]:
    """PathVQA (HF ``flaviagiammarino/path-vqa``; 6,719 test questions); ``val`` finds ``validation``."""
    return load_hf_vqa("pathvqa", root, split)


SLAKE_LANGUAGES = ("en", "zh", "both")


def load_slake(
    root: str | Path,
    language: str = "en",
    name: str = "slake",
    split_file: str = "test.json",
) -> list[Item]:
    """SLAKE: ``test.json`` + ``imgs/<img_name>``; ``answer_type`` OPEN/CLOSED; ``q_lang`` en or zh.

    ``language`` (recipe key ``options.language``): ``en`` (1,061 test items), ``zh`` (1,033) or
    ``both`` (the 2,094 MedEvalKit scores); any other value is an error, never 0 items (and the
    older key ``lang`` is an unknown option, named as such). A closed English question that offers
    two alternatives ("Is this a CT or MRI?") carries them as ``choices`` and is scored as that choice.
    The phantom benchmark of data_gen is written in this format and loads through here too.
    """
    if language not in SLAKE_LANGUAGES:
        raise BenchmarkFormatError(f"{name}: options.language must be one of {', '.join(SLAKE_LANGUAGES)}; got {language!r}")
    root = Path(root)
    source = _need_file(root / split_file, f"{name} questions")
    try:
        rows = json.loads(source.read_text(encoding="utf-8"))
    except ValueError as err:
        raise BenchmarkFormatError(f"{source}: not valid JSON ({err})") from err
    if not isinstance(rows, list):
        raise BenchmarkFormatError(f"{source}: expected a JSON list of questions")
    items = []
    for row, rec in enumerate(rows):
        if not isinstance(rec, dict):
            raise BenchmarkFormatError(f"{source}, row {row}: expected an object")
        for column in ("img_name", "question", "answer", "answer_type", "q_lang"):
            if column not in rec:
                raise BenchmarkFormatError(f"{source}, row {row}: missing field '{column}'")
        if language != "both" and rec["q_lang"] != language:
            continue
        items.append(_slake_item(rec, root, name, source, row))
    return items


def _slake_item(rec: dict, root: Path, name: str, source: Path, row: int) -> Item:
    image = _need_file(root / "imgs" / str(rec["img_name"]), f"{source}, row {row}, field 'img_name'")
    kind = str(rec["answer_type"]).upper()
    if kind not in ("OPEN", "CLOSED"):
        raise BenchmarkFormatError(f"{source}, row {row}, field 'answer_type': {kind!r} is not OPEN or CLOSED")
    question = _text(rec["question"], source, row, "question")
    answer = _text(rec["answer"], source, row, "answer")
    return Item(
        benchmark=name,
        id=f"{name}-{rec.get('qid', row)}",
        question=question,
        answer=answer,
        images=(str(image),),
        closed=kind == "CLOSED",
        modality=str(rec.get("modality", "")),
        question_type=str(rec.get("content_type", "")),
        choices=question_choices(question, answer) if kind == "CLOSED" else (),
    )


_PMC_IMAGE_DIRS = ("figures", "images")


def load_pmc_vqa(root: str | Path, csv_name: str = "test_2.csv", image_dir: str | None = None) -> list[Item]:
    """PMC-VQA: ``test_2.csv`` (Figure_path, Question, Choice A-D as "A:...", Answer) + images.

    The release's images unzip to ``figures/``; MedEvalKit looks there first, then in ``images/``,
    and so does this loader, per image, unless ``image_dir`` names the one folder to use.
    """
    root = Path(root)
    folders = (image_dir,) if image_dir else _PMC_IMAGE_DIRS
    source = _need_file(root / csv_name, "PMC-VQA questions")
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    choices = tuple(f"Choice {letter}" for letter in "ABCD")
    _need_columns(frame, ("Figure_path", "Question", "Answer", *choices), source)
    items = []
    for row, rec in enumerate(frame.to_dict("records")):
        options = {}
        for letter, column in zip("ABCD", choices):
            text = re.sub(rf"^\s*{letter}\s*:\s*", "", rec[column]).strip()
            if text:
                options[letter] = text
        candidates = [root / folder / rec["Figure_path"] for folder in folders]
        image = _first_file(candidates, f"{source}, row {row}, field 'Figure_path'")
        items.append(
            Item(
                benchmark="pmc_vqa",
                id=f"pmc_vqa-{rec.get('index') or row}",
                question=_text(rec["Question"], source, row, "Question"),
                answer=_letter_of(_text(rec["Answer"], source, row, "Answer"), options, source, row, "Answer"),
                images=(str(image),),
                options=options,
                question_type="multiple_choice",
            )
        )
    return items


def load_mmmu_med(
    root: str | Path, split: str = "validation", subjects: tuple[str, ...] = MMMU_MEDICAL_SUBJECTS
) -> list[Item]:
    """MMMU-Med: ``<root>/<Subject>/<split>-*.parquet`` (or each subject saved with ``save_to_disk``);
    ``options`` a Python-list string, ``answer`` a letter, images ``image_1``..``image_7``
    referenced as ``<image N>`` in the question and the options (see :func:`_mmmu_images`).
    ``question_type`` (multiple-choice / open) and ``subfield`` are read and reported; open
    questions are scored by MMMU's own number-aware rules (``rules="mmmu"``). ``img_type`` says
    what kind of picture it is (a chart, a micrograph), not an imaging modality, so it is not used
    as one."""
    items = []
    for subject in subjects:
        for source, frame in _hf_tables(Path(root) / subject, split):
            _need_columns(frame, ("id", "question", "options", "answer", "image_1"), source)
            for row, rec in enumerate(frame.to_dict("records")):
                items.append(_mmmu_item(rec, subject, source, row))
    return items


_MMMU_IMAGE_MARK = re.compile(r"<image (\d+)>")
_MMMU_MAX_IMAGES = 7


def _mmmu_images(rec: dict, texts: list[str], source: Path, row: int) -> tuple[list[str], tuple[bytes, ...]]:
    """MMMU's ``<image N>`` markers made to agree with the images the model is shown.

    The strongest suites show a Qwen2.5-VL the images a question mentions, in its question and in
    its options (lmms-eval's ``mmmu_doc_to_visual`` collects markers from both; options such as
    "<image 3>" are images themselves). Here the images come in order of first mention (question,
    then options), any image of the row that no text mentions after them, all before the text as
    in the SFT data; each marker becomes ``(image k)``, k the image's place in that order, so "the
    first image" the model sees is "(image 1)" in the text. A marker naming an empty
    ``image_N`` is an error: the question could not be answered as asked.
    """
    mentioned = list(dict.fromkeys(int(n) for text in texts for n in _MMMU_IMAGE_MARK.findall(text)))
    present = [n for n in range(1, _MMMU_MAX_IMAGES + 1) if rec.get(f"image_{n}") is not None]
    for n in mentioned:
        if n not in present:
            raise BenchmarkFormatError(
                f"{source}, row {row}, field 'image_{n}': the text refers to <image {n}>, the row has no such image"
            )
    order = mentioned + [n for n in present if n not in mentioned]
    place = {n: k for k, n in enumerate(order, 1)}
    rewritten = [_MMMU_IMAGE_MARK.sub(lambda m: f"(image {place[int(m.group(1))]})", text) for text in texts]
    return rewritten, tuple(_image_bytes(rec[f"image_{n}"], source, row, f"image_{n}") for n in order)


def _mmmu_item(rec: dict, subject: str, source: Path, row: int) -> Item:
    try:
        listed = ast.literal_eval(rec["options"]) if isinstance(rec["options"], str) else list(rec["options"])
    except (ValueError, SyntaxError) as err:
        raise BenchmarkFormatError(f"{source}, row {row}, field 'options': not a Python list ({err})") from err
    options = {LETTERS[i]: str(text).strip() for i, text in enumerate(listed)}
    answer = _text(rec["answer"], source, row, "answer")
    if options:
        answer = _letter_of(answer, options, source, row, "answer")
    question = _text(rec["question"], source, row, "question")
    (question, *option_texts), images = _mmmu_images(rec, [question, *options.values()], source, row)
    if not images:
        raise BenchmarkFormatError(f"{source}, row {row}, field 'image_1': no image")
    return Item(
        benchmark="mmmu_med",
        id=str(rec["id"]),
        question=question,
        answer=answer,
        images=images,
        options=dict(zip(options, option_texts)),
        closed=bool(options),
        question_type=str(rec.get("question_type") or ("multiple-choice" if options else "open")),
        rules="medsage" if options else "mmmu",
        subject=subject,
        subfield=str(rec.get("subfield") or ""),
    )


def load_omnimedvqa(root: str | Path, access: str = "Open-access") -> list[Item]:
    """OmniMedVQA: ``QA_information/<access>/*.json`` (question, option_A-D, gt_answer as option text,
    image_path relative to ``root``, modality_type, question_type). At least one released file
    (``Chest CT Scan.json``) keys the modality ``modality``; either key is read."""
    root = Path(root)
    folder = root / "QA_information" / access
    files = sorted(folder.glob("*.json"))
    if not files:
        raise BenchmarkFormatError(f"no OmniMedVQA question file (*.json) in {folder}")
    items = []
    for source in files:
        rows = json.loads(source.read_text(encoding="utf-8"))
        for row, rec in enumerate(rows):
            items.append(_omnimed_item(root, rec, source, row))
    return items


def _omnimed_item(root: Path, rec: dict, source: Path, row: int) -> Item:
    for column in ("question", "gt_answer", "image_path", "option_A", "option_B"):
        if column not in rec:
            raise BenchmarkFormatError(f"{source}, row {row}: missing field '{column}'")
    options = {
        letter: str(rec[f"option_{letter}"]).strip() for letter in "ABCD" if rec.get(f"option_{letter}") not in (None, "")
    }
    image = _need_file(root / str(rec["image_path"]), f"{source}, row {row}, field 'image_path'")
    return Item(
        benchmark="omnimedvqa",
        id=f"omnimedvqa-{rec.get('question_id', f'{source.stem}-{row}')}",
        question=_text(rec["question"], source, row, "question"),
        answer=_letter_of(_text(rec["gt_answer"], source, row, "gt_answer"), options, source, row, "gt_answer"),
        images=(str(image),),
        options=options,
        modality=str(rec.get("modality_type") or rec.get("modality") or ""),
        question_type=str(rec.get("question_type", "")),
    )


LOADERS: dict[str, Callable[..., list[Item]]] = {
    "vqa_rad": load_vqa_rad,
    "slake": load_slake,
    "pathvqa": load_pathvqa,
    "pmc_vqa": load_pmc_vqa,
    "mmmu_med": load_mmmu_med,
    "omnimedvqa": load_omnimedvqa,
    "phantom": lambda root, **kw: load_slake(root, name="phantom", **kw),
}


def load_benchmarks(specs: Sequence[BenchmarkSpec]) -> list[list[Item]]:
    """Every benchmark of a recipe, loaded before any model; the paths that do not exist are named
    all at once by their recipe keys, so one run of the command shows every one to fix."""
    missing = missing_paths((f"benchmarks.{i}.path ({spec.name})", spec.path) for i, spec in enumerate(specs))
    if missing:
        raise BenchmarkFormatError("; ".join(missing))
    return [load_benchmark(spec.name, spec.path, spec.limit, **spec.options) for spec in specs]


def load_benchmark(
    name: str, path: str | Path, limit: int | None = None, circular: bool = False, samples: int = 1, **options: object
) -> list[Item]:
    """Load a benchmark by its name in :data:`LOADERS`; ``limit`` keeps the first N questions;
    ``circular`` and ``samples`` (recipe ``options.circular`` / ``options.samples``) ask each
    question again (:func:`repeat_items`); the other options are the loader's own keywords."""
    if name not in LOADERS:
        raise BenchmarkFormatError(f"unknown benchmark {name!r}; known: {sorted(LOADERS)}")
    _check_options(name, options)
    items = LOADERS[name](path, **options)
    _check_unique_ids(items, name)
    return repeat_items(items[:limit] if limit is not None else items, bool(circular), int(samples))


def repeat_items(items: list[Item], circular: bool = False, samples: int = 1) -> list[Item]:
    """Each question asked several times, for the robustness checks beyond the suites' single pass.

    ``circular``: VLMEvalKit's CircularEval: a multiple-choice question with n options is asked n
    times with its options rotated (the right letter moves), and scores right only when every
    rotation is answered right, so a model that favours a position gains nothing. ``samples``:
    each question (and rotation) is generated that many times, for mean accuracy and pass@k
    (sampled decoding needs a temperature above 0). Copies get ids ``<id>|c<rotation>|s<sample>``.
    """
    if samples < 1:
        raise BenchmarkFormatError(f"options.samples must be at least 1; got {samples}")
    if not circular and samples == 1:
        return items
    out = []
    for item in items:
        rotations = range(len(item.options)) if circular and item.options else (None,)
        for r in rotations:
            rotated = _rotated(item, r) if r is not None else item
            for k in range(samples):
                tag = (f"|c{r}" if r is not None else "") + f"|s{k}"
                out.append(replace(rotated, id=f"{item.id}{tag}", base_id=item.id, sample=k))
    return out


def _rotated(item: Item, r: int) -> Item:
    """``item`` with its option texts shifted ``r`` places (option r becomes A) and the answer following."""
    letters, texts = list(item.options), list(item.options.values())
    turned = texts[r:] + texts[:r]
    answer = letters[(letters.index(item.answer) - r) % len(letters)] if item.answer in letters else item.answer
    return replace(item, options=dict(zip(letters, turned)), answer=answer, rotation=r)


def _check_options(name: str, options: dict) -> None:
    """A misspelt loader option is an error naming the recipe key, not a TypeError (or 0 items)."""
    loader = load_slake if name == "phantom" else LOADERS[name]
    accepted = [p for p in inspect.signature(loader).parameters if p not in ("root", "name")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise BenchmarkFormatError(f"{name}: unknown option(s) {['options.' + k for k in unknown]}; accepted: {accepted}")


def _check_unique_ids(items: list[Item], name: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise BenchmarkFormatError(f"{name}: duplicate question id {item.id!r}; predictions could not be resumed")
        seen.add(item.id)

