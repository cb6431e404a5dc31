"""BM25 retrieval over a corpus with `bm25s`, indexed once per corpus.

The index is kept per process (every env of a group shares it) and, when a cache directory is
given, saved on disk under the corpus fingerprint so that later processes load it instead of
tokenising the corpus again: worth it for a Wikipedia-sized corpus, pointless for the
embedded one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from rewardflow_envs.envs.search.dataset import SearchDataset
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
    def build(cls, texts: list[str]) -> BM25Retriever:
        bm25s = require("bm25s", "search")
        tokens = bm25s.tokenize(texts, stopwords=STOPWORDS, show_progress=False)
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


def _index_text(dataset: SearchDataset) -> list[str]:
    return [f"{passage.title}\n{passage.text}" for passage in dataset.passages]


def _load_or_build(dataset: SearchDataset, cache_dir: Path) -> BM25Retriever:
    index_dir = cache_dir / f"{INDEX_VERSION}-{dataset.fingerprint}"
    if index_dir.is_dir():
        return BM25Retriever.load(index_dir)
    retriever = BM25Retriever.build(_index_text(dataset))
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write beside the final place and rename, so a reader never sees half an index.
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=cache_dir))
    retriever.save(partial)
    try:
        os.rename(partial, index_dir)
    except OSError:  # another process finished the same index first
        shutil.rmtree(partial, ignore_errors=True)
    return retriever


def bm25_retriever(dataset: SearchDataset, cache_dir: Path | None = None) -> BM25Retriever:
    """The retriever of `dataset`, built once per process (and once per machine with a cache)."""
    key = dataset.fingerprint
    if key not in _RETRIEVERS:
        if cache_dir is None:
            _RETRIEVERS[key] = BM25Retriever.build(_index_text(dataset))
        else:
            _RETRIEVERS[key] = _load_or_build(dataset, cache_dir)
    return _RETRIEVERS[key]
