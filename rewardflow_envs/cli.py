"""The `rewardflow` command: list the environments, play one in the terminal, serve retrieval."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

import gymnasium

from rewardflow_envs.extras import MissingExtraError
from rewardflow_envs.registry import load_specs


def list_envs(out: TextIO) -> int:
    rows = [("id", "status", "description")]
    rows += [(spec.id, spec.status(), spec.description) for spec in load_specs()]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    for env_id, status, description in rows:
        out.write(f"{env_id:<{widths[0]}}  {status:<{widths[1]}}  {description}\n")
    return 0


def _wrap(line: str, tag: str | None) -> str:
    """With --tag, a bare command typed by a person becomes <tag>command</tag>."""
    if tag and "<" not in line:
        return f"<{tag}>{line}</{tag}>"
    return line


def play(env_id: str, seed: int | None, tag: str | None, stdin: TextIO, out: TextIO) -> int:
    try:
        env = gymnasium.make(env_id)
    except gymnasium.error.Error as error:
        out.write(f"error: {error}\n")
        return 2
    except MissingExtraError as error:
        out.write(f"error: {env_id} cannot start: {error}\n")
        return 2
    observation, info = env.reset(seed=seed)
    out.write(f"{observation}\n")
    episode_return, steps = 0.0, 0
    while True:
        out.write("> ")
        out.flush()
        line = stdin.readline()
        if not line:
            out.write("\n(end of input)\n")
            break
        observation, reward, terminated, truncated, info = env.step(_wrap(line.rstrip("\n"), tag))
        episode_return += float(reward)
        steps += 1
        valid = "valid" if info.get("action_valid", True) else "INVALID"
        out.write(f"[{valid} action, reward {reward:+.2f}, return {episode_return:+.2f}]\n")
        out.write(f"{observation}\n")
        if terminated or truncated:
            outcome = "won" if info.get("won") else ("ended" if terminated else "out of steps")
            out.write(f"Episode {outcome} after {steps} steps, return {episode_return:+.2f}\n")
            break
    env.close()
    return 0


def serve_retriever(args: argparse.Namespace, out: TextIO) -> int:
    """RF-Search-v0's corpus behind Search-R1's retrieval protocol (see envs/search/server.py)."""
    from rewardflow_envs.envs.search.dataset import load_dataset, resolve_data_dir
    from rewardflow_envs.envs.search.retriever import bm25_retriever
    from rewardflow_envs.envs.search.server import Limits, create_app, serve

    try:
        dataset = load_dataset(resolve_data_dir(args.data_path))
        backend = bm25_retriever(dataset, args.cache_dir)
        app = create_app(dataset.passages, backend, "bm25", Limits(topk=args.topk))
    except (FileNotFoundError, ValueError, MissingExtraError) as error:
        out.write(f"error: {error}\n")
        return 2
    passages = len(dataset.passages)
    out.write(f"serving {passages} passages (bm25) at http://{args.host}:{args.port}/retrieve\n")
    out.flush()
    serve(app, args.host, args.port)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rewardflow", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("envs", help="list the environment ids and whether they are ready")
    play_parser = commands.add_parser("play", help="play an environment, actions from stdin")
    play_parser.add_argument("env_id", help="an id from `rewardflow envs`, e.g. RF-Sokoban-v0")
    play_parser.add_argument("--seed", type=int, default=None, help="task seed")
    play_parser.add_argument(
        "--tag",
        default=None,
        help="wrap each typed line that has no tag in <TAG>...</TAG> (e.g. --tag action)",
    )
    serve_parser = commands.add_parser(
        "serve-retriever", help="serve RF-Search-v0's corpus over Search-R1's /retrieve protocol"
    )
    serve_parser.add_argument(
        "--data-path", default=None, help="a data directory with corpus.jsonl (default: embedded)"
    )
    serve_parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument(
        "--topk", type=int, default=3, help="passages when a request names none"
    )
    serve_parser.add_argument(
        "--cache-dir", type=Path, default=None, help="keep the BM25 index on disk here"
    )
    args = parser.parse_args(argv)
    if args.command == "serve-retriever":
        return serve_retriever(args, sys.stdout)
    import rewardflow_envs  # noqa: F401  (registers the ids)

    if args.command == "envs":
        return list_envs(sys.stdout)
    return play(args.env_id, args.seed, args.tag, sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
