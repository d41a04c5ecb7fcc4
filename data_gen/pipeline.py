"""The build, as a stream: sources -> records -> filter -> label imputation -> leakage -> questions -> ROI sets -> trajectories -> verification -> exports.

Paper section 3.1 and appendix A.3 end to end, in memory that does not grow with the input
beyond the ids of its samples and records (an id and a file offset, or a record's outcome: a few
hundred bytes each).

* A first pass reads every source's annotations, no pixels: the read log, each source's label
  space (the distractor pool, the imputer's hints) and, when the recipe caps records
  (``max_records`` per source and in total), a seeded selection that depends on each record's id
  only, so adding or editing a row never reshuffles the others.
* A second pass streams the selected records through a bounded pool of workers
  (``generation.records_in_flight``): each decodes one record's image (written as PNG, pixels
  released), imputes a label when enabled, checks leakage, builds questions and generates and
  verifies every sample not already committed. A finished sample is committed at once to
  ``work/trajectories.jsonl`` (appended, fsync'd): a killed build loses at most the samples in
  flight, and a rerun skips committed samples without a cache lookup. A record whose samples are
  all committed is logged in ``work/records.jsonl``; a rerun counts it from there without decoding
  its image or imputing its label.
* The exports then stream this build's committed samples, in a seeded order of their ids, into the
  SFT json, the scorer pairs, ``samples.jsonl`` and the RL parquet, and the card is written.

Sample ids derive from content (:func:`medsage.data_gen.instructions.content_digest`), every LLM
reply is in a request cache and every billed reply in its ledger, so a resumed or edited build
asks only what is new and its card's cost covers every run. A lock file stops a second build from
writing the same output directory.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import heapq
import json
import os
import random
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from medsage.data_gen import phantom
from medsage.data_gen.card import BuildStats, write_card
from medsage.data_gen.config import BuildConfig, SourceConfig
from medsage.data_gen.exports import (
    PairsWriter,
    SamplesWriter,
    SftWriter,
    Verified,
    measure_rl_prompts,
    rl_candidate,
    write_rl,
)
from medsage.data_gen.imputation import Imputer
from medsage.data_gen.instructions import (
    QuestionBuilder,
    content_digest,
    Sample,
    label_problem,
    load_question_templates,
    materialise,
)
from medsage.data_gen.leakage import find_leaks, hash_folders
from medsage.data_gen.llm_client import LLMAuthError, LLMClient, LLMConfig, LLMError
from medsage.data_gen.llm_generator import LLMGenerator
from medsage.data_gen.prompts import StagePrompts
from medsage.data_gen.readers import read_coco, read_deeplesion, read_llava, read_pubmedvision, read_voc, read_yolo
from medsage.data_gen.records import Record, SkipLog
from medsage.data_gen.rois import roi_set
from medsage.data_gen.trajectories import OFFLINE, OfflineGenerator, Trajectory, plan, sample_rois
from medsage.data_gen.verify import Verifier

_PHANTOMS = {"phantom_deeplesion": ("deeplesion", phantom.write_deeplesion),
             "phantom_coco": ("roboflow_coco", phantom.write_coco),
             "phantom_pubmedvision": ("pubmedvision", phantom.write_pubmedvision)}


def _phantom(source: SourceConfig, raw_dir: Path) -> Path:
    """Write a phantom source once per (n, seed); both passes of a build, and reruns, read the same files."""
    folder, write = _PHANTOMS[source.kind]
    root, marker = raw_dir / folder, raw_dir / folder / f".written-{source.n}-{source.seed}"
    if not marker.is_file():
        written = write(root, source.n, source.seed)
        marker.write_text(str(written), encoding="utf-8")
    return Path(marker.read_text(encoding="utf-8"))


def read_source(source: SourceConfig, raw_dir: Path, skips: SkipLog):
    """Records of one configured source; phantom kinds first write their files under ``raw_dir``."""
    kind = source.kind
    if kind in _PHANTOMS:
        path = _phantom(source, raw_dir)
        if kind == "phantom_pubmedvision":
            return read_pubmedvision(path, path.parent, skips)
        return (read_deeplesion if kind == "phantom_deeplesion" else read_coco)(path, skips)
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


class BuildLocked(RuntimeError):
    """Another build holds the output directory."""


class BuildLock:
    """``work/build.lock``, held (flock) for the whole build; the kernel releases it if the build is killed."""

    def __init__(self, work: Path):
        work.mkdir(parents=True, exist_ok=True)
        self._file = (work / "build.lock").open("a+", encoding="utf-8")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self._file.close()
            raise BuildLocked(f"{work.parent} is being written by another build (pid {holder}); "
                              "wait for it to finish or choose another output_dir") from None
        self._file.truncate(0)
        self._file.write(str(os.getpid()))
        self._file.flush()

    def __enter__(self) -> "BuildLock":
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def _complete_lines(path: Path):
    """(offset, object) of each complete JSON line of an append-only file, created if absent; a torn last
    line (a kill mid-write) is cut off, so the next append starts on a line of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    end = 0
    with path.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            yield end, json.loads(line)
            end += len(line)
    if path.stat().st_size > end:
        os.truncate(path, end)


class TrajectoryStore:
    """``trajectories.jsonl``: one line per finished sample (the sample and its verified trajectories).

    Appended and fsync'd sample by sample; only ids and byte offsets stay in memory. A torn last
    line (a kill mid-write) is cut off when the store is opened, so the next append starts clean.
    A sample counts as committed (``in`` the store) once its line is on disk.
    """

    def __init__(self, path: Path):
        self.path = path
        self.index: dict[str, int] = {}
        for offset, data in _complete_lines(path):
            if "sample" in data:  # lines of older builds carry no sample: those samples are made again
                self.index[data["sample_id"]] = offset
        self._append, self._read = path.open("ab"), path.open("rb")
        self._end = self._append.seek(0, os.SEEK_END)  # where the next line will start
        self._pending: list[bytes] = []  # lines not yet handed to the writer
        self._queued = self._synced = 0  # lines queued by this store / of those, lines on disk
        self._sync_lock = asyncio.Lock()
        self._failed: BaseException | None = None

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.index

    async def add(self, verified: Verified) -> None:
        """Append one sample's line; return once it is on disk (then the sample is ``in`` the store).

        The write and the fsync run in a thread, so the event loop (every call in flight) never waits
        for the disk; one write and one fsync take every line queued before them (group commit):
        samples that finish together share them. Lines reach the file in the order they were queued.
        """
        sample = verified.sample
        line = json.dumps({"sample_id": sample.sample_id, "sample": sample.to_json(),
                           "trajectories": [t.to_json() for t in verified.trajectories]}, ensure_ascii=False)
        data = line.encode("utf-8") + b"\n"
        offset, self._end = self._end, self._end + len(data)
        self._pending.append(data)
        self._queued += 1
        mine = self._queued
        async with self._sync_lock:
            if self._synced < mine:
                if self._failed is not None:  # a failed write leaves the file's end unknown: nothing more is appended
                    raise OSError(f"{self.path}: an earlier append failed: {self._failed!r}")
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self._write, b"".join(batch))
                except BaseException as exc:
                    self._failed = exc
                    raise
                self._synced += len(batch)
        self.index[sample.sample_id] = offset

    def _write(self, data: bytes) -> None:
        self._append.write(data)
        self._append.flush()
        os.fsync(self._append.fileno())

    def get(self, sample_id: str) -> Verified:
        self._read.seek(self.index[sample_id])
        data = json.loads(self._read.readline())
        return Verified(Sample.from_json(data["sample"]), tuple(Trajectory.from_json(t) for t in data["trajectories"]))

    def close(self) -> None:
        self._append.close()
        self._read.close()


@dataclass
class Outcome:
    """What one record came to: filtered (and why), or its samples; with its imputation, leak and question skips."""

    filtered: str | None = None
    imputation: str | None = None
    leaks: list[dict] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    question_skips: dict[str, int] = field(default_factory=dict)


class RecordLog:
    """``records.jsonl``: each finished record's :class:`Outcome` under a key of its content, its image
    file and the build settings that shape its samples. A rerun replays a finished record from here
    (no decoding, imputation or cache lookup); a torn last line is cut off as in the store."""

    def __init__(self, path: Path):
        self.known: dict[str, Outcome] = {}
        for _, data in _complete_lines(path):
            key = data.pop("key")
            self.known[key] = Outcome(**data)
        self._file = path.open("a", encoding="utf-8")

    def add(self, key: str, outcome: Outcome) -> None:
        self.known[key] = outcome
        self._file.write(json.dumps({"key": key, **asdict(outcome)}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _client(endpoint: LLMConfig, cache: Path) -> LLMClient:
    return LLMClient(replace(endpoint, cache_path=cache))


def _rank(seed: int, key: str) -> int:
    """A seeded pseudo-random position for a record or sample id: sampling and export order by it."""
    return int(hashlib.sha1(f"{seed}|{key}".encode("utf-8")).hexdigest(), 16)


def _keep_lowest(heap: list[tuple[int, str]], cap: int, rank: int, record_id: str) -> None:
    """Keep in ``heap`` (a max-heap of negated ranks) the ``cap`` records of lowest rank seen so far."""
    if len(heap) < cap:
        heapq.heappush(heap, (-rank, record_id))
    elif rank < -heap[0][0]:
        heapq.heapreplace(heap, (-rank, record_id))


@dataclass
class _Stage:
    """What the workers of one build share."""

    store: TrajectoryStore
    questions: QuestionBuilder
    generator: object
    verifier: Verifier
    imputer: Imputer | None
    evaluation: dict[str, bytes]
    bar: tqdm
    log: RecordLog
    settings: str  # digest of what shapes a record's samples besides its content


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
        self.sample_ids: list[str] = []  # this build's samples, in stream order

    def survey(self) -> tuple[dict[str, list[str]], list[set[str] | None]]:
        """First pass (annotations only): the read log, label spaces and, per source, the ids of the
        records a cap selects (None: every record). Seeded by record id: a row's edit never moves others."""
        spaces: dict[str, set[str]] = {}
        heaps: list[list | None] = []
        total = self.config.max_records
        for i, source in enumerate(self.config.sources):
            skips, heap = SkipLog(), []
            caps = [c for c in (source.max_records, total) if c is not None]
            for record in read_source(source, self.out / "raw", skips):
                spaces.setdefault(record.source, set()).update(record.labels)
                if caps:
                    _keep_lowest(heap, min(caps), _rank(self.config.seed, record.record_id), record.record_id)
            self.stats.read[f"{i}:{source.kind}"] = {"seen": skips.seen, "kept": skips.kept, "reasons": skips.reasons,
                                                     "dropped": skips.dropped, "examples": skips.examples}
            heaps.append(heap if caps else None)
        labels = {s: sorted(names) for s, names in spaces.items()}
        if total is None:
            return labels, [None if h is None else {rid for _, rid in h} for h in heaps]
        # every source has a heap (capped by the total at least): the lowest ranks over all of them
        lowest = heapq.nsmallest(total, ((-neg, i, rid) for i, h in enumerate(heaps) for neg, rid in h))
        return labels, [{rid for _, j, rid in lowest if j == i} for i in range(len(heaps))]

    def records(self, selected: list[set[str] | None]):
        """Second pass: the selected records, source by source, in reading order."""
        for source, chosen in zip(self.config.sources, selected, strict=True):
            for record in read_source(source, self.out / "raw", SkipLog()):
                if chosen is None or record.record_id in chosen:
                    yield record
                else:
                    self.stats.filtered["not_sampled:max_records"] += 1

    def _filtered(self, reason: str, record: Record) -> None:
        self.stats.filtered[reason] += 1
        if len(self.stats.filter_examples) < 50:
            self.stats.filter_examples.append(f"{record.provenance or record.record_id} ({record.image}): {reason}")

    async def stream(self, spaces: dict[str, list[str]], selected: list[set[str] | None], store: TrajectoryStore) -> None:
        """Every selected record through the workers; committed samples are skipped."""
        cfg = self.config
        prompts = StagePrompts.load(Path(cfg.generation.prompt_dir) if cfg.generation.prompt_dir else None)
        async with AsyncExitStack() as stack:
            generator, clients = await self._generator(stack, prompts)
            judge = None
            if cfg.verification.judge:
                judge = await stack.enter_async_context(_client(cfg.verification.endpoint, self.work / "judge_cache.sqlite"))
                clients.append(judge)
            imputer = None
            if cfg.imputation.enabled:
                client = await stack.enter_async_context(_client(cfg.imputation.endpoint, self.work / "imputation_cache.sqlite"))
                imputer, clients = Imputer(client, cfg.imputation, self.sft_dir, spaces), clients + [client]
            evaluation = hash_folders([Path(d) for d in cfg.leakage.eval_dirs]) if cfg.leakage.eval_dirs else {}
            bar = stack.enter_context(tqdm(desc="samples", disable=not self.progress))
            log = RecordLog(self.work / "records.jsonl")
            stack.callback(log.close)
            stage = _Stage(store, QuestionBuilder(cfg.instructions, spaces, load_question_templates(), cfg.seed),
                           generator, Verifier(judge, prompts, self.sft_dir, cfg.verification.max_tokens),
                           imputer, evaluation, bar, log, self._settings(spaces))
            try:
                await self._run_workers(selected, stage)
            finally:
                for client in clients:
                    self._account(client)

    def _settings(self, spaces: dict[str, list[str]]) -> str:
        """Digest of the settings a record's outcome depends on besides its content (any change: worked out again)."""
        cfg = self.config
        shaping = {"seed": cfg.seed, "filter": asdict(cfg.filter), "instructions": asdict(cfg.instructions),
                   "imputation": [cfg.imputation.enabled, cfg.imputation.endpoint.model, cfg.imputation.max_label_words],
                   "leakage": asdict(cfg.leakage), "spaces": spaces}
        return hashlib.sha1(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()

    async def _run_workers(self, selected: list[set[str] | None], stage: _Stage) -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.config.generation.records_in_flight)
        try:
            async with asyncio.TaskGroup() as group:
                workers = [group.create_task(self._worker(queue, stage))
                           for _ in range(self.config.generation.records_in_flight)]
                for record in self.records(selected):
                    await queue.put(record)
                for _ in workers:
                    await queue.put(None)
        except BaseExceptionGroup as errors:  # the first failure (an auth error, a bug) as itself
            raise errors.exceptions[0] from None

    async def _worker(self, queue: asyncio.Queue, stage: _Stage) -> None:
        while (record := await queue.get()) is not None:
            await self._record(record, stage)

    async def _record(self, record: Record, stage: _Stage) -> None:
        """One record: replayed from the record log when it was finished before, else worked out; its
        outcome logged once every sample of it is committed and its imputation did not fail (a failed
        sample or imputation is tried again next run)."""
        key = self._record_key(record, stage)
        outcome = stage.log.known.get(key)
        fresh = outcome is None or not all(s in stage.store for s in outcome.samples)
        if fresh:
            outcome = await self._work_out(record, stage)
        self._apply(outcome, record)
        if fresh and outcome.imputation != "failed" and all(s in stage.store for s in outcome.samples):
            stage.log.add(key, outcome)

    @staticmethod
    def _record_key(record: Record, stage: _Stage) -> str:
        try:
            file = record.image.stat()
            image = f"{file.st_size}:{file.st_mtime_ns}"
        except OSError:
            image = "unreadable"
        return hashlib.sha1(f"{content_digest(record)}|{image}|{stage.settings}".encode()).hexdigest()

    async def _work_out(self, record: Record, stage: _Stage) -> Outcome:
        """Checks, image, label, leakage, questions; then each sample not yet committed."""
        cfg = self.config
        reason = "test_split" if record.split == "test" else label_problem(record, cfg.filter)
        if reason is not None and not (reason == "unlabeled" and stage.imputer):
            return Outcome(filtered=reason)
        image = await asyncio.to_thread(materialise, record, self.sft_dir, cfg.filter, bool(stage.evaluation))
        if isinstance(image, str):
            return Outcome(filtered=image)
        outcome = Outcome()
        if stage.imputer is not None and not record.labels:
            record, outcome.imputation = await stage.imputer.impute(record, image)
            if not record.labels and not (record.question and record.answer):
                return replace(outcome, filtered="unlabeled")
        if stage.evaluation:
            outcome.leaks = [asdict(m) for m in find_leaks({str(record.image): image.fingerprint}, stage.evaluation,
                                                           cfg.leakage.max_distance)]
            if outcome.leaks:
                return replace(outcome, filtered="benchmark_leak")
        before = Counter(stage.questions.skipped)
        samples = stage.questions.samples(record, image)
        outcome.question_skips = dict(Counter(stage.questions.skipped) - before)
        outcome.samples = [s.sample_id for s in samples]
        await asyncio.gather(*(self._sample(s, stage) for s in samples if s.sample_id not in stage.store))
        return outcome

    def _apply(self, outcome: Outcome, record: Record) -> None:
        """Count a record's outcome in this build's statistics, whether worked out now or replayed."""
        if outcome.imputation:
            self.stats.imputation[outcome.imputation] += 1
        self.stats.leaks.extend(outcome.leaks)
        if outcome.filtered:
            self._filtered(outcome.filtered, record)
        self.stats.filtered.update({f"question:{k}": v for k, v in outcome.question_skips.items()})
        self.sample_ids.extend(outcome.samples)

    async def _generator(self, stack: AsyncExitStack, prompts: StagePrompts):
        gen = self.config.generation
        if gen.backend == "offline":
            return OfflineGenerator(self.sft_dir, gen.negatives_per_sample), []
        client = await stack.enter_async_context(_client(gen.endpoint, self.work / "generation_cache.sqlite"))
        return LLMGenerator(client, prompts, self.sft_dir, self.work / "crops", gen.temperature, gen.max_tokens), [client]

    async def _sample(self, sample: Sample, stage: _Stage) -> None:
        rng = random.Random(f"{self.config.seed}|{sample.sample_id}")
        rois = roi_set(sample.record.rois, sample.width, sample.height, self.config.rois, rng)
        paths = plan(sample_rois(sample, rois), self.config.generation.trajectories_per_sample, rng)
        try:
            drafts = await stage.generator.generate(sample, paths, rng)
            verified = await asyncio.gather(*(stage.verifier.verify(sample, t) for t in drafts))
        except LLMAuthError:
            raise
        except LLMError as err:
            self.stats.failed_samples += 1
            with (self.work / "failures.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps({"sample_id": sample.sample_id, "error": str(err)}) + "\n")
            return
        await stage.store.add(Verified(sample, tuple(verified)))
        stage.bar.update(1)

    def _account(self, client: LLMClient) -> None:
        """Add a client's usage to the build's, per model (one model may serve several roles); billed
        calls, tokens and cost come from the client's ledger, so they cover killed runs too."""
        for model, usage in client.totals().items():
            total = self.stats.usage.setdefault(model, dict.fromkeys(asdict(usage), 0))
            for key, value in asdict(usage).items():
                total[key] += value

    def export(self, store: TrajectoryStore) -> None:
        """Stream this build's committed samples into every export, then write the card. The order is
        seeded by sample id (stable, and mixed across sources), so ``exports.sft_size`` takes a sample."""
        cfg, stats = self.config.exports, self.stats
        ids = sorted({i for i in self.sample_ids if i in store}, key=lambda i: _rank(self.config.seed, i))
        stats.samples = len(set(self.sample_ids))
        sft = SftWriter(self.sft_dir, cfg.sft_dataset_name, cfg.sft_max_per_sample, cfg.sft_size)
        pairs, listing = PairsWriter(self.out / "scorer" / "pairs.jsonl"), SamplesWriter(self.out / "samples.jsonl")
        candidates = []
        for sample_id in ids:
            v = store.get(sample_id)
            self._count(v)
            for writer in (sft, pairs, listing):
                writer.add(v)
            if (candidate := rl_candidate(v, cfg.rl_max_answer_words)) is not None:
                candidates.append(candidate)
        for writer in (sft, pairs, listing):
            writer.close()
        stats.outputs[f"sft/{cfg.sft_dataset_name}.json"] = sft.rows
        sizes = write_rl(candidates, store.get, self.out / "rl", self.sft_dir, cfg.rl_size, cfg.val_fraction,
                         self.config.seed, cfg.rl_image_max_pixels)
        if cfg.rl_processor:
            stats.rl_prompts = asdict(measure_rl_prompts(self.out / "rl", cfg.rl_processor, cfg.rl_max_prompt_length))
        stats.outputs.update({f"rl/{k}.parquet": n for k, n in sizes.items()})
        stats.outputs["rl candidates"] = len(candidates)
        stats.outputs["scorer/pairs.jsonl"] = pairs.rows
        stats.outputs["samples.jsonl"] = listing.rows
        write_card(stats, self.out / "card")

    def _count(self, v: Verified) -> None:
        stats = self.stats
        stats.trajectories += len(v.trajectories)
        stats.accepted += len(v.accepted)
        stats.rejection_reasons.update(r.split(":")[0] if r.startswith("judge:") else r
                                       for t in v.rejected for r in t.reasons)
        if v.accepted:
            stats.by_source[v.sample.record.source] += 1
            stats.by_modality[v.sample.record.modality] += 1
            stats.by_task[v.sample.task_type] += 1


def build(config: BuildConfig, progress: bool = True) -> BuildStats:
    """Run the whole build; resumes from ``output_dir/work`` when a previous run was interrupted."""
    builder = Builder(config, progress)
    with BuildLock(builder.work):
        spaces, selected = builder.survey()
        store = TrajectoryStore(builder.work / "trajectories.jsonl")
        try:
            asyncio.run(builder.stream(spaces, selected, store))
            builder.export(store)
        finally:
            store.close()
    return builder.stats
