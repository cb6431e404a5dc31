"""Helpers for the retrieval tests: a server on a loopback thread, and expert episodes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from ranks import free_port


@contextlib.contextmanager
def serving(app, **config) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port (`config`: more uvicorn settings);
    yields its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="error", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def play_expert(env, seeds):
    """Every observation, reward, end and info of expert episodes on `seeds`."""
    trace = []
    for seed in seeds:
        observation, info = env.reset(seed=seed)
        trace.append((observation, info))
        while True:
            step = env.step(info["expert_action"])
            trace.append(step)
            observation, _, terminated, truncated, info = step
            if terminated or truncated:
                break
    return trace


def one_hop_recall(search) -> tuple[float, int]:
    """(share of the embedded one-hop questions whose gold passage `search` puts in its top 3,
    how many questions); `search(query, k)` returns passages. benchmarks/bench_search.py prints
    the same number."""
    from rewardflow_envs.envs.search.dataset import EMBEDDED_DATA_DIR, load_dataset

    dataset = load_dataset(EMBEDDED_DATA_DIR)
    one_hop = [
        question for split in ("train", "test") for question in dataset.questions(split)
        if question.task_type == "single_hop"
    ]  # fmt: skip
    found = sum(
        bool({p.id for p in search.search(q.question, 3)} & set(q.supporting_ids)) for q in one_hop
    )
    return found / len(one_hop), len(one_hop)
