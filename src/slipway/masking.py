"""Secret masking: every occurrence of a secret's value in text becomes ``***``.

One compiled regular expression of all the values, longest first (so a value that contains
another is masked whole, not around the shorter one), so cleaning a run's many log lines costs
one scan per line whatever the number of secrets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
# Shorter values are not masked: masking "1", "yes" or "abc" would blank out ordinary words and
# numbers all over a log (and reveal, by where the stars fall, what the value is), while a value
# that short protects nothing anyway.
MIN_MASKED_CHARS = 4


class SecretMask:
    """Built from secret values; ``clean(text)`` returns ``text`` with each of them masked.

    A multi-line value is masked line by line (each of its lines of at least
    ``MIN_MASKED_CHARS``), since logs are read and shown a line at a time.
    """

    def __init__(self, values: Iterable[str]) -> None:
        pieces = {line for value in values for line in value.splitlines() if len(line) >= MIN_MASKED_CHARS}
        ordered = sorted(pieces, key=lambda piece: (-len(piece), piece))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def clean(self, text: str) -> str:
        if self._pattern is None:
            return text
        text, count = self._pattern.subn(MASK, text)
        # A value that itself holds "***" could be formed by a mask next to its other half; each
        # pass makes the text shorter (at least 4 characters become 3), so this ends.
        while count:
            text, count = self._pattern.subn(MASK, text)
        return text
