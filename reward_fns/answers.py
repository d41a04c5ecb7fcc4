"""The one answer matcher: the RL accuracy reward and the evaluation scorer both call it
(DESIGN "One answer matcher"), so a scoring error here is also a reward-hacking opportunity.

Kinds of question, told apart by the reference (and options / the two alternatives of an
"A or B" question):

* multiple choice (``options`` given): the letter in any form models write ("C", "c", "(C)",
  "C.", "**C**", ``\\boxed{C}``, "The answer is C", "I choose C", "C is correct", "Probably C",
  "Based on the findings, C.", in Chinese text "答案是C", "选C", "C选项") or the option's text inside
  a sentence. A mention that is negated or rejected ("not B", "rather than B", "B is incorrect",
  "不是B") does not name its option, so "C, not B" is C
  (and "Left, not right" is left: only "is not right" says wrong), and a list of labels is rejected
  together ("Options A, C and D are incorrect"); two options named is wrong ("A or B"); a rejected
  option text selects the option that states its absence ("No pneumothorax"), and rejecting all
  options but one selects that one ("Not benign." of two, "Not A, B or D."); a numeric option is named
  by its number word too ("Three."), "Both" beside left and right by "Bilateral", any option by its
  position ("Option 3", "the third option", "the last choice") unless an option's text is a number; a
  short answer naming only the last word of one option's text, which ends no other option's, names that
  option ("Effusion." for "Pleural effusion").
* yes/no (reference "yes"/"no", or SLAKE's Chinese closed forms 是/是的/不是/否, 有/没有, 包含/不包含,
  可以/不可以, 正常/不正常, ...; a Chinese reply also by statement: 未见/没有发现 X says no, 可见/存在 X
  yes, 可能/疑似 nothing, 没有异常 "normal" against the question, 这是CT图像 no to 这是MRI吗, 女性 no to 是男性吗,
  轴位 yes to 是横断面吗, 心脏增大 yes and 心脏大小正常 no to 心脏增大了吗): whole
  words only, so "no" never matches "normal", "nodule" or "notable"; a reply that says both ("Yes and no", "No. Actually, yes") is no answer, and so is a "yes"
  that denies the asked thing ("Yes, there is no fracture." to "Is there a fracture?"). Without a
  yes/no word, statements decide: "X is not seen / ruled out / unlikely", "negative for X" say no,
  "positive for X" says yes, "X cannot be excluded" is a hedge (no answer); so do short replies
  ("Probably not", "Not at all", "I don't think so", "None", "Nothing is seen", "N" say no; "Of course",
  "Certainly", "I think so", "Seen.", "Y" say yes; "There is" / "It does not" echo the question). With the
  question, "not normal" and "nothing abnormal" answer "Is it normal?" (as "No acute abnormality" does,
  yes); a restatement of the whole question affirms it ("The heart is enlarged.", "Enlarged heart.", and
  the bare "Enlarged." for "Is the heart enlarged?" and "Is the left kidney enlarged?", but not "MRI."
  for "Is this a T1 weighted MRI?"),
  as "not enlarged", "The heart size is normal." and an opposite ("Benign." to "Is the lesion
  malignant?") deny it, as "within normal limits" does; an existence statement about the asked thing
  ("There is a mass", "There appears to be a mass", "A mass is present", "The image shows a mass", "Findings
  are consistent with / suggestive of a mass", telegraphic "Mass present." or "Small mass." for "Is there a
  mass?", "Unremarkable except for a small mass") says yes unless hedged ("there may be") or about another
  thing ("There is a nodule", "There is pleural thickening" for a pleural effusion, "a cyst rather than a
  mass"); "Mass absent.", "Without (any) evidence of a mass", "The liver is free of masses", "Mass-free",
  "Absence of a mass", "Mass was excluded" and "Non-contrast CT." to "Was contrast used?" say no (but a word the
  question denies itself is not asked: "Is this a non-contrast CT?"), and "No (definite) abnormal findings" says
  normal; "The liver is (not) included / shown" says whether it is there; an abnormal predicate of the asked
  subject says no to "Is the heart (size) normal?" ("Cardiomegaly."); an opposite denies ("diseased" healthy,
  "asymmetric"); a finding of the asked organ, in its own phrase, says it is not normal ("There is a mass in
  the left lung." to "Is the lung healthy?", not "Clear lungs with cardiomegaly."); another kind of image,
  view or patient than the asked one says no ("This is a CT scan." to "Is this an MRI?", "AP view." to "Is
  this a PA film?", "Coronal." to "Is this an axial image?", "Female." to "Is this a male?"); a finding stated answers a
  question about the whole image ("There is a large mass in the liver." says yes to "Is there any
  abnormality?" and no to "Is this image normal?").
* either-or (``choices``, the two alternatives a closed "A or B" question names, or a Chinese
  "A还是B" one): the reference must be named and the other alternative not; rejecting one alone names the
  other ("It is not benign." of benign or malignant), and so does the opposite comparative ("The spleen is
  smaller than the liver." to "Is the liver or the spleen larger?"). A reference "Both"
  ("Which lung is abnormal, left or right?") is right when both are named ("Left and right.") or
  "both" is said ("Bilateral." too, of left and right); one alone or "Neither." is wrong.
* open-ended: SQuAD-style normalisation and exact match, or the reference stated un-negated in a
  short answer sentence (the paper's answers read "Findings are most consistent with X"). Negation
  and hedging count before ("no X", "rule out X", "no definite evidence of X", "argue against X")
  and after the finding ("X is unlikely", "X cannot be excluded", "X - no"); a list of candidates
  ("X or Y") or extra listed items is wrong; multi-part references match in any order, and so does a
  name written the other way round ("Kidney, left"; "Aneurysm of the aorta" for "Aortic aneurysm"; "The
  heart is enlarged." for "Cardiomegaly");
  modality spellings (X-ray, Xray, x ray, radiograph) are one word, British spellings are American ones
  (haemorrhage, oedema, tumour), radiology's abbreviations are their words (LLL, RUQ, T2WI, GI, HCC, ACL,
  DWI, SBO, PTX), "nothing found" in its usual forms is one
  answer ("None" = "Normal" = "No abnormality seen" = "Unremarkable"), plurals (Greek ones too:
  metastases; and masses, abscesses) meet singulars, density and signal in plain words are the terms ("Low
  density" hypodense, "High signal" hyperintense), the frontal plane is the coronal one,
  contrast in VQA-RAD's two answers ("Contrast-enhanced",
  "With IV contrast" are "with contrast"; "Non-contrast", "Unenhanced" "without contrast"), "several" is
  "multiple", a mammogram is mammography and positron emission
  tomography PET, words that name one thing are one word (an organ's
  adjective is the organ: "Renal." for "Kidney"; "Thorax" is the chest, "Cardiomegaly" an enlarged heart,
  "Posteroanterior" PA, "Woman" female, "Hypo-dense" hypodense, "Lower left lobe" the left lower lobe; a
  finding's other forms are the finding: "Calcified", "Bleeding", "Dilation", "Infarction"; a plain
  name is the medical one: "Free air under the diaphragm" pneumoperitoneum, "Gallstones"
  cholelithiasis, "Hepatic steatosis" fatty liver), in options
  and yes/no questions too; "non" joins its word ("Non-calcified nodule" states no calcification,
  "Non-small cell lung cancer" no small cell lung cancer); "unlike X", "rather than X", "free of X" and
  "X-free" reject X, but "free air" and "free fluid" are findings;
  Chinese answers match inside a reply, 脏/部 and 侧/边 optional (肝 is 肝脏, 左侧肺 左肺; "右侧。" names 右肺 of
  左肺还是右肺), 未 negates (未见X), an English reply's organ, side, region, plane and finding words answer a
  Chinese question ("The left lung." is 左肺) unless it negates or names another organ or finding, modality names
  one (磁共振 is MRI, X线 X光), a list of items (和/、) in any order but not more items than the reference;
  numeric references compare values (decimals, fractions, number words, Chinese numerals, units,
  thousands separators, ordinals: "Fifth rib." for "5th"), and a number denied, bounded or hedged is not
  stated ("Not 2.", "More than 2.", "At least 2.", "2 cannot be excluded", "没有两个"; "Not 3, but 2." states 2).
  ``rules="mmmu"`` scores open questions with MMMU's own number-aware rules instead.

:func:`extract_answer` finds the answer in a response: the ``<ANSWER>`` stage, or (unless the
caller requires the stage, as the RL reward does) the fallbacks the strongest evaluation suites
use: ``\\boxed{}``, "the answer is ...", the final line.

Every public function is total: any string (or non-string) in, a value out, in time linear in the
input (a 200 KB response is scored in milliseconds).
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import string
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from itertools import islice, pairwise, takewhile
from typing import NamedTuple

from .scaffold import answer_text
from .word_patterns import any_word_pattern

LETTERS = "ABCDEFGHIJ"


class AnswerType(str, Enum):
    MULTIPLE_CHOICE = "multiple_choice"
    YES_NO = "yes_no"
    EITHER_OR = "either_or"
    OPEN = "open"


@dataclass(frozen=True)
class TokenScores:
    """Bag-of-tokens overlap; a named record so callers cannot unpack the fields out of order."""

    precision: float
    recall: float
    f1: float


class Verdict(NamedTuple):
    """``answered`` False is a parse failure (the prediction gives no readable answer); then
    ``correct`` is False too. Evaluation counts parse failures as wrong and reports their rate."""

    answered: bool
    correct: bool


# "a", "an", "the" as words; found from their first letter (the engine searches a literal set fast)
_ARTICLES_RE = re.compile(r"[at](?<=\b[at])(?:(?<=a)n?|(?<=t)he)\b")
# Punctuation reads as a space, and so do the ASCII control characters that are not whitespace (they are
# no part of a word): after the table an ASCII text holds letters, digits and whitespace only.
_CONTROL = "".join(chr(c) for c in (*range(0x00, 0x09), *range(0x0E, 0x1C), 0x7F))
_PUNCT_TABLE = str.maketrans({c: " " for c in string.punctuation + _CONTROL + "\u2013\u2014\u2018\u2019\u201c\u201d"})
_ARTICLE_WORDS = frozenset({"a", "an", "the"})
_MARKUP_RE = re.compile(r"[*_`#$]+")


def _strip_markup(text: str) -> str:
    """``_MARKUP_RE.sub("", text)``; the scan skipped when no markup character occurs (most answers)."""
    if "*" in text or "_" in text or "`" in text or "#" in text or "$" in text:
        return _MARKUP_RE.sub("", text)
    return text
_MARKUP_TABLE = str.maketrans({c: " " for c in "*_`#$"})


def _ascii_table(table: dict[int, str]) -> bytes:
    out = bytearray(range(256))
    for code, repl in table.items():
        if code < 128:
            out[code] = ord(repl)
    return bytes(out)


_PUNCT_BYTES, _MARKUP_BYTES = _ascii_table(_PUNCT_TABLE), _ascii_table(_MARKUP_TABLE)


def _translate(text: str, table: dict[int, str], ascii_table: bytes) -> str:
    """``text.translate(table)``; ASCII text through the bytes table (the same mapping, many times faster)."""
    if text.isascii():
        return text.encode("ascii").translate(ascii_table).decode("ascii")
    return text.translate(table)
_CONTRACTIONS = ((re.compile(r"\bcan[\u2019']t\b"), "cannot"), (re.compile(r"\bwon[\u2019']t\b"), "will not"),
                 (re.compile(r"n[\u2019']t\b"), " not"))


def normalize(text: object) -> str:
    """SQuAD-style: lower case, punctuation and articles removed, whitespace collapsed
    ("isn't" reads "is not", so negation survives the punctuation)."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = text.lower()
    if "'" in text or "\u2019" in text:
        text = _translate(text, _MARKUP_TABLE, _MARKUP_BYTES)  # before the contractions: "_can't" is "cannot"
        for pattern, repl in _CONTRACTIONS:
            text = pattern.sub(repl, text)
    elif text.isascii():
        return " ".join(_ascii_words(text))
    # the markup characters are punctuation too: without a contraction between, one translation does both
    return " ".join(_ARTICLES_RE.sub(" ", _translate(text, _PUNCT_TABLE, _PUNCT_BYTES)).split())


def _ascii_words(lowered: str) -> list[str]:
    """:func:`normalize`'s words of a lower-cased ASCII text without apostrophes: after the table every
    whitespace-separated token is a whole word (letters and digits), so the articles are tokens to drop."""
    words = lowered.encode("ascii").translate(_PUNCT_BYTES).decode("ascii").split()
    return [w for w in words if w not in _ARTICLE_WORDS]


# British spellings of medical words, made American (haemorrhage, anaemia, oedema, oesophagus, tumour);
# each holds "ae", "oe" or "our", which is looked for first
_BRITISH = {
    "haem": "hem", "aemi": "emi", "paed": "ped", "gynaec": "gynec", "caec": "cec", "faec": "fec", "aetiol": "etiol",
    "praevi": "previ", "oedem": "edem", "oesophag": "esophag", "oestr": "estr", "coeliac": "celiac", "rrhoea": "rrhea",
    "pnoea": "pnea", "foet": "fet", "tumour": "tumor", "colour": "color",
}
_BRITISH_RE = re.compile("|".join(_BRITISH))
# Radiology's abbreviations of lobes, quadrants, MR sequences, structures and diagnoses
_ABBREVIATIONS = {
    "rul": "right upper lobe", "rml": "right middle lobe", "rll": "right lower lobe", "lul": "left upper lobe",
    "lll": "left lower lobe", "ruq": "right upper quadrant", "rlq": "right lower quadrant",
    "luq": "left upper quadrant", "llq": "left lower quadrant",
    "t1w": "t1 weighted", "t1wi": "t1 weighted", "t2w": "t2 weighted", "t2wi": "t2 weighted",
    "dwi": "diffusion weighted", "adc": "apparent diffusion coefficient", "acl": "anterior cruciate ligament",
    "pcl": "posterior cruciate ligament", "mcl": "medial collateral ligament", "ivc": "inferior vena cava",
    "svc": "superior vena cava", "hcc": "hepatocellular carcinoma", "rcc": "renal cell carcinoma",
    "nsclc": "non small cell lung cancer", "sclc": "small cell lung cancer", "gbm": "glioblastoma",
    "copd": "chronic obstructive pulmonary disease", "ards": "acute respiratory distress syndrome",
    "chf": "congestive heart failure", "sah": "subarachnoid hemorrhage", "sdh": "subdural hematoma",
    "edh": "epidural hematoma", "ich": "intracerebral hemorrhage", "avm": "arteriovenous malformation",
    "dvt": "deep vein thrombosis", "aaa": "abdominal aortic aneurysm", "tb": "tuberculosis",
    "sbo": "small bowel obstruction", "lbo": "large bowel obstruction", "ptx": "pneumothorax",
    "mca": "middle cerebral artery", "ica": "internal carotid artery",
}
_ABBREVIATION_RE = re.compile(rf"\b(?:{'|'.join(_ABBREVIATIONS)})\b")
# Words that name one thing: an organ's adjective is the organ ("Renal." answers "Which organ?" with "Kidney"),
# an enlarged organ's one-word name is its two words, radiograph views and sexes have one name each
_SAME_THING = {
    "renal": "kidney", "hepatic": "liver", "pulmonary": "lung", "cardiac": "heart", "cerebral": "brain",
    "cerebellar": "cerebellum", "gastric": "stomach", "splenic": "spleen", "pancreatic": "pancreas",
    "esophageal": "esophagus", "duodenal": "duodenum", "colonic": "colon", "rectal": "rectum", "uterine": "uterus",
    "ovarian": "ovary", "prostatic": "prostate", "testicular": "testis", "tracheal": "trachea", "aortic": "aorta",
    "osseous": "bone", "bony": "bone", "thorax": "chest", "thoracic": "chest", "abdominal": "abdomen",
    "pelvic": "pelvis", "cardiomegaly": "enlarged heart", "hepatomegaly": "enlarged liver",
    "splenomegaly": "enlarged spleen", "gi": "gastrointestinal", "cns": "central nervous system", "cxr": "chest xray",
    "posteroanterior": "pa", "postero anterior": "pa", "posterior anterior": "pa", "anteroposterior": "ap",
    "antero posterior": "ap", "anterior posterior": "ap", "several": "multiple", "numerous": "multiple",
    "man": "male", "men": "male", "woman": "female", "women": "female", "grey": "gray", "covid 19": "covid",
    "covid19": "covid", "rim enhancing": "ring enhancing", "rim enhancement": "ring enhancement",
    # a finding's adjective or other noun is the finding ("Calcified granuloma" states calcification); the abnormal
    # predicates keep their participle, which the yes/no restatement rules read ("Dilation." is "dilated")
    "calcified": "calcification", "calcific": "calcification", "fractured": "fracture", "hemorrhagic": "hemorrhage",
    "bleeding": "hemorrhage", "bleed": "hemorrhage", "infarction": "infarct", "infarcted": "infarct",
    "necrotic": "necrosis", "fibrotic": "fibrosis", "sclerotic": "sclerosis", "cirrhotic": "cirrhosis",
    "stenotic": "stenosis", "nodular": "nodule", "atrophic": "atrophy", "ischemic": "ischemia",
    "inflamed": "inflammation", "inflammatory": "inflammation", "consolidated": "consolidation",
    "metastatic": "metastasis", "malignancy": "malignant", "hypertrophic": "hypertrophy", "hyperplastic": "hyperplasia",
    "neoplastic": "neoplasm", "perforated": "perforation", "emphysematous": "emphysema", "aneurysmal": "aneurysm",
    "granulomatous": "granuloma", "cancerous": "cancer", "enlargement": "enlarged", "dilation": "dilated",
    "dilatation": "dilated", "distension": "distended", "distention": "distended", "thickening": "thickened",
    "herniation": "herniated", "obstruction": "obstructed", "swelling": "swollen", "edema": "edematous",
    "narrowing": "narrowed", "widening": "widened", "displacement": "displaced", "deviation": "deviated",
}
_SAME_THING_RE = re.compile(rf"\b(?:{'|'.join(_SAME_THING)})\b")
# A density or signal prefix written apart ("hypo-dense") is one word with its stem, and so is "non" with any word
# ("non-calcified" states no calcification; non-small cell lung cancer is no small cell lung cancer)
_PREFIXES, _PREFIXED = ("hypo", "hyper", "iso"), (
    "dense", "density", "intense", "intensity", "echoic", "echogenic", "attenuating", "attenuation", "enhancing",
    "enhanced", "contrast")
# A side comes before a level: "lower left lobe" is the left lower lobe, "upper right quadrant" the RUQ
_LEVELS, _SIDES = ("upper", "middle", "lower"), ("left", "right")
# A finding's plain name is its medical one (after the words above: "renal calculi" reads "kidney calculi" here)
_PLAIN_NAMES = (
    (r"free (?:intraperitoneal |abdominal )?air(?: under diaphragm)?", "pneumoperitoneum"),
    (r"kidney (?:stones?|calculi|calculus)", "nephrolithiasis"),
    (r"gall ?stones?|gallbladder (?:stones?|calculi)", "cholelithiasis"),
    (r"heart attack|mi", "myocardial infarction"),
    (r"blood clots?", "thrombus"),
    (r"liver steatosis|steatosis of liver|fatty infiltration of liver", "fatty liver"),
    (r"hypo ?attenuat(?:ing|ion)|low (?:density|attenuation)", "hypodense"),
    (r"hyper ?attenuat(?:ing|ion)|high (?:density|attenuation)", "hyperdense"),
    (r"low signal(?: intensity)?", "hypointense"),
    (r"high signal(?: intensity)?", "hyperintense"),
    (r"frontal planes?", "coronal"),  # the coronal plane's other name
    # VQA-RAD's "with contrast" / "without contrast" ("Contrast-enhanced CT", "With IV contrast", "Non-contrast"), the
    # absence one word, so no negator stands before what follows it
    (r"(?:iv|intravenous) contrast", "contrast"),
    (r"contrast enhanced|post ?contrast", "with contrast"),
    (r"without contrast|nonenhanced|unenhanced|pre ?contrast", "noncontrast"),
)

# Spellings of one thing, made one token so "X-ray" = "Xray" = "x ray" and plurals meet singulars.
# (pattern, replacement) pairs applied in order with ``pattern.sub``
_Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]
_SPELLINGS: tuple[_Rule, ...] = (
    (_BRITISH_RE, lambda m: _BRITISH[m.group(0)]),
    (_ABBREVIATION_RE, lambda m: _ABBREVIATIONS[m.group(0)]),
    (re.compile(rf"\b({'|'.join(_PREFIXES)}) ({'|'.join(_PREFIXED)})\b"), r"\1\2"),
    (re.compile(r"\bnon (?=\w)"), "non"),
    (_SAME_THING_RE, lambda m: _SAME_THING[m.group(0)]),
    (re.compile(rf"\b({'|'.join(_LEVELS)}) ({'|'.join(_SIDES)})\b"), r"\2 \1"),
    *((re.compile(rf"\b(?:{pattern})\b"), name) for pattern, name in _PLAIN_NAMES),
    (re.compile(r"\b(?:x ?rays?|radiographs?|radiography|plain films?)\b"), "xray"),
    (re.compile(r"\b(?:computed tomography|ct scans?)\b"), "ct"),
    (re.compile(r"\b(?:magnetic resonance imaging|magnetic resonance|mri scans?|mr)\b"), "mri"),
    (re.compile(r"\b(?:ultrasonography|sonography|sonograms?|sonographic|ultrasound scans?)\b"), "ultrasound"),
    (re.compile(r"\b(?:mammograms?|mammographic)\b"), "mammography"),
    (re.compile(r"\b(?:positron emission tomography|pet scans?)\b"), "pet"),
    (re.compile(r"\baxial\b"), "transverse"),  # SLAKE's planes: "Transverse Plane" is the axial one
    (re.compile(r"\b(transverse|coronal|sagittal)(?: planes?)?\b"), r"\1 plane"),
)
_PLURALS: tuple[_Rule, ...] = (
    # masses -> mass, abscesses -> abscess
    (re.compile(r"(?<=\w)sses\b"), "ss"),
    # metastases -> metastasis, stenoses -> stenosis: the Greek plural of a word of 6+ letters (not "-sses")
    (re.compile(r"(?<=\w\w[^s\W])ses\b"), "sis"),
    # lungs -> lung (not mass, abscess, sinus, denies): the final s of a word of 4+ letters whose letter
    # before it is not s/u/i/e; found from the s (a literal the engine searches fast), checked backwards
    (re.compile(r"s\b(?<=\w\w[^suie\W]s)"), ""),
)
_CANON = _SPELLINGS + _PLURALS


def _canon(norm: str) -> str:
    """A normalised text with modality spellings and plurals made canonical."""
    return _canon_short(norm) if len(norm) <= 256 else _canon_text(norm)


# The words a spelling rule of _CANON starts with: a text whose words include none of them only loses plurals
_SPELLING_STARTS = frozenset({"x", "xray", "xrays", "radiograph", "radiographs", "radiography", "plain", "computed", "ct",
                              "magnetic", "mri", "mr", "ultrasonography", "sonography", "sonogram", "sonograms",
                              "sonographic", "ultrasound", "mammogram", "mammograms", "mammographic", "positron",
                              "pet", "low", "high", "frontal", "hypoattenuating", "hypoattenuation", "hyperattenuating",
                              "hyperattenuation", "iv", "intravenous", "contrast", "post", "postcontrast",
                              "without", "nonenhanced", "unenhanced", "pre", "precontrast", "axial",
                              "transverse", "coronal", "sagittal", *_ABBREVIATIONS,
                              *(words.split()[0] for words in _SAME_THING), *_PREFIXES, "non", *_LEVELS,
                              "free", "kidney", "gall", "gallstone", "gallstones", "gallbladder", "heart", "mi", "blood",
                              "liver", "steatosis", "fatty"})


def _canon_norm(text: str) -> str:
    """``_canon(normalize(text))``, the form every mention is looked for in. A lower-cased ASCII text
    without apostrophes is done on its words: the plural rules (:func:`_singular`) applied word by word,
    when no spelling rule can apply (none of their first words occurs)."""
    if not isinstance(text, str) or not text.isascii() or "'" in text:
        return _canon(normalize(text))
    lowered = text.lower()
    words = _ascii_words(lowered)
    if not _SPELLING_STARTS.isdisjoint(words) or _may_be_british(lowered):
        return _canon(" ".join(words))
    return " ".join([_singular(w) if w[-1] == "s" else w for w in words])


def _may_be_british(lowered: str) -> bool:
    return ("ae" in lowered or "oe" in lowered or "our" in lowered) and _BRITISH_RE.search(lowered) is not None


def _singular(word: str) -> str:
    """:data:`_PLURALS` on one word ending in s."""
    if word.endswith("ses") and len(word) > 4:
        return word[:-2] if word[-4] == "s" else word[:-3] + "sis" if len(word) > 5 else word
    return word[:-1] if len(word) > 3 and word[-2] not in "suie" else word


@lru_cache(maxsize=65536)
def _canon_short(norm: str) -> str:
    """References, option texts and short answers repeat over a benchmark or GRPO batch: cached
    (long texts are not, so the cache cannot grow with 200 KB responses)."""
    return _canon_text(norm)


# Matches wherever any spelling rule could (a superset of their matches: no word boundaries, so the engine
# can jump between the first letters)
_CANON_ANY_RE = re.compile(r"x ?ray|radiograph|plain film|computed tomography|ct scan|magnetic resonance|mr|sonogra|"
                           r"ultrasound scan|mammogra|positron|pet scan|axial|transverse|coronal|sagittal|"
                           + "|".join([*_BRITISH, *_ABBREVIATIONS, *_SAME_THING, *_PREFIXES, "non", *_LEVELS,
                                     *(pattern for pattern, _ in _PLAIN_NAMES)]))


def _canon_text(norm: str) -> str:
    # the spelling rules change nothing unless one of them matches the text as given (each rule's output
    # only feeds the rules after it), so one search skips them all; the plural rules always run
    rules = _CANON if _CANON_ANY_RE.search(norm) else _PLURALS
    for pattern, repl in rules:
        norm = pattern.sub(repl, norm)
    return norm


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
    return dict(_options(options).items)


def _options(options: object) -> _OptionSet:
    """:func:`coerce_options` prepared for matching (:class:`_OptionSet`); a dict of strings (the same
    options for a whole benchmark or GRPO group) is coerced and prepared once."""
    if isinstance(options, dict):
        try:
            prepared = _str_options(tuple(options.items()))
        except TypeError:  # an unhashable value
            prepared = None
        if prepared is not None:
            return prepared
    return _option_set(tuple(_coerce_options(options).items()) if options is not None else ())


@lru_cache(maxsize=4096)
def _str_options(items: tuple[tuple[object, object], ...]) -> _OptionSet | None:
    """Cached for options made of strings only (None otherwise: equal non-strings such as 1 and True would
    share an entry but not a text)."""
    if not all(type(k) is str and type(v) is str for k, v in items):
        return None
    return _option_set(tuple(_coerce_options(dict(items)).items()))


def _coerce_options(options: object) -> dict[str, str]:
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


def answer_type(reference: object, options: object = None, choices: object = ()) -> AnswerType:
    """Which kind of question a reference (and its options or either-or choices) describes.

    The one place that decides it: :func:`judge` scores by it, evaluation reports and slices by it
    (``Item.kind``, the loaders' closed flag), data building labels its samples by it. A numeric
    reference is an open question whose answer is compared by value (decided inside the open match).
    """
    return _answer_type(bool(_options(options).items), reference, choices)


def _answer_type(has_options: bool, reference: object, choices: object) -> AnswerType:
    if has_options:
        return AnswerType.MULTIPLE_CHOICE
    if _polarity_reference(reference):
        return AnswerType.YES_NO
    return AnswerType.EITHER_OR if choices else AnswerType.OPEN


# ---------------------------------------------------------------------------------------------
# extraction: where the answer is in a response

ANSWER_SOURCES = ("answer_tag", "whole", "boxed", "answer_is", "before_explanation", "final_line")
_BOXED_RE = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\}){0,500})\}")
_LATEX_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm)\{([^{}]{0,500})\}")
_ANSWER_IS_RE = re.compile(r"(?i)\b(?:final answer|correct answer|the answer|answer)\s*(?:is|:)\s*([^\n]{1,500})")
_ZH_ANSWER_IS_RE = re.compile(r"答案\s*(?:是|为|:|：)[\s:：]*([^\n\u3002]{1,500})")  # 答案是/答案为/答案：, to 。
_TAG_RE = re.compile(r"</?[A-Z]{2,12}>")
_FALLBACK_LINE_CHARS = 300  # a plain answer is a word, a phrase or a sentence or two
# An answer given first and explained after it: "B) Pneumothorax\n\nExplanation: ..."
_EXPLANATION_RE = re.compile(r"(?i)\W*(?:explanation|reasoning|rationale|reason|justification|because|this is because)\b"
                             r"|(?:解释|理由|原因)[:：]")
_ANSWER_FIRST_CHARS = 80


def _unwrap_latex(text: str) -> str:
    """``\\boxed{C}`` and ``\\text{C}`` read as their content."""
    if "\\" not in text:
        return text
    return _LATEX_TEXT_RE.sub(r"\1", _BOXED_RE.sub(r" \1 ", text))


def extract_answer(response: object, require_tag: bool = False) -> tuple[str | None, str]:
    """(answer text or None, where it came from: one of :data:`ANSWER_SOURCES`, or "").

    The ``<ANSWER>`` stage wins whenever the response has one (an empty stage is an empty answer,
    not a cue to look elsewhere). ``require_tag=True`` stops there: the RL reward pays only for an
    answer given in the scaffold (format matters to the policy, appendix A.4). Otherwise the
    fallbacks of the strongest suites (VLMEvalKit, lmms-eval, MedEvalKit) apply in order: the last
    ``\\boxed{}``, the last "the answer is ..." (or "答案是 ...", to its 。), the final line ("whole" when
    there is one line), or the first line when the second opens its explanation ("Yes.\nExplanation: ...").
    """
    if not isinstance(response, str):
        return None, ""
    tagged = answer_text(response)
    if tagged is not None or "<ANSWER>" in response:
        return (tagged.strip() or None) if tagged else None, "answer_tag"
    if require_tag:
        return None, ""
    boxed = _BOXED_RE.findall(response[-20000:])
    if boxed and boxed[-1].strip():
        return _unwrap_latex(boxed[-1]).strip(), "boxed"
    tail = response[-20000:]
    stated = max((m for pattern in (_ANSWER_IS_RE, _ZH_ANSWER_IS_RE) for m in pattern.finditer(tail)),
                 key=lambda m: m.start(), default=None)
    if stated and normalize(stated.group(1)):
        return stated.group(1).strip(), "answer_is"
    lines = [line.strip() for line in _TAG_RE.sub("\n", response).splitlines() if line.strip()]
    if len(lines) > 1 and len(lines[0]) <= _ANSWER_FIRST_CHARS and _EXPLANATION_RE.match(lines[1]):
        return lines[0], "before_explanation"
    if not lines or len(lines[-1]) > _FALLBACK_LINE_CHARS:
        return None, ""  # a final line this long is prose (or a degenerate loop), not an answer
    return lines[-1], "whole" if len(lines) == 1 else "final_line"


# ---------------------------------------------------------------------------------------------
# negation and hedging scope, shared by every kind of question

_CLAUSE_RE = re.compile(
    r"\.(?!\d)|[;!?\n\u3002\uff1b\uff01\uff1f]|\b(?:but|however|whereas|although|though)\b", re.IGNORECASE
)
_NEG_BEFORE = frozenset({"not", "no", "never", "without", "absent", "absence", "neither", "nor", "negative", "denies",
                         "cannot", "against", "unlikely", "exclude", "excluded", "excluding", "except", "than", "unlike"})
# "free" denies as "free of X" and "X-free", never before its finding ("free air", "free fluid")
_NEG_BEFORE_PAIRS = frozenset({("rule", "out"), ("ruled", "out"), ("rules", "out"), ("instead", "of"), ("free", "of")})
_NEGATION_WINDOW = 3
# Words a negation reaches through to a finding further back than the window: "no definite (radiographic) evidence
# of X", "without any signs of X"
_NEGATION_THROUGH = frozenset({
    "any", "definite", "definitive", "convincing", "significant", "obvious", "acute", "radiographic", "radiologic",
    "radiological", "imaging", "clear", "clearly", "evidence", "sign", "signs", "of", "for", "finding", "findings",
    "feature", "features", "focal", "discrete", "new", "residual", "appreciable", "visible", "frank", "overt", "gross",
    "other", "further", "additional", "suspicious", "suggestive", "to", "suggest", "definitely"})
_AUX = (r"(?:is|are|was|were|be|been|being|appears?|seems?|looks?|has|have|had|can|could|may|might|would|should|"
        r"will|also|very|highly|considered|thought|felt|deemed|to|likely|most|much)")
_NEG_PREDICATE = r"(?:unlikely|absent|excluded|ruled out|doubtful|improbable|less likely|incorrect|wrong|cannot\b)"
_SEEN = (r"(?:seen|present|identified|visuali[sz]ed|evident|noted|observed|detected|demonstrated|appreciated|"
         r"included|shown|depicted|"
         r"visible|found|likely|supported|excluded|ruled out|correct|right|answer)")
# What states that a finding exists ("a mass is seen", "nothing is noted", "no abnormality detected")
_EXIST_SEEN = (r"(?:seen|present|noted|identified|visible|evident|observed|detected|demonstrated|appreciated|found|"
               r"included|shown|depicted)")
# "X not seen", "B not correct", "tumor-free"; but "Left, not right" names the right side, and only "is not right"
# says wrong
_NEG_AFTER_RE = re.compile(
    rf"^(?:(?:{_AUX} ){{1,4}}(?:not|never|negative|{_NEG_PREDICATE})|{_NEG_PREDICATE}|free|not (?!right\b){_SEEN})\b"
)
_LIST_WORDS = frozenset({"or", "vs", "versus", "either"})
_THAN = frozenset({"than"})
_PAIR_FIRSTS = frozenset(first for first, _ in _NEG_BEFORE_PAIRS)
# What _NEG_AFTER_RE can start with: an auxiliary, "not" or "free" as a whole word, or a negative predicate's first word
_AFTER_FIRST_WORDS = frozenset({"not", "free"} | {form for word in _AUX[3:-1].split("|")
                                         for form in ((word[:-2], word[:-1]) if word.endswith("s?") else (word,))})
_NEG_PREDICATE_WORDS = tuple(alt.split()[0].removesuffix("\\b") for alt in _NEG_PREDICATE[3:-1].split("|"))


def _clauses(text: str) -> list[str]:
    """Sentences and contrasted clauses: a negation never reaches across "." or "but"."""
    return [c for c in _split(text, _CLAUSE_RE, _CLAUSE_MARKS_RE, _CLAUSE_WORDS_RE) if c and not c.isspace()]


# one character each, a "." only before a non-digit; written charset first, which the engine scans for fast
_CLAUSE_MARKS_RE = re.compile(r"[.;!?\n\u3002\uff1b\uff01\uff1f](?:(?<!\.)|(?!\d))")
_CLAUSE_WORDS_RE = re.compile("but|however|whereas|though")  # "although" contains "though"


def _split(text: str, pattern: re.Pattern[str], marks: re.Pattern[str], words: re.Pattern[str]) -> list[str]:
    """``pattern.split(text)``; by ``marks`` alone (the same split) when ``words`` (the pattern's contrast
    words, as one alternation) finds none in the lower-cased text (nor the long s that IGNORECASE reads as "s")."""
    if "\u017f" in text or words.search(text.lower()) is not None:
        return pattern.split(text)
    return marks.split(text)


def _negated(before: list[str], after: list[str]) -> bool:
    """Whether a mention is denied, ruled out or hedged: a negator in the few words before it
    ("no X", "rule out X", "rather than X") or a negative predicate after it ("X is not seen",
    "X is unlikely", "X cannot be excluded", "B is incorrect")."""
    window = before[-_NEGATION_WINDOW:]
    if not _NEG_BEFORE.isdisjoint(window):
        negators = _NEG_BEFORE.intersection(window)
        if negators != _THAN or "less" not in before[-_NEGATION_WINDOW - 1 :]:
            return True  # but "X is less likely than Y": Y is the favoured one
    if not _PAIR_FIRSTS.isdisjoint(window) and any(pair in _NEG_BEFORE_PAIRS for pair in pairwise(window)):
        return True
    if len(before) > _NEGATION_WINDOW and window[0] in _NEGATION_THROUGH:
        for word in reversed(before):
            if word not in _NEGATION_THROUGH:
                return word in _NEG_BEFORE
    if after == ["no"] or after == ["none"]:
        return True  # "Pneumothorax - no", "Pneumothorax: none"
    if not after or (after[0] not in _AFTER_FIRST_WORDS and not after[0].startswith(_NEG_PREDICATE_WORDS)):
        return False  # no way for _NEG_AFTER_RE to match (it needs one of these words first)
    return _NEG_AFTER_RE.match(" ".join(after[:6])) is not None


_CONTEXT_CHARS = 80  # negation scope is a few words: look no further, so long clauses stay linear


def _context(clause: str, start: int, end: int) -> tuple[list[str], list[str]]:
    """The words just before and just after ``clause[start:end]``."""
    return clause[max(0, start - _CONTEXT_CHARS) : start].split()[1 if start > _CONTEXT_CHARS else 0 :], \
        clause[end : end + _CONTEXT_CHARS].split()


def _listed(before: list[str], after: list[str]) -> bool:
    """Whether a mention is one of a list of candidates ("X or Y", "either X", "X vs Y")."""
    return bool(before and before[-1] in _LIST_WORDS) or bool(after and after[0] in _LIST_WORDS)


def _spans(norm: str, needle: str) -> list[tuple[int, int]]:
    """Whole-word occurrences of ``needle`` in ``norm`` as (start, end) character offsets."""
    out, padded = [], f" {norm} "
    at = padded.find(f" {needle} ")
    while at != -1:
        out.append((at, at + len(needle)))
        at = padded.find(f" {needle} ", at + 1)
    return out


def _mentions(clauses: list[str], needle: str) -> tuple[bool, bool, bool]:
    """(asserted, negated, listed) over the whole-word mentions of ``needle`` in canonical clauses."""
    asserted = negated = listed = False
    for clause in clauses:
        for s, e in _spans(clause, needle):
            before, after = _context(clause, s, e)
            if _negated(before, after):
                negated = True
            elif _listed(before, after):
                listed = True
            else:
                asserted = True
    return asserted, negated, listed


def _canon_clauses(text: str) -> list[str]:
    return [c for c in (_canon_norm(clause) for clause in _clauses(text)) if c]


# ---------------------------------------------------------------------------------------------
# multiple choice

_LABEL_CONTEXT = frozenset({"not", "is", "s", "choose", "chose", "choosing", "select", "selected", "pick", "picked",
                            "than", "option", "answer", "choice", "and", "or", "nor", "be", "letter", "with", "either",
                            "likely", "probably"})
_LABEL_VERBS = frozenset({"is", "was", "would", "seems", "appears", "looks", "fits", "matches", "best"})
_CONJUNCTIONS = frozenset({"and", "nor", "&"})
# Patterns 2 and 4 are written charset first (the engine scans for a charset fast, not for a lookbehind or a
# case-folded alternation): \b(?i:answer|option|choice)... and (?<![\w\-])([A-J])(?![\w\-'\u2019]), the same
# matches (no character but a/o/c in either case folds onto the words' first letters).
_LETTER_PATTERNS = (
    re.compile(r"^\s*[\(\[]?([A-Ja-j])[\)\]]?[.:]?\s*$"),  # the whole clause: "C", "(c)", "C:"
    re.compile(r"^\s*[\(\[]?([A-J])[\)\].:]\s"),  # "C. Flexor pathology", "(C) ..."
    re.compile(r"[aAoOcC](?<=\b[aAoOcC])(?i:(?<=[aA])nswer|(?<=[oO])ption|(?<=[cC])hoice)"  # "answer is c"
               r"(?:\s+is)?\s*[:\-]?\s*[\(\[]?([A-Ja-j])(?![\w\-])"),
    re.compile(r"[\(\[]([A-J])[\)\]]"),  # "(C)" anywhere
    # "I choose B", "B is correct", "C, not B"; a Chinese character before it is no word ("答案是B"), after
    # it only 选项 ("B选项"; "B超" is B-mode ultrasound)
    re.compile(r"([A-J])(?<!(?:[^\W\u4e00-\u9fff]|-).)(?!(?!选项)[\w\-'\u2019])"),
)
_WORD_BEFORE_RE = re.compile(r"(\w+)\W*$")
_WORD_AFTER_RE = re.compile(r"[\)\]]?\s*([A-Za-z]+)")  # used with match(): anchored at its pos


def _is_label(clause: str, start: int, end: int, pattern_index: int) -> bool:
    """Whether a matched letter reads as an option label rather than English ("A tear", "I think",
    "hepatitis B", "vitamin D")."""
    letter = clause[start:end]
    following = _WORD_AFTER_RE.match(clause, end, end + _CONTEXT_CHARS)
    if letter in "AIai" and following and following.group(1).islower() and following.group(1) not in _LABEL_VERBS \
            and following.group(1) not in _LIST_WORDS | _CONJUNCTIONS:
        return pattern_index == 0
    if pattern_index < 4:
        return True
    previous = _WORD_BEFORE_RE.search(clause, max(0, start - _CONTEXT_CHARS), start)
    if previous is None:
        return True
    word = previous.group(1)
    if word.lower() in _LABEL_CONTEXT or re.fullmatch(r"[A-J]", word) is not None:  # "B, C": a list of labels
        return True
    if _zh_tail(word).endswith(_ZH_LABEL_CONTEXT) or clause.startswith("选项", end):  # "答案是B", "选B", "B选项"
        return True
    # the letter alone after a comma, ending the clause: "Based on the findings, B."
    return "," in clause[previous.end(1) : start] and not clause[end:].strip(" \t)]!")


# Chinese words before an option label: 答案是/答案为/答案：B, 选B, 选择B, 选项B, 是B, 不是C
_ZH_LABEL_CONTEXT = ("答案", "是", "为", "选", "选择", "选项")
_ZH_TAIL_RE = re.compile("[\u4e00-\u9fff]*$")


def _zh_tail(word: str) -> str:
    """The Chinese characters that end ``word`` ("答案是B不是" -> "不是"): its last Chinese word."""
    tail = _ZH_TAIL_RE.search(word)  # always matches, perhaps empty
    return tail.group(0) if tail else ""


_LABEL_WORD_RE = re.compile(r"(?i:answer|option|choice)")
_FOLDS_TO_LABEL_WORDS = ("\u017f", "\u0130", "\u0131")  # what IGNORECASE also reads as s or i, besides ASCII


def _may_name_label_word(clause: str) -> bool:
    """Whether ``_LABEL_WORD_RE`` may find a word here, without its slow case-folding scan: the lower-cased
    clause holds the word, or a character that case-folds to one of its letters is present."""
    low = clause.lower()
    return "answer" in low or "option" in low or "choice" in low or (
        not clause.isascii() and any(ch in clause for ch in _FOLDS_TO_LABEL_WORDS))


def _letter_patterns(clause: str) -> list[tuple[int, re.Pattern[str]]]:
    """The letter patterns that can match ``clause``: the whole-clause one only on a clause of a few
    characters, the "answer is c" one only where such a word is, the others only where one of them
    matches (a capital A-J, as a label: "Abscess" has a capital A but is no label)."""
    patterns = []
    if len(clause) <= 8 or len(clause.strip()) <= 4:
        patterns.append((0, _LETTER_PATTERNS[0]))
    capital = _LETTER_PATTERNS[4].search(clause) is not None  # a letter patterns 1 and 3 find, 4 finds too
    if capital:
        patterns.append((1, _LETTER_PATTERNS[1]))
    if _may_name_label_word(clause):
        patterns.append((2, _LETTER_PATTERNS[2]))
    if capital:
        patterns += [(3, _LETTER_PATTERNS[3]), (4, _LETTER_PATTERNS[4])]
    return patterns


def _letter_mentions(clause: str, letters: frozenset[str]) -> list[tuple[str, bool]]:
    """(letter, negated) for each option label the clause names.

    A letter two patterns find ("answer is B" and the bare "B") is judged once, by the first: the
    patterns run in order of index, :func:`_is_label` never accepts at a higher index what it refused
    at a lower one, and the mention's (letter, negated) depends on its position alone.
    """
    patterns = _letter_patterns(clause)
    if not patterns:
        return []
    found = set()
    seen: set[tuple[int, str, str]] = set()  # a looping response repeats the same few words: judge each look once
    judged: set[int] = set()
    for index, pattern in patterns:
        for m in pattern.finditer(clause):
            letter, start, end = m.group(1).upper(), m.start(1), m.end(1)
            if start in judged:
                continue
            judged.add(start)
            window = (index, clause[max(0, start - _CONTEXT_CHARS) : start], clause[start:end + _CONTEXT_CHARS])
            if letter not in letters or window in seen:
                continue
            seen.add(window)
            if _is_label(clause, start, end, index):
                before, after = _context(clause, start, end)
                after = normalize(" ".join(after)).split()
                while after and (after[0].upper() in letters or after[1:2] and after[1].upper() in letters and (
                        after[0] in _LIST_WORDS or after[0] in _CONJUNCTIONS)):
                    after.pop(0)  # the rest of a list of labels: "A, C and D are incorrect"
                negated = _negated(normalize(" ".join(before)).split(), after)
                found.add((letter, negated or _zh_negated_label(clause, start)))
    return list(found)


def _zh_negated_label(clause: str, start: int) -> bool:
    """A label right after a Chinese negation ("不是C", "非C", "排除C")."""
    tail = _zh_tail(clause[max(0, start - 4) : start].rstrip())
    return bool(tail) and (tail.startswith(_CJK_NEGATORS) or "排除" in tail)


def _text_mentions(clause: str, options: _OptionSet) -> list[tuple[str, bool]]:
    """(letter, negated) for option texts named as whole words in a canonical clause, ignoring a
    mention inside a longer option's ("spleen" inside "spleen laceration")."""
    hits = [(letter, padded, inside) for letter, needle, padded, inside in options.texts if needle in clause]
    if not hits:
        return []
    found = []
    spaced = f" {clause} "
    starts = {letter: _offsets(spaced, padded) for letter, padded, _ in hits}
    # a mention may sit inside another's: look up offsets in sets
    members = {letter: set(offsets) for letter, offsets in starts.items()} if any(inside for _, _, inside in hits) else {}
    for letter, padded, inside in hits:
        for s in starts[letter]:
            if not inside or not any(s - off in members.get(other, ()) for other, off in inside):
                found.append((letter, _negated(*_context(clause, s, s + len(padded) - 2))))
    return found


class _OptionSet:
    """One question's options, prepared once for a whole benchmark or GRPO group (:func:`_option_set`):
    the (letter, text) pairs, the letters, and per option with a text its canonical form, that form
    space-padded (whole words are found in a space-padded clause) and where it sits inside a longer
    option's text as (other letter, offset) pairs, so a mention inside the longer one is told apart in
    linear time. Hashed by identity: the verdict and clause caches key on it, and :func:`_option_set`
    gives one object per option set."""

    __slots__ = ("items", "letters", "texts", "heads")

    def __init__(self, items: tuple[tuple[str, str], ...]) -> None:
        self.items = items
        self.letters = frozenset(letter for letter, _ in items)
        needles = {letter: _canon(_normalized_option(text)) for letter, text in items}
        self.heads = _heads(needles)
        self.texts = tuple(
            (letter, needle, f" {needle} ", tuple((other, off) for other, text in needles.items()
                                                  if other != letter and len(text) > len(needle)
                                                  for off in _offsets(f" {text} ", f" {needle} ")))
            for letter, needle in needles.items() if needle
        ) + tuple((letter, name, f" {name} ", ()) for letter, name in _other_names(needles))


def _other_names(needles: dict[str, str]) -> list[tuple[str, str]]:
    """Other names an option goes by: a numeric option's number word ("Three." names "3") and, beside "left" and
    "right", "bilateral" for "both" (and "both" for "bilateral")."""
    names = [(letter, _ONES[int(needle)]) for letter, needle in needles.items()
             if needle.isascii() and needle.isdigit() and int(needle) < len(_ONES)]
    if {"left", "right"} <= set(needles.values()):
        names += [(letter, "bilateral" if needle == "both" else "both") for letter, needle in needles.items()
                  if needle in ("both", "bilateral")]
    return names


def _heads(needles: dict[str, str]) -> dict[str, str]:
    """{last word: letter} of the option texts of several words that no other option's text ends with or is,
    leaving out those that state an absence or normality ("effusion" of "Pleural effusion"; nothing of "No
    effusion", which "Effusion." does not name)."""
    heads: dict[str, list[str]] = {}
    for letter, needle in needles.items():
        words = needle.split()
        if words and _ABSENCE_WORDS.isdisjoint(words):
            heads.setdefault(words[-1], []).append(letter if len(words) > 1 else "")
    return {head: letters[0] for head, letters in heads.items() if len(letters) == 1 and letters[0]}


_ABSENCE_WORDS = _NEG_BEFORE | {"absence", "absent", "free", "normal"}


@lru_cache(maxsize=4096)
def _option_set(items: tuple[tuple[str, str], ...]) -> _OptionSet:
    return _OptionSet(items)


def _offsets(haystack: str, needle: str) -> list[int]:
    """Every offset of ``needle`` in ``haystack`` (both space-padded, so whole words only)."""
    out, at = [], haystack.find(needle)
    while at != -1:
        out.append(at)
        at = haystack.find(needle, at + 1)
    return out


def _clause_mentions(clause: str, options: _OptionSet) -> tuple[tuple[str, bool], ...]:
    """Every (letter, negated) mention in one clause: labels, option texts and positions."""
    canon = _canon_norm(clause)
    found = _letter_mentions(clause, options.letters) + (_text_mentions(canon, options) if canon else [])
    if "option" in canon or "choice" in canon:
        found += _position_mentions(canon, options)
    return tuple(found)


# An option named by its position: "option 3", "choice 2", "the third option", "the last choice"
_POSITION_RE = re.compile(r"\b(?:(?:option|choice) (\d{1,2})|(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|"
                          r"tenth|last) (?:option|choice))\b")


def _position_mentions(canon: str, options: _OptionSet) -> list[tuple[str, bool]]:
    """(letter, negated) for each option a canonical clause names by its position; none where an option's
    text is a number ("option 3" could then be its text)."""
    if any(needle.isdigit() for _, needle, _, _ in options.texts):
        return []
    letters = [letter for letter, _ in options.items]
    found = []
    for m in _POSITION_RE.finditer(canon):
        digits, word = m.groups()
        at = int(digits) - 1 if digits else len(letters) - 1 if word == "last" else _ORDINALS[word] - 1
        if 0 <= at < len(letters):
            found.append((letters[at], _negated(*_context(canon, m.start(), m.end()))))
    return found


# Short clauses repeat (closed answers, degenerate looping responses): their mentions are cached.
_clause_mentions_cached = lru_cache(maxsize=65536)(_clause_mentions)


@lru_cache(maxsize=65536)
def _normalized_option(text: str) -> str:
    """Option texts repeat across a whole benchmark or GRPO batch; normalise each once."""
    return normalize(text)


_ABSENCE_FORMS = ("no {}", "not {}", "without {}", "absence of {}", "{} absent", "no evidence of {}", "negative for {}")


def _absence_option(rejected: set[str], options: _OptionSet) -> str | None:
    """The option stating the absence of the one option a prediction rejects ("pneumothorax is not
    seen" selects "No pneumothorax")."""
    if len(rejected) != 1:
        return None
    opts = dict(options.items)
    target = _normalized_option(opts[next(iter(rejected))])
    forms = {normalize(form.format(target)) for form in _ABSENCE_FORMS}
    hits = [k for k, v in opts.items() if _normalized_option(v) in forms]
    return hits[0] if len(hits) == 1 else None


def extract_choice(prediction: object, options: object) -> str | None:
    """The single option letter a prediction names, or None (nothing, or two different options)."""
    return _choice(prediction, _options(options))


def _choice(prediction: object, options: _OptionSet) -> str | None:
    if not isinstance(prediction, str) or not options.items:
        return None
    named: set[str] = set()
    rejected: set[str] = set()
    for clause in _clauses(_strip_markup(_unwrap_latex(prediction))):
        for letter, negated in _clause_mentions_cached(clause, options) if len(clause) <= 256 else \
                _clause_mentions(clause, options):
            (rejected if negated else named).add(letter)
    if len(named) == 1 and not named & rejected:
        return named.pop()
    if named:
        return None
    if not rejected:
        return _head_choice(prediction, options)
    absence = _absence_option(rejected, options)
    remaining = options.letters - rejected
    if absence is None and len(remaining) == 1:
        return next(iter(remaining))  # "Not benign." of benign and malignant; "Not A, B or D."
    return absence


_HEAD_ANSWER_WORDS = 4


def _head_choice(prediction: str, options: _OptionSet) -> str | None:
    """A short answer that names no option but the last word of one option's text, which ends no other ("Effusion."
    or "It is an effusion." for "Pleural effusion"), picks that option."""
    if not options.heads or len(prediction) > _CONTEXT_CHARS:
        return None
    clauses = _canon_clauses(prediction)
    if len(" ".join(clauses).split()) > _HEAD_ANSWER_WORDS:
        return None
    said = [letter for head, letter in options.heads.items() if _mentions(clauses, head) == (True, False, False)]
    return said[0] if len(said) == 1 else None


# ---------------------------------------------------------------------------------------------
# yes/no

_YES = frozenset({"yes", "yeah", "yep", "true", "correct", "affirmative", "positive"})
_NO = frozenset({"no", "nope", "false", "incorrect", "negative", "none"})
_YES_WORDS = frozenset({"yes", "yeah", "yep", "affirmative"})  # say yes anywhere; "correct"/"true" only as "is correct"
_COPULAS = frozenset({"is", "are", "be", "not"})
_LEAD_ONLY = {"present": "yes", "absent": "no"}  # "Present." / "Absent, ..." open a reply, never inside one
_FILLERS = frozenset({"answer", "final", "is", "my", "i", "would", "say", "maybe", "probably", "possibly", "perhaps",
                      "likely", "definitely", "certainly", "most", "actually", "wait", "well", "oh", "so", "ok",
                      "okay", "sorry", "correction", "it", "s", "think", "believe", "then", "therefore", "thus"})
_SEGMENT_RE = re.compile(
    r"[,:]|\.(?!\d)|[;!?\n\u3002\uff0c\uff1b\uff1a\uff01\uff1f]|\b(?:but|however|though)\b", re.IGNORECASE
)
_STATED_NO_RE = re.compile(
    rf"\b(?:not {_SEEN}|(?:is|are|was|were) absent|absent$|ruled out|unlikely|negative for|no evidence|"
    r"(?:do|does|did) not (?:see|show|identify|detect|find|reveal|demonstrate|contain|have))\b"
)
_HEDGE_RE = re.compile(r"\b(?:cannot|can not|could not|not) (?:be )?(?:excluded|exclude|ruled out|rule out)\b")
_STOP = frozenset({"is", "are", "was", "were", "there", "this", "that", "it", "in", "of", "on", "does", "do", "image",
                   "picture", "any", "seen", "shown", "present", "visible", "evidence", "what", "which"})
# SLAKE's Chinese closed answers: an affirmative word, or the same word negated (不/没); 否/无 alone say no.
_ZH_YES_WORDS = ("是", "有", "包含", "含有", "可以", "正常", "存在", "能", "对", "会", "正确", "属于", "需要", "在",
                 "显示")
_ZH_NO_PREFIXES = ("不", "没", "否", "无", "非")
_ZH_STRIP = " \t\r\n*_`#$\u3002\uff0c.,!\uff01:\uff1a\"'\u201c\u201d"


_SEGMENT_MARKS_RE = re.compile(r"[,:.;!?\n\u3002\uff0c\uff1b\uff1a\uff01\uff1f](?:(?<!\.)|(?!\d))")  # as above
_SEGMENT_WORDS_RE = re.compile("but|however|though")


def _zh_polarity(text: str) -> str | None:
    """Polarity of a Chinese reply or reference by how it opens (不是/没有/否/不可以 vs 是/有/可以/...)."""
    text = text.strip(_ZH_STRIP)
    if not text or not "\u4e00" <= text[0] <= "\u9fff":
        return None
    if text.startswith(_ZH_NO_PREFIXES) and not text.startswith("非常"):
        return "no"
    return "yes" if text.startswith(_ZH_YES_WORDS) else None


# A Chinese reply's first clause: a denial (未见/没有发现/不存在 X) says no, a finding stated (可见/显示/存在/包含 X)
# says yes, a hedge (可能/疑似/不能排除) nothing; normality is read against the question (没有异常 says an image is
# normal: yes to 正常吗, no to 有异常吗); a modality or plane other than the asked one says no (这是CT图像 to 这是MRI吗).
_ZH_CLAUSE_RE = re.compile("[\u3002\uff0c\uff1b,;.!?\uff01\uff1f\n]")
_ZH_HEDGES = ("可能", "也许", "或许", "疑似", "不确定", "不能排除", "无法确定", "难以确定", "不排除")
_ZH_DENIALS = ("未见", "未发现", "未显示", "未观察到", "没有", "没见", "看不到", "看不见", "不存在", "无明显", "不包含",
               "不含", "并无")
_ZH_STATEMENTS = ("可见", "见到", "看到", "显示", "存在", "发现", "观察到", "包含", "含有", "有")
_ZH_NEGATION_CHARS = 4  # 未见明显异常: a negator reaches 异常 across 见明显
_ZH_ANSWER_WORDS = ("是的", "否", "对", "错", "不是", "不对")  # an explicit answer, read before what follows it


def _zh_yes_no(text: str, question: str) -> str | None:
    head = _ZH_CLAUSE_RE.split(text[:_CJK_CHOICE_CHARS].strip(_ZH_STRIP), 1)[0]
    if any(hedge in head.replace("不可能", "") for hedge in _ZH_HEDGES):
        return None
    if head.startswith(_ZH_ANSWER_WORDS):
        return "no" if head.startswith(("否", "错", "不是", "不对")) else "yes"
    normal = _zh_normality(head)
    if normal is not None and ("正常" in question or "异常" in question):
        return "yes" if normal == ("异常" not in question) else "no"
    polarity = _zh_polarity(head)
    if polarity or not _has_cjk(head):
        return polarity
    kind = _zh_kind(head, question) or _zh_restatement(head, question)
    if kind:
        return kind
    asked = _zh_asked_thing(question)
    rest = _ZH_VERB_OR_FILLER_RE.sub("", head)
    if asked and asked not in _zh_canon(head) and rest and not (len(rest) > 1 and asked.endswith(rest)):
        return None  # "图中肝脏有囊肿" says nothing of 肿块; a verb alone ("未发现", "存在的"), or the asked thing's
        # head noun ("未见结节" of 肺结节), is about it
    if any(denial in head for denial in _ZH_DENIALS):
        return "no"
    return "yes" if any(word in head for word in _ZH_STATEMENTS) else None


_ZH_VERB_OR_FILLER_RE = re.compile("|".join((*_ZH_DENIALS, *_ZH_STATEMENTS, "图像中", "图片中", "图中", "明显", "的", "了")))
_ZH_ASKED_THING_RE = re.compile("(?:有没有|是否有|是否存在|有|包含|含有|存在|显示|可见|发现|看到)([^吗呢？?。，,]{1,12})")


@lru_cache(maxsize=4096)
def _zh_asked_thing(question: str) -> str:
    """What a Chinese existence question asks about ("图中有肿块吗?" -> 肿块), spelled as :func:`_zh_canon` does."""
    m = _ZH_ASKED_THING_RE.search(question)
    return _zh_canon(m.group(1)) if m else ""


def _zh_normality(head: str) -> bool | None:
    """True when a clause says normal (正常, 没有异常), False when abnormal (异常, 不正常), None when neither."""
    for word, said in (("异常", False), ("正常", True)):
        at = head.find(word)
        if at != -1:  # negated within a few characters: 没有异常, 未见明显异常, 不正常, 没有正常, 不太正常
            return said != any(neg in head[max(0, at - _ZH_NEGATION_CHARS) : at] for neg in (*_CJK_NEGATORS, "未"))
    return None


# Chinese abnormal predicates a question may ask about (心脏增大了吗?), and words a reply adds about the subject
_ZH_ABNORMAL = ("增大", "肿大", "扩大", "扩张", "增厚", "狭窄", "移位", "萎缩")
_ZH_ASPECT_RE = re.compile("大小|形态|的|了|明显|看起来|是")


def _zh_restatement(head: str, question: str) -> str | None:
    """A reply restating a Chinese question's abnormal predicate about its subject says yes (心脏增大 to 心脏增大了吗),
    one calling that subject normal says no (心脏大小正常); anything more said of another subject, nothing."""
    predicate = next((word for word in _ZH_ABNORMAL if word in question), None)
    if predicate is None or any(neg in head for neg in _CJK_NEGATORS):
        return None
    for word, answer in ((predicate, "yes"), ("正常", "no")):
        if word in head and _ZH_ASPECT_RE.sub("", _zh_canon(head).replace(word, "")) in _zh_canon(question):
            return answer
    return None


def _zh_kind(head: str, question: str) -> str | None:
    """:func:`_kind_answer` of a Chinese reply's first clause (这是CT图像 to 这是MRI吗 is "no")."""
    if any(neg in head for neg in _CJK_NEGATORS):
        return None
    named = _zh_kinds(question)
    asked = tuple((kinds, kinds & named) for kinds in _ONE_OF if len(kinds & named) == 1)
    return _kind_answer(_zh_kinds(head), asked)


# The kinds of _ONE_OF as :func:`_zh_canon` spells them in Chinese text (lower-cased), and the kind each is
_ZH_KIND_WORDS = {"mri": "mri", "ct": "ct", "x光": "xray", "超声": "ultrasound", "男性": "male", "女性": "female",
                  "横断面": "transverse",
                  "冠状面": "coronal", "矢状面": "sagittal"}
_ZH_KIND_RE = re.compile("|".join(_ZH_KIND_WORDS))


def _zh_kinds(text: str) -> set[str]:
    return {_ZH_KIND_WORDS[word] for word in _ZH_KIND_RE.findall(_zh_canon(text).lower())}


def _answer_word(tokens: list[str]) -> set[str]:
    """Polarities a segment opens with ("Yes, ...", "Probably no", "the answer is no"); a segment
    made of yes/no words only ("yes and no") gives every polarity it names."""
    first = next((i for i, tok in enumerate(tokens) if tok not in _FILLERS), len(tokens))
    rest = tokens[first:]
    if rest:
        if all(t in _YES or t in _NO or t in ("and", "or") for t in rest):
            return {"yes" if t in _YES else "no" for t in rest if t not in ("and", "or")}
        leads = rest[0] in _YES_WORDS or rest[0] in ("no", "nope") or len(rest) == 1 or rest[1:2] == ["for"]
        if leads and (rest[0] in _YES or rest[0] in _NO):  # "correct" leads only alone, "negative" also "for X"
            return {"yes" if rest[0] in _YES else "no"}
        if rest[0] in _LEAD_ONLY:
            return {_LEAD_ONLY[rest[0]]}
    if "answer" in tokens:
        tail = [t for t in tokens[tokens.index("answer") + 1 :] if t not in ("is", "would", "be")]
        if tail and (tail[0] in _YES or tail[0] in _NO):
            return {"yes" if tail[0] in _YES else "no"}
    return set()


# Every word :func:`_answer_word` can read a polarity from: a segment (markup already removed, so each
# normalised token is bounded by non-word characters) without one of them opens with no answer word.
_POLAR_WORDS = sorted(_YES | _NO | set(_LEAD_ONLY) | {"answer"})


_POLAR_WORD_RE = re.compile(any_word_pattern(_POLAR_WORDS))


@lru_cache(maxsize=65536)
def _segment_lead(segment: str) -> frozenset[str]:
    """:func:`_answer_word` of a short segment: "Yes", "No" and "The answer is no" open reply after reply."""
    return frozenset(_answer_word(normalize(segment).split()))


def _statements(tokens: list[str], question: str | None) -> set[str]:
    """Polarities stated without a leading yes/no word; a hedge makes the reply ambiguous."""
    text = " ".join(tokens)
    if _HEDGE_RE.search(text):
        return {"yes", "no"}
    said = set()
    for i, tok in enumerate(tokens):
        previous = tokens[i - 1] if i else ""
        negated = previous == "not"
        positive_for = tok == "positive" and tokens[i + 1 : i + 2] == ["for"]
        if tok in _YES_WORDS or (tok in _YES and previous in _COPULAS) or positive_for:
            said.add("no" if negated else "yes")  # "yes", "that is (not) correct", "positive for X"
        elif tok in _NO and not negated:
            said.add("no")
    if _STATED_NO_RE.search(text):
        said.add("no")
    if question:
        said |= _question_predicates(tokens, question)
    return said


def _question_predicates(tokens: list[str], question: str) -> set[str]:
    """With the question: a content word W of the question denied says no ("Is the heart enlarged?" "It
    is not enlarged"; "Is there a fracture?" "Without evidence of fracture.", "The ribs are free of
    fractures.", "Fracture was excluded."), and normal/abnormal answer "Is it normal?" (and vice versa),
    negated by the words before ("not normal", "nothing abnormal", "no definite abnormal findings")."""
    asked, asks_normal, asks_abnormal = _asked_words(question)
    said = set()
    for i, tok in enumerate(tokens):
        if tok in ("normal", "abnormal", "unremarkable") and asks_normal:
            agrees = (tok == "abnormal") == asks_abnormal
            said.add("yes" if agrees != _denied_before(tokens, i) else "no")
        elif (tok in asked or _stems({tok}) & asked) and (_denied_before(tokens, i) or _denied_after(tokens, i)):
            said.add("no")
    return said


_PREDICATE_NEGATORS = frozenset({"not", "no", "nothing", "none", "never", "without", "non"})  # "Non-contrast."
_DENIED_OF = frozenset({"free", "absence"})  # "free of X", "absence of X"; "free fluid" is a finding
_LINKS = frozenset({"is", "are", "was", "were", "has", "have", "been"})


def _denied_before(tokens: list[str], i: int) -> bool:
    """Whether ``tokens[i]`` follows a negator, right before it or reached through a few words of degree and
    evidence ("no definite fracture", "without any signs of fracture"), or "free of" / "absence of"."""
    j = i - 1
    while j >= 0 and i - j <= _NEGATION_WINDOW and tokens[j] in _NEGATION_THROUGH:
        j -= 1
    return j >= 0 and (tokens[j] in _PREDICATE_NEGATORS or tokens[j] in _DENIED_OF and tokens[j + 1] == "of")


def _denied_after(tokens: list[str], i: int) -> bool:
    """Whether ``tokens[i]`` is denied by what follows it: "fracture-free", "fracture (has been) excluded"."""
    after = tokens[i + 1 : i + 4]
    while after and after[0] in _LINKS:
        after.pop(0)
    return after[:1] == ["free"] or after[:1] == ["excluded"]


# Whole short replies that say yes or no without a yes/no word: "Y" or "N", an affirmation, a bare "seen"
# ("Seen.", "Clearly visible."), a bare "not" after a hedge ("probably not", "not at all"), "I (don't) think
# so", "nothing (is) seen", an elliptical echo of the question ("it is", "there isn't", "it does not").
_SHORT_REPLY_WORDS = 6
_ECHO = r"(?:it|there|they) (?:is|are|was|were|does|do|did|has|have)"
_SHORT_REPLIES = (
    ("yes", re.compile(rf"y|(?:i )?(?:think|believe) so|of course|certainly|definitely|absolutely|surely|indeed|"
                       rf"{_ECHO}|(?:clearly )?{_EXIST_SEEN}")),
    ("no", re.compile(r"n|(?:(?:probably|most likely|likely|definitely|certainly|absolutely|surely|of course) )?"
                      r"not(?: really| at all)?|i do not (?:think|believe) so|"
                      rf"nothing(?: (?:is )?{_EXIST_SEEN})?|"
                      rf"{_ECHO} not|(?:it|they) cannot")),
)
# "Is this normal?" "No acute abnormality (seen).": the whole reply, where "no" is a determiner (no punctuation
# after it, unlike "No, abnormal"), says normal
_NO_ABNORMALITY_RE = re.compile(
    r"\s*no\s+(?:(?:acute|significant|obvious|definite|focal|gross|other|evident|apparent|major|new|detectable|"
    r"radiographic|bony|osseous|cardiopulmonary|intracranial)\s+){0,3}abnormal\w*"
    rf"(?:\s+(?:findings?|features?|changes?))?(?:\s+(?:are |is )?{_EXIST_SEEN})?\s*[.!]?\s*"
)


def _short_reply(words: list[str]) -> str | None:
    """The polarity of a whole reply of a few normalised words that :data:`_SHORT_REPLIES` reads, else None."""
    if len(words) > _SHORT_REPLY_WORDS:
        return None
    text = " ".join(words)
    return next((polarity for polarity, pattern in _SHORT_REPLIES if pattern.fullmatch(text)), None)


@lru_cache(maxsize=4096)
def _asked_words(question: str) -> tuple[frozenset[str], bool, bool]:
    """A question's content words (but those it denies itself: "contrast" of "Is this a non-contrast CT?"),
    whether it asks about normality at all ("normal" or "abnormal..."), and whether it asks about an
    abnormality (abnormal, abnormality, ...)."""
    norm = normalize(question)
    words = norm.split()
    denied = {word for i, word in enumerate(words) if _denied_before(words, i)}
    asked = (frozenset(words) | frozenset(_canon(norm).split())) - _STOP - denied  # "widening" is also "widened"
    asks_abnormal = any(word.startswith("abnormal") for word in asked)
    return asked, "normal" in asked or asks_abnormal, asks_abnormal


def _asks_normal_only(question: str) -> bool:
    _, asks_normal, asks_abnormal = _asked_words(question)
    return asks_normal and not asks_abnormal


def yes_no(prediction: object, question: object = None) -> str | None:
    """"yes", "no", or None when the prediction says neither, both, or hedges (whole words,
    negation-aware; ``question`` lets "not normal" answer "Is it normal?")."""
    if not isinstance(prediction, str):
        return None
    text = _strip_markup(_unwrap_latex(prediction))
    question = question if isinstance(question, str) else None
    if _has_cjk(text):
        zh = _zh_yes_no(text, question or "")
        if zh:
            return zh
    if question and _asks_normal_only(question) and _NO_ABNORMALITY_RE.fullmatch(text.lower()):
        return "yes"
    lead: set[str] = set()
    for segment in set(_split(text, _SEGMENT_RE, _SEGMENT_MARKS_RE, _SEGMENT_WORDS_RE)):
        if segment and _POLAR_WORD_RE.search(segment.lower()):
            lead |= _segment_lead(segment) if len(segment) <= 256 else _answer_word(normalize(segment).split())
    if lead:
        if lead == {"yes"} and question and _denies_the_asked(text, question):
            return None  # "Yes, there is no fracture.": the reply contradicts itself
        return lead.pop() if len(lead) == 1 else None
    words = normalize(text).split()
    short = _short_reply(words)
    if short:
        return short
    said = _statements(words, question)
    if question:
        said |= (_existence(text, question) | _restatement(text, words, question) | _another_kind(text, question)
                 | _finding_stated(text, question))
    return said.pop() if len(said) == 1 else None


# Existence statements answer "Is there X?" (SLAKE, VQA-RAD): "There is a mass" says yes, as "X is seen",
# "the image shows X" do; the thing stated must be the thing asked, and a hedged or negated statement
# ("there may be", "no mass is seen") states nothing here (the negations have their own rules above).
_PREPOSITIONS = frozenset({"in", "on", "at", "of", "within", "inside", "near", "around", "along", "over", "under",
                           "involving", "from", "to", "with", "and", "or", "which", "that", "this", "seen", "present",
                           "visible", "shown", "noted", "identified", "evident", "image", "picture", "scan", "film"})
_ASK_FILLERS = frozenset({"any", "some", "evidence", "sign", "signs", "of", "there", "image", "picture", "scan",
                          "this", "abnormal", "visible", "obvious"})
_EXIST_NEGATORS = frozenset({"no", "not", "none", "nothing", "neither", "nor", "never", "without", "absent", "free"})
_FREE_FINDINGS = frozenset({"air", "fluid", "gas"})  # "free air" is a finding; "free of X", "X-free" deny X
_EXIST_HEDGES = frozenset({"may", "might", "could", "possibly", "possible", "probably", "probable", "perhaps", "likely",
                           "unlikely", "questionable", "suspicious", "suspected", "equivocal", "cannot", "uncertain",
                           "if", "whether", "either", "or", "versus", "vs"})
_ASKED_THING_RES = (
    re.compile(r"^(?:is|are|was|were) there (\w+(?: \w+){0,7})"),
    re.compile(rf"^can ((?:\w+ ){{1,4}}?)be {_EXIST_SEEN}\b"),
    re.compile(r"\b(?:does|do|did) (?:\w+ ){1,4}?(?:show|contain|have|demonstrate|reveal|include) (\w+(?: \w+){0,7})"),
    re.compile(rf"^(?:is|are) ((?:\w+ ){{1,4}}?)(?:{_EXIST_SEEN})\b"),
)
_STATED_THING_RES = (
    re.compile(r"\bthere (?:is|are|was|were|appears? to be|seems? to be)(?: also)? (\w+(?: \w+){0,7})"),
    re.compile(r"\b(?:shows?|showing|demonstrates?|demonstrating|reveals?|revealing|contains?|containing|has|have|"
               r"(?:consistent|compatible) with|in keeping with|suggestive of|indicative of|suggests?|suggesting|"
               r"indicates?|indicating|except for|apart from|aside from) (\w+(?: \w+){0,7})"),
    re.compile(rf"((?:\w+ ){{1,4}}?)(?:is|are|can be)(?: also| clearly)? {_EXIST_SEEN}\b"),
)


def _thing(words: str, leading_fillers: frozenset[str] = frozenset()) -> list[str]:
    """The canonical content words of a noun phrase in order, up to its first preposition or predicate."""
    tokens = _canon(words).split()
    while tokens and tokens[0] in leading_fillers:
        tokens.pop(0)
    out = []
    for tok in tokens:
        if tok in _PREPOSITIONS or tok in _THING_ENDS:
            break
        out.append(tok)
    return [tok for tok in out if tok not in _STOP and tok not in _FILLERS]


_LOCATIVE = frozenset({"in", "within", "at", "on", "inside", "along", "near", "around", "involving", "over", "under",
                       "adjacent", "beneath", "above", "below"})
_NOT_A_PLACE = _STOP | _FILLERS | _PREPOSITIONS | frozenset(
    {"scan", "film", "ct", "mri", "xray", "ultrasound", "slice", "view", "study", "photo", "photograph", "figure",
     "these", "those", "here", "shown", "given", "provided", "patient", "region"})


def _place(words: list[str]) -> frozenset[str]:
    """The words naming where, after the first locative preposition ("in the left lobe of the liver" ->
    left, lobe, liver); empty when no place is named."""
    at = next((i for i, w in enumerate(words) if w in _LOCATIVE), None)
    if at is None:
        return frozenset()
    return frozenset(_canon(" ".join(w for w in words[at + 1 :] if w not in _NOT_A_PLACE)).split())


@lru_cache(maxsize=4096)
def _asked_thing(question: str) -> tuple[frozenset[str], frozenset[str]]:
    """What an existence question asks about, and where ("Is there a mass in the left lung?" ->
    ({"mass"}, {"left", "lung"})); the thing is empty when the question is not one."""
    q = normalize(question)
    words = q.split()
    if _denies_existence(words) or _EXIST_HEDGES.intersection(words):
        return frozenset(), frozenset()  # "Is there no mass?": "There is a mass" answers no; left alone
    for pattern in _ASKED_THING_RES:
        m = pattern.search(q)
        if m:
            return frozenset(_thing(m.group(1), _ASK_FILLERS)), _place(words)
    return frozenset(), frozenset()


def _denies_existence(words: list[str]) -> bool:
    """Whether normalised words hold an existence negator ("no", "without", "free of", "tumor-free", ...)."""
    found = _EXIST_NEGATORS.intersection(words)
    if found != {"free"}:
        return bool(found)
    return any(word == "free" and (words[i + 1] if i + 1 < len(words) else "") not in _FREE_FINDINGS
               for i, word in enumerate(words))


def _existence(text: str, question: str) -> set[str]:
    """{"yes"} when the prediction states, un-negated and unhedged, that the asked thing exists."""
    thing, where = _asked_thing(question) if isinstance(question, str) else (frozenset(), frozenset())
    if not thing:
        return set()
    asked = _stems(thing)
    if _names_only_the_asked(normalize(text[:_EXISTENCE_CHARS]).split(), asked, where):
        return {"yes"}
    for clause in _clauses(text[:_EXISTENCE_CHARS]):
        norm = normalize(clause)
        words = norm.split()
        if _EXIST_HEDGES.intersection(words) or _denies_existence(words):
            continue  # "there may be a mass", "no mass is seen", "there is a mass? not sure": not a plain yes
        stated_place = _stems(_place(words))
        if where and stated_place and not all(_stems({w}) & stated_place for w in where):
            continue  # "There is a mass in the kidney" does not answer "Is there a mass in the liver?"
        for pattern in _STATED_THING_RES:
            for m in pattern.finditer(norm):
                if _states_the_asked(_thing(m.group(1), _ASK_FILLERS), thing, asked):
                    return {"yes"}
    return set()


def _states_the_asked(stated: list[str], thing: frozenset[str], asked: set[str]) -> bool:
    """Whether a stated noun phrase is the asked ``thing`` (``asked``: its words and their stems): its head, the
    last word, is asked ("a calcified mass" for a mass, "an effusion" for a pleural effusion), or it holds the
    whole thing ("a fractured rib" for a fracture); "pleural thickening" is no pleural effusion."""
    if not stated:
        return False
    said = _stems(set(stated))
    return bool(_stems({stated[-1]}) & asked) or all(_stems({word}) & said for word in thing)


# no, not, none, negative, without, absent (and a few non-words); written charset first, which the engine scans for
_DENIAL_RE = re.compile(r"[nwa](?<=\b[nwa])(?:o|ot|one|egative|ithout|bsent)\b")


def _denies_the_asked(text: str, question: str) -> bool:
    """Whether a reply denies the thing an existence question asks about and never asserts it ("Yes,
    there is no fracture." to "Is there a fracture?"); a denial word is looked for first."""
    head = text[:_EXISTENCE_CHARS]
    if _DENIAL_RE.search(head.lower()) is None:
        return False
    thing, _ = _asked_thing(question)
    if not thing:
        return False
    clauses = _canon_clauses(head)
    said = [_mentions(clauses, word) for word in _stems(thing)]
    return any(negated for _, negated, _ in said) and not any(asserted for asserted, _, _ in said)


_TELEGRAPHIC_WORDS = 4
_DEGREES = frozenset({"small", "large", "tiny", "big", "huge", "massive", "mild", "mildly", "moderate", "moderately",
                      "severe", "severely", "minimal", "trace", "subtle", "multiple", "several", "few", "single"})
_SIDE_WORDS = frozenset({"left", "right", "bilateral"})


def _names_only_the_asked(words: list[str], asked: set[str], where: frozenset[str]) -> bool:
    """A telegraphic reply of a few words naming the asked thing, perhaps where and that it is seen, and
    nothing else ("Cardiomegaly.", "Mass present.", "Liver mass." for "Is there a mass in the liver?");
    "Heart normal." names more than the asked "enlarged heart", and says nothing here."""
    if len(words) > _TELEGRAPHIC_WORDS or _EXIST_HEDGES.intersection(words) or _denies_existence(words):
        return False
    content = set(_canon(" ".join(words)).split()) - _STOP - _FILLERS - _PREPOSITIONS - _ASK_FILLERS - _DEGREES
    if _SIDE_WORDS.isdisjoint(asked | where):
        content -= _SIDE_WORDS  # "Small left pleural effusion." for "Is there a pleural effusion?"
    named = [_stems({word}) for word in content]
    known = asked | _stems(where)
    return any(stems & asked for stems in named) and all(stems & known for stems in named)


# A reply restating the question as a statement affirms it: "Is the heart enlarged?" "The heart is
# enlarged." / "Enlarged heart." / "It is mildly enlarged, consistent with cardiomegaly." The words of its
# first sentence or phrase, in a reply that negates, hedges and contrasts nothing, must be the question's
# content words, every one, and nothing else but a degree or a linking verb; a bare predicate ("Enlarged.",
# "On the left.") is enough only where the question names a one-word subject ("Is the heart enlarged?", "Is
# the mass on the left?") or a noun after a side or position word ("Is the left kidney enlarged?"), since
# "MRI." does not affirm "Is this a T1 weighted MRI?". Left alone: questions
# where word order carries the meaning ("larger than", "left to right", both sides named), and negated or
# hedged ones. A predicate word's opposite in its place denies it ("Benign." to "Is the lesion malignant?"),
# and "normal" said of the asked subject and nothing else denies an abnormal predicate: "Is the heart
# enlarged?" "The heart size is normal." / "Normal." (but "The lungs are normal." says nothing).
_RESTATEMENT_WORDS = 8
_ASKING_VERBS = frozenset({"is", "are", "was", "were", "does", "do", "did"})
_ORDERED = frozenset({"than", "to", "from", "versus", "vs", "compared"})
_RESTATEMENT_NOISE = _STOP | _FILLERS | _PREPOSITIONS | _ASKING_VERBS | frozenset(
    {"appears", "appear", "seems", "seem", "looks", "look", "shows", "show", "demonstrates", "they", "mildly",
     "moderately", "severely", "markedly", "slightly", "significantly", "clearly", "very", "taken", "side", "sided"})
_DETERMINERS = frozenset({"the", "this", "these", "those"})
_CONTRASTS = frozenset({"but", "however", "although", "though", "whereas", "yet", "actually", "wait", "correction",
                        "instead", "rather"})  # a contrast or a self-correction
_THING_ENDS = _CONTRASTS | {"than", "unlike", "except", "not"}  # "a cyst rather than a mass" states a cyst
_ABNORMAL_PREDICATES = frozenset(
    {"enlarged", "dilated", "distended", "thickened", "widened", "narrowed", "deviated", "displaced", "shifted",
     "herniated", "collapsed", "obstructed", "swollen", "edematous", "hyperinflated", "elevated", "compressed",
     "increased", "decreased", "reduced"})
# The opposite of a predicate word: said in its place, it denies the predicate ("Benign." to "Is the lesion
# malignant?", "On the right." to "Is the mass on the left?")
_ANTONYMS = {first: second for pair in (
    ("left", "right"), ("benign", "malignant"), ("hypodense", "hyperdense"), ("hypoechoic", "hyperechoic"),
    ("hypointense", "hyperintense"), ("male", "female"), ("anterior", "posterior"), ("superior", "inferior"),
    ("upper", "lower"), ("medial", "lateral"), ("proximal", "distal"), ("increased", "decreased"),
    ("solid", "cystic"), ("acute", "chronic"), ("healthy", "diseased"), ("symmetric", "asymmetric"),
    ("symmetrical", "asymmetrical")) for first, second in (pair, pair[::-1])}
_NORMAL_WORDS = frozenset({"normal", "unremarkable"})
_PREDICATE_WORDS = frozenset(_ANTONYMS) | _ABNORMAL_PREDICATES
_NORMAL_ASPECTS = frozenset({"size", "limit", "within", "appearance", "caliber", "calibre", "position", "width",
                             "density", "contour", "shape", "sized", "silhouette", "outline"})


@lru_cache(maxsize=4096)
def _restatable(question: str) -> tuple[frozenset[str], frozenset[str]]:
    """The content words a reply must restate to affirm ``question``, and those of its predicate where it
    has the "Is the <subject> <predicate>?" shape with a one-word subject ("Is the heart enlarged?", "Is
    the mass on the left?"), a noun after a side or position word ("Is the left kidney enlarged?") or any
    subject before a predicate word that ends the question ("Is the liver lesion hypodense?"), else none;
    nothing at all when it cannot be read as above."""
    words = normalize(question).split()
    if not words or words[0] not in _ASKING_VERBS or "left" in words and "right" in words or not (
            _ORDERED.isdisjoint(words) and not _denies_existence(words) and _EXIST_HEDGES.isdisjoint(words)):
        return frozenset(), frozenset()
    content = _content_words(question)
    raw = question.lower().split()  # articles kept: "is this a t1 mri" names no subject word, "is the heart" does
    last = _content_words(raw[-1])
    if len(raw) > 3 and last and last <= _PREDICATE_WORDS:
        size = len(raw) - 3  # a predicate word ends the question: "Is the liver lesion hypodense?"
    else:
        size = 2 if len(raw) > 2 and raw[2] in _ANTONYMS else 1  # "the left kidney", "the upper lobe"
    subject = _content_words(" ".join(raw[2 : 2 + size])) if len(raw) > 2 + size and raw[1] in _DETERMINERS else set()
    predicate = _content_words(" ".join(raw[2 + size :])) if subject else set()
    return frozenset(content), frozenset(predicate) if predicate and subject | predicate == content else frozenset()


def _content_words(text: str) -> set[str]:
    return set(_canon(normalize(text)).split()) - _RESTATEMENT_NOISE


# A question about the whole image's normality ("Is this image normal?", "Is there any abnormality?", "Does the
# picture contain abnormality?") is answered by a finding stated un-negated and unhedged in the reply's first two
# clauses ("There is a large mass in the liver." says abnormal); a question about one organ's ("Is the lung
# healthy?") by such a finding whose own phrase names the organ ("There is a mass in the lung.", :func:`_names_organ`).
_FINDINGS = frozenset({
    "mass", "lesion", "nodule", "tumor", "cancer", "carcinoma", "metastasis", "cyst", "abscess", "fracture", "effusion",
    "pneumothorax", "pneumoperitoneum", "consolidation", "opacity", "infiltrate", "atelectasis", "hemorrhage",
    "hematoma", "edematous", "infarct", "calcification", "enlarged", "dilated", "obstructed", "thickened", "herniated",
    "collapsed", "stenosis", "aneurysm", "thrombus", "embolism", "pneumonia", "emphysema", "fibrosis", "necrosis",
    "inflammation", "ulcer", "polyp", "nephrolithiasis", "cholelithiasis", "malignant", "neoplasm", "granuloma"})
_FINDING_RE = re.compile(rf"\b(?:{'|'.join(sorted(_FINDINGS))})\b")
_ABNORMALITY_WORDS = frozenset({"abnormal", "abnormality", "abnormalities"})
_WHOLE_IMAGE_WORDS = _ABNORMALITY_WORDS | {"normal", "healthy", "finding", "contain", "picture", "photo", "study"}
_ORGAN_WORDS = 2  # "Is the left lung healthy?"


@lru_cache(maxsize=4096)
def _asks_normality(question: str) -> tuple[str | None, frozenset[str]]:
    """("abnormal", organ) when ``question`` asks whether the image (organ: empty) or one organ of a word or two
    holds an abnormality, ("normal", organ) whether it is normal; (None, empty) for any other question."""
    content = _content_words(question)
    organ = frozenset(content - _WHOLE_IMAGE_WORDS - _FINDINGS)
    if len(organ) > _ORGAN_WORDS or content & _FINDINGS:
        return None, frozenset()
    if content & _ABNORMALITY_WORDS:
        return "abnormal", organ
    return ("normal", organ) if content & {"normal", "healthy"} else (None, frozenset())


def _finding_stated(text: str, question: str) -> set[str]:
    asks, organ = _asks_normality(question)
    if asks is None:
        return set()
    for clause in _canon_clauses(text[:_EXISTENCE_CHARS])[:2]:
        if not _EXIST_HEDGES.isdisjoint(clause.split()):
            continue
        for m in _FINDING_RE.finditer(clause):
            before, after = _context(clause, m.start(), m.end())
            if not _negated(before, after) and not _listed(before, after) and _names_organ(before, after, organ):
                return {"yes"} if asks == "abnormal" else {"no"}
    return set()


def _names_organ(before: list[str], after: list[str], organ: frozenset[str]) -> bool:
    """Whether a finding's own phrase names ``organ`` (every word; empty: any finding): the words right after it
    when there are any ("enlarged heart": the heart), else those right before it ("lung mass") and where it is
    ("mass in the left lung"); "Lungs clear, hepatomegaly." states a finding of the liver, not of the lungs."""
    if not organ:
        return True
    phrase = list(islice(takewhile(lambda w: w not in _PREPOSITIONS and w not in _STOP, after), 3))
    if not phrase:
        phrase = list(islice(takewhile(lambda w: w not in _PREPOSITIONS and w not in _STOP, reversed(before)), 3))
        phrase += after[1:6] if after and after[0] in _LOCATIVE else []
    said = _stems(set(phrase))
    return all(_stems({word}) & said for word in organ)


# Kinds of which an image or patient is exactly one: a question about one alone ("Is this an MRI?", "Is this a
# sagittal image?", "Is the patient male?") is answered no by a reply whose first phrase names another of its
# kinds and not the asked one ("This is a CT scan.", "Coronal.", "Female."), and yes by one naming the asked kind
# of every class asked ("This is a chest radiograph." to "Is this an X-ray?"; "MRI." says nothing of "Is this a
# T1 weighted MRI?"), negating and hedging nothing.
_ONE_OF = (frozenset({"xray", "ct", "mri", "ultrasound", "pet", "mammography"}), frozenset({"t1", "t2", "flair"}),
           frozenset({"transverse", "coronal", "sagittal"}), frozenset({"male", "female"}), frozenset({"pa", "ap"}))
_ALL_KINDS = frozenset().union(*_ONE_OF)
_KIND_NOUNS = frozenset({"weighted", "plane", "view", "taken", "modality", "patient", "gender", "sex", "sequence",
                         "film", "projection"})


@lru_cache(maxsize=4096)
def _asked_kinds(question: str) -> tuple[tuple[frozenset[str], frozenset[str]], ...]:
    """(a class, the one kind of it asked) for each class of :data:`_ONE_OF` that ``question`` asks about,
    when it asks about nothing else; else ()."""
    content = _content_words(question) - _KIND_NOUNS
    if not content <= _ALL_KINDS:
        return ()
    return tuple((kinds, kinds & content) for kinds in _ONE_OF if len(kinds & content) == 1)


def _another_kind(text: str, question: str) -> set[str]:
    asked = _asked_kinds(question)
    if not asked:
        return set()
    end = _SEGMENT_MARKS_RE.search(text)
    words = normalize(text if end is None else text[: end.start()]).split()
    if _denies_existence(words) or not _EXIST_HEDGES.isdisjoint(words):
        return set()
    answer = _kind_answer(set(_canon(" ".join(words)).split()), asked)
    return {answer} if answer else set()


def _kind_answer(said: set[str], asked: tuple[tuple[frozenset[str], frozenset[str]], ...]) -> str | None:
    """"no" when a reply's words name another kind of an asked class and not the asked one, "yes" when they name
    the asked kind of every asked class (``asked``: (class, the one kind asked) pairs), else None."""
    if any(kinds & said and not kind & said for kinds, kind in asked):
        return "no"
    return "yes" if asked and all(kinds & said == kind for kinds, kind in asked) else None


def _restatement(text: str, words: list[str], question: str) -> set[str]:
    """{"yes"} when a reply's first phrase restates ``question`` as a statement, {"no"} when it restates it
    with a predicate word's opposite or calls the asked subject normal where the question asks an abnormal
    predicate (above), else nothing; ``words`` are the whole reply's."""
    if _denies_existence(words) or not (_EXIST_HEDGES.isdisjoint(words) and _CONTRASTS.isdisjoint(words)):
        return set()
    end = _SEGMENT_MARKS_RE.search(text)
    if end is not None and end.group() in "?\uff1f":
        return set()  # an echo of the question asks it again
    first = text if end is None else text[: end.start()]
    first_words = normalize(first).split()
    if not 0 < len(first_words) <= _RESTATEMENT_WORDS or first_words[0] in _ASKING_VERBS:
        return set()
    asked, predicate = _restatable(question)
    said = _content_words(first)
    if not asked or not said or any(_ANTONYMS.get(word) in words for word in predicate if word in words):
        return set()  # nothing to restate, or a predicate word and its opposite ("Benign, malignant.")
    if _NORMAL_WORDS & said and asked & _ABNORMAL_PREDICATES and not said & _ABNORMAL_PREDICATES:
        return {"no"} if _only_the_subject(said - _NORMAL_WORDS, asked) else set()
    if _NORMAL_WORDS & asked and said & _ABNORMAL_PREDICATES and not said & _NORMAL_WORDS:
        return {"no"} if _only_the_subject(said - _ABNORMAL_PREDICATES, asked) else set()  # "Cardiomegaly." to
        # "Is the heart size normal?"
    if _restates(said, asked, predicate):
        return {"yes"}
    opposite = {_ANTONYMS[word] if _ANTONYMS.get(word) in predicate else word for word in said}
    return {"no"} if opposite != said and _restates(opposite, asked, predicate) else set()


def _only_the_subject(said: set[str], asked: frozenset[str]) -> bool:
    """Whether a reply's words, besides its predicate, name nothing but the asked subject and its aspects."""
    asked_stems = _stems(asked)
    return all(_stems({word}) & asked_stems for word in said - _NORMAL_ASPECTS)


def _restates(said: set[str], asked: frozenset[str], predicate: frozenset[str]) -> bool:
    asked_stems, said_stems = _stems(asked), _stems(said)
    only_asked = all(_stems({word}) & asked_stems for word in said)
    restates_all = all(_stems({word}) & said_stems for word in asked)
    bare_predicate = bool(predicate) and all(_stems({word}) & said_stems for word in predicate)
    return only_asked and (restates_all or bare_predicate)


def _stems(words: set[str] | frozenset[str]) -> set[str]:
    """Words with their plural endings also dropped, so "nodules" meets "nodule" and "masses" "mass" in
    words that are not in canonical form."""
    out = set(words)
    for w in words:
        if len(w) > 3 and w.endswith("s"):
            out.add(w[:-1])
            if w.endswith(("es", "sis")):
                out.add(w[:-2])
    return out


_EXISTENCE_CHARS = 4000  # a yes/no reply states existence early; a 200 KB response is not scanned whole


def _polarity_reference(reference: object) -> str | None:
    """"yes"/"no" when the reference is a yes/no answer (English, or a SLAKE Chinese closed form)."""
    if not isinstance(reference, str):
        return None
    return _string_polarity(reference) if len(reference) <= 256 else _string_polarity.__wrapped__(reference)


@lru_cache(maxsize=4096)
def _string_polarity(reference: str) -> str | None:
    ref = normalize(reference)
    if ref in ("yes", "no"):
        return ref
    zh = reference.strip(_ZH_STRIP).rstrip("的")
    if zh in _ZH_YES_WORDS:
        return "yes"
    if zh in ("否", "无", "没有", "没") or (zh[:1] in ("不", "没") and zh[1:] in _ZH_YES_WORDS):
        return "no"
    return None


# ---------------------------------------------------------------------------------------------
# numbers

_NUMBER_RE = re.compile(  # "1/2", "1,000.5", "3.5", ".5", then an optional unit ("cm", "%"); not the 2 of "T2"
    r"(?<![\w./])(-?(?:\d+/[1-9]\d*|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+))(?![\w./]*\d)"
    r"\s?(%|[a-zA-Z\u00b5\u03bc]+)?"
)
_UNITS = {
    "mm": ("length", 1e-3), "cm": ("length", 1e-2), "m": ("length", 1.0),
    "mg": ("mass", 1e-3), "g": ("mass", 1.0), "kg": ("mass", 1e3), "mcg": ("mass", 1e-6), "\u00b5g": ("mass", 1e-6),
    "ml": ("volume", 1e-3), "cc": ("volume", 1e-3), "l": ("volume", 1.0),
    "%": ("percent", 1.0), "percent": ("percent", 1.0),
    "st": ("ordinal", 1.0), "nd": ("ordinal", 1.0), "rd": ("ordinal", 1.0), "th": ("ordinal", 1.0),  # "5th" rib
}
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen twenty").split()
_TENS = ("thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_NUMBER_WORDS = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS, 3)}
_ORDINALS = {w: i for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split(), 1)}
_ORDINAL_RE = re.compile(rf"\b({'|'.join(_ORDINALS)})\b")
_NUMBER_BOUNDS = frozenset({"least", "most", "over", "under", "exceeding", "beyond"})  # "at least 2", "over 2"
_ZH_DIGITS = "零一二三四五六七八九十"
# A Chinese numeral counting something (两个, 三处) or ending the reply (二); 一 in 一张/一侧 is an article
_ZH_NUMBER_RE = re.compile("([零一二两三四五六七八九十])(?=[个处块枚只条例]|[\\s\u3002.]*$)")
_NUMBER_WORD_RE = re.compile(rf"\b({'|'.join(_NUMBER_WORDS)})(?:[\s-]({'|'.join(_ONES[1:10])}))?\b")


class Quantity(NamedTuple):
    """A number as written (``value``) and, with a known unit, its dimension and size in base units."""

    value: float
    dimension: str | None = None
    scale: float = 1.0

    def equals(self, other: Quantity) -> bool:
        """Same value: in base units when both carry a unit of one dimension ("35 mm" = "3.5 cm"),
        as written when either has none ("5" answers "5 mm")."""
        if self.dimension and other.dimension:
            same = self.dimension == other.dimension
            return same and math.isclose(self.value * self.scale, other.value * other.scale, rel_tol=1e-9)
        return math.isclose(self.value, other.value, rel_tol=1e-9, abs_tol=1e-12)


def _numbers(text: str) -> Iterator[tuple[Quantity, int, int]]:
    """Each number in a text, with where it is written: "1,000", "3.5cm", "5 mm", ".5", "two", "twenty-five",
    and ordinals ("5th", "fifth"), which only an ordinal reference reads beside a count's bare numbers."""
    for m in _NUMBER_RE.finditer(text):
        written = m.group(1).replace(",", "")
        numerator, _, denominator = written.partition("/")
        value = float(numerator) / float(denominator) if denominator else float(written)
        unit = _UNITS.get((m.group(2) or "").lower())
        yield (Quantity(value, *unit) if unit else Quantity(value)), m.start(), m.end()
    for m in _NUMBER_WORD_RE.finditer(text.lower()):
        value = float(_NUMBER_WORDS[m.group(1)] + (_NUMBER_WORDS[m.group(2)] if m.group(2) else 0))
        yield Quantity(value), m.start(), m.end()
    for m in _ORDINAL_RE.finditer(text.lower()):
        yield Quantity(float(_ORDINALS[m.group(1)]), *_UNITS["th"]), m.start(), m.end()
    if _has_cjk(text):
        for m in _ZH_NUMBER_RE.finditer(text):
            yield Quantity(float(_ZH_DIGITS.index(m.group(1)) if m.group(1) != "两" else 2)), m.start(), m.end()


def _number_negated(text: str, start: int, end: int) -> bool:
    """Whether the number at ``text[start:end]`` is denied, bounded or hedged within its phrase: "not 2",
    "3, not 2", "more than 2", "2 is unlikely", "2 cannot be excluded" (but "Not 3, but 2" states 2, and
    so does "Without contrast, 2 lesions": a number's scope ends at a comma or colon too)."""
    before = _NUMBER_SCOPE_RE.split(text[max(0, start - _CONTEXT_CHARS) : start])[-1]
    after = _NUMBER_SCOPE_RE.split(text[end : end + _CONTEXT_CHARS], maxsplit=1)[0]
    words = normalize(before).split()
    return _negated(words, normalize(after).split()) or bool(words) and words[-1] in _NUMBER_BOUNDS or \
        before[-2:].startswith(_CJK_NEGATORS)


_NUMBER_SCOPE_RE = re.compile(f"{_CLAUSE_RE.pattern}|[,:]", re.IGNORECASE)


def _numeric_reference(reference: str) -> Quantity | None:
    """The one quantity a reference states when it is nothing but a number (and unit)."""
    found = list(islice(_numbers(reference), 2))
    if len(found) != 1:
        return None
    rest = _NUMBER_WORD_RE.sub(" ", _NUMBER_RE.sub(" ", reference.lower()))
    return found[0][0] if not normalize(rest) else None


_MAX_NUMBERS = 32


def _numeric_match(prediction: str, reference: Quantity) -> bool:
    """Right when the prediction states the reference value and no other value of its kind: a count
    ("2") is compared with the numbers stated without a unit ("2 lesions, 1 cm each"), a measurement
    with those in its dimension, each falling back to bare numbers (or any) when there are none; a count
    of zero may be said in words ("None", "No lesions"). A number denied or hedged is not stated ("Not 3,
    but 2" states 2; "Not 2." and "2 cannot be excluded" state nothing)."""
    found = list(islice(_numbers(prediction), _MAX_NUMBERS + 1))
    if len(found) > _MAX_NUMBERS:
        return False  # a list of numbers is not one value
    stated = [q for q, start, end in found if not _number_negated(prediction, start, end)]
    if not found and reference.value == 0 and not reference.dimension:
        return _NONE_RE.match(normalize(prediction)) is not None  # "How many?" "None." / "No lesions are seen."
    bare = [q for q in stated if q.dimension is None]
    if reference.dimension:
        same_kind = [q for q in stated if q.dimension == reference.dimension] or bare
    else:
        same_kind = bare or [q for q in stated if q.dimension != "ordinal"]  # "the second lesion" is no count
    return bool(same_kind) and all(q.equals(reference) for q in same_kind)


# A count of zero said in words: "none", "nothing", "no lesions (are seen)", "there are no lesions"
_NONE_RE = re.compile(r"(?:there (?:is|are) )?(?:none|nothing|no \w+)\b")


# ---------------------------------------------------------------------------------------------
# open-ended, either-or, MMMU open

_OPEN_EXTRA_TOKENS = 12  # an open answer may wrap the reference in this many extra words, no more
_NOTHING_FOUND_CHARS = 200  # a "nothing found" answer is a phrase: longer predictions are not cached or matched whole
_PARTS_RE = re.compile(r"\s*(?:,|;|\band\b|&|\+)\s*", re.IGNORECASE)
_SHORT_PART = 3  # a list item of at most this many words is an extra candidate answer
_CJK_NEGATORS = ("不", "没", "无", "非", "否", "未")


def _parts(text: str) -> list[str]:
    return [p for p in (_canon_norm(part) for part in _PARTS_RE.split(text)) if p]


# An answer that nothing abnormal is found, in its usual forms (normalised: articles and punctuation gone): "None",
# "Normal", "Unremarkable", "No abnormality (seen)", "There are no abnormalities", "Within normal limits"
_NOTHING_FOUND_RE = re.compile(
    r"(?:there (?:is|are) )?(?:none|nothing(?: abnormal)?|normal|unremarkable|negative|within normal limits|"
    r"no (?:(?:acute|significant|obvious|definite|other|evident|apparent|visible|major) ){0,2}"
    r"(?:abnormality|abnormalities|abnormal findings?|findings?|pathology|lesions?|disease)|"
    rf"normal (?:study|image|scan|exam|examination|findings?))(?: (?:is |are |was |were )?{_EXIST_SEEN})?"
)


@lru_cache(maxsize=4096)
def _says_nothing_found(text: str) -> bool:
    return _NOTHING_FOUND_RE.fullmatch(normalize(text)) is not None


def _open_match(prediction: str, reference: str) -> bool:
    if _says_nothing_found(reference) and len(prediction) <= _NOTHING_FOUND_CHARS and _says_nothing_found(prediction):
        return True  # "No abnormality" is "None" is "Normal"
    if _has_cjk(reference):
        return _cjk_match(_in_chinese(prediction, reference), reference)
    if _has_cjk(prediction) and _cjk_match(prediction, reference):
        return True  # "磁共振" and "这是一张MRI图像" answer "MRI"
    quantity = _numeric_reference(reference)
    if quantity is not None:
        return _numeric_match(prediction, quantity)
    ref = _canon_norm(reference) or reference.strip().lower()
    if len(ref) == 1:
        return _letter_answer(prediction, ref.upper())
    pred = _canon_norm(prediction)
    if pred == ref or _inverted_name(prediction, pred) == ref:
        return True
    if len(pred.split()) > len(ref.split()) + _OPEN_EXTRA_TOKENS:
        return False
    wanted = _parts(reference)
    wanted = wanted if len(wanted) > 1 else [ref]
    clauses = _canon_clauses(prediction)
    for part in wanted:
        asserted, negated, listed = _mentions(clauses, part)
        if not asserted or negated or listed:
            return False
    return not _extra_candidates(_parts(prediction), wanted)


def _inverted_name(prediction: str, canonical: str) -> str:
    """A name written the other way round, in plain order: a report's "Kidney, left" -> "left kidney" ("Lobe,
    left lower" -> "left lower lobe"), "Aneurysm of the aorta" -> "aorta aneurysm" (as "Aortic aneurysm" reads),
    "The heart is enlarged." -> "enlarged heart" (as "Cardiomegaly" reads); "" unless the prediction is two
    parts around one comma, "of", "is" or "are" (``canonical``: its canonical form)."""
    if len(prediction) > _INVERTED_NAME_CHARS:
        return ""
    head, comma, tail = prediction.partition(",")
    if comma:
        return "" if "," in tail else f"{_canon_norm(tail)} {_canon_norm(head)}"
    for word in (" of ", " is ", " are "):
        head, found, tail = canonical.partition(word)
        if found:
            return f"{tail} {head}" if word not in tail else ""
    return ""


_INVERTED_NAME_CHARS = 80  # a name, not a sentence with a comma


def _extra_candidates(parts: list[str], wanted: list[str]) -> bool:
    """Whether a list-like answer ("liver, kidney and spleen") names items beyond the reference's
    parts: listing everything must not pay. Only short lists count, not sentences with commas."""
    if len(parts) <= len(wanted) or any(len(p.split()) > _SHORT_PART for p in parts):
        return False
    extra = [p for p in parts if not any(f" {w} " in f" {p} " for w in wanted) and p.split()[0] not in _NEG_BEFORE]
    return any(set(p.split()) - _FILLERS - _YES - _NO - _STOP for p in extra)


def _letter_answer(prediction: str, letter: str) -> bool:
    """A one-letter reference (MMMU open answers, "which letter marks ..."): the letter alone, or
    in label form ("The answer is B"); normalisation would drop "A" as an article. The letter is
    the one option, with no text (so only a label names it)."""
    bare = _MARKUP_RE.sub("", prediction).strip(" \t\n().[]:")
    return bare.upper() == letter or _choice(prediction, _option_set(((letter, ""),))) == letter


_CJK_RE = re.compile("[\u4e00-\u9fff]")


def _has_cjk(text: str) -> bool:
    return not text.isascii() and _CJK_RE.search(text) is not None  # isascii: a flag CPython keeps, no scan


# Chinese spellings of one thing: modality names (磁共振 is MRI, X线 X光), a side with or without 侧 (左侧肺 is 左肺),
# an organ with or without 脏/部 (肝 is 肝脏, 肺部 肺; 部位 and 部分 keep theirs)
_ZH_SPELLINGS = (
    (re.compile(r"(?:核)?磁共振(?:成像|扫描)?|mri|mr(?![a-z])", re.IGNORECASE), "MRI"),
    (re.compile(r"x(?:光|线|射线)(?:片|摄影)?", re.IGNORECASE), "X光"),
    (re.compile(r"计算机断层(?:扫描|成像)?|ct(?:扫描)?", re.IGNORECASE), "CT"),
    (re.compile(r"(?:超声|B超|彩超)(?:检查)?", re.IGNORECASE), "超声"),
    (re.compile(r"([左右双])(?:侧|边)"), r"\1"),
    (re.compile("轴位|轴面|横断位|水平位"), "横断面"), (re.compile("冠状位"), "冠状面"), (re.compile("矢状位"), "矢状面"),
    (re.compile(r"(?<=[\u4e00-\u9fff])(?:脏|部(?![位分]))"), ""),
)
_ZH_LIST_RE = re.compile("和|、|及|与|以及")  # the enumeration marks and words of a list of answers


# English words of SLAKE's Chinese answers (organs, regions, sides, planes, findings), in their canonical spellings on
# both sides, so an English reply answers a Chinese question: "The left lung." is 左肺, "Liver and spleen." 肝和脾
_IN_CHINESE = {
    "liver": "肝", "lung": "肺", "heart": "心", "kidney": "肾", "spleen": "脾", "brain": "脑", "stomach": "胃",
    "pancreas": "胰腺", "bladder": "膀胱", "gallbladder": "胆囊", "colon": "结肠", "rectum": "直肠", "esophagus": "食管",
    "trachea": "气管", "spinal cord": "脊髓", "small bowel": "小肠", "small intestine": "小肠", "large bowel": "大肠",
    "large intestine": "大肠", "duodenum": "十二指肠", "aorta": "主动脉", "bone": "骨", "rib": "肋骨", "spine": "脊柱",
    "uterus": "子宫", "prostate": "前列腺", "chest": "胸", "abdomen": "腹", "head": "头", "neck": "颈", "pelvis": "盆腔",
    "left": "左", "right": "右", "bilateral": "双", "upper": "上", "middle": "中", "lower": "下", "lobe": "叶",
    "transverse plane": "横断面", "coronal plane": "冠状面", "sagittal plane": "矢状面", "nodule": "结节",
    "pneumonia": "肺炎", "pleural effusion": "胸腔积液", "effusion": "积液", "pneumothorax": "气胸", "mass": "肿块",
    "edema": "水肿", "edematous": "水肿", "tumor": "肿瘤", "atelectasis": "肺不张", "fracture": "骨折", "cyst": "囊肿",
    "hemorrhage": "出血", "consolidation": "实变", "infiltration": "浸润", "and": "和", "or": "或",
}
_IN_CHINESE_RE = re.compile(rf"\b(?:{'|'.join(sorted(_IN_CHINESE, key=len, reverse=True))})\b")
_IN_CHINESE_MODIFIERS = frozenset({"左", "右", "双", "上", "中", "下", "叶", "和", "或"})  # may be said beyond the reference
_BETWEEN_CJK_RE = re.compile("(?<=[\u4e00-\u9fff]) (?=[\u4e00-\u9fff])")


def _in_chinese(prediction: str, reference: str) -> str:
    """An English reply with its words of :data:`_IN_CHINESE` in Chinese, for a Chinese ``reference``. A reply
    is left as it is when it negates anything (its negation is English, which the Chinese match cannot read) or
    names an organ, region or finding the reference does not ("Heart and lung." for 心脏)."""
    if _has_cjk(prediction) or not prediction.isascii() or len(prediction) > _CONTEXT_CHARS:
        return prediction
    canon = _canon_norm(prediction)
    if not _NEG_BEFORE.isdisjoint(canon.split()):
        return prediction
    terms = [_IN_CHINESE[m.group(0)] for m in _IN_CHINESE_RE.finditer(canon)]
    ref = _zh_canon(reference)
    if any(term not in ref and term not in _IN_CHINESE_MODIFIERS for term in terms):
        return prediction
    return _BETWEEN_CJK_RE.sub("", _IN_CHINESE_RE.sub(lambda m: _IN_CHINESE[m.group(0)], canon))


def _zh_canon(text: str) -> str:
    text = text.strip(_ZH_STRIP)
    for pattern, repl in _ZH_SPELLINGS:
        text = pattern.sub(repl, text)
    return text


def _cjk_match(prediction: str, reference: str) -> bool:
    """Chinese open answers have no word boundaries: the reference inside a short reply, not
    negated right before it, with no alternatives (或/还是) nor more listed items (和/、) than it has."""
    ref = _zh_canon(reference)
    pred = _zh_canon(prediction)
    parts = _ZH_LIST_RE.split(ref)
    if len(parts) > 1:  # 肝脏和脾脏: the same items, in any order
        return sorted(p.strip(_ZH_STRIP) for p in _ZH_LIST_RE.split(pred)) == sorted(p.strip(_ZH_STRIP) for p in parts)
    at = pred.find(ref)
    if not ref or at == -1 or len(pred) > len(ref) + 4 * _OPEN_EXTRA_TOKENS or "或" in pred or "还是" in pred:
        return False
    if _ZH_LIST_RE.search(pred):
        return False  # 肝脏和脾脏 lists more than the one reference
    return not pred[max(0, at - 2) : at].endswith(_CJK_NEGATORS) and not pred[max(0, at - 2) : at].startswith(_CJK_NEGATORS)


def question_choices(question: object, reference: object) -> tuple[str, ...]:
    """The two alternatives of a closed "A or B" question whose reference is one of them (SLAKE:
    "Is this a CT or MRI?" -> ("mri", "ct")), reference first; () when the question is not one.
    A reference "Both" gives ("both", A, B) where each alternative is one word and B ends the
    question ("Which lung is abnormal, left or right?"), so that a word beside "or" is the whole
    alternative ("left lobe or right lobe" has no such reading and stays an open question)."""
    if not isinstance(question, str) or not isinstance(reference, str):
        return ()
    return _question_choices(question, reference)


@lru_cache(maxsize=4096)  # the RL reward asks once per response, and a GRPO group shares its question
def _question_choices(question: str, reference: str) -> tuple[str, ...]:
    if "还是" in question:
        return _zh_question_choices(question, reference)
    q, ref = _canon_norm(question), _canon_norm(reference)
    if " or " not in f" {q} " or not ref or _polarity_reference(reference):
        return ()
    left, right = (side.split() for side in f" {q} ".split(" or ", 1))
    words = ref.split()
    if words[0] == "both" and len(words) <= 2:
        return ("both", left[-1], right[0]) if left and len(right) == 1 and left[-1] != right[0] else ()
    k = len(words)
    if left[-k:] == words and len(right) >= k:
        return ref, " ".join(right[:k])
    if right[:k] == words and len(left) >= k:
        return ref, " ".join(left[-k:])
    return ()


_CJK_CHOICE_CHARS = 2000  # a Chinese choice answer is a few characters; a runaway reply is not searched whole
_ASCII_TAIL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .\-]*$")
_ASCII_HEAD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .\-]*")
_ZH_QUESTION_END = _ZH_STRIP + "?\uff1f吗呢"


def _zh_question_choices(question: str, reference: str) -> tuple[str, ...]:
    """A Chinese "A还是B" question ("这是CT还是MRI?", "病灶在左肺还是右肺?"): the reference and the other
    alternative, as written. Chinese has no word boundaries, so a Chinese alternative is as long as the
    reference (the pairs are parallel: 横断面/冠状面, 左肺/右肺) and a Latin one is its run of Latin letters."""
    ref = reference.strip(_ZH_STRIP)
    if not ref or _polarity_reference(reference):
        return ()
    left, right = question.split("还是", 1)
    left, right = left.strip(), right.strip().rstrip(_ZH_QUESTION_END)

    mixed = not ref.isascii() and any(ch.isascii() and ch.isalnum() for ch in ref)  # "T2加权"

    def side(text: str, at_end: bool) -> str:
        edge = text[-1:] if at_end else text[:1]
        latin = (_ASCII_TAIL_RE.search(text) if at_end else _ASCII_HEAD_RE.match(text))
        if latin and edge.isascii() and edge.isalnum() and not mixed:
            return latin.group(0).strip(" .-")
        return text[-len(ref):] if at_end else text[: len(ref)]

    before, after = side(left, True), side(right, False)
    if before.lower() == ref.lower() and after:
        return ref, after
    if after.lower() == ref.lower() and before:
        return ref, before
    return ()


def _zh_named(text: str, choice: str) -> bool:
    """Whether a reply names ``choice`` un-negated ("是MRI", "MRI"; not "不是MRI", "比肾脏大"'s 肾脏, nor
    the "CT" inside "CTA")."""
    hay, needle = _zh_canon(text).lower(), _zh_canon(choice).lower()  # 磁共振 names MRI, 肝 names 肝脏
    latin = needle[:1].isascii()
    at = hay.find(needle)
    while at != -1:
        end = at + len(needle)
        bounded = not latin or ((at == 0 or not (hay[at - 1].isascii() and hay[at - 1].isalnum()))
                                and (end >= len(hay) or not (hay[end].isascii() and hay[end].isalnum())))
        before = hay[max(0, at - 2) : at]
        if bounded and not any(neg in before for neg in _CJK_NEGATORS) and not before.endswith("比"):
            return True
        at = hay.find(needle, at + 1)
    return False


def _zh_completed(prediction: str, choices: tuple[str, ...]) -> str:
    """A Chinese reply that names neither alternative whole but, ending a phrase, what tells them apart reads as
    naming that alternative: "右侧。" as 右肺 of 左肺/右肺 (their shared start and end are what is left out)."""
    text = _zh_canon(prediction[:_CJK_CHOICE_CHARS])
    if len(choices) < 2:
        return text
    first, second = (_zh_canon(c) for c in choices)
    start = len(os.path.commonprefix([first, second]))
    end = len(os.path.commonprefix([first[start:][::-1], second[start:][::-1]]))
    cores = (first[start : len(first) - end], second[start : len(second) - end])
    if not (start or end) or not all(cores) or first in text or second in text:
        return text
    shared_start, shared_end = first[:start], first[len(first) - end :]
    return re.sub(f"({'|'.join(map(re.escape, cores))})(?![\u4e00-\u9fff])",
                  lambda m: shared_start + m.group(1) + shared_end, text)


# Comparatives of opposite sense: a reply using the other one of the question's names the other alternative
_OPPOSITE_COMPARATIVES = ((frozenset({"larger", "bigger", "greater"}), frozenset({"smaller"})),
                          (frozenset({"higher"}), frozenset({"lower"})), (frozenset({"brighter"}), frozenset({"darker"})),
                          (frozenset({"more"}), frozenset({"less", "fewer"})))


def _compares_the_other_way(prediction: str, question: str | None) -> bool:
    """Whether a reply answers a comparative question with the opposite comparative ("Which is bigger, the
    kidney or the liver?" "The kidney is smaller than the liver."), and never with the question's own."""
    if not question:
        return False
    asked, said = set(normalize(question).split()), set(normalize(prediction).split())
    for first, second in _OPPOSITE_COMPARATIVES:
        for own, other in ((first, second), (second, first)):
            if asked & own and not asked & other:
                return bool(said & other) and not said & own
    return False


def _either_or(prediction: str, choices: tuple[str, ...], question: str | None = None) -> Verdict:
    """An "A or B" question: the reference (``choices[0]``) named un-negated, the other not (the other way
    round when the reply compares with the opposite of the question's comparative)."""
    if choices[0] == "both":
        return _both(prediction, choices[1:])
    if any(_has_cjk(c) for c in choices) or _has_cjk(prediction):
        text = _zh_completed(_in_chinese(prediction, "".join(choices[:2])), choices[:2])
        named = [_zh_named(text, c) for c in choices[:2]]
    else:
        clauses = _canon_clauses(prediction)
        said = [(_mentions(clauses, _canon_norm(c))) for c in choices[:2]]
        named = [asserted and not negated for asserted, negated, _ in said]
        if not any(named) and len(said) == 2 and said[0][1] != said[1][1]:
            named = [said[1][1], said[0][1]]  # "It is not benign." of benign or malignant: the other one
        if _compares_the_other_way(prediction, question):
            named = named[::-1]
    if len(choices) < 2 or named[0] == named[1]:
        return Verdict(False, False)
    return Verdict(True, named[0])


def _both(prediction: str, sides: tuple[str, ...]) -> Verdict:
    """An "A or B" question answered "Both": both alternatives named un-negated ("Liver and kidney."),
    or "both" said ("Bilateral." too, of left or right); one alone, or "neither", is a wrong answer."""
    clauses = _canon_clauses(prediction)
    said = lambda word: _mentions(clauses, word)[:2] == (True, False)  # noqa: E731  asserted, not negated
    if said("neither") or said("none"):
        return Verdict(True, False)
    named = [said(side) for side in sides]
    both = said("both") or (set(sides) == {"left", "right"} and (said("bilateral") or said("bilaterally")))
    return Verdict(both or any(named), both or all(named))


def mmmu_open_match(prediction: object, reference: object) -> bool:
    """MMMU's own open-question rule (``parse_open_response`` + ``eval_open`` in MMMU's and
    lmms-eval's ``mmmu/utils.py``): key sub-responses after "is", "so", "therefore", "answer", ...;
    numbers in them compared as floats rounded to 2 decimals; strings by containment. A reference
    may be a Python list of accepted answers ("['24/7', '3.43']")."""
    if not isinstance(prediction, str) or reference is None:
        return False
    golds = _mmmu_golds(str(reference))
    preds = _mmmu_candidates(prediction)
    for pred in preds:
        for gold in golds:
            if isinstance(pred, str) and isinstance(gold, str) and gold in pred:
                return True
            if isinstance(pred, float) and pred == gold:
                return True
    return False


def _mmmu_golds(reference: str) -> list[str | float]:
    answers: list = [reference]
    if reference.strip().startswith("["):
        try:
            parsed = ast.literal_eval(reference.strip())
            answers = [str(a) for a in parsed] if isinstance(parsed, (list, tuple)) else answers
        except (ValueError, SyntaxError):
            pass
    return [norm for a in answers for norm in _mmmu_normalize(a)]


_MMMU_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_MMMU_NUMBER_RES = (re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b"), re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+"),
                    re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+)(?![eE][+-]?\d+)(?![,\d])"))


def _mmmu_candidates(response: str) -> list[str | float]:
    text = response.strip().strip(".").lower()
    subs = text.split("\n")
    keys = []
    for index, sub in enumerate(subs):
        indicators = _MMMU_INDICATORS + (("=",) if index == len(subs) - 1 else ())
        tails = [sub.split(ind)[-1].strip() for ind in indicators if ind in sub]
        shortest = min(tails, key=len) if tails else ""
        if shortest and shortest not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    keys = keys or [text]
    candidates = list(keys) + [n for key in keys for pattern in _MMMU_NUMBER_RES for n in pattern.findall(key)]
    return [norm for c in candidates for norm in _mmmu_normalize(c)]


def _mmmu_normalize(text: str) -> list[str | float]:
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        text = text.lower()
        return [" " + text, text + " "] if len(text) == 1 else [text]


# ---------------------------------------------------------------------------------------------
# the verdict


def judge(
    prediction: object,
    reference: object,
    options: object = None,
    *,
    question: object = None,
    choices: Iterable[str] = (),
    rules: object = "medsage",
) -> Verdict:
    """Whether ``prediction`` gives an answer at all, and whether it is the ``reference``; never raises.

    For multiple choice ``reference`` is the correct letter (or the correct option's text);
    ``choices`` are an "A or B" question's alternatives (:func:`question_choices`); ``question``
    lets yes/no statements about the asked predicate count; ``rules="mmmu"`` scores open
    questions by MMMU's rules (:func:`mmmu_open_match`). A question that is not text asks nothing, and rules
    other than "mmmu" are MEDSAGE's.
    """
    try:
        opts = _options(options)
        asked = question if isinstance(question, str) else None
        mode = "mmmu" if rules == "mmmu" else "medsage"
        if isinstance(prediction, str) and len(prediction) <= _CACHED_CHARS and isinstance(reference, str):
            return _verdict_cached(prediction, reference, opts, asked, tuple(choices), mode)
        return _verdict(prediction, reference, opts, asked, tuple(choices), mode)
    except Exception:  # noqa: BLE001 - a reward must never take the trainer down
        return Verdict(False, False)


_CACHED_CHARS = 512  # answers this short repeat (a GRPO group's closed answers, "B", "Yes") and are cached


def _verdict(prediction: object, reference: object, opts: _OptionSet, question: str | None, choices: tuple,
             rules: str) -> Verdict:
    kind = _answer_type(bool(opts.items), reference, choices)
    if kind is AnswerType.MULTIPLE_CHOICE:
        return _judge_choice(prediction, reference, opts)
    if not isinstance(prediction, str):
        return Verdict(False, False)
    if kind is AnswerType.YES_NO:
        said = yes_no(prediction, question)
        return Verdict(said is not None, said == _polarity_reference(reference))
    if kind is AnswerType.EITHER_OR:
        return _either_or(prediction, choices, question)
    answered = bool(normalize(prediction)) or bool(prediction.strip())
    if rules == "mmmu":
        return Verdict(answered, answered and mmmu_open_match(prediction, reference))
    ref = "" if reference is None else str(reference)
    return Verdict(answered, answered and bool(ref.strip()) and _open_match(prediction, ref))


_verdict_cached = lru_cache(maxsize=1 << 16)(_verdict)


def _judge_choice(prediction: object, reference: object, options: _OptionSet) -> Verdict:
    ref = str(reference).strip().strip("().").upper() if reference is not None else ""
    if ref not in options.letters:
        by_text = [k for k, v in options.items if normalize(v) == normalize(reference)]
        ref = by_text[0] if len(by_text) == 1 else ""
    chosen = _choice(prediction, options)
    return Verdict(chosen is not None, bool(ref) and chosen == ref)


def match_answer(prediction: object, reference: object, options: object = None, **context: object) -> bool:
    """Whether ``prediction`` gives the ``reference`` answer (:func:`judge`'s ``correct``; ``context``:
    ``question``, ``choices``, ``rules`` as there); never raises on any prediction or reference."""
    return judge(prediction, reference, options, **context).correct  # type: ignore[arg-type]


def clear_caches() -> None:
    """Empty every cache of the matcher (verdicts, clauses, segments, canonical texts, options): a
    benchmark calls it between rounds so that no round is scored from an earlier round's work."""
    for value in list(globals().values()):
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()
