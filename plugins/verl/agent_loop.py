"""The self-check retry agent loop of R-GRPO (paper section 3.3, eqs. 8-10), as a verl agent loop.

One session, all inside one token stream (verl's Continuous Token builder, so nothing is ever
re-encoded from decoded text):

1. generate tau1 (images go with every generate call) and score it with ``medsage.reward_fns``;
   a right answer ends the session: the session *is* tau1.
2. otherwise inject the self-check instruction as a user turn (``response_mask`` 0), generate the
   self-check span (mask 1), inject the retry instruction (mask 0), generate tau2 (mask 1), score it.

The loop hands the trainer ``reward_score`` = the weighted outcome reward of the final trajectory
(so verl skips its own reward) and, in ``extra_fields``, the per-token ``self_check_mask`` and
``outcome_mask`` (tau1 when accepted, tau2 when retried), first/final correctness,
``r_sc = 1[a1 wrong and a2 right]`` and every reward part (see :class:`SessionOutcome`).

Budget: each attempt (tau1, tau2) has its own cap, ``medsage.attempt_max_tokens`` (the paper's
"maximum generation length of 1024" is per generation), the self-check span has
``medsage.self_check_max_tokens``, and the whole session, injected turns included, fits in
``rollout.response_length`` (:func:`~medsage.plugins.verl.settings.check_budget` says what a full
retry needs). A generate call gets its span's cap or what is left of the session, whichever is
smaller; ``capped_spans`` names the spans cut there. When an instruction no longer fits with room
for at least one generated token, the session stops cleanly there and the last complete attempt is
the final trajectory: tau1 stays the scored, outcome-masked trajectory, a self-check span already
generated keeps mask 1 but earns nothing (``r_sc`` is 0), and ``stop_reason`` records where it
stopped. A tau2 cut by its cap is scored as it stands.

Turns: the model ends a turn with ``<|im_end|>``, and verl's Qwen token builder adds only the
newline after it when the next user turn is merged. A span cut at its cap has no ``<|im_end|>``, so
the loop closes the turn itself (the token gets mask 0 and log-probability 0: the model did not
generate it) before it injects an instruction; otherwise the instruction would run straight on
from the cut text, a transcript the chat template never produces.

CPU: verl builds a new loop for every session and runs a batch's sessions on one event loop, so
the CPU work around one session's generate calls delays every other session's calls. The costly
part is verl's processor-backed token builder (~6 ms a render), so the loop renders as little as
it can: a prompt's images and initial tokens are built once for the ``rollout.n`` sessions of that
prompt (:class:`_SharedBuilds`), and each instruction is rendered once per process
(:meth:`SelfCheckAgentLoop._instruction_edit`), not once per injection.

Images: the processor settings of ``data.mm_processor_kwargs`` go with every generate call and into
the output, as verl's own loops do, so vLLM processes the image as the prompt's placeholders and
the trainer's image inputs expect.

A policy early in training can emit an image or video placeholder token as text. The transcript
then holds more placeholders than the session has images, which no server can fill (vLLM refuses
such a prompt), so the session stops the same clean way (``placeholder_in_response``) instead of
failing the whole rollout batch.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Awaitable, Callable
from uuid import uuid4

from PIL import Image
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer
from verl.utils.tokenizer.continuous_token import MergeResult

from medsage.reward_fns.rewards import compute_score

from .sessions import AGENT_NAME, CHECK, TAU1, TAU2, SessionOutcome, StopReason
from .settings import RGRPOSettings

# ChatML's end of turn, rendered by Qwen's chat templates after every message.
END_OF_TURN = "<|im_end|>"


@dataclass
class Transcript:
    """The session's token stream: prompt + response so far, with per-response-token metadata."""

    token_ids: list[int]
    prompt_length: int
    response_mask: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    capped: list[str] = field(default_factory=list)  # spans cut at their max_tokens, in order

    @property
    def response_ids(self) -> list[int]:
        return self.token_ids[self.prompt_length :]

    def mask_of(self, *names: str) -> list[int]:
        """1 on the response positions of the named generated spans (:data:`~.sessions.GENERATED_SPANS`)."""
        mask = [0] * len(self.response_mask)
        for name in names:
            start, end = self.spans.get(name, (0, 0))
            mask[start:end] = [1] * (end - start)
        return mask


@register(AGENT_NAME)
class SelfCheckAgentLoop(AgentLoopBase):
    """verl agent loop running one R-GRPO self-check session per call of :meth:`run`."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.settings = RGRPOSettings.from_config(self.config)
        self.response_length = self.rollout_config.response_length
        self.placeholder_ids = _placeholder_ids(self.processor, self.tokenizer)
        self.end_of_turn_id = _end_of_turn_id(self.tokenizer)
        self.self_check_edit, self.retry_edit = (self._instruction_edit(text) for text in self.settings.templates())

    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any) -> AgentLoopOutput:
        raw_prompt = kwargs["raw_prompt"]
        built_from = (asyncio.get_running_loop(), raw_prompt, self.config, self.processor, self.tokenizer)
        multi_modal_data, prompt_ids = await _PROMPTS.get(built_from, partial(self._build_prompt, list(raw_prompt)))
        request = GenerateRequest(
            sampling_params=sampling_params,
            images=multi_modal_data.get("images"),
            mm_processor_kwargs=self._get_mm_processor_kwargs(),
            priority=int(priority),  # np.int64 when it comes from verl's batch
        )
        logprobs = [] if sampling_params.get("logprobs") else None
        session = _Session(self, Transcript(list(prompt_ids), len(prompt_ids), logprobs=logprobs), request)

        first_text = await session.generate(TAU1, self.settings.attempt_max_tokens)
        stop: StopReason = "accepted"
        if not _correct(await self._score(session, first_text, kwargs)):
            stop = await self._self_check(session, kwargs)
        return self._output(
            session, stop, multi_modal_data,
            question=(kwargs.get("extra_info") or {}).get("question"),
            ground_truth=(kwargs.get("reward_model") or {}).get("ground_truth"),
        )

    async def _build_prompt(self, messages: list[dict]) -> tuple[dict, list[int]]:
        """The prompt's images, prepared by verl's dataset class, and its initial token stream."""
        _decode_images(messages)
        multi_modal_data = await self.process_multi_modal_info(messages)
        self._assert_mm_supported(bool(multi_modal_data))
        prompt_ids = await self.ct_build_initial_tokens(messages, images=multi_modal_data.get("images"))
        return multi_modal_data, prompt_ids

    def _instruction_edit(self, instruction: str) -> MergeResult:
        """How verl's builder merges ``instruction`` as a user turn after a closed assistant turn.

        verl's builders for ChatML models (Qwen's, the generic ones) render an appended user turn
        against a fixed synthetic prefix, never the transcript, and edit the junction by the
        transcript's last token alone, which is always ``<|im_end|>`` when the loop injects
        (:meth:`_Session._closed_turn`). So the merge onto the one-token transcript ``[<|im_end|>]``
        is the merge onto every session's transcript. It renders through the processor twice
        (~8 ms), so it is done once per process, not at every injection.
        """
        renderer = self.processor if self.processor is not None else self.tokenizer
        builder = self.continuous_token_builder
        key = (type(builder), repr(self.apply_chat_template_kwargs), repr(self.mm_processor_kwargs), instruction)
        edits = _INSTRUCTION_EDITS.setdefault(renderer, {})
        if key not in edits:
            user_turn = [{"role": "user", "content": instruction}]
            edits[key] = builder.merge_context_tokens([], user_turn, [self.end_of_turn_id])
        return edits[key]

    async def _self_check(self, session: "_Session", kwargs: dict) -> StopReason:
        """Steps 2-4 of the session (self-check, retry, score), or a clean stop; returns the stop reason."""
        if not self.settings.self_check:
            return "no_self_check"
        if session.emitted_placeholder:
            return "placeholder_in_response"
        if not session.inject(self.self_check_edit):
            return "budget_before_check"
        await session.generate(CHECK, self.settings.self_check_max_tokens)
        if session.emitted_placeholder:
            return "placeholder_in_response"
        if not session.inject(self.retry_edit):
            return "budget_before_retry"
        await self._score(session, await session.generate(TAU2, self.settings.attempt_max_tokens), kwargs)
        return "retried"

    async def _score(self, session: "_Session", text: str, kwargs: dict) -> dict[str, float]:
        """``medsage.reward_fns.compute_score`` off the event loop (a consistency scorer may do I/O)."""
        ground_truth = (kwargs.get("reward_model") or {}).get("ground_truth")
        if ground_truth is None:
            raise ValueError(
                f"row index={kwargs.get('index')} of data_source={kwargs.get('data_source')!r} has no "
                "reward_model.ground_truth; the self-check loop needs it to score each attempt"
            )
        score = partial(
            compute_score, kwargs.get("data_source"), text, ground_truth, kwargs.get("extra_info") or {},
            **self.settings.reward_kwargs,
        )
        timing: dict[str, float] = {}
        with simple_timer("compute_score", timing):
            result = await asyncio.get_running_loop().run_in_executor(None, score)
        session.add_metric("compute_score", timing["compute_score"])
        session.attempts.append(result)
        return result

    def _output(
        self, session: "_Session", stop_reason: StopReason, multi_modal_data: dict,
        question: str | None = None, ground_truth: str | None = None,
    ) -> AgentLoopOutput:
        """The session as verl's output: our :class:`SessionOutcome` plus the ``extra_fields`` keys
        verl itself reads (per-turn scores, tool rewards, the weight versions it was generated with)."""
        t, first, final = session.transcript, session.attempts[0], session.attempts[-1]
        retried = TAU2 in t.spans
        outcome = SessionOutcome(
            outcome_mask=t.mask_of(TAU2 if retried else TAU1),
            self_check_mask=t.mask_of(CHECK),
            first_correct=_correct(first),
            final_correct=_correct(final),
            self_checked=CHECK in t.spans,
            retried=retried,
            stop_reason=stop_reason,
            reward_parts=_parts(final),
            first_reward_parts=_parts(first),
            capped_spans=list(t.capped),
            question=question,
            ground_truth=ground_truth,
        )
        extra = {
            **outcome.to_extra_fields(),
            "turn_scores": [float(a["score"]) for a in session.attempts],
            "tool_rewards": [],
            **session.global_steps,
        }
        return AgentLoopOutput(
            prompt_ids=t.token_ids[: t.prompt_length],
            response_ids=t.response_ids,
            response_mask=t.response_mask,
            response_logprobs=t.logprobs or None,
            multi_modal_data=multi_modal_data,
            mm_processor_kwargs=session.request.mm_processor_kwargs,
            reward_score=float(final["score"]),
            num_turns=2 * len(t.spans),
            metrics=session.metrics,
            extra_fields=extra,
        )


def _placeholder_ids(processor: Any, tokenizer: Any) -> frozenset[int]:
    """Token ids a server expands into image or video features (none for a text-only model)."""
    tokens = [getattr(processor, name, None) for name in ("image_token", "video_token")]
    return frozenset(tokenizer.convert_tokens_to_ids(t) for t in tokens if t)


def _end_of_turn_id(tokenizer: Any) -> int:
    """The id of :data:`END_OF_TURN`; the loop closes cut turns with it, so the model must know it."""
    token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(
            f"the policy's tokenizer has no {END_OF_TURN!r} token: the self-check loop needs a ChatML "
            "(Qwen) chat template; set actor_rollout_ref.model.path to a Qwen2/2.5-VL checkpoint"
        )
    return token_id


def _parts(scores: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items() if k != "score"}


def _correct(scores: dict[str, float]) -> bool:
    return float(scores.get("accuracy", 0.0)) >= 1.0


@dataclass(frozen=True)
class GenerateRequest:
    """What every generate call of one session sends besides the token stream and ``max_tokens``."""

    sampling_params: dict[str, Any]
    images: list | None
    mm_processor_kwargs: dict[str, Any]  # how the server processes the images (e.g. max_pixels)
    priority: int  # verl's per-sample scheduling priority


class _Session:
    """Generation and injection steps on one transcript, with the response-length budget."""

    def __init__(self, loop: SelfCheckAgentLoop, transcript: Transcript, request: GenerateRequest):
        self.loop, self.transcript, self.request = loop, transcript, request
        self.request_id = uuid4().hex  # one id per session: the server keeps its prefix cache warm
        self.metrics: dict[str, float] = {}
        self.attempts: list[dict[str, float]] = []
        self.global_steps: dict[str, Any] = {}
        self.emitted_placeholder = False

    def add_metric(self, name: str, seconds: float) -> None:
        self.metrics[name] = self.metrics.get(name, 0.0) + seconds

    async def generate(self, span: str, cap: int) -> str:
        """Generate one assistant turn into ``span`` with at most ``cap`` tokens (fewer when less of
        the session's budget is left); returns its decoded text."""
        t, loop, request = self.transcript, self.loop, self.request
        budget = min(cap, loop.response_length - len(t.response_mask))
        timing: dict[str, float] = {}
        with simple_timer("generate_sequences", timing):
            output = await loop.server_manager.generate(
                request_id=self.request_id,
                prompt_ids=t.token_ids,
                sampling_params={**request.sampling_params, "max_tokens": budget},
                image_data=request.images,
                mm_processor_kwargs=request.mm_processor_kwargs,
                priority=request.priority,
            )
        self.add_metric("generate_sequences", timing["generate_sequences"])
        self._track_steps(output.extra_fields)
        self.emitted_placeholder |= not loop.placeholder_ids.isdisjoint(output.token_ids)
        if len(output.token_ids) >= budget and output.token_ids[-1:] != [loop.end_of_turn_id]:
            t.capped.append(span)
        start = len(t.response_mask)
        merged, t.response_mask, logprobs = await loop.ct_merge_assistant_token(
            t.token_ids, output.token_ids, t.response_mask, t.logprobs, assistant_logprobs=output.log_probs or None
        )
        t.token_ids, t.logprobs = merged.token_ids, logprobs if t.logprobs is not None else None
        t.spans[span] = (start, len(t.response_mask))
        return loop.tokenizer.decode(output.token_ids, skip_special_tokens=True)

    def inject(self, instruction: MergeResult) -> bool:
        """Close the open assistant turn and append an instruction as a user turn (all mask 0), as
        ``instruction`` (:meth:`SelfCheckAgentLoop._instruction_edit`) merges it, if that fits with
        room to generate; else leave the transcript unchanged and return False."""
        t, loop = self.transcript, self.loop
        token_ids, mask, logprobs = self._closed_turn()
        mask, logprobs = loop.continuous_token_builder.align_response_metadata(instruction, mask, logprobs)
        if len(mask) >= loop.response_length:
            return False
        # instruction.token_ids starts with the <|im_end|> that token_ids ends with.
        t.token_ids, t.response_mask, t.logprobs = token_ids[:-1] + instruction.token_ids, mask, logprobs
        return True

    def _closed_turn(self) -> tuple[list[int], list[int], list[float] | None]:
        """The transcript with the end-of-turn token appended (mask 0, log-probability 0) when the
        last generated span was cut before it, as the chat template renders every finished turn."""
        t, end = self.transcript, self.loop.end_of_turn_id
        if t.token_ids[-1] == end:
            return t.token_ids, t.response_mask, t.logprobs
        logprobs = None if t.logprobs is None else t.logprobs + [0.0]
        return t.token_ids + [end], t.response_mask + [0], logprobs

    def _track_steps(self, extra_fields: dict) -> None:
        """Weight versions the session was generated across, as verl's staleness tags expect."""
        if "min_global_steps" not in self.global_steps:
            self.global_steps["min_global_steps"] = extra_fields.get("min_global_steps")
        self.global_steps["max_global_steps"] = extra_fields.get("max_global_steps")


class _SharedBuilds:
    """Builds that sessions starting together share: while one runs, a session asking for the same
    build awaits it instead of repeating it.

    verl hands the ``rollout.n`` sessions of a prompt the same row object (``DataProto.repeat``
    repeats rows by reference; the TransferQueue worker starts the n sessions from one prompt dict)
    and starts them together, so they ask for its build before the first ask finishes. A key is
    the identities (``id``) of the objects the build depends on; the entry holds those objects, so
    no other object can take one of their ids while it is kept, and it is dropped when the build
    ends, so nothing is kept past it.
    """

    def __init__(self) -> None:
        self._running: dict[tuple[int, ...], tuple[tuple, asyncio.Future]] = {}

    def get(self, depends_on: tuple, build: Callable[[], Awaitable[Any]]) -> Awaitable[Any]:
        key = tuple(map(id, depends_on))
        if key not in self._running:
            task = asyncio.ensure_future(build())
            self._running[key] = (depends_on, task)
            task.add_done_callback(lambda _: self._running.pop(key))
        # A cancelled session must not cancel the build the other sessions of its prompt await.
        return asyncio.shield(self._running[key][1])


# Prompt builds (images and initial tokens) in flight, keyed by event loop, prompt row and the
# loop's config, processor and tokenizer.
_PROMPTS = _SharedBuilds()
# Instruction merges (:meth:`SelfCheckAgentLoop._instruction_edit`) by the processor or tokenizer
# that rendered them, kept as long as it lives.
_INSTRUCTION_EDITS: weakref.WeakKeyDictionary[Any, dict[tuple, MergeResult]] = weakref.WeakKeyDictionary()


def _decode_images(messages: list[dict]) -> None:
    """Decode lazily opened PIL images now, on the event-loop thread.

    verl repeats a prompt's row ``rollout.n`` times by reference, so the sessions of one prompt
    share the same image objects, and verl decodes them in executor threads. PIL's lazy ``load``
    is not thread-safe (concurrent loads of one PNG fail inside PIL), so each image is decoded
    once here, before any session hands it to a thread.
    """
    for message in messages:
        content = message.get("content")
        for item in content if isinstance(content, list) else ():
            image = item.get("image") if isinstance(item, dict) else None
            if isinstance(image, Image.Image):
                image.load()
