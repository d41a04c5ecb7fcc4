"""``RGRPOTrainer._compute_advantage`` against a real TransferQueue (local Ray, SimpleStorage on CPU).

The batch goes in the way verl 0.9.1's v1 trainer puts it there: each session's ``AgentLoopOutput``
(built by the self-check loop's own ``_output``) through ``as_dict()`` and
``list_of_dict_to_tensordict`` with ``{uid}_{session_id}_0`` keys and verl's tags, one synthetic row
from verl's ``upsample_batch_to_divisible_size`` (tag ``is_padding``), a reorder as ``_balance_batch``
does, and nested ``old_log_probs`` as ``_compute_old_log_prob`` writes them. The trainer step then
reads everything back from TransferQueue and writes ``advantages``/``returns`` there; the test reads
them back and compares with the pure function and with values worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import ray
import torch
import transfer_queue as tq
from omegaconf import OmegaConf
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from medsage.plugins.verl.advantage import advantages_from_sessions
from medsage.plugins.verl.agent_loop import GenerateRequest, SelfCheckAgentLoop, Transcript, _Session
from medsage.plugins.verl.metrics import self_check_metrics
from medsage.plugins.verl.sessions import FIRST_ATTEMPT, INJECTED, RETRY, SELF_CHECK, read_sessions
from medsage.plugins.verl.settings import RGRPOSettings
from medsage.plugins.verl.trainer import RGRPOTrainer

EPS = 1e-6
EOS = 2
PROMPT_LEN = 5
ALPHA = 0.25  # not the default 0.2: the trainer must take alpha from the medsage section


@pytest.fixture(scope="module")
def tq_store():
    """A local Ray instance and a TransferQueue (controller + one SimpleStorage unit) on it."""
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tq.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield
    tq.close()
    if started_ray:
        ray.shutdown()


# Each session: its spans in response order as (name, length, generated?) and the score dicts of its
# attempts as medsage.reward_fns.compute_score returns them (score = 0.9 * accuracy + 0.1 * format).
RIGHT = {"score": 1.0, "accuracy": 1.0, "format": 1.0}
WRONG = {"score": 0.1, "accuracy": 0.0, "format": 1.0}
WRONG_UNFORMATTED = {"score": 0.0, "accuracy": 0.0, "format": 0.0}


def _retry(tau1: int, check: int, tau2: int) -> list[tuple[str, int, int]]:
    return [("tau1", tau1, 1), ("inject", 3, 0), ("check", check, 1), ("inject", 2, 0), ("tau2", tau2, 1)]


SESSIONS = {
    "p0": [
        # wrong first, self-check, corrected retry: r_sc = 1
        (_retry(4, 3, 4), [WRONG, RIGHT], "retried"),
        ([("tau1", 6, 1)], [RIGHT], "accepted"),
        # wrong first, retry still wrong: r_sc = 0
        (_retry(3, 2, 3), [WRONG, WRONG], "retried"),
    ],
    "p1": [
        ([("tau1", 5, 1)], [RIGHT], "accepted"),
        (_retry(2, 4, 3), [WRONG_UNFORMATTED, RIGHT], "retried"),
        # budget ran out before the retry: tau1 stays the final (outcome-masked) trajectory, the
        # generated self-check span keeps response_mask 1 but earns nothing
        ([("tau1", 4, 1), ("inject", 3, 0), ("check", 3, 1)], [WRONG], "budget_before_retry"),
    ],
}


def _loop_output(uid: str, session_id: int, spans, attempts, stop_reason):
    """The session's ``AgentLoopOutput`` as the self-check loop builds it (its own ``_output``)."""
    t = Transcript(token_ids=list(range(100, 100 + PROMPT_LEN)), prompt_length=PROMPT_LEN, logprobs=[])
    for name, length, generated in spans:
        start = len(t.response_mask)
        t.token_ids += [1000 + session_id * 50 + start + k for k in range(length)]
        t.response_mask += [generated] * length
        t.logprobs += [-0.1 * (k + 1) if generated else 0.0 for k in range(length)]
        if generated:
            t.spans[name] = (start, start + length)
    session = _Session(None, t, GenerateRequest(sampling_params={}, images=None, mm_processor_kwargs={}, priority=0))
    session.attempts = list(attempts)
    session.global_steps = {"min_global_steps": 1, "max_global_steps": 1}
    # _output reads only its session argument; calling it unbound keeps the test off a model server.
    return SelfCheckAgentLoop._output(None, session, stop_reason, {})


def _put_rollouts(partition: str) -> KVBatchMeta:
    """What AgentLoopWorkerTQ._agent_loop_postprocess writes for each finished session."""
    keys, fields, tags = [], [], []
    for uid, sessions in SESSIONS.items():
        for session_id, spec in enumerate(sessions):
            field = _loop_output(uid, session_id, *spec).as_dict()
            field.pop("multi_modal_data", None)
            field.update(uid=uid, session_id=session_id, global_steps=1)
            field["loss_mask"] = field["response_mask"]
            field["input_ids"] = torch.cat([field["prompts"], field["responses"]])
            fields.append(field)
            keys.append(f"{uid}_{session_id}_0")
            prompt_len, response_len = field["prompts"].numel(), field["responses"].numel()
            tags.append(
                {
                    "status": "success",
                    "prompt_len": prompt_len,
                    "response_len": response_len,
                    "seq_len": prompt_len + response_len,
                    "global_steps": 1,
                    "min_global_steps": 1,
                    "max_global_steps": 1,
                }
            )
    return tq.kv_batch_put(keys=keys, partition_id=partition, fields=list_of_dict_to_tensordict(fields), tags=tags)


@pytest.fixture
def batch(tq_store):
    """The 6 sessions + verl's padding row in TransferQueue, reordered, with old_log_probs; cleared after."""
    partition = "train"
    meta = _put_rollouts(partition)
    # One synthetic row (6 % 7 -> 1 pad), a copy of row 0 (a corrected retry) with response_mask [0].
    meta = upsample_batch_to_divisible_size(meta, batch_multiple=7, eos_token_id=EOS)
    # _balance_batch reorders: interleave the groups and put the padding row in the middle.
    meta.reorder([3, 0, 6, 4, 1, 5, 2])
    response = tq.kv_batch_get(keys=meta.keys, partition_id=partition, select_fields=["rollout_log_probs"])
    old = torch.nested.as_nested_tensor(
        [row - 0.05 for row in response["rollout_log_probs"].unbind()], layout=torch.jagged
    )
    tq.kv_batch_put(
        keys=meta.keys, partition_id=partition, fields=TensorDict({"old_log_probs": old}, batch_size=len(meta))
    )
    yield meta
    tq.kv_clear(keys=meta.keys, partition_id=partition)


class _IdText:
    """Decodes token ids to their numbers, so a span's text names exactly the tokens it holds."""

    @staticmethod
    def decode(ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


def _trainer(config) -> RGRPOTrainer:
    """The trainer without its heavy __init__ (workers, servers, dataloader): only what the step reads."""
    trainer = object.__new__(RGRPOTrainer)
    trainer.config = config
    trainer.settings = RGRPOSettings.from_config(config)
    trainer.tokenizer, trainer.global_steps = _IdText(), 1
    if config.algorithm.use_kl_in_reward:
        trainer.kl_ctrl_in_reward = core_algos.get_kl_controller(config.algorithm.kl_ctrl)
    return trainer


def _padded(nested: torch.Tensor) -> torch.Tensor:
    return nested.to_padded_tensor(0.0)


def _expected_rows(meta: KVBatchMeta):
    """Per row of ``meta`` (in its order): (uid, session_id, session spec), or None for the padding row."""
    rows = []
    for key, tag in zip(meta.keys, meta.tags):
        if tag.get("is_padding", False):
            rows.append(None)
            continue
        uid, session_id, _ = key.split("_")
        rows.append((uid, int(session_id), SESSIONS[uid][int(session_id)]))
    return rows


def _group_g(norm_by_std: bool) -> dict[tuple[str, int], float]:
    """verl's GRPO g per (uid, session) from the final scores, computed by hand (sample std)."""
    g = {}
    for uid, sessions in SESSIONS.items():
        scores = [spec[1][-1]["score"] for spec in sessions]
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
        for i, s in enumerate(scores):
            g[(uid, i)] = (s - mean) / (std + EPS) if norm_by_std else s - mean
    return g


def test_advantage_step_reads_and_writes_transfer_queue(batch, make_config, tmp_path):
    config = make_config(tmp_path, f"medsage.alpha={ALPHA}", f"medsage.sessions_dir={tmp_path / 'sessions'}")
    metrics: dict = {}
    out = _trainer(config)._compute_advantage(batch, metrics)

    assert out.keys == batch.keys and out.partition_id == batch.partition_id
    assert {"advantages", "returns", "response_mask"} <= set(out.fields)
    data = tq.kv_batch_get(
        keys=batch.keys,
        partition_id=batch.partition_id,
        select_fields=["advantages", "returns", "response_mask", "rm_scores", "uid", "extra_fields"],
    )
    # Written back nested, one row per response length (padding row: 1 token).
    lengths = data["response_mask"].offsets().diff().tolist()
    assert data["advantages"].offsets().diff().tolist() == lengths
    rows = _expected_rows(batch)
    assert lengths == [1 if r is None else sum(n for _, n, _ in r[2][0]) for r in rows]
    advantages, returns = _padded(data["advantages"]), _padded(data["returns"])
    torch.testing.assert_close(returns, advantages, rtol=0, atol=0)

    # Same as the pure function on the same data (read back independently of the trainer).
    sessions = list(data["extra_fields"])
    pad = rows.index(None)
    # verl's padding row copies a corrected retry's extra_fields: only its tag and mask say "padding".
    assert batch.tags[pad]["is_padding"] and sessions[pad]["r_sc"] == 1.0 and lengths[pad] == 1
    uids = np.array(list(data["uid"]), dtype=object)
    response_mask = _padded(data["response_mask"])
    expected = advantages_from_sessions(_padded(data["rm_scores"]), response_mask, uids, sessions, alpha=ALPHA)
    torch.testing.assert_close(advantages, expected, rtol=0, atol=1e-6)

    # And token by token by hand.
    g = _group_g(norm_by_std=True)
    for row, spec in enumerate(rows):
        if spec is None:
            assert torch.count_nonzero(advantages[row]) == 0, "padding row must get no advantage"
            continue
        uid, session_id, (spans, attempts, _) = spec
        r_sc = float(len(attempts) == 2 and attempts[0]["accuracy"] < 1 and attempts[-1]["accuracy"] >= 1)
        outcome_span = "tau2" if any(name == "tau2" for name, _, _ in spans) else "tau1"
        position = 0
        for name, length, _ in spans:
            values = advantages[row, position : position + length]
            if name == outcome_span:
                want = g[(uid, session_id)]
            elif name == "check":
                want = ALPHA * r_sc
            else:  # injected instructions, a rejected first attempt
                want = 0.0
            torch.testing.assert_close(
                values, torch.full((length,), want), rtol=0, atol=1e-5, msg=f"{uid}/{session_id}/{name}"
            )
            position += length
        assert torch.count_nonzero(advantages[row, position:]) == 0

    # Rollout correction ran (rollout_log_probs present, not bypass) and left the mask unchanged
    # (no rejection configured); its metrics and the per-step R-GRPO metrics are in `metrics`.
    assert any(k.startswith("rollout_corr/") for k in metrics)
    real = [i for i, r in enumerate(rows) if r is not None]
    mine = {k: v for k, v in metrics.items() if k.startswith("medsage/")}
    # Both groups hold rewards 1.0, 1.0 and 0.1 (p1's last session stops at tau1 with 0.1): both learn.
    assert mine.pop("medsage/effective_group_rate") == 1.0
    assert mine == self_check_metrics([sessions[i] for i in real], [int(response_mask[i].sum()) for i in real])
    # By hand over the 6 real sessions (the padding row is a copy of a corrected retry: counting it
    # would give self_check_rate 5/7 and correction_rate 3/7).
    assert mine["medsage/self_check_rate"] == pytest.approx(4 / 6)
    assert mine["medsage/retry_rate"] == pytest.approx(3 / 6)
    assert mine["medsage/correction_rate"] == pytest.approx(2 / 6)
    assert mine["medsage/first_accuracy"] == pytest.approx(2 / 6)
    assert mine["medsage/final_accuracy"] == pytest.approx(4 / 6)
    assert mine["medsage/self_check_length/mean"] == pytest.approx((3 + 2 + 4 + 3) / 4)
    assert mine["medsage/response_length/mean"] == pytest.approx((11 + 6 + 8 + 5 + 9 + 7) / 6)
    assert mine["medsage/stop/budget_before_retry"] == pytest.approx(1 / 6)
    assert mine["medsage/reward/accuracy/mean"] == pytest.approx(4 / 6)
    _check_session_records(tmp_path / "sessions", rows, g)


def _check_session_records(sessions_dir, rows, g) -> None:
    """One record per real session, its spans cut and valued exactly as the update used them."""
    records = {r.uid + "/" + r.spans[0].text.split()[0]: r for r in read_sessions(sessions_dir)}
    assert len(records) == 6 and {r.step for r in records.values()} == {1}
    kinds = {"tau1": FIRST_ATTEMPT, "inject": INJECTED, "check": SELF_CHECK, "tau2": RETRY}
    for uid, session_id, (spans, attempts, stop_reason) in filter(None, rows):
        record = records[f"{uid}/{1000 + session_id * 50}"]
        retried = any(name == "tau2" for name, _, _ in spans)
        r_sc = float(retried and attempts[0]["accuracy"] < 1 and attempts[-1]["accuracy"] >= 1)
        assert (record.stop_reason, record.r_sc) == (stop_reason, r_sc)
        assert record.reward == pytest.approx(attempts[-1]["score"], abs=1e-6)
        assert [(s.kind, s.tokens) for s in record.spans] == [
            (FIRST_ATTEMPT if name == "tau1" else kinds[name], length) for name, length, _ in spans
        ]
        outcome = "tau2" if retried else "tau1"
        for (name, _, _), span in zip(spans, record.spans):
            want = g[(uid, session_id)] if name == outcome else ALPHA * r_sc if name == "check" else 0.0
            assert span.advantage == pytest.approx(want, abs=1e-5), f"{uid}/{session_id}/{name}"


def test_kl_in_reward_and_rollout_is_weights_are_written_back(batch, make_config, tmp_path):
    """KL in the reward changes R; norm_adv_by_std_in_grpo=false and token IS weights are wired through."""
    config = make_config(
        tmp_path,
        f"medsage.alpha={ALPHA}",
        "algorithm.use_kl_in_reward=true",
        "algorithm.kl_ctrl.kl_coef=0.5",
        "algorithm.norm_adv_by_std_in_grpo=false",
        "algorithm.rollout_correction.rollout_is=token",
    )
    # The reference policy's log-probs, as _compute_ref_log_prob writes them.
    old = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["old_log_probs"])
    ref = torch.nested.as_nested_tensor([row - 0.2 for row in old["old_log_probs"].unbind()], layout=torch.jagged)
    tq.kv_batch_put(
        keys=batch.keys,
        partition_id=batch.partition_id,
        fields=TensorDict({"ref_log_prob": ref}, batch_size=len(batch)),
    )
    metrics: dict = {}
    out = _trainer(config)._compute_advantage(batch, metrics)
    assert {"advantages", "returns", "token_level_rewards", "rollout_is_weights"} <= set(out.fields)
    data = tq.kv_batch_get(
        keys=batch.keys,
        partition_id=batch.partition_id,
        select_fields=["advantages", "token_level_rewards", "rollout_is_weights", "response_mask"]
        + ["rm_scores", "uid", "extra_fields"],
    )
    response_mask = _padded(data["response_mask"])
    rewards = _padded(data["token_level_rewards"])
    # kl = old - ref = 0.2 on every generated token, beta = 0.5: the reward drops by 0.1 per generated token.
    torch.testing.assert_close(rewards, _padded(data["rm_scores"]) - 0.1 * response_mask, rtol=0, atol=1e-5)
    assert "actor/reward_kl_penalty" in metrics
    weights = _padded(data["rollout_is_weights"])
    torch.testing.assert_close(weights, math.exp(-0.05) * response_mask, rtol=0, atol=1e-5)

    sessions = list(data["extra_fields"])
    uids = np.array(list(data["uid"]), dtype=object)
    advantages = _padded(data["advantages"])
    expected = advantages_from_sessions(rewards, response_mask, uids, sessions, alpha=ALPHA, norm_adv_by_std=False)
    torch.testing.assert_close(advantages, expected, rtol=0, atol=1e-6)
    # By hand for one row: p0 session 1 (accepted, 6 tokens): R = 1 - 0.6; group mean of R - 0.1 * length.
    rows = _expected_rows(batch)
    lengths = {(u, i): sum(n for _, n, m in s[0] if m) for u, ss in SESSIONS.items() for i, s in enumerate(ss)}
    r = {key: SESSIONS[key[0]][key[1]][1][-1]["score"] - 0.1 * length for key, length in lengths.items()}
    mean_p0 = sum(r[("p0", i)] for i in range(3)) / 3
    row = next(i for i, spec in enumerate(rows) if spec is not None and spec[:2] == ("p0", 1))
    torch.testing.assert_close(advantages[row, :6], torch.full((6,), r[("p0", 1)] - mean_p0), rtol=0, atol=1e-5)


def test_rejected_session_gets_no_advantage_but_stays_in_its_group(batch, make_config, tmp_path):
    """Rollout rejection sampling zeroes a session's response_mask: its tokens (self-check bonus
    included) get advantage 0, while its reward still enters its group's mean and std, as in verl's GRPO."""
    config = make_config(
        tmp_path,
        f"medsage.alpha={ALPHA}",
        "algorithm.rollout_correction.rollout_rs=seq_max_k2",
        "algorithm.rollout_correction.rollout_rs_threshold=0.01",
    )
    rejected = "p1_1_0"  # the corrected retry of p1: r_sc = 1, so its self-check span would earn ALPHA
    rollout = tq.kv_batch_get(keys=[rejected], partition_id=batch.partition_id, select_fields=["rollout_log_probs"])
    # max k2 = 0.5 * 1.0**2 = 0.5 > 0.01 for this row; 0.5 * 0.05**2 = 0.00125 keeps the others.
    far = torch.nested.as_nested_tensor([rollout["rollout_log_probs"].unbind()[0] - 1.0], layout=torch.jagged)
    tq.kv_batch_put(
        keys=[rejected], partition_id=batch.partition_id, fields=TensorDict({"old_log_probs": far}, batch_size=1)
    )
    metrics: dict = {}
    _trainer(config)._compute_advantage(batch, metrics)
    data = tq.kv_batch_get(
        keys=batch.keys, partition_id=batch.partition_id, select_fields=["advantages", "response_mask"]
    )
    advantages, response_mask = _padded(data["advantages"]), _padded(data["response_mask"])
    rows = _expected_rows(batch)
    g = _group_g(norm_by_std=True)
    for row, spec in enumerate(rows):
        if spec is None:
            continue
        uid, session_id, (spans, _, _) = spec
        generated = torch.tensor([m for _, n, m in spans for _ in range(n)], dtype=response_mask.dtype)
        if (uid, session_id) == ("p1", 1):
            assert torch.count_nonzero(response_mask[row]) == 0, "the rejected session's mask is written back as 0"
            assert torch.count_nonzero(advantages[row]) == 0
            continue
        torch.testing.assert_close(response_mask[row, : len(generated)], generated)
        outcome = "tau2" if any(name == "tau2" for name, _, _ in spans) else "tau1"
        start = 0
        for name, n, _ in spans:
            if name == outcome:  # g still uses the rejected session's R = 1.0 in p1's mean and std
                torch.testing.assert_close(
                    advantages[row, start : start + n], torch.full((n,), g[(uid, session_id)]), rtol=0, atol=1e-5
                )
            start += n
