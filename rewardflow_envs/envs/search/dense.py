"""Dense retrieval as Search-R1 does it: a Hugging Face encoder and a faiss inner-product index.

The encoder is any Hugging Face model in a local folder (e5-base-v2 for Search-R1's setting):
e5's ``query: `` / ``passage: `` prefixes (on when the folder's name contains "e5", as
Search-R1 decides by the retriever's name), mean pooling over the last hidden states with padding
masked out, then unit length (``search_r1/search/retrieval_server.py``, ``Encoder``). A
sentence-transformers folder is read as sentence-transformers reads it: the transformer from the
path its ``modules.json`` names, the pooling its ``Pooling`` config says (mean, cls, max or last
token); a ``StaticEmbedding`` folder loads as ``StaticEncoder``. Passages are encoded from their
whole ``contents`` (``search_r1/search/index_builder.py``). The index is exact (``Flat``,
Search-R1's ``e5_Flat.index`` loads as is) or approximate (``IVF`` or ``HNSW``). Needs the
``dense`` extra (faiss-cpu, torch, transformers).

Without an encoder folder, ``dense_search`` fits a ``StaticEncoder`` on the corpus itself, so
dense retrieval works offline on the embedded data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from rewardflow_envs.envs.search.dataset import SearchDataset
from rewardflow_envs.envs.search.static_encoder import StaticEncoder
from rewardflow_envs.extras import require

IndexKind = Literal["flat", "ivf", "hnsw"]
INDEX_KINDS = ("flat", "ivf", "hnsw")
POOLINGS = ("mean", "cls", "max", "lasttoken")
# sentence-transformers' Pooling config before version 5: one boolean per mode.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
}


def _sentence_transformers_modules(folder: Path) -> dict[str, Path]:
    """The folder of each module a sentence-transformers `modules.json` lists, by class name
    (e.g. "Transformer", "Pooling", "StaticEmbedding"); none for a plain Hugging Face folder."""
    path = folder / "modules.json"
    if not path.is_file():
        return {}
    return {
        module["type"].rsplit(".", 1)[-1]: folder / module.get("path", "")
        for module in json.loads(path.read_text("utf-8"))
    }


def _sentence_transformers_layout(folder: Path) -> tuple[Path, str]:
    """(the transformer's folder, the pooling) as a sentence-transformers `modules.json` says;
    (`folder`, mean) for a plain Hugging Face folder."""
    modules = _sentence_transformers_modules(folder)
    transformer = modules.get("Transformer", folder)
    if "Pooling" not in modules:
        return transformer, "mean"
    config = json.loads((modules["Pooling"] / "config.json").read_text("utf-8"))
    mode = config.get("pooling_mode")
    if mode is None:
        modes = [name for key, name in _LEGACY_POOLING_KEYS.items() if config.get(key)]
        mode = modes[0] if len(modes) == 1 else modes
    if isinstance(mode, list) and len(mode) == 1:
        mode = mode[0]
    if mode not in POOLINGS:
        raise ValueError(
            f"{modules['Pooling'] / 'config.json'} asks for pooling {mode!r}; supported: "
            f"{', '.join(POOLINGS)}"
        )
    return transformer, mode


class Encoder:
    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        max_length: int = 256,
        batch_size: int = 64,
        prefixes: bool | None = None,
        device: str = "cpu",
    ) -> None:
        transformers = require("transformers", "dense")
        self.torch = require("torch", "dense")
        model_dir = Path(model_dir)
        weights_dir, self.pooling = _sentence_transformers_layout(model_dir)
        if not (weights_dir / "config.json").is_file():
            raise FileNotFoundError(f"encoder folder {weights_dir} has no config.json")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(weights_dir)
        # Encoders number positions from the first token: padding goes after the text.
        self.tokenizer.padding_side = "right"
        self.model = transformers.AutoModel.from_pretrained(weights_dir).to(device).eval()
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.prefixes = "e5" in model_dir.name.lower() if prefixes is None else prefixes

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(
        self, texts: Sequence[str], kind: Literal["query", "passage"], progress: bool = False
    ) -> np.ndarray:
        """Unit vectors, one row per text, float32."""
        if self.prefixes:
            texts = [f"{kind}: {text}" for text in texts]
        starts = range(0, len(texts), self.batch_size)
        if progress:
            tqdm = require("tqdm", "dense").tqdm
            starts = tqdm(starts, desc=f"encoding {len(texts)} {kind}s", unit="batch")
        rows = [np.zeros((0, self.dimension), dtype=np.float32)]
        with self.torch.inference_mode():
            for start in starts:
                rows.append(self._encode_batch(list(texts[start : start + self.batch_size])))
        return np.concatenate(rows)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        torch = self.torch
        batch = self.tokenizer(
            texts, max_length=self.max_length, padding=True, truncation=True, return_tensors="pt"
        ).to(self.device)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].bool()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "lasttoken":
            pooled = hidden[torch.arange(len(hidden)), mask.sum(dim=1) - 1]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(~mask[..., None], torch.finfo(hidden.dtype).min).amax(1)
        else:
            summed = hidden.masked_fill(~mask[..., None], 0.0).sum(dim=1)
            pooled = summed / mask.sum(dim=1)[..., None]
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return np.ascontiguousarray(pooled.float().cpu().numpy(), dtype=np.float32)


def load_encoder(
    folder: str | os.PathLike[str],
    max_length: int = 256,
    batch_size: int = 64,
    device: str = "cpu",
) -> Encoder | StaticEncoder:
    """The encoder in `folder`: a static one (sentence-transformers' StaticEmbedding, as
    `rewardflow fit-encoder` writes) or a transformer."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"encoder folder {folder} does not exist")
    if "StaticEmbedding" in _sentence_transformers_modules(folder):
        return StaticEncoder.load(folder)
    return Encoder(folder, max_length, batch_size, device=device)


def build_index(vectors: np.ndarray, kind: IndexKind = "flat", nlist: int = 1024, seed: int = 0):
    """An inner-product index over unit `vectors` (cosine similarity)."""
    faiss = require("faiss", "dense")
    dimension = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dimension)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dimension, 32, faiss.METRIC_INNER_PRODUCT)
    elif kind == "ivf":
        lists = max(1, min(nlist, len(vectors) // 39))  # faiss wants ~39 points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, lists)
        index.cp.seed = seed
        index.train(vectors)
        index.nprobe = min(lists, 16)
    else:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    index.add(vectors)
    return index


def save_index(index, path: str | os.PathLike[str]) -> None:
    faiss = require("faiss", "dense")
    path = Path(path)
    staging = path.with_name(f".{path.name}.partial-{os.getpid()}")
    faiss.write_index(index, str(staging))
    os.replace(staging, path)


def load_index(path: str | os.PathLike[str]):
    faiss = require("faiss", "dense")
    if not Path(path).is_file():
        raise FileNotFoundError(f"faiss index {path} does not exist")
    return faiss.read_index(str(path))


def on_gpus(index):
    """The index copied to every GPU faiss sees, sharded, in fp16 (Search-R1's --faiss_gpu)."""
    faiss = require("faiss", "dense")
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        raise ValueError("faiss sees no GPU here (faiss-cpu is installed, or no CUDA device)")
    options = faiss.GpuMultipleClonerOptions()
    options.useFloat16 = True
    options.shard = True
    return faiss.index_cpu_to_all_gpus(index, co=options)


class DenseSearch:
    """(corpus position, cosine score) of the best k passages; the index rows are the corpus
    lines in order, as in Search-R1's e5_Flat.index over wiki-18.jsonl."""

    def __init__(self, index, encoder: Encoder | StaticEncoder, corpus_size: int) -> None:
        if index.ntotal != corpus_size:
            raise ValueError(
                f"the faiss index holds {index.ntotal} vectors but the corpus has {corpus_size} "
                "passages: build the index from this corpus (rewardflow build-index)"
            )
        if index.d != encoder.dimension:
            raise ValueError(
                f"the faiss index has dimension {index.d}, the encoder {encoder.dimension}"
            )
        self.index = index
        self.encoder = encoder

    def scored_search(self, query: str, k: int) -> list[tuple[int, float]]:
        vector = self.encoder.encode([query], "query")
        if not vector.any():  # a static encoder knows none of its words: nothing is similar
            return []
        scores, rows = self.index.search(vector, k)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]

    def search(self, query: str, k: int) -> list[int]:
        return [position for position, _ in self.scored_search(query, k)]


_DENSE_SEARCHES: dict[tuple, DenseSearch] = {}


def dense_search(
    dataset: SearchDataset,
    encoder: str | os.PathLike[str] | None = None,
    index: str | os.PathLike[str] | None = None,
    faiss_gpu: bool = False,
    **encoder_options,
) -> DenseSearch:
    """Dense retrieval over `dataset`'s corpus: the `encoder` folder (default: a static encoder
    fitted on the corpus) and the `index` file (default: a Flat index built here, in memory).
    Made once per process for each setting, and shared by every env on it (as BM25 is)."""
    key = (dataset.fingerprint, encoder and str(encoder), index and str(index), faiss_gpu,
           tuple(sorted(encoder_options.items())))  # fmt: skip
    if key not in _DENSE_SEARCHES:
        contents = [passage.contents for passage in dataset.passages]
        if encoder is None:
            model = StaticEncoder.fit(contents)
        else:
            model = load_encoder(encoder, **encoder_options)
        if index is None:
            faiss_index = build_index(model.encode(contents, "passage"), "flat")
        else:
            faiss_index = load_index(index)
        _DENSE_SEARCHES[key] = DenseSearch(
            on_gpus(faiss_index) if faiss_gpu else faiss_index, model, len(dataset.passages)
        )
    return _DENSE_SEARCHES[key]
