"""The one answer matcher: the RL accuracy reward and the evaluation scorer both call it.

Three kinds of question, told apart by the reference (and options):

* multiple choice (``options`` given): the letter in any common form ("C", "(C)", "C.",
  "**C**", "The answer is C", "Answer: C") or the option's text inside a sentence. Naming two
  different options is wrong; nothing recognisable is wrong (never a random guess).
* yes/no (reference "yes" or "no"): whole words only and negation-aware, so "no" never matches
  "normal", "nodule" or "not"; a prediction that says both is wrong.
* open-ended: SQuAD-style normalisation (case, punctuation, articles, whitespace) and exact
  match, or the reference phrase stated un-negated inside a short answer sentence (the paper's
  answers read "Findings are most consistent with X"). Token precision/recall/F1 for reports.

Every public function is pure and total: any string (or non-string) in, a value out.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

LETTERS = "ABCDEFGHIJ"


class AnswerType(str, Enum):
    MULTIPLE_CHOICE = "multiple_choice"
    YES_NO = "yes_no"
    OPEN = "open"


@dataclass(frozen=True)
class TokenScores:
    """Bag-of-tokens overlap; a named record so callers cannot unpack the fields out of order."""

    precision: float
    recall: float
    f1: float


_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCT_TABLE = str.maketrans({c: " " for c in string.punctuation + "\u2013\u2014\u2018\u2019\u201c\u201d"})
_MARKUP_RE = re.compile(r"[*_`#]+")
_YES = frozenset({"yes", "yeah", "yep", "true", "correct", "affirmative"})
_NO = frozenset({"no", "nope", "false", "incorrect", "negative"})
# SLAKE's Chinese half answers closed questions with 是 / 否; a reply opens with its polarity.
_ZH_REFERENCE = {"是": "yes", "否": "no"}
_ZH_NO_PREFIXES = ("不是", "没有", "不", "否", "无")
_ZH_YES_PREFIXES = ("是", "有", "对", "正确")
_NEGATORS = frozenset({"not", "no", "never", "without", "absent", "absence", "neither", "nor", "negative", "denies", "free"})
_OPEN_EXTRA_TOKENS = 12  # an open answer may wrap the reference in this many extra words, no more
_NEGATION_WINDOW = 3
# The letter has to look like an option label, not the English article "A".
_LETTER_PATTERNS = (
    re.compile(r"^\s*[\(\[]?([A-J])[\)\]]?[.:]?\s*$"),  # "C", "(C)", "C.", "[C]"
    re.compile(r"^\s*[\(\[]?([A-J])[\)\].:]\s"),  # "C. Flexor pathology", "(C) ..."
    # "The answer is C", "Option C"; an "A"/"I" followed by a lower-case word is English, not a label
    re.compile(r"\b(?i:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*[\(\[]?(?:([A-J])(?![A-Za-z])(?<![AI](?=\s+[a-z])))"),
    re.compile(r"[\(\[]([A-J])[\)\]]"),  # "(C)" anywhere
    re.compile(r"^\s*([A-J])(?:\s*(?:,|/|\bor\b|\band\b)\s*[A-J])+\s*\.?\s*$"),  # "B or C": first of a list
    re.compile(r"(?:,|/|\bor\b|\band\b)\s*([A-J])\s*\.?\s*$"),  # ... and its last
)


def normalize(text: object) -> str:
    """SQuAD-style: lower case, punctuation and articles removed, whitespace collapsed."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = _MARKUP_RE.sub(" ", text.lower()).translate(_PUNCT_TABLE)
    return " ".join(_ARTICLES_RE.sub(" ", text).split())


def token_scores(prediction: object, reference: object) -> TokenScores:
    """Token-level precision, recall and F1 of the normalised texts (multiset overlap)."""
    pred, ref = normalize(prediction).split(), normalize(reference).split()
    if not pred or not ref:
        hit = float(pred == ref)
        return TokenScores(hit, hit, hit)
    counts: dict[str, int] = {}
    for tok in ref:
        counts[tok] = counts.get(tok, 0) + 1
    common = 0
    for tok in pred:
        if counts.get(tok, 0) > 0:
            counts[tok] -= 1
            common += 1
    if common == 0:
        return TokenScores(0.0, 0.0, 0.0)
    p, r = common / len(pred), common / len(ref)
    return TokenScores(p, r, 2 * p * r / (p + r))


def coerce_options(options: object) -> dict[str, str]:
    """Options as ``{letter: text}`` from a dict, a list of texts, or a JSON string of either.

    Parquet round trips turn dicts into structs with None for absent letters and lists into
    arrays, so every shape a data loader may hand over is accepted; anything else gives ``{}``.
    """
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            return {}
    if isinstance(options, dict):
        return {
            str(k).strip().upper(): str(v).strip()
            for k, v in options.items()
            if v is not None and str(k).strip().upper() in LETTERS and len(str(k).strip()) == 1
        }
    if hasattr(options, "tolist"):
        options = options.tolist()
    if isinstance(options, (list, tuple)):
        return {LETTERS[i]: str(v).strip() for i, v in enumerate(options[: len(LETTERS)]) if v is not None}
    return {}


def answer_type(reference: object, options: object = None) -> AnswerType:
    """Which kind of question a reference (and its options) describes."""
    if coerce_options(options):
        return AnswerType.MULTIPLE_CHOICE
    return AnswerType.YES_NO if _polarity_reference(reference) else AnswerType.OPEN


def extract_choice(prediction: object, options: object) -> str | None:
    """The single option letter a prediction names, or None (nothing, or two different options)."""
    return _choice(prediction, coerce_options(options))


def _choice(prediction: object, opts: dict[str, str]) -> str | None:
    if not isinstance(prediction, str) or not opts:
        return None
    plain = _MARKUP_RE.sub("", prediction)
    letters = {m.group(1) for pattern in _LETTER_PATTERNS for m in pattern.finditer(plain) if m.group(1) in opts}
    letters |= _options_named(normalize(prediction), opts)
    return letters.pop() if len(letters) == 1 else None


def _options_named(norm_pred: str, opts: dict[str, str]) -> set[str]:
    """Letters whose option text appears as whole words, ignoring mentions inside a longer option's."""
    spans = []
    padded = f" {norm_pred} "
    for letter, text in opts.items():
        needle = _normalized_option(text)
        if not needle:
            continue
        start = padded.find(f" {needle} ")
        while start != -1:
            spans.append((start, start + len(needle) + 1, letter))
            start = padded.find(f" {needle} ", start + 1)
    named = set()
    for s, e, letter in spans:
        inside_longer = any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans)
        if not inside_longer:
            named.add(letter)
    return named


@lru_cache(maxsize=65536)
def _normalized_option(text: str) -> str:
    """Option texts repeat across a whole benchmark or GRPO batch; normalise each once."""
    return normalize(text)


def yes_no(prediction: object) -> str | None:
    """"yes", "no", or None when the prediction says neither or both (whole words, negation-aware)."""
    zh = _MARKUP_RE.sub("", prediction).strip() if isinstance(prediction, str) else ""
    if zh.startswith(_ZH_NO_PREFIXES):
        return "no"
    if zh.startswith(_ZH_YES_PREFIXES):
        return "yes"
    tokens = normalize(prediction).split()
    if not tokens:
        return None
    if tokens[0] in _YES:
        return "yes"
    if tokens[0] in _NO:
        return "no"
    said = set()
    for i, tok in enumerate(tokens):
        if tok in _YES:
            said.add("no" if i > 0 and tokens[i - 1] == "not" else "yes")
        elif tok in _NO and not (i > 0 and tokens[i - 1] == "not"):
            said.add("no")
    return said.pop() if len(said) == 1 else None


def _polarity_reference(reference: object) -> str | None:
    """"yes"/"no" when the reference is a yes/no answer (English or Chinese), else None."""
    ref = normalize(reference)
    ref = _ZH_REFERENCE.get(ref, ref)
    return ref if ref in ("yes", "no") else None


def _open_match(prediction: str, reference: str) -> bool:
    pred, ref = normalize(prediction), normalize(reference)
    if not ref:
        return False
    if pred == ref:
        return True
    pred_tokens, ref_tokens = pred.split(), ref.split()
    if len(pred_tokens) > len(ref_tokens) + _OPEN_EXTRA_TOKENS:
        return False
    padded = f" {pred} "
    at = padded.find(f" {ref} ")
    while at != -1:
        before = padded[:at].split()[-_NEGATION_WINDOW:]
        if not _NEGATORS.intersection(before):
            return True
        at = padded.find(f" {ref} ", at + 1)
    return False


def match_answer(prediction: str, reference: str, options: dict[str, str] | None = None) -> bool:
    """Whether ``prediction`` gives the ``reference`` answer; never raises.

    For multiple choice ``reference`` is the correct letter (or the correct option's text).
    """
    try:
        opts = coerce_options(options)
        if opts:
            ref = str(reference).strip().strip("().").upper() if reference is not None else ""
            if ref not in opts:
                by_text = [k for k, v in opts.items() if normalize(v) == normalize(reference)]
                ref = by_text[0] if len(by_text) == 1 else ""
            return bool(ref) and _choice(prediction, opts) == ref
        if not isinstance(prediction, str):
            return False
        polarity = _polarity_reference(reference)
        if polarity:
            return yes_no(prediction) == polarity
        return _open_match(prediction, str(reference))
    except Exception:  # noqa: BLE001 - a reward must never take the trainer down
        return False
