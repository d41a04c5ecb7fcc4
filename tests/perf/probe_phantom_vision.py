"""Can the quickstart's tiny model read the phantom lesion from pixels at all? (issue 7)

Run: ``.venv/bin/python tests/perf/probe_phantom_vision.py [--steps 400] [--seeds 0 1 2]``.

The quickstart's SFT teaches the LVKC scaffold and the answer at once, so a yes/no accuracy at
chance does not say whether the pixels or the text are the bottleneck. This probe removes the
text: the tiny Qwen2.5-VL of ``recipes/quickstart/quickstart.yaml`` (every parameter trainable,
as in the quickstart) is trained to answer one token, the organ that holds the lesion, after a
short prompt on phantom CT slices, and scored on held-out slices against the majority-class rate.
It prints held-out accuracy per seed, side by side with the majority rate. An accuracy near the
majority rate means the phantom lesion is not learnable at this budget, whatever the SFT data says.
``--lr`` shows why the quickstart aligns the random vision tower at the ``align`` stage's 3e-4
rather than the SFT stage's 2e-3: at 1e-3 and above held-out accuracy stays near the majority rate.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections import Counter
from pathlib import Path

import torch
import yaml
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from medsage.data_gen import phantom
from medsage.plugins.tiny_model import TinySizes, build_tiny_qwen2_5_vl

REPO = Path(__file__).resolve().parents[2]
ORGANS = sorted({o.name for o in phantom.ORGANS})
PROMPT = "<|vision_start|><|image_pad|><|vision_end|>Which organ holds the lesion? Answer:"


def slices(n: int, seed: int) -> list[tuple[object, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pixels, lesion = phantom.ct_slice(rng)
        out.append((phantom.ct_to_8bit(pixels).convert("RGB"), ORGANS.index(lesion.label)))
    return out


def train_and_score(model_dir: Path, train: list, test: list, steps: int, lr: float, seed: int) -> float:
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir)
    answer_ids = torch.tensor([processor.tokenizer.encode(" " + name)[0] for name in ORGANS])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)

    def organ_logits(batch: list) -> torch.Tensor:
        enc = processor(text=[PROMPT] * len(batch), images=[image for image, _ in batch], return_tensors="pt")
        return model(**enc).logits[:, -1, answer_ids]

    rng = random.Random(seed)
    for step in range(steps):
        batch = rng.sample(train, 8)
        warm_cos = min(1.0, (step + 1) / 20) * 0.5 * (1 + torch.cos(torch.tensor(step / steps * torch.pi)).item())
        for group in optimizer.param_groups:
            group["lr"] = lr * warm_cos
        loss = torch.nn.functional.cross_entropy(organ_logits(batch), torch.tensor([y for _, y in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        right = sum((organ_logits(test[i:i + 50]).argmax(-1) == torch.tensor([y for _, y in test[i:i + 50]])).sum().item()
                    for i in range(0, len(test), 50))
    return right / len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    sizes = yaml.safe_load((REPO / "recipes/quickstart/quickstart.yaml").read_text())["model"]
    train, test = slices(args.train, seed=0), slices(200, seed=99)
    majority = max(Counter(y for _, y in test).values()) / len(test)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            model_dir = build_tiny_qwen2_5_vl(Path(tmp) / f"model{seed}", seed=seed, sizes=TinySizes(**sizes))
            accuracy = train_and_score(model_dir, train, test, args.steps, args.lr, seed)
            print(f"seed {seed}: held-out organ accuracy {accuracy:.3f}  majority {majority:.3f}  "
                  f"ratio {accuracy / majority:.2f}  ({args.steps} steps, {args.train} slices)", flush=True)


if __name__ == "__main__":
    main()
