"""R-GRPO advantage: GRPO's outcome advantage on the final trajectory plus the self-check bonus.

Paper section 3.3, eqs. 10-12. For one session with final outcome reward ``R`` and self-check
success ``r_sc = 1[a1 wrong and a2 right]``::

    A[t] = g * outcome_mask[t] + alpha * r_sc * self_check_mask[t]
    g    = (R - mean_group(R)) / (std_group(R) + epsilon)      (groups: the prompt's uid)

``outcome_mask`` covers the tokens of the accepted first attempt, or of the retry when the session
retried; ``self_check_mask`` covers the self-check span. A rejected first attempt and the injected
instructions are in neither mask, so they get advantage 0. ``g`` is computed by verl's own
``compute_grpo_outcome_advantage`` (same ``torch.std``, epsilon, single-sample rule and
``norm_adv_by_std_in_grpo`` switch), so R-GRPO and GRPO agree exactly where the masks coincide.

Ablations: ``alpha=0`` is "base reward only" (Table 4); running the loop with self-check off makes
``outcome_mask == response_mask`` and ``r_sc == 0``, which is plain GRPO on tau1 (Table 5).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

from .sessions import SessionOutcome, read_outcomes


def group_normalized_scores(
    outcome_scores: torch.Tensor, index: np.ndarray, epsilon: float = 1e-6, norm_adv_by_std: bool = True
) -> torch.Tensor:
    """Per-sample ``g`` of shape [B]: verl's GRPO normalisation of one scalar reward per sample."""
    scores = outcome_scores.detach().to(torch.float32).reshape(-1, 1)
    advantages, _ = compute_grpo_outcome_advantage(
        token_level_rewards=scores,
        response_mask=torch.ones_like(scores),
        index=index,
        epsilon=epsilon,
        norm_adv_by_std_in_grpo=norm_adv_by_std,
    )
    return advantages[:, 0]


def self_check_advantages(
    outcome_scores: torch.Tensor,
    self_check_success: torch.Tensor,
    index: np.ndarray,
    outcome_mask: torch.Tensor,
    self_check_mask: torch.Tensor,
    alpha: float = 0.2,
    epsilon: float = 1e-6,
    norm_adv_by_std: bool = True,
) -> torch.Tensor:
    """Token-level R-GRPO advantages [B, T] (eqs. 10-12).

    Args:
        outcome_scores: [B] outcome reward R of each session's final trajectory.
        self_check_success: [B] r_sc in {0, 1}.
        index: [B] numpy object array of group ids (verl's ``uid``).
        outcome_mask: [B, T] 1 on the tokens that receive the outcome advantage.
        self_check_mask: [B, T] 1 on the self-check span.
        alpha: weight of the self-check bonus (paper default 0.2).
        epsilon, norm_adv_by_std: as verl's ``compute_grpo_outcome_advantage``.
    """
    batch = outcome_scores.shape[0]
    if self_check_success.shape != (batch,) or len(index) != batch:
        raise ValueError(
            f"outcome_scores {tuple(outcome_scores.shape)}, self_check_success "
            f"{tuple(self_check_success.shape)} and index ({len(index)}) must all have batch size {batch}"
        )
    if outcome_mask.shape != self_check_mask.shape or outcome_mask.shape[0] != batch:
        raise ValueError(
            f"outcome_mask {tuple(outcome_mask.shape)} and self_check_mask {tuple(self_check_mask.shape)} "
            f"must both be [{batch}, T]"
        )
    if torch.any(outcome_mask.bool() & self_check_mask.bool()):
        raise ValueError("a token is in both outcome_mask and self_check_mask; the paper keeps them disjoint")
    g = group_normalized_scores(outcome_scores, index, epsilon, norm_adv_by_std)
    bonus = alpha * self_check_success.to(torch.float32)
    return g.unsqueeze(-1) * outcome_mask.to(torch.float32) + bonus.unsqueeze(-1) * self_check_mask.to(torch.float32)


def session_masks(
    sessions: Sequence[Mapping[str, Any] | SessionOutcome], response_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``outcome_mask``, ``self_check_mask`` [B, T] and ``r_sc`` [B] of the sessions' outcomes
    (each a :class:`SessionOutcome` or the ``extra_fields`` verl carried it in).

    Masks are right-padded (or cut) to the batch width T and multiplied by ``response_mask``, so
    verl's synthetic padding rows (``response_mask`` 0) get no advantage whatever they carry.
    """
    batch, width = response_mask.shape
    if len(sessions) != batch:
        raise ValueError(f"{len(sessions)} sessions for a batch of {batch} rows")
    outcomes = read_outcomes(sessions)
    outcome, check = torch.zeros(batch, width), torch.zeros(batch, width)
    for row, session in enumerate(outcomes):
        for target, mask in ((outcome, session.outcome_mask), (check, session.self_check_mask)):
            values = torch.as_tensor(mask[:width], dtype=torch.float32)
            target[row, : len(values)] = values
    keep = response_mask.to(torch.float32)
    r_sc = torch.tensor([s.r_sc for s in outcomes])
    return outcome * keep, check * keep, r_sc


def advantages_from_sessions(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: np.ndarray,
    sessions: Sequence[Mapping[str, Any] | SessionOutcome],
    alpha: float = 0.2,
    norm_adv_by_std: bool = True,
) -> torch.Tensor:
    """The trainer's advantage step: R is the summed token-level reward, as in verl's GRPO."""
    outcome, check, r_sc = session_masks(sessions, response_mask)
    return self_check_advantages(
        token_level_rewards.sum(dim=-1), r_sc, index, outcome, check, alpha=alpha, norm_adv_by_std=norm_adv_by_std
    )
