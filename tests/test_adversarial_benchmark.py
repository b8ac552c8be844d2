"""The adversarial benchmark's bounded subset (``--quick``): no family may show a bad outcome.

One run of every family's quick subset (218 inputs, under limits, in one worker process);
one test per family, so that a family whose fix is still open is visible by name. The full run
(over 5,000 inputs) is ``python -m benchmarks.adversarial`` (docs/reliability.md).
"""

from __future__ import annotations

import pytest

from benchmarks.adversarial import BAD, FAMILIES, bad_examples, generate, run_cases, summarise, table


@pytest.fixture(scope="module")
def results():
    return run_cases(generate(quick=True), timeout=20, jobs=1)  # the slowest quick input takes ~3 s


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_has_no_bad_outcome(results, family):
    mine = [r for r in results if r["family"] == family]
    assert mine, f"the quick run has no input of family {family}"
    counts = summarise(mine)[family]
    bad = {k: counts[k] for k in BAD if counts[k]}
    assert not bad, f"{family}: {bad}\n{bad_examples(mine, per_family=10)}"


def test_outcomes_are_classified_and_tabled(results):
    text = table(results)
    assert "| **all** |" in text and "Slowest input:" in text
    assert {r["outcome"] for r in results} <= {"ok", "refused", *BAD}
    assert sum(1 for r in results if r["outcome"] == "refused") > len(results) // 4  # the inputs are hostile
