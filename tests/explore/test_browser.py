"""The generated pages in a real headless chromium: they render without a script error, the boxes sit
where the data says, and every kind of filter changes what is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsage.explore.cli import build_site

from chromium import BINARY, Chromium

pytestmark = pytest.mark.skipif(BINARY is None, reason="Debian's chromium is not installed (.ci/run installs it)")

SHOWN = "[...document.querySelectorAll('#items > article')]"


@pytest.fixture(scope="module")
def browser():
    with Chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser_site")
    build_site([inputs["build"], inputs["sessions"], inputs["base"], inputs["trained"]], out)
    return out


def shown(browser: Chromium) -> list[int]:
    return browser.evaluate(f"{SHOWN}.map(a => +a.dataset.index)")


def choose(browser: Chromium, selector: str, value: str | bool) -> None:
    """Set a control as a user would and wait for the render it triggers."""
    before = browser.evaluate("MEDSAGE.renders")
    prop = "checked" if isinstance(value, bool) else "value"
    browser.evaluate(f"(() => {{ const c = document.querySelector({json.dumps(selector)}); c.{prop} = {json.dumps(value)};"
                     "c.dispatchEvent(new Event('change')); })()")
    browser.wait_for(f"MEDSAGE.renders > {before}")


def option_value(browser: Chromium, facet: str, label_start: str) -> str:
    return browser.evaluate(f"[...document.querySelectorAll('select[data-facet={facet}] option')]"
                            f".find(o => o.textContent.startsWith({json.dumps(label_start)})).value")


def no_errors(browser: Chromium) -> None:
    assert browser.exceptions == [] and browser.evaluate("MEDSAGE.errors") == []


def test_samples_page_draws_boxes_and_filters_by_source_and_verdict(browser, built):
    browser.open(built / "samples.html")
    no_errors(browser)
    assert shown(browser) == [0, 1, 2]
    rect = browser.evaluate("(() => { const r = document.querySelector('article[data-index=\"0\"] rect[data-who=T1]');"
                            " return [r.getAttribute('x'), r.getAttribute('y'), r.getAttribute('width'), r.getAttribute('height')]; })()")
    assert rect == ["50", "10", "100", "40"]
    assert browser.evaluate("document.querySelector('article svg').getAttribute('viewBox')") == "0 0 200 100"
    assert browser.evaluate("document.querySelectorAll('article[data-index=\"2\"] .trajectory.rejected').length") == 2
    hovered = browser.evaluate("(() => { const a = document.querySelector('article[data-index=\"0\"]');"
                               " a.querySelector('.trajectory[data-who=T1]').dispatchEvent(new Event('mouseenter'));"
                               " return [...a.querySelectorAll('.hl')].map(b => b.dataset.who); })()")
    assert hovered == ["T1"]  # pointing at a trajectory picks out its box
    choose(browser, "select[data-facet=source]", option_value(browser, "source", "roboflow"))
    assert shown(browser) == [1]
    choose(browser, "select[data-facet=source]", "-1")
    choose(browser, "select[data-facet=verdicts]", option_value(browser, "verdicts", "some rejected"))
    assert shown(browser) == [2]
    no_errors(browser)


def test_a_seeded_random_page_is_the_same_for_the_same_seed(browser, built):
    browser.open(built / "samples.html", "seed=7")
    first = shown(browser)
    assert sorted(first) == [0, 1, 2] and "seed 7" in browser.evaluate("document.querySelector('.summary').textContent")
    browser.open(built / "samples.html", "seed=7")
    assert shown(browser) == first
    choose(browser, "input[data-seed]", "")
    assert shown(browser) == [0, 1, 2]
    no_errors(browser)


def test_sessions_page_marks_spans_and_filters_retried_corrected_budget_stopped(browser, built):
    browser.open(built / "sessions.html")
    no_errors(browser)
    assert shown(browser) == [0, 1, 2]
    spans = browser.evaluate("[...document.querySelectorAll('article[data-index=\"0\"] .span')]"
                             ".map(s => [s.dataset.kind, +s.dataset.advantage])")
    assert spans == [["first_attempt", 0.8], ["first_attempt", 0.0], ["injected", 0.0], ["self_check", 0.2],
                     ["injected", 0.0], ["retry", 0.8]]
    choose(browser, "input[data-flag=corrected]", True)
    assert shown(browser) == [0]
    choose(browser, "input[data-flag=corrected]", False)
    choose(browser, "input[data-flag=budget_stopped]", True)
    assert shown(browser) == [2]
    choose(browser, "input[data-flag=budget_stopped]", False)
    choose(browser, "input[data-flag=retried]", True)
    assert shown(browser) == [0, 1]
    no_errors(browser)


def test_predictions_page_shows_runs_side_by_side_and_filters_wrong_and_parse_failures(browser, built):
    browser.open(built / "predictions.html")
    no_errors(browser)
    assert shown(browser) == list(range(6))
    assert browser.evaluate("document.querySelectorAll('article[data-index=\"0\"] .run').length") == 2
    choose(browser, "input[data-flag=wrong]", True)
    assert shown(browser) == [1, 2, 3, 4, 5]
    choose(browser, "input[data-flag=parse_failure]", True)
    assert shown(browser) == [1]
    assert browser.evaluate("document.querySelector('article[data-index=\"1\"] .run [data-verdict]').dataset.verdict") == "parse failure"
    choose(browser, "input[data-flag=parse_failure]", False)
    choose(browser, "select[data-facet=change]", option_value(browser, "change", "fixed"))
    assert shown(browser) == [1, 2]
    no_errors(browser)
