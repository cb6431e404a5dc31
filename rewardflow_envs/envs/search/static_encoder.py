"""A dense encoder fitted on a corpus in seconds, for dense retrieval without downloaded weights.

Each word of the corpus gets a vector: its row of the corpus's top right singular vectors
(latent semantic analysis of the unit-length TF-IDF passage matrix), scaled by its IDF. A text's
embedding is the mean of its words' vectors, at unit length; words the corpus lacks count as
zero vectors. Over the embedded corpus this finds the gold passage of every one-hop question in
the top 3 (``benchmarks/bench_search.py``).

It is saved as a sentence-transformers ``StaticEmbedding`` model (``modules.json``,
``0_StaticEmbedding/{model.safetensors,tokenizer.json}``, ``1_Normalize``), so
``SentenceTransformer(folder)`` encodes exactly as this class does. Needs numpy, ``tokenizers``
and ``safetensors`` (the ``dense`` extra), no torch. The TF-IDF matrix is decomposed whole, so
the fit reads at most ``max_passages`` passages (evenly spaced through a larger corpus) and keeps
the ``max_vocab`` words found in most of them: meant for small corpora; Search-R1's setting uses
e5-base-v2 (see ``dense.Encoder``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rewardflow_envs.extras import require

UNKNOWN = "[UNK]"
MODULE_DIR = "0_StaticEmbedding"
STATIC_TYPE = "sentence_transformers.models.StaticEmbedding"
NORMALIZE_TYPE = "sentence_transformers.models.Normalize"


def _word_tokenizer(vocabulary: dict[str, int]):
    """BERT's uncased normalisation and word splitting, one id per whole word."""
    tokenizers = require("tokenizers", "dense")
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocabulary, unk_token=UNKNOWN))
    tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    return tokenizer


class StaticEncoder:
    prefixes = False  # e5's "query: " / "passage: " would only add two words to every text

    def __init__(self, tokenizer, weights: np.ndarray) -> None:
        self.tokenizer = tokenizer
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)

    @property
    def dimension(self) -> int:
        return int(self.weights.shape[1])

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        dimension: int = 128,
        max_vocab: int = 8192,
        max_passages: int = 8192,
    ) -> StaticEncoder:
        """Word vectors from `texts` (the corpus's passages; at most `max_passages` of them,
        evenly spaced), `dimension` wide at most."""
        if len(texts) > max_passages:
            texts = [texts[i * len(texts) // max_passages] for i in range(max_passages)]
        splitter = _word_tokenizer({UNKNOWN: 0})
        documents = Counter()
        for text in texts:
            normalized = splitter.normalizer.normalize_str(text)
            documents.update(
                {word for word, _ in splitter.pre_tokenizer.pre_tokenize_str(normalized)}
            )
        if not documents:
            raise ValueError("the corpus has no words to fit an encoder on")
        kept = sorted(documents, key=lambda word: (-documents[word], word))[:max_vocab]
        vocabulary = {UNKNOWN: 0} | {word: i for i, word in enumerate(sorted(kept), start=1)}
        tokenizer = _word_tokenizer(vocabulary)
        frequency = np.zeros(len(vocabulary))
        for word, count in documents.items():
            if word in vocabulary:
                frequency[vocabulary[word]] = count
        idf = np.log((1 + len(texts)) / (1 + frequency)) + 1.0  # scikit-learn's smooth IDF
        idf[0] = 0.0
        # The unit-length TF-IDF matrix, passages by words, and its right singular vectors,
        # from the eigenvectors of whichever of its two Gram matrices is smaller.
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        rows = np.repeat(np.arange(len(texts)), [len(encoding.ids) for encoding in encodings])
        words = np.concatenate([np.asarray(encoding.ids, dtype=np.int64) for encoding in encodings])
        counts = np.bincount(rows * len(vocabulary) + words, minlength=len(texts) * len(vocabulary))
        matrix = counts.reshape(len(texts), len(vocabulary)).astype(np.float64) * idf
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix /= np.where(norms > 0, norms, 1.0)
        if len(vocabulary) <= len(texts):
            values, vectors = np.linalg.eigh(matrix.T @ matrix)
        else:
            values, left = np.linalg.eigh(matrix @ matrix.T)
            vectors = matrix.T @ left / np.sqrt(np.maximum(values, 1e-300))
        rank = int((values > values.max() * 1e-10).sum())
        top = vectors[:, ::-1][:, : min(dimension, rank)]
        top *= np.where(top.sum(axis=0) < 0, -1.0, 1.0)  # one sign per axis, on every machine
        return cls(tokenizer, top * idf[:, None])

    def encode(self, texts: Sequence[str], kind: str = "query", progress: bool = False):
        """Unit vectors, one row per text, float32 (a text with no known word: zeros)."""
        del kind, progress  # the same words give the same vector as query or passage
        rows = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, encoding in enumerate(
            self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ):
            if encoding.ids:
                rows[row] = self.weights[encoding.ids].mean(axis=0)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.maximum(norms, 1e-12)  # sentence-transformers' Normalize

    def save(self, folder: str | os.PathLike[str]) -> None:
        safetensors = require("safetensors.numpy", "dense")
        folder = Path(folder)
        (folder / MODULE_DIR).mkdir(parents=True, exist_ok=True)
        (folder / "1_Normalize").mkdir(exist_ok=True)
        safetensors.save_file(
            {"embedding.weight": self.weights}, str(folder / MODULE_DIR / "model.safetensors")
        )
        self.tokenizer.save(str(folder / MODULE_DIR / "tokenizer.json"))
        modules = [
            {"idx": 0, "name": "0", "path": MODULE_DIR, "type": STATIC_TYPE},
            {"idx": 1, "name": "1", "path": "1_Normalize", "type": NORMALIZE_TYPE},
        ]
        (folder / "modules.json").write_text(json.dumps(modules, indent=2), "utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> StaticEncoder:
        tokenizers = require("tokenizers", "dense")
        safetensors = require("safetensors.numpy", "dense")
        module = Path(folder) / MODULE_DIR
        for name in ("model.safetensors", "tokenizer.json"):
            if not (module / name).is_file():
                raise FileNotFoundError(
                    f"static encoder folder {folder} has no {MODULE_DIR}/{name}"
                )
        weights = safetensors.load_file(str(module / "model.safetensors"))
        if "embedding.weight" not in weights:
            raise ValueError(f"{module / 'model.safetensors'} holds no 'embedding.weight'")
        tokenizer = tokenizers.Tokenizer.from_file(str(module / "tokenizer.json"))
        return cls(tokenizer, weights["embedding.weight"])
