"""``medsage-explore``: a static HTML explorer over what the toolkit writes.

A researcher judges a reasoning dataset or an RL run by looking at examples. This package turns a
data build (``samples.jsonl`` + ``work/trajectories.jsonl``), R-GRPO session records
(``step_<k>.jsonl``) and evaluation runs (``predictions/``, ``scored/``, ``summary.json``) into pages
that open from disk or any static host: :mod:`.samples`, :mod:`.sessions` and :mod:`.predictions`
turn each into entries, :mod:`.site` writes them in chunks with the page shells, :mod:`.cli` detects
what a folder holds.
"""
