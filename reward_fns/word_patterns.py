"""Regular expressions for "any of these words", written so that Python's engine scans them fast.

``\\b(?:w1|w2|...)\\b`` makes the engine try every word at every position of a text. Written from
the words' first letters instead (a character set the engine skips ahead with), it tries a word
only where its first letter stands: the same matches, several times faster on prose.
"""

from __future__ import annotations

from itertools import groupby


def any_word_pattern(words: list[str] | tuple[str, ...] | frozenset[str]) -> str:
    """``\\b(?:w1|w2|...)\\b`` as the first letters' set, each letter followed by the tails of its words."""
    letters = "".join(sorted({w[0] for w in words}))
    tails = "|".join(f"(?<={first})(?:{'|'.join(w[1:] for w in group)})"
                     for first, group in groupby(sorted(words), key=lambda w: w[0]))
    return rf"[{letters}](?<=\b[{letters}])(?:{tails})\b"
