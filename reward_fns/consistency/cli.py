"""The scorer's two commands, ``medsage-scorer-train`` and ``medsage-scorer-serve``, in the one
command-line shape (``RECIPE.yaml a.b=value ...``). This module imports nothing heavy: torch and the
model load after the arguments are read, so ``--help`` answers at once."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from medsage.config import load, parse, recipe_parser, run

from .client import API_KEY_ENV

TRAIN = "medsage-scorer-train"
SERVE = "medsage-scorer-serve"
TRAIN_HELP = """Train the trajectory-consistency scorer (paper A.4) on data_gen's pairs plus synthetic corruptions.

Writes a Hugging Face folder and eval.json (held-out AUC per negative kind) to output_dir; a killed
run resumes from output_dir/last. Example:
    medsage-scorer-train recipes/scorer/train.yaml pairs=[outputs/data/sage_sft20k/scorer/pairs.jsonl] epochs=1
"""
SERVE_HELP = f"""Serve a trained consistency scorer over HTTP for the RL reward workers (FastAPI on uvicorn, dynamic batching).

API: POST /score {{"items": [{{"question": str, "trajectory": str}}, ...]}} -> {{"scores": [...]}}; GET /health.
A body over max_request_bytes is refused with 413. With an API key, /score needs
'Authorization: Bearer <key>' (the reward client sends ${API_KEY_ENV}). Example:
    export {API_KEY_ENV}=$(openssl rand -hex 16)
    medsage-scorer-serve recipes/scorer/serve.yaml checkpoint=outputs/scorer host=0.0.0.0 port=8765
"""


def train_main(argv: Sequence[str] | None = None) -> int:
    args = parse(recipe_parser(TRAIN, TRAIN_HELP, "recipes/scorer/train.yaml"), argv)
    return run(TRAIN, lambda: _train(args.recipe, args.overrides))


def serve_main(argv: Sequence[str] | None = None) -> int:
    parser = recipe_parser(SERVE, SERVE_HELP, "recipes/scorer/serve.yaml")
    parser.add_argument(
        "--api-key", default=None,
        help=f"require 'Authorization: Bearer KEY' on /score, as vllm serve --api-key; default ${API_KEY_ENV} "
             "(preferred: an option is visible to other users in the process list); neither: no key",
    )
    args = parse(parser, argv)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    return run(SERVE, lambda: _serve(args.recipe, args.overrides, api_key))


def _train(recipe: Path, overrides: list[str]) -> int:
    from .train import TrainConfig, format_metrics, train

    config = load(TrainConfig, recipe, overrides)
    for path in config.pairs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{recipe}: pairs: no file {path} (medsage-data build writes <output_dir>/scorer/pairs.jsonl)")
    print(format_metrics(train(config)))
    return 0


def _serve(recipe: Path, overrides: list[str], api_key: str | None) -> int:
    from .serve import ScorerServer, ServeConfig, bind

    config = load(ServeConfig, recipe, overrides)
    if not Path(config.checkpoint).is_dir():
        raise FileNotFoundError(f"{recipe}: checkpoint: no folder {config.checkpoint} (medsage-scorer-train writes its output_dir)")
    import torch

    from .model import ConsistencyScorer

    device = ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    dtype = ("bfloat16" if device.startswith("cuda") else "float32") if config.dtype == "auto" else config.dtype
    # Refused keys, oversized bodies and failed batches are logged (never the key); requests are not.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listener = bind(config.host, config.port)  # a busy port is the user's to fix: said before loading the model
    try:
        scorer = ConsistencyScorer.load(config.checkpoint, device, getattr(torch, dtype))
    except BaseException:
        listener.close()
        raise
    server = ScorerServer(scorer, config, api_key, listener)
    access = f"/score needs the API key (${API_KEY_ENV} or --api-key)" if api_key else "no API key"
    print(f"consistency scorer {config.checkpoint} at {server.url}; {access}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C, re-raised by uvicorn after its graceful shutdown: no traceback
        return 130
    return 0
