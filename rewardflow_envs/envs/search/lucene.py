"""BM25 over a Pyserini (Lucene) index, as Search-R1's BM25 server searches with one.

The hits and scores are ``LuceneSearcher.search``'s; each hit's document id is looked up in the
corpus, whose rows the server sends back. Build the index with Pyserini from a folder that
holds only the corpus file (Pyserini indexes every jsonl file in it)::

    python -m pyserini.index.lucene --collection JsonCollection --input CORPUS_DIR \\
        --index INDEX_DIR --generator DefaultLuceneDocumentGenerator --threads 4 --storeRaw

Needs the ``lucene`` extra (pyserini) and a Java runtime that version of Pyserini runs on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rewardflow_envs.envs.search.dataset import Passage
from rewardflow_envs.extras import require


class LuceneSearch:
    def __init__(self, index_dir: str | os.PathLike[str], passages: Sequence[Passage]) -> None:
        if not Path(index_dir).is_dir():
            raise FileNotFoundError(f"Lucene index {index_dir} does not exist")
        try:
            lucene = require("pyserini.search.lucene", "lucene")
        except ImportError:
            raise
        except Exception as error:  # pyserini 0.25 builds an OpenAI client when imported
            raise RuntimeError(
                f"pyserini failed to import ({type(error).__name__}: {error}); pyserini 0.25 "
                "needs OPENAI_API_KEY set to any value with recent openai packages"
            ) from error
        self.searcher = lucene.LuceneSearcher(str(index_dir))
        self.positions = {passage.id: position for position, passage in enumerate(passages)}

    def scored_search(self, query: str, k: int) -> list[tuple[int, float]]:
        found = []
        for hit in self.searcher.search(query, k)[:k]:
            if hit.docid not in self.positions:
                raise ValueError(
                    f"the Lucene index holds document {hit.docid!r}, which the corpus does not: "
                    "build the index from this corpus"
                )
            found.append((self.positions[hit.docid], float(hit.score)))
        return found

    def search(self, query: str, k: int) -> list[int]:
        return [position for position, _ in self.scored_search(query, k)]
