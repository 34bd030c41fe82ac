"""The quick pre-check on raw JSON must never wave through unstorable text."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.text import find_unstorable_text, json_may_hold_unstorable_text

# Any code point, lone surrogates and NUL included.
TEXT = st.text(
    alphabet=st.characters(
        min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()
    ),
    max_size=20,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def encoded(value: object, *, ensure_ascii: bool) -> bytes:
    # surrogatepass: a lone surrogate written raw, as a careless sender would.
    return json.dumps(value, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")


@given(JSON_VALUES, st.booleans())
def test_unstorable_text_is_always_flagged(value, ensure_ascii):
    raw = encoded(value, ensure_ascii=ensure_ascii)

    if find_unstorable_text(json.loads(raw)) is not None:
        assert json_may_hold_unstorable_text(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "x\\u0000"}',
        b'{"\\u0000": 1}',
        b'{"a": "\\ud800"}',
        b'{"a": "\\uDFFF"}',
        '{"a": "\ud83d"}'.encode("utf-8", "surrogatepass"),
    ],
)
def test_nul_and_surrogate_escapes_are_flagged(raw):
    assert json_may_hold_unstorable_text(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "Zo\\u00eb", "city": "M\\u00fcnchen"}',
        '{"name": "Zoë 東京 🎉"}'.encode(),
    ],
)
def test_ordinary_text_skips_the_walk(raw):
    assert not json_may_hold_unstorable_text(raw)


def test_an_escaped_surrogate_pair_is_a_false_alarm_the_walk_clears():
    raw = b'{"emoji": "\\ud83c\\udf89"}'

    assert json_may_hold_unstorable_text(raw)
    assert find_unstorable_text(json.loads(raw)) is None
