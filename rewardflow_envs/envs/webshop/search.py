"""BM25 search over the products of a catalogue (the role Lucene plays in WebShop)."""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence

import numpy as np

from rewardflow_envs.envs.webshop.catalogue import Catalogue, Product
from rewardflow_envs.extras import require

# WebShop shows the best 50 hits, 10 per results page.
SEARCH_RETURN_N = 50
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-case word tokens: what the search engine and the state key see of a query."""
    return _WORD.findall(text.lower())


class SearchEngine:
    """A BM25 index over title, features, description and option values of each product."""

    def __init__(self, products: Sequence[Product]):
        bm25s = require("bm25s", "webshop")
        self._stopwords = frozenset(bm25s.stopwords.STOPWORDS_EN)
        self._asins = [product.asin for product in products]
        self._index = bm25s.BM25()
        self._index.index([self._tokens(_document(p)) for p in products], show_progress=False)

    def _tokens(self, text: str) -> list[str]:
        return [word for word in words(text) if word not in self._stopwords]

    def search(self, query: str, limit: int = SEARCH_RETURN_N) -> list[str]:
        """Asins of the best matches, best first; products sharing no word with the query
        are left out, and ties keep catalogue order so results are deterministic."""
        tokens = self._tokens(query)
        if not tokens:
            return []
        scores = np.asarray(self._index.get_scores(tokens), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")[:limit]
        return [self._asins[index] for index in order if scores[index] > 0.0]


# Building an index is slow: one per catalogue, dropped with the catalogue.
_ENGINES: weakref.WeakKeyDictionary[Catalogue, SearchEngine] = weakref.WeakKeyDictionary()


def search_engine_for(catalogue: Catalogue) -> SearchEngine:
    """The search engine over `catalogue`'s products, built on first use."""
    if catalogue not in _ENGINES:
        _ENGINES[catalogue] = SearchEngine(list(catalogue.products.values()))
    return _ENGINES[catalogue]


def _document(product: Product) -> str:
    option_values = (value for _, values in product.options for value in values)
    return " ".join([product.title, *product.features, product.description, *option_values])
