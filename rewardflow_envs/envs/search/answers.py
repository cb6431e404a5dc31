"""Answer normalisation and exact match, as in the SQuAD evaluation script and Search-R1."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop ASCII punctuation and the articles a/an/the, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, golden_answers: Iterable[str]) -> bool:
    """Whether `prediction` equals any golden answer after normalisation.

    A golden answer that normalises to nothing (e.g. "The") matches no prediction: Search-R1's
    `em_check` would let the answer "a" match it.
    """
    normalized = normalize_answer(prediction)
    golden = (normalize_answer(answer) for answer in golden_answers)
    return any(answer and normalized == answer for answer in golden)
