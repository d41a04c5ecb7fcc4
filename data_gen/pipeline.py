"""The build: sources -> records -> filter -> label imputation -> leakage -> questions -> ROI sets -> trajectories -> verification -> exports.

Paper section 3.1 and appendix A.3 end to end. Long runs write incrementally: every finished
sample (its trajectories and verdicts) is appended to ``work/trajectories.jsonl``, and every LLM
reply is in the client's request cache, so a killed build rerun with the same recipe skips
finished samples, replays cached calls, and produces the same outputs.
"""

from __future__ import annotations

import asyncio
import json
import random
from contextlib import AsyncExitStack
from dataclasses import asdict, replace
from pathlib import Path

from tqdm import tqdm

from medsage.data_gen import phantom
from medsage.data_gen.card import BuildStats, write_card
from medsage.data_gen.config import BuildConfig, SourceConfig
from medsage.data_gen.exports import (Verified, measure_rl_prompts, rl_candidates, write_pairs, write_rl, write_samples,
                                      write_sft)
from medsage.data_gen.imputation import Imputer
from medsage.data_gen.instructions import (
    Materialised,
    QuestionBuilder,
    Sample,
    label_problem,
    label_spaces,
    load_question_templates,
    materialise,
)
from medsage.data_gen.leakage import dhash, find_leaks, hash_folders
from medsage.data_gen.llm_client import LLMClient, LLMConfig, LLMError
from medsage.data_gen.llm_generator import LLMGenerator
from medsage.data_gen.prompts import StagePrompts
from medsage.data_gen.readers import read_coco, read_deeplesion, read_llava, read_pubmedvision, read_voc, read_yolo
from medsage.data_gen.records import Record, SkipLog
from medsage.data_gen.rois import roi_set
from medsage.data_gen.trajectories import OFFLINE, OfflineGenerator, Trajectory, plan, sample_rois
from medsage.data_gen.verify import Verifier


def read_source(source: SourceConfig, raw_dir: Path, skips: SkipLog):
    """Records of one configured source; phantom kinds first write their files under ``raw_dir``."""
    kind = source.kind
    if kind == "phantom_deeplesion":
        return read_deeplesion(phantom.write_deeplesion(raw_dir / "deeplesion", source.n, source.seed), skips)
    if kind == "phantom_coco":
        return read_coco(phantom.write_coco(raw_dir / "roboflow_coco", source.n, source.seed), skips)
    if kind == "phantom_pubmedvision":
        path = phantom.write_pubmedvision(raw_dir / "pubmedvision", source.n, source.seed)
        return read_pubmedvision(path, path.parent, skips)
    needs = {"deeplesion": "root", "coco": "root", "yolo": "root", "voc": "root", "pubmedvision": "json", "llava": "json"}
    if not getattr(source, needs[kind]):
        raise ValueError(f"source of kind {kind!r} needs '{needs[kind]}'")
    if kind == "deeplesion":
        return read_deeplesion(Path(source.root), skips, window=source.window)
    if kind in ("coco", "yolo", "voc"):
        reader = {"coco": read_coco, "yolo": read_yolo, "voc": read_voc}[kind]
        return reader(Path(source.root), skips, modality=source.modality or "X-ray")
    image_root = Path(source.image_root or Path(source.json).parent)
    if kind == "pubmedvision":
        return read_pubmedvision(Path(source.json), image_root, skips)
    return read_llava(Path(source.json), image_root, skips, modality=source.modality)


class TrajectoryStore:
    """``trajectories.jsonl``: one line per finished sample; a torn last line (a kill) is ignored."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[str, list[Trajectory]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                self.done[data["sample_id"]] = [Trajectory.from_json(t) for t in data["trajectories"]]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            self._file.write("\n")

    def add(self, sample_id: str, trajectories: list[Trajectory]) -> None:
        self.done[sample_id] = trajectories
        self._file.write(json.dumps({"sample_id": sample_id, "trajectories": [t.to_json() for t in trajectories]}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _client(endpoint: LLMConfig, cache: Path) -> LLMClient:
    return LLMClient(replace(endpoint, cache_path=cache))


async def _ticking(awaitable, bar):
    result = await awaitable
    bar.update(1)
    return result


class Builder:
    """Holds one build's configuration, paths and statistics."""

    def __init__(self, config: BuildConfig, progress: bool = True):
        self.config, self.progress = config, progress
        self.out = Path(config.output_dir)
        self.sft_dir, self.work = self.out / "sft", self.out / "work"
        gen, ver = config.generation, config.verification
        imp = config.imputation
        self.stats = BuildStats(generator=OFFLINE if gen.backend == "offline" else f"{gen.endpoint.model} via {gen.endpoint.base_url}",
                                judge=f"{ver.endpoint.model} via {ver.endpoint.base_url}" if ver.judge else "rules only",
                                imputer=f"{imp.endpoint.model} via {imp.endpoint.base_url}" if imp.enabled else "off")

    def records(self) -> list[tuple[Record, Materialised]]:
        """Read, filter (label and image checks), materialise and, when enabled, label every source's records."""
        kept = []
        imputing = self.config.imputation.enabled
        for i, source in enumerate(self.config.sources):
            skips = SkipLog()
            for record in read_source(source, self.out / "raw", skips):
                if self.config.max_records is not None and len(kept) >= self.config.max_records:
                    break
                reason = label_problem(record, self.config.filter)
                if reason == "unlabeled" and imputing:
                    reason = None  # the image checks come first; the imputer may then name a label
                image = materialise(record, self.sft_dir, self.config.filter) if reason is None else reason
                if isinstance(image, str):
                    self.stats.filtered[image] += 1
                else:
                    kept.append((record, image))
            self.stats.read[f"{i}:{source.kind}"] = {"seen": skips.seen, "kept": skips.kept, "reasons": skips.reasons,
                                                     "dropped": skips.dropped, "examples": skips.examples}
        return asyncio.run(self.impute(kept)) if imputing else kept

    async def impute(self, kept: list[tuple[Record, Materialised]]) -> list[tuple[Record, Materialised]]:
        """Imputed labels for the records without one (A.3.1); those left with neither label nor question are dropped."""
        cfg = self.config.imputation
        todo = [i for i, (record, _) in enumerate(kept) if not record.labels]
        async with _client(cfg.endpoint, self.work / "imputation_cache.sqlite") as client:
            imputer = Imputer(client, cfg, self.sft_dir, label_spaces([r for r, _ in kept]))
            with tqdm(total=len(todo), desc="label imputation", disable=not self.progress) as bar:
                results = await asyncio.gather(*(_ticking(imputer.impute(*kept[i]), bar) for i in todo))
            self._account(client)
        labelled = list(kept)
        for i, (record, outcome) in zip(todo, results):
            self.stats.imputation[outcome] += 1
            labelled[i] = (record, kept[i][1])
        usable = [(r, m) for r, m in labelled if r.labels or (r.question and r.answer)]
        self.stats.filtered["unlabeled"] += len(labelled) - len(usable)
        return usable

    def _account(self, client: LLMClient) -> None:
        """Add a client's usage to the build's, per model (one model may serve several roles)."""
        for model, usage in client.usage.items():
            total = self.stats.usage.setdefault(model, dict.fromkeys(asdict(usage), 0))
            for key, value in asdict(usage).items():
                total[key] += value

    def drop_leaks(self, kept: list[tuple[Record, Materialised]]) -> list[tuple[Record, Materialised]]:
        if not self.config.leakage.eval_dirs:
            return kept
        evaluation = hash_folders([Path(d) for d in self.config.leakage.eval_dirs])
        train = {m.path: dhash(m.pixels) for _, m in kept}
        leaks = find_leaks(train, evaluation, self.config.leakage.max_distance)
        self.stats.leaks = [asdict(m) for m in leaks]
        leaked = {m.train_image for m in leaks}
        self.stats.filtered["benchmark_leak"] += sum(m.path in leaked for _, m in kept)
        return [(r, m) for r, m in kept if m.path not in leaked]

    def samples(self, kept: list[tuple[Record, Materialised]]) -> list[Sample]:
        builder = QuestionBuilder(self.config.instructions, label_spaces([r for r, _ in kept]),
                                  load_question_templates(), self.config.seed)
        samples = [s for record, image in kept for s in builder.samples(record, image)]
        self.stats.filtered.update({f"question:{k}": v for k, v in builder.skipped.items()})
        return [s for s in samples if s.record.split != "test"]

    async def generate(self, samples: list[Sample]) -> list[Verified]:
        cfg = self.config
        prompts = StagePrompts.load(Path(cfg.generation.prompt_dir) if cfg.generation.prompt_dir else None)
        store = TrajectoryStore(self.work / "trajectories.jsonl")
        async with AsyncExitStack() as stack:
            generator, clients = await self._generator(stack, prompts)
            judge = None
            if cfg.verification.judge:
                judge = await stack.enter_async_context(_client(cfg.verification.endpoint, self.work / "judge_cache.sqlite"))
                clients.append(judge)
            verifier = Verifier(judge, prompts, self.sft_dir, cfg.verification.max_tokens)
            pending = [s for s in samples if s.sample_id not in store.done]
            with tqdm(total=len(samples), initial=len(samples) - len(pending), desc="trajectories",
                      disable=not self.progress) as bar:
                await asyncio.gather(*(self._one(s, generator, verifier, store, bar) for s in pending))
            for client in clients:
                self._account(client)
        store.close()
        return [Verified(s, tuple(store.done[s.sample_id])) for s in samples if s.sample_id in store.done]

    async def _generator(self, stack: AsyncExitStack, prompts: StagePrompts):
        gen = self.config.generation
        if gen.backend == "offline":
            return OfflineGenerator(self.sft_dir, gen.negatives_per_sample), []
        client = await stack.enter_async_context(_client(gen.endpoint, self.work / "generation_cache.sqlite"))
        return LLMGenerator(client, prompts, self.sft_dir, self.work / "crops", gen.temperature, gen.max_tokens), [client]

    async def _one(self, sample: Sample, generator, verifier: Verifier, store: TrajectoryStore, bar) -> None:
        rng = random.Random(f"{self.config.seed}|{sample.sample_id}")
        rois = roi_set(sample.record.rois, sample.width, sample.height, self.config.rois, rng)
        paths = plan(sample_rois(sample, rois), self.config.generation.trajectories_per_sample, rng)
        try:
            drafts = await generator.generate(sample, paths, rng)
            verified = await asyncio.gather(*(verifier.verify(sample, t) for t in drafts))
        except LLMError as err:
            self.stats.failed_samples += 1
            with (self.work / "failures.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps({"sample_id": sample.sample_id, "error": str(err)}) + "\n")
            return
        store.add(sample.sample_id, list(verified))
        bar.update(1)

    def export(self, items: list[Verified]) -> None:
        cfg, stats = self.config.exports, self.stats
        for v in items:
            stats.trajectories += len(v.trajectories)
            stats.accepted += len(v.accepted)
            stats.rejection_reasons.update(r.split(":")[0] if r.startswith("judge:") else r
                                           for t in v.rejected for r in t.reasons)
            if v.accepted:
                stats.by_source[v.sample.record.source] += 1
                stats.by_modality[v.sample.record.modality] += 1
                stats.by_task[v.sample.task_type] += 1
        write_sft(items, self.sft_dir, cfg.sft_dataset_name, cfg.sft_max_per_sample)
        stats.outputs[f"sft/{cfg.sft_dataset_name}.json"] = sum(min(len(v.accepted), cfg.sft_max_per_sample) for v in items)
        sizes = write_rl(items, self.out / "rl", self.sft_dir, cfg.rl_size, cfg.val_fraction,
                         cfg.rl_max_answer_words, self.config.seed, cfg.rl_image_max_pixels)
        if cfg.rl_processor:
            stats.rl_prompts = asdict(measure_rl_prompts(self.out / "rl", cfg.rl_processor, cfg.rl_max_prompt_length))
        stats.outputs.update({f"rl/{k}.parquet": n for k, n in sizes.items()})
        stats.outputs["rl candidates"] = len(rl_candidates(items, cfg.rl_max_answer_words))
        stats.outputs["scorer/pairs.jsonl"] = write_pairs(items, self.out / "scorer" / "pairs.jsonl")
        stats.outputs["samples.jsonl"] = write_samples(items, self.out / "samples.jsonl")
        write_card(stats, self.out / "card")


def build(config: BuildConfig, progress: bool = True) -> BuildStats:
    """Run the whole build; resumes from ``output_dir/work`` when a previous run was interrupted."""
    builder = Builder(config, progress)
    samples = builder.samples(builder.drop_leaks(builder.records()))
    items = asyncio.run(builder.generate(samples))
    builder.export(items)
    return builder.stats
