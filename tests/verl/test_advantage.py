"""The R-GRPO advantage (paper eqs. 10-12) against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from medsage.plugins.verl.advantage import group_normalized_scores, self_check_advantages

EPS = 1e-6


def _ids(*groups: str) -> np.ndarray:
    return np.array(groups, dtype=object)


def test_two_groups_by_hand():
    # Group a: R = [1, 0, 0.5] -> mean 0.5, sample std 0.5; group b: R = [0.2, 0.6] -> mean 0.4, std sqrt(0.08).
    scores = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.6])
    index = _ids("a", "a", "a", "b", "b")
    # Session 1 retried successfully: tokens 0-1 rejected tau1, 2-3 self-check, 4-5 tau2.
    outcome = torch.tensor(
        [[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]]
    )
    check = torch.tensor(
        [[0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]]
    )
    r_sc = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    adv = self_check_advantages(scores, r_sc, index, outcome, check, alpha=0.2)

    g_a = [0.5 / (0.5 + EPS), -0.5 / (0.5 + EPS), 0.0]
    std_b = math.sqrt(0.08)
    g_b = [-0.2 / (std_b + EPS), 0.2 / (std_b + EPS)]
    expected = torch.tensor(
        [
            [g_a[0]] * 3 + [0.0] * 3,
            [0.0, 0.0, 0.2, 0.2, g_a[1], g_a[1]],
            [g_a[2]] * 6,
            [g_b[0]] * 2 + [0.0] * 4,
            [g_b[1]] * 4 + [0.0] * 2,
        ]
    )
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-5)


def test_single_sample_group_keeps_raw_score():
    # verl's rule: a group of one has mean 0 and std 1, so g = R / (1 + eps).
    adv = self_check_advantages(
        torch.tensor([0.7]), torch.tensor([1.0]), _ids("solo"), torch.tensor([[0, 1]]), torch.tensor([[1, 0]]), alpha=0.2
    )
    torch.testing.assert_close(adv, torch.tensor([[0.2, 0.7 / (1 + EPS)]]))


def test_all_equal_group_gives_only_the_bonus():
    # Exactly representable scores: with 0.9, float32 rounding leaves std ~1e-8 and verl's g ~0.06.
    scores = torch.tensor([1.0, 1.0, 1.0])
    outcome = torch.tensor([[0, 0, 1], [1, 1, 1], [1, 1, 1]])
    check = torch.tensor([[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    adv = self_check_advantages(scores, torch.tensor([1.0, 0.0, 0.0]), _ids("g", "g", "g"), outcome, check, alpha=0.25)
    torch.testing.assert_close(adv, torch.tensor([[0.25, 0.25, 0.0], [0.0] * 3, [0.0] * 3]))


def test_alpha_zero_is_base_reward_only():
    scores = torch.tensor([1.0, 0.0])
    outcome = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 1]])
    check = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 0]])
    adv = self_check_advantages(scores, torch.tensor([0.0, 1.0]), _ids("p", "p"), outcome, check, alpha=0.0)
    g = 0.5 / (math.sqrt(0.5) + EPS)
    torch.testing.assert_close(adv, torch.tensor([[g, g, 0.0, 0.0], [0.0, 0.0, 0.0, -g]]))


def test_norm_off_subtracts_mean_only():
    scores = torch.tensor([1.0, 0.0, 0.0, 0.0])
    outcome = torch.ones(4, 2, dtype=torch.long)
    adv = self_check_advantages(
        scores, torch.zeros(4), _ids("q", "q", "q", "q"), outcome, torch.zeros(4, 2), norm_adv_by_std=False
    )
    torch.testing.assert_close(adv, torch.tensor([[0.75, 0.75]] + [[-0.25, -0.25]] * 3))


def test_matches_verl_grpo_when_masks_cover_the_response():
    """Self-check off (Table 5): outcome_mask == response_mask, r_sc == 0 -> verl's GRPO exactly."""
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(12, generator=gen)
    mask = (torch.rand(12, 9, generator=gen) > 0.3).long()
    index = _ids(*[f"u{i // 6}" for i in range(12)])
    token_rewards = torch.zeros(12, 9)
    token_rewards[:, -1] = scores
    expected, _ = compute_grpo_outcome_advantage(token_rewards, mask, index)
    adv = self_check_advantages(scores, torch.zeros(12), index, mask, torch.zeros_like(mask), alpha=0.2)
    torch.testing.assert_close(adv, expected)


def test_group_scores_ignore_token_positions():
    g = group_normalized_scores(torch.tensor([2.0, 4.0]), _ids("x", "x"))
    torch.testing.assert_close(g, torch.tensor([-1 / (math.sqrt(2) + EPS), 1 / (math.sqrt(2) + EPS)]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"self_check_success": torch.zeros(3)}, "batch size 2"),
        ({"outcome_mask": torch.ones(2, 5)}, "must both be"),
        ({"self_check_mask": torch.ones(2, 4)}, "in both outcome_mask and self_check_mask"),
    ],
)
def test_bad_shapes_and_overlapping_masks_are_rejected(kwargs, message):
    args = dict(
        outcome_scores=torch.zeros(2),
        self_check_success=torch.zeros(2),
        index=_ids("a", "a"),
        outcome_mask=torch.ones(2, 4),
        self_check_mask=torch.zeros(2, 4),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        self_check_advantages(**args)


def _outcome(outcome_mask, self_check_mask, corrected, stop="retried", first=False, capped=(), parts=None):
    """A session outcome as the self-check loop writes it into ``extra_fields``."""
    from medsage.plugins.verl.sessions import SessionOutcome

    final = first or corrected
    return SessionOutcome(
        outcome_mask=list(outcome_mask), self_check_mask=list(self_check_mask), first_correct=first,
        final_correct=final, self_checked=any(self_check_mask) or stop == "budget_before_retry",
        retried=stop == "retried", stop_reason=stop, reward_parts=parts or {"accuracy": float(final)},
        first_reward_parts={"accuracy": float(first)}, capped_spans=list(capped),
    ).to_extra_fields()


def test_session_masks_pad_cut_and_drop_padding_rows():
    from medsage.plugins.verl.advantage import advantages_from_sessions, session_masks

    sessions = [
        _outcome([0, 0, 1, 1], [0, 1, 0, 0], corrected=True),
        _outcome([1, 1], [0, 0], corrected=False, stop="accepted", first=True),
        # verl's synthetic padding row: a copy of row 0's fields, response_mask all 0.
        _outcome([0, 0, 1, 1], [0, 1, 0, 0], corrected=True),
    ]
    response_mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    outcome, check, r_sc = session_masks(sessions, response_mask)
    torch.testing.assert_close(outcome, torch.tensor([[0.0, 0, 1], [1, 1, 0], [0, 0, 0]]))
    torch.testing.assert_close(check, torch.tensor([[0.0, 1, 0], [0, 0, 0], [0, 0, 0]]))
    torch.testing.assert_close(r_sc, torch.tensor([1.0, 0.0, 1.0]))

    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    adv = advantages_from_sessions(rewards, response_mask, _ids("u", "u", "pad"), sessions, alpha=0.2)
    g = 0.5 / (math.sqrt(0.5) + EPS)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.2, g], [-g, -g, 0.0], [0.0, 0.0, 0.0]]))

    with pytest.raises(ValueError, match="row 1 extra_fields has no outcome_mask, first_correct.*self-check loop"):
        session_masks([sessions[0], {"self_check_mask": []}], response_mask[:2])


def test_session_outcome_survives_verl_storage():
    """What the loop writes reads back the same after verl stores it (numpy scalars, tuples) and
    beside verl's own keys; r_sc is derived from the verdicts, not trusted from the row."""
    from medsage.plugins.verl.sessions import SessionOutcome

    written = _outcome([0, 0, 0, 1], [0, 1, 0, 0], corrected=True, capped=["check"], parts={"accuracy": 1.0, "format": 0.5})
    stored = {k: (tuple(v) if isinstance(v, list) else np.bool_(v) if isinstance(v, bool) else v) for k, v in written.items()}
    stored.update({"turn_scores": [0.1, 0.9], "min_global_steps": 2, "reward_extra_info": {}, "r_sc": 0.0})
    outcome = SessionOutcome.from_extra_fields(stored)
    assert outcome.to_extra_fields() == written
    assert (outcome.r_sc, outcome.self_check_length, type(outcome.first_correct)) == (1.0, 1, bool)
    assert (written["r_sc"], written["self_check_length"]) == (1.0, 1)


def test_self_check_metrics():
    from medsage.plugins.verl.metrics import self_check_metrics

    def session(first, corrected, check_length, stop, capped=()):
        acc = float(first or corrected)
        return _outcome([0] * 40, [1] * check_length + [0] * (40 - check_length), corrected, stop, first, capped,
                        {"accuracy": acc, "format": 1.0})

    metrics = self_check_metrics(
        [
            session(True, False, 0, "accepted"),
            session(False, True, 30, "retried", ["check"]),
            session(False, False, 10, "retried", ["tau1", "check", "tau2"]),
            session(False, False, 20, "budget_before_retry", ["tau1"]),
        ],
        [100, 300, 280, 200],
    )
    assert metrics == {
        "medsage/self_check_rate": 0.75,
        "medsage/retry_rate": 0.5,
        "medsage/correction_rate": 0.25,
        "medsage/first_accuracy": 0.25,
        "medsage/final_accuracy": 0.5,
        "medsage/response_length/mean": 220.0,
        "medsage/self_check_length/mean": 20.0,
        "medsage/reward/accuracy/mean": 0.5,
        "medsage/reward/format/mean": 1.0,
        "medsage/stop/accepted": 0.25,
        "medsage/stop/budget_before_retry": 0.25,
        "medsage/stop/retried": 0.5,
        "medsage/capped/tau1": 0.5,
        "medsage/capped/check": 0.5,
        "medsage/capped/tau2": 0.25,
    }
