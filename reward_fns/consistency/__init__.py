"""Trajectory-consistency scorer and reward (paper appendix A.4).

Importing this package stays light (stdlib only) because every reward worker imports it; the
torch parts live in :mod:`.model`, :mod:`.train` and :mod:`.serve`, imported where needed.
"""

from .client import (
    ConsistencyClient,
    ConsistencyConfig,
    ConsistencyResult,
    ScorerAuthError,
    ScorerUnreachable,
    consistency_client,
)
from .corruptions import CORRUPTION_KINDS, add_corruptions, corrupt
from .pairs import Group, Negative, Pair, ScoreItem, group_pairs, read_pairs

__all__ = [
    "CORRUPTION_KINDS",
    "ConsistencyClient",
    "ConsistencyConfig",
    "ConsistencyResult",
    "Group",
    "Negative",
    "Pair",
    "ScoreItem",
    "ScorerAuthError",
    "ScorerUnreachable",
    "add_corruptions",
    "consistency_client",
    "corrupt",
    "group_pairs",
    "read_pairs",
]
