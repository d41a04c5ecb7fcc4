"""Scaffold, answer matching and rewards: the pieces shared by data building, RL and evaluation."""

from .rewards import RewardWeights, accuracy_reward, compute_score, format_reward, score_response

__all__ = ["RewardWeights", "accuracy_reward", "compute_score", "format_reward", "score_response"]
