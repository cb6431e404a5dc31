"""RF-Search-v0 retrieval: quality, server throughput, and env steps in-process against HTTP.

    python benchmarks/bench_search.py                       # embedded corpus, BM25 and dense
    python benchmarks/bench_search.py --large 1000000       # also a generated 1M-passage corpus
    python benchmarks/bench_search.py --encoder DIR         # dense with this encoder (e5 folder)

For each corpus and backend it prints

1. recall@3 of the gold passage of every one-hop question of the embedded data (the embedded
   corpus only: the generated one has no questions);
2. the retrieval server's queries/s under concurrent load (`--clients` threads, one query a
   request, as verl-agent's tool sends them; the server runs in its own process), and the ratio
   to one client;
3. the mean env step (searches and answers of expert episodes) in-process and over HTTP, and
   their ratio.

Dense search uses a faiss Flat index and, without `--encoder`, the static encoder that
`rewardflow fit-encoder` fits on each corpus (the env's offline default).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rewardflow_envs.envs.search import SearchEnv
from rewardflow_envs.envs.search.dataset import EMBEDDED_DATA_DIR, load_dataset
from rewardflow_envs.envs.search.dense import dense_search
from rewardflow_envs.envs.search.remote import CorpusSearch, corpus_engine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def generated_corpus(directory: Path, size: int, seed: int = 0) -> Path:
    """`size` passages of 40-80 words drawn from the embedded corpus's vocabulary, with the
    embedded questions (so the env can play on it)."""
    words = sorted({w for p in load_dataset(EMBEDDED_DATA_DIR).passages for w in p.text.split()})
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for start in range(0, size, 10_000):
            count = min(10_000, size - start)
            lengths = rng.integers(40, 81, size=count)
            picks = rng.integers(len(words), size=int(lengths.sum()))
            offset = 0
            for number, length in enumerate(lengths, start=start):
                text = " ".join(words[i] for i in picks[offset : offset + length])
                offset += length
                corpus.write(json.dumps({"id": number, "contents": f'"P{number}"\n{text}'}) + "\n")
    for split in ("train", "test"):
        shutil.copy(EMBEDDED_DATA_DIR / f"{split}.jsonl", directory / f"{split}.jsonl")
    return directory


def one_hop_recall(search, k: int = 3) -> float:
    dataset = load_dataset(EMBEDDED_DATA_DIR)
    questions = [
        q for split in ("train", "test") for q in dataset.questions(split)
        if q.task_type == "single_hop"
    ]  # fmt: skip
    hits = 0
    for question in questions:
        found = {dataset.passages[p].id for p in search.search(question.question, k)}
        hits += bool(found & set(question.supporting_ids))
    return hits / len(questions)


class Server:
    """`rewardflow serve-retriever` in its own process, on a free loopback port."""

    def __init__(self, arguments: list[str]):
        self.port = free_port()
        command = [sys.executable, "-m", "rewardflow_envs.cli", "serve-retriever", *arguments]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)], stdout=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{self.port}/retrieve"
        deadline = time.monotonic() + 1800
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {command}") from None
                time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait()


def queries_per_second(url: str, queries: list[str], clients: int, seconds: float) -> float:
    def client(offset: int) -> int:
        done, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            query = queries[(offset + done) % len(queries)]
            body = json.dumps({"query": query, "topk": 3, "return_scores": True}).encode()
            request = urllib.request.Request(
                url, data=body, headers={"Content-Type": "application/json"}
            )
            urllib.request.urlopen(request, timeout=60).read()
            done += 1
        return done

    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(client, range(clients)))
    return total / (time.monotonic() - start)


def mean_step_ms(env: SearchEnv, episodes: int) -> float:
    steps, elapsed = 0, 0.0
    for seed in range(episodes):
        _, info = env.reset(seed=seed)
        while True:
            start = time.perf_counter()
            *_, terminated, truncated, info = env.step(info["expert_action"])
            elapsed += time.perf_counter() - start
            steps += 1
            if terminated or truncated:
                break
    return 1000 * elapsed / steps


def bench(name: str, data: Path, backend: list[str], args, recall, env_kwargs: dict) -> None:
    """Print the server's queries/s and the env's step in-process (`env_kwargs`) and over HTTP."""
    questions = [q.question for q in load_dataset(EMBEDDED_DATA_DIR).questions("test")]
    server = Server(["--data-path", str(data), *backend])
    try:
        one = queries_per_second(server.url, questions, 1, args.seconds)
        many = queries_per_second(server.url, questions, args.clients, args.seconds)
        remote_env = SearchEnv(split="test", expert=True, data_path=data, retriever_url=server.url)
        remote = mean_step_ms(remote_env, args.episodes)
    finally:
        server.close()
    local_env = SearchEnv(split="test", expert=True, data_path=data, **env_kwargs)
    local = mean_step_ms(local_env, args.episodes)
    line = f"{name:28s}"
    if recall is not None:
        line += f" recall@3 {recall:.3f}"
    line += f" | server {one:7.1f} q/s (1 client), {many:7.1f} q/s ({args.clients}), "
    line += f"x{many / one:.2f} | env step over HTTP {remote:.2f} ms, in-process {local:.2f} ms"
    print(line + f" (HTTP x{remote / local:.1f})", flush=True)


def command(*arguments: str) -> float:
    """Seconds a `rewardflow` command took."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rewardflow_envs.cli", *arguments],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--large", type=int, default=0, help="passages of a generated corpus")
    parser.add_argument("--encoder", type=Path, default=None, help="dense: an encoder folder")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--episodes", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_search-"))
    try:
        corpora = [("embedded", EMBEDDED_DATA_DIR)]
        if args.large:
            start = time.perf_counter()
            corpora.append(
                (f"generated {args.large:,}", generated_corpus(work / "large", args.large))
            )
            print(f"generated {args.large:,} passages in {time.perf_counter() - start:.1f} s")
        for number, (name, data) in enumerate(corpora):
            dataset = load_dataset(data)
            start = time.perf_counter()
            cache = work / "cache"
            local = CorpusSearch(dataset, corpus_engine(dataset, "bm25", cache))
            print(f"{name}: BM25 index of {len(dataset.passages):,} passages in "
                  f"{time.perf_counter() - start:.1f} s")  # fmt: skip
            recall = one_hop_recall(local.index) if data == EMBEDDED_DATA_DIR else None
            backend = ["--backend", "bm25", "--cache-dir", str(cache)]
            bench(f"{name} bm25", data, backend, args, recall, {"cache_dir": cache})

            encoder = args.encoder
            if encoder is None:
                encoder = work / f"static-{number}"
                took = command("fit-encoder", "--data-path", str(data), "--out", str(encoder))
                print(f"{name}: static encoder fitted in {took:.1f} s")
            index = work / f"flat-{number}.index"
            took = command("build-index", "--data-path", str(data), "--encoder", str(encoder),
                           "--out", str(index), "--batch-size", "256")  # fmt: skip
            print(f"{name}: dense Flat index built in {took:.1f} s")
            dense_recall = None
            if data == EMBEDDED_DATA_DIR:
                dense_recall = one_hop_recall(dense_search(dataset, encoder, index))
            backend = ["--backend", "dense", "--index", str(index), "--encoder", str(encoder)]
            kwargs = {"retriever": "dense", "encoder_path": encoder, "index_path": index}
            label = encoder.name if args.encoder else "static"
            bench(f"{name} dense {label}", data, backend, args, dense_recall, kwargs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
