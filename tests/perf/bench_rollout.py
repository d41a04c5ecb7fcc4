"""Rollout concurrency of the self-check agent loop (plain script, not collected by pytest).

96 sessions, half of them answering wrong first (three generate calls: tau1, self-check, tau2), the
other half right first (one call), all started together as verl's AgentLoopWorker does, against a
generation backend with a fixed per-call latency. The batch is laid out as verl lays it out: each
prompt (its own image and question) is one row repeated ``rollout.n`` times by reference
(``DataProto.repeat``), 6 as in recipes/rl; ``--n 1`` gives every session a prompt of its own.
Prints batch wall time over the longest session chain (3 calls x latency): 1.0 is perfect overlap;
a loop that ran sessions one after another would be about 96 x 2 / 3 = 64x.

    python tests/perf/bench_rollout.py [--sessions 96] [--n 6] [--latency 1.0 2.0]

The loop's own CPU work (image processing and tokenization in verl's Continuous Token builder, the
reward) is a fixed cost per batch, so the ratio falls towards 1 as per-call latency grows; a vLLM
call generating a few hundred tokens of a 7B model takes seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from transformers import AutoProcessor
from verl.experimental.agent_loop.agent_loop import DictConfigWrap
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.workers.rollout.replica import TokenOutput

from medsage.plugins.tiny_model import build_tiny_qwen2_5_vl
from medsage.plugins.verl.agent_loop import SelfCheckAgentLoop

REPO = Path(__file__).resolve().parents[2]
ANSWER = "<LOC>left lung</LOC><VISUAL>A small opacity.</VISUAL><KNOWLEDGE>Nodules are round.</KNOWLEDGE><CON>Seen.</CON><ANSWER>{}</ANSWER>"
CHECK = "<CHECK><GROUNDING>ok</GROUNDING><ANALYSIS>missed</ANALYSIS><CONSISTENCY>no</CONSISTENCY></CHECK>"


class FixedLatencyBackend:
    """verl's generate() contract with a fixed latency: answers "no" first, then reviews, then "yes"."""

    def __init__(self, tokenizer, latency_s: float):
        self.latency_s = latency_s
        end = [tokenizer.convert_tokens_to_ids("<|im_end|>")]
        self.replies = [tokenizer.encode(t, add_special_tokens=False) + end for t in (ANSWER.format("no"), CHECK, ANSWER.format("yes"))]
        self.turns: dict[str, int] = {}

    async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, **kwargs) -> TokenOutput:
        await asyncio.sleep(self.latency_s)
        turn = self.turns.get(request_id, 0)
        self.turns[request_id] = turn + 1
        steps = dict.fromkeys(("global_steps", "min_global_steps", "max_global_steps"), 0)
        return TokenOutput(token_ids=self.replies[turn][: sampling_params["max_tokens"]], extra_fields=steps)


def _config(model_dir: Path):
    overrides = [
        f"actor_rollout_ref.model.path={model_dir}",
        f"medsage.self_check_template={REPO / 'plugins/verl/templates/self_check.jinja'}",
        f"medsage.retry_template={REPO / 'plugins/verl/templates/retry.jinja'}",
    ]
    with initialize_config_dir(config_dir=str(REPO / "plugins/verl/config"), version_base=None):
        config = compose("rgrpo", overrides=overrides)
    OmegaConf.resolve(config)  # as verl's TaskRunner does before any worker starts
    return config


def _rows(sessions: int, n: int) -> list[dict]:
    """``sessions // n`` prompts, each repeated ``n`` times by reference; every other prompt is
    answered right first (the backend always answers "no" first)."""
    prompts = [
        {
            "raw_prompt": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "image": Image.new("RGB", (84, 84), (90, 90 + p % 100, 90))},
                        {"type": "text", "text": f"Nodule in region {p}? yes or no."},
                    ],
                }
            ],
            "reward_model": {"ground_truth": "no" if p % 2 else "yes"},
            "extra_info": {"index": p},
            "data_source": "bench",
        }
        for p in range(sessions // n)
    ]
    return [row for row in prompts for _ in range(n)]


async def _rollout(config, processor, backend, rows: list[dict]) -> tuple[float, list]:
    async def one(row):
        loop = SelfCheckAgentLoop(
            trainer_config=DictConfigWrap(config), server_manager=backend, tokenizer=processor.tokenizer,
            processor=processor, dataset_cls=RLHFDataset, data_config=DictConfigWrap(config.data),
            hf_model_type="qwen2_5_vl",
        )
        return await loop.run({"temperature": 1.0}, **row)

    start = time.perf_counter()
    outputs = await asyncio.gather(*(one(row) for row in rows))
    return time.perf_counter() - start, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=96)
    parser.add_argument("--n", type=int, default=6, help="sessions per prompt (rollout.n)")
    parser.add_argument("--latency", type=float, nargs="+", default=[1.0, 2.0])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_qwen2_5_vl(Path(tmp) / "tiny", seed=0)
        processor = AutoProcessor.from_pretrained(model_dir)
        config = _config(model_dir)
        for latency in args.latency:
            backend = FixedLatencyBackend(processor.tokenizer, latency)
            # The process's first full garbage collection after the imports and the model build
            # (~0.3 s, half a million objects) is a one-off, not the cost of the batch it falls in.
            gc.collect()
            wall, outputs = asyncio.run(_rollout(config, processor, backend, _rows(args.sessions, args.n)))
            retried = sum(o.extra_fields["retried"] for o in outputs)
            calls, chain = sum(backend.turns.values()), 3 * latency
            print(
                f"sessions={len(outputs)} n={args.n} retried={retried} calls={calls} latency={latency:.2f}s: "
                f"wall {wall:.2f}s / longest chain {chain:.2f}s = {wall / chain:.2f} "
                f"(goal <= 1.3; sequential {calls * latency / chain:.0f}x)"
            )


if __name__ == "__main__":
    main()
