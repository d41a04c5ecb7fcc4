"""Evaluation on the paper's medical VQA benchmarks (section 4, Tables 1-2; OmniMedVQA, appendix B.2).

- ``benchmarks``: loaders for the public on-disk formats -> :class:`~medsage.eval.benchmarks.Item`.
- ``prompts``: the LVKC prompt shared with SFT/RL data, plain baselines, self-check modes.
- ``backends``: HF transformers, OpenAI-compatible HTTP, vLLM offline (GPU).
- ``predictions``: incremental, resumable JSONL predictions (optionally self-check and retry).
- ``scoring``: the training reward's matcher, parse-failure rate, open overlap, bootstrap CIs.
- ``judge``: LLM judges (open answers 0/1; Table 2 reasoning scores 1-5), cached.
- ``report`` / ``published``: Table 1/2 markdown + CSV beside the paper's numbers, a PNG chart.
- ``leakage``: benchmark questions whose image is in a training set (data_gen's perceptual hash).
- ``config`` / ``evaluate`` / ``cli``: the YAML recipe, one run, and ``medsage-eval`` (``leakage`` subcommand).
"""
