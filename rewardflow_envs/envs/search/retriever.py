"""BM25 retrieval over a corpus with `bm25s`, indexed once per corpus.

The index is kept per process (every env of a group shares it) and, when a cache directory is
given, saved on disk under the corpus fingerprint so that later processes load it instead of
tokenising the corpus again: worth it for a Wikipedia-sized corpus, pointless for the
embedded one.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

from rewardflow_envs.envs.search.dataset import SearchDataset, publish_directory
from rewardflow_envs.extras import require

# Bumped whenever tokenisation or scoring changes, so that old indexes on disk are not reused.
INDEX_VERSION = "bm25s-en-v1"
CACHE_ENV_VAR = "RF_SEARCH_CACHE"
STOPWORDS = "en"  # the same list for passages and queries


class BM25Retriever:
    """Top-k passages for a query; ties go to the passage earlier in the corpus."""

    def __init__(self, model) -> None:
        self._bm25s = require("bm25s", "search")
        self._model = model

    @classmethod
    def build(cls, texts: list[str], source: str = "the corpus") -> BM25Retriever:
        bm25s = require("bm25s", "search")
        tokens = bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False)
        if not tokens.vocab:
            raise ValueError(
                f"{source}: no passage has a word to index (all {len(texts)} are empty or "
                "English stopwords)"
            )
        model = bm25s.BM25()
        model.index(tokens, show_progress=False)
        return cls(model)

    @classmethod
    def load(cls, directory: Path) -> BM25Retriever:
        bm25s = require("bm25s", "search")
        return cls(bm25s.BM25.load(str(directory), mmap=True))

    def save(self, directory: Path) -> None:
        self._model.save(str(directory))

    def search(self, query: str, k: int) -> list[int]:
        """Corpus positions of the best `k` passages with a positive score, best first."""
        return [position for position, _ in self.scored_search(query, k)]

    def scored_search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(corpus position, BM25 score) of the best `k` passages with a positive score, best
        first; ties go to the earlier passage."""
        batch = self._bm25s.tokenize(
            query, stopwords=STOPWORDS, return_ids=False, show_progress=False
        )
        tokens = batch[0]
        if not tokens:
            return []
        scores = np.asarray(self._model.get_scores(tokens))
        hits = np.flatnonzero(scores > 0)
        if hits.size > k:
            # Keep everything tied with the k-th best, then order by score and corpus position.
            kth_best = np.partition(scores[hits], hits.size - k)[hits.size - k]
            hits = hits[scores[hits] >= kth_best]
        best = hits[np.lexsort((hits, -scores[hits]))[:k]]
        return [(int(position), float(scores[position])) for position in best]


_RETRIEVERS: dict[str, BM25Retriever] = {}


def _build(dataset: SearchDataset) -> BM25Retriever:
    texts = [f"{passage.title}\n{passage.text}" for passage in dataset.passages]
    return BM25Retriever.build(texts, str(dataset.corpus_path))


def _load_or_build(dataset: SearchDataset, cache_dir: Path) -> BM25Retriever:
    index_dir = cache_dir / f"{INDEX_VERSION}-{dataset.fingerprint}"
    if index_dir.is_dir():
        try:
            return BM25Retriever.load(index_dir)
        except (OSError, ValueError, KeyError) as error:
            warnings.warn(
                f"the BM25 index cached in {index_dir} cannot be read ({type(error).__name__}: "
                f"{error}); it is rebuilt",
                stacklevel=2,
            )
            shutil.rmtree(index_dir, ignore_errors=True)
    retriever = _build(dataset)
    publish_directory(index_dir, retriever.save)
    return retriever


def bm25_retriever(dataset: SearchDataset, cache_dir: Path | None = None) -> BM25Retriever:
    """The retriever of `dataset`, built once per process (and once per machine with a cache)."""
    key = dataset.fingerprint
    if key not in _RETRIEVERS:
        if cache_dir is None:
            _RETRIEVERS[key] = _build(dataset)
        else:
            _RETRIEVERS[key] = _load_or_build(dataset, cache_dir)
    return _RETRIEVERS[key]
