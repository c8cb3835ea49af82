"""portrait.words: counts in words for messages."""

import pytest

from portrait.words import counted


@pytest.mark.parametrize("count, noun, plural, expected", [
    (0, "pair", None, "0 pairs"),
    (1, "pair", None, "1 pair"),
    (2, "pair", None, "2 pairs"),
    (1, "batch", "batches", "1 batch"),
    (3, "batch", "batches", "3 batches"),
])
def test_counted_is_singular_for_one_only(count, noun, plural, expected):
    assert counted(count, noun, plural) == expected
