"""The compiled reward (README "A compiled reward"), built with the README's command, for the test that
it scores exactly as the source does and for the benchmark that times the two side by side.

``python tests/compiled_reward.py`` prints, as JSON, where the reward's modules were imported from and
every result of :func:`results` over :func:`corpus`; with :func:`environment` it reads the compiled build.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import random
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# setup.py's COMPILED ("reward_fns/answers.py", ...) as the installed module names: a module added there is checked here
MODULES = tuple(
    "medsage." + path.removesuffix(".py").replace("/", ".")
    for node in ast.parse((REPO / "setup.py").read_text()).body
    if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED"
    for path in ast.literal_eval(node.value)
)


def build(dest: Path) -> Path:
    """``MEDSAGE_COMPILE=1 pip wheel --no-build-isolation --no-deps .``, the wheel unpacked into ``dest/site``,
    which is returned: first on ``PYTHONPATH``, it makes ``medsage.reward_fns`` the compiled build."""
    wheels = dest / "wheel"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        env={**os.environ, "MEDSAGE_COMPILE": "1"}, capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the compiled build failed (it needs mypy, a C compiler and Python's headers):\n"
                           f"{done.stderr[-4000:]}")
    (wheel,) = wheels.glob("medsage-*.whl")
    site = dest / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


def environment(site: Path) -> dict[str, str]:
    """The environment of a process that imports the compiled build from ``site``."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def loaded_from() -> dict[str, str]:
    """Where each compiled module was imported from in this process."""
    return {name: importlib.import_module(name).__file__ or "" for name in MODULES}


# Words the matcher reads (yes/no, negation and hedging, labels, numbers, units, organs, sides, modalities, Chinese,
# markup) and a few it does not: random replies of them reach every rule.
_WORDS = (
    "yes no not No Yes maybe likely unlikely cannot be excluded ruled out seen present absent without evidence of "
    "free negative positive for normal abnormal enlarged the answer is option choice A B C D a b c (A) B) "
    "\\boxed{C} **B** Simple cyst Metastasis Hemangioma Abscess left right both bilateral lung lungs liver kidney "
    "heart cardiomegaly fracture pneumothorax effusion mass masses nodule CT MRI X-ray xray ultrasound T1 T2 axial "
    "coronal 2 3 three 2.5 cm 2.5cm 1,000 at least more than first third option 3 but however although or either "
    "is are was were there which this appears consistent with cannot exclude correct incorrect wrong not right "
    "是 不是 否 有 没有 未见 左肺 右肺 右侧 结节 正常 不正常 答案是 不 可能 。 ， . , ; : ! ? \n <ANSWER> </ANSWER>"
).split(" ")
_REFERENCES = ("yes", "no", "A", "B", "C", "3", "2.5 cm", "left lung", "liver", "CT", "是", "不是", "右肺", "Both", "", None, 3)
_OPTIONS = (None, {"A": "Simple cyst", "B": "Metastasis", "C": "Hemangioma", "D": "Abscess"},
            {"A": "Left", "B": "Right", "C": "Both"}, {"A": "1", "B": "2", "C": "3"}, ["No pneumothorax", "Pneumothorax"])
_QUESTIONS = (None, "Is there a fracture?", "Is the heart enlarged?", "Is this a CT or an MRI?", "Is it the left or right lung?",
              "How many lesions are there?", "左肺还是右肺?", "有肺结节吗?", "Which option is correct?", 3)
_ODD = (None, 3, 2.5, ["A"], {"x": 1}, b"yes", "", " ", "\x00", "B" * 600, "no " * 300)


def corpus(seed: int = 0, size: int = 3000) -> list[tuple[object, object, object, object]]:
    """(reply, reference, options, question) cases: random replies of :data:`_WORDS`, and odd objects."""
    rng = random.Random(seed)
    cases = []
    for i in range(size):
        reply: object = " ".join(rng.choices(_WORDS, k=rng.randint(1, 14))) if i % 20 else rng.choice(_ODD)
        cases.append((reply, rng.choice(_REFERENCES), rng.choice(_OPTIONS), rng.choice(_QUESTIONS)))
    return cases


def results(cases: list[tuple[object, object, object, object]]) -> list[str]:
    """What each public function of the reward's modules gives on each case (its result, or the exception
    it raises), as text."""
    from medsage.reward_fns import answers, compute_score
    from medsage.reward_fns.scaffold import parse

    out = []
    for reply, reference, options, question in cases:
        response = f"<LOC>Left lung</LOC><VISUAL>v</VISUAL><KNOWLEDGE>k</KNOWLEDGE><CON>c</CON><ANSWER>{reply}</ANSWER>"
        choices = _outcome(answers.question_choices, question, reference)
        out.append(" | ".join((
            choices,
            _outcome(answers.judge, reply, reference, options, question=question,
                     choices=answers.question_choices(question, reference) if isinstance(question, str) else ()),
            _outcome(answers.judge, reply, reference, options, rules="mmmu"), _outcome(answers.extract_answer, reply), _outcome(answers.extract_choice, reply, options),
            _outcome(answers.yes_no, reply, question), _outcome(parse, reply),
            _outcome(compute_score, "corpus", response, reference, {"options": options, "question": question}),
            _outcome(compute_score, "corpus", reply, reference, {"options": options}, require_answer_tag=False),
        )))
    return out


def _outcome(function: Callable[..., object], *args: object, **kwargs: object) -> str:
    try:
        return repr(function(*args, **kwargs))
    except Exception as error:  # noqa: BLE001 - raising is an outcome to compare too
        return f"raises {type(error).__name__}"


if __name__ == "__main__":
    print(json.dumps({"loaded_from": loaded_from(), "results": results(corpus())}))
