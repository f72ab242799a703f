"""SecretMask: what a run's log shows when a step prints a secret."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from slipway.masking import MASK, MIN_MASKED_CHARS, SecretMask


def test_every_occurrence_of_a_value_is_masked() -> None:
    mask = SecretMask(["hunter2-token"])

    assert mask.clean("token=hunter2-token; again hunter2-token") == "token=***; again ***"


def test_a_value_containing_another_is_masked_whole() -> None:
    mask = SecretMask(["abcd", "xxabcdxx"])

    assert mask.clean("see xxabcdxx and abcd") == "see *** and ***"


def test_values_shorter_than_four_characters_are_not_masked() -> None:
    mask = SecretMask(["abc", "1", ""])

    assert not mask
    assert mask.clean("abc 1 abc") == "abc 1 abc"


def test_each_line_of_a_multi_line_value_is_masked_on_its_own() -> None:
    key = "-----BEGIN KEY-----\nMIIBVQIBADANBgkqhkiG\nab\n-----END KEY-----\n"
    mask = SecretMask([key])

    printed = "\n".join(["loading key", *key.splitlines(), "done"])

    assert mask.clean(printed) == "loading key\n***\n***\nab\n***\ndone"


def test_regex_characters_in_a_value_are_literal() -> None:
    mask = SecretMask(["a.b*c(d)|e"])

    assert mask.clean("a.b*c(d)|e axbbbcd") == "*** axbbbcd"


def test_a_mask_joined_to_the_rest_of_a_value_is_masked_again() -> None:
    # "abcd" masked leaves "a***", which is the other value; it must not survive.
    mask = SecretMask(["abcd", "a***"])

    assert mask.clean("aabcd") == MASK


def test_many_lines_with_many_secrets() -> None:
    values = [f"secret-value-{n:04d}" for n in range(200)]
    mask = SecretMask(values)
    lines = [f"line {n}: {values[n % 200]} ok" for n in range(5000)]

    cleaned = [mask.clean(line) for line in lines]

    assert all(line.endswith(": *** ok") for line in cleaned)


_values = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=5)


@given(values=_values, filler=st.lists(st.text(max_size=8), min_size=1, max_size=6), data=st.data())
def test_no_masked_value_survives_in_the_cleaned_text(
    values: list[str], filler: list[str], data: st.DataObject
) -> None:
    mask = SecretMask(values)
    pieces = list(filler)
    for value in values:
        pieces.insert(data.draw(st.integers(0, len(pieces))), value)
    text = "".join(pieces)

    cleaned = mask.clean(text)

    for value in values:
        for line in value.splitlines():
            if len(line) >= MIN_MASKED_CHARS:
                assert line not in cleaned


@given(text=st.text(alphabet=st.characters(blacklist_characters="*"), max_size=40))
def test_text_without_any_value_is_unchanged(text: str) -> None:
    mask = SecretMask(["*never-in-the-text*"])

    assert mask.clean(text) == text
