"""RF-WebShop-v0 at catalogue scale: load and index time, search latency and env steps.

    python benchmarks/bench_webshop.py [--products 100000] [--queries 200] [--episodes 50]

Two catalogues, measured in one run: the embedded one (300 products), and a generated one of
`--products` products that holds the embedded products and their instructions plus filler
products whose titles, features, descriptions and options are drawn from the embedded
catalogue's words (so queries hit many of them). For each it prints the time to load the files
and build the BM25 index, the mean latency of a search (the embedded human instructions as
queries), and the mean env step of expert episodes on the embedded test goals (search, open the
product, choose options, buy), with the ratios of the large catalogue to the embedded one.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from rewardflow_envs.envs.webshop import WebShopEnv, load_catalogue
from rewardflow_envs.envs.webshop.catalogue import EMBEDDED_DATA_DIR
from rewardflow_envs.envs.webshop.reward import title_nouns
from rewardflow_envs.envs.webshop.search import search_engine_for


def read(name: str):
    with gzip.open(EMBEDDED_DATA_DIR / name, "rt", encoding="utf-8") as file:
        return json.load(file)


def large_catalogue(directory: Path, size: int, seed: int = 0) -> Path:
    """The embedded files plus `size` - 300 filler products, in WebShop's layout."""
    products = read("items_shuffle.json.gz")
    words = sorted(
        {w for p in products for w in " ".join([p["name"], *p["small_description"]]).split()}
    )
    option_values = sorted(
        {v["value"] for p in products for vs in p["customization_options"].values() for v in vs}
    )
    rng = random.Random(seed)
    filler = []
    for number in range(size - len(products)):
        template = products[number % len(products)]
        title = " ".join(rng.choices(words, k=rng.randint(5, 10)))
        filler.append({
            **template,
            "asin": f"F{number:09d}",
            "name": title,
            "small_description": [" ".join(rng.choices(words, k=8)) for _ in range(3)],
            "full_description": " ".join(rng.choices(words, k=25)),
            "customization_options": {
                "size": [{"value": v, "image": None} for v in rng.sample(option_values, 4)]
            },
        })  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "items_shuffle.json": products + filler,
        "items_ins_v2.json": read("items_ins_v2.json.gz"),
        "items_human_ins.json": read("items_human_ins.json.gz"),
    }
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content), encoding="utf-8")
    return directory


def play_untimed(env: WebShopEnv) -> None:
    _, info = env.reset(options={"task": 0})
    while info.get("expert_action"):
        _, _, _, _, info = env.step(info["expert_action"])


def measure(data_path: str | None, queries: list[str], episodes: int) -> dict[str, float]:
    start = time.perf_counter()
    catalogue = load_catalogue(data_path, True)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    engine = search_engine_for(catalogue)
    indexed = time.perf_counter() - start
    start = time.perf_counter()
    for query in queries:
        engine.search(query)
    search_ms = 1000 * (time.perf_counter() - start) / len(queries)
    # The embedded test goals, played in the same split scheme whatever the catalogue.
    env = WebShopEnv(split="test", data_path=data_path, expert=True, human_goals=True,
                     split_scheme="hash", reward_mode="score")  # fmt: skip
    steps, elapsed, won = 0, 0.0, 0
    play_untimed(env)  # first calls fill caches
    for task in range(min(episodes, len(env.goals))):
        _, info = env.reset(options={"task": task})
        terminated = False
        while not terminated:
            start = time.perf_counter()
            _, _, terminated, _, info = env.step(info["expert_action"])
            elapsed += time.perf_counter() - start
            steps += 1
        won += info["won"]
    return {
        "products": len(catalogue.products),
        "load_s": loaded,
        "index_s": indexed,
        "search_ms": search_ms,
        "step_ms": 1000 * elapsed / steps,
        "won": won / min(episodes, len(env.goals)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=50)
    args = parser.parse_args()
    instructions = read("items_human_ins.json.gz").values()
    queries = [record["instruction"] for records in instructions for record in records]
    queries = queries[: args.queries]
    title_nouns("warm up")  # the first purchase imports spaCy where it is installed
    work = Path(tempfile.mkdtemp(prefix="bench_webshop-"))
    try:
        rows = {"embedded": measure(None, queries, args.episodes)}
        start = time.perf_counter()
        large = large_catalogue(work / "large", args.products)
        print(f"generated {args.products:,} products in {time.perf_counter() - start:.1f} s")
        rows[f"generated {args.products:,}"] = measure(str(large), queries, args.episodes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, row in rows.items():
        print(f"{name:20s} {row['products']:>8,} products | load {row['load_s']:6.2f} s, "
              f"BM25 index {row['index_s']:6.2f} s | search {row['search_ms']:7.2f} ms | "
              f"expert step {row['step_ms']:6.2f} ms, won {row['won']:.2f}")  # fmt: skip
    small, big = rows.values()
    print(f"large / embedded: search x{big['search_ms'] / small['search_ms']:.1f}, "
          f"step x{big['step_ms'] / small['step_ms']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
