"""Search-R1's text, byte for byte: its instruction, how it reads a reply, how it shows results.

From Search-R1 (github.com/PeterGriffinJin/Search-R1): the instruction of
``scripts/data_process/nq_search.py`` (``make_prefix``, template "base"), the reply handling of
``search_r1/llm_agent/generation.py`` (``_postprocess_responses``, ``postprocess_predictions``,
``execute_predictions``, ``_passages2string``). The model sees the instruction, then every reply
(cut after its first ``</search>``, else its first ``</answer>``) each followed by what the env
answered: one ``<information>`` block for a search, a fixed line for an unreadable reply.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rewardflow_envs.envs.search.dataset import Passage
from rewardflow_envs.envs.search.parser import Answer, Search, Unreadable

INSTRUCTION = (
    "Answer the given question. You must conduct reasoning inside <think> and </think> first "
    "every time you get new information. After reasoning, if you find you lack some knowledge, "
    "you can call a search engine by <search> query </search> and it will return the top "
    "searched results between <information> and </information>. You can search as many times "
    "as your want. If you find no further external knowledge needed, you can directly provide "
    "the answer inside <answer> and </answer>, without detailed illustrations. For example, "
    "<answer> Beijing </answer>. Question: {question}\n"
)

INVALID = (
    "\nMy previous action is invalid. If I want to search, I should put the query between "
    "<search> and </search>. If I want to give the final answer, I should put the answer between "
    "<answer> and </answer>. Let me try again.\n"
)

# Case-sensitive, the first complete pair wins; <search>...</answer> is no pair.
_ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.DOTALL)


def prompt(question: str) -> str:
    """The instruction with the question, which gets a question mark if it has none."""
    question = question.strip()
    if not question.endswith("?"):
        question += "?"
    return INSTRUCTION.format(question=question)


def kept_reply(response: str) -> str:
    """The reply as Search-R1 keeps it: up to its first ``</search>``, else ``</answer>``."""
    for closing in ("</search>", "</answer>"):
        if closing in response:
            return response.split(closing)[0] + closing
    return response


def read(reply: str) -> Search | Answer | Unreadable:
    """The action in a kept reply: its first ``<search>`` or ``<answer>`` pair, stripped. An empty
    query is a search, as in Search-R1."""
    match = _ACTION.search(reply)
    if match is None:
        return Unreadable("it has no <search>...</search> or <answer>...</answer>")
    content = match.group(2).strip()
    return Search(content) if match.group(1) == "search" else Answer(content)


def information(passages: Sequence[Passage]) -> str:
    """One search's results as the model sees them, after its reply."""
    docs = ""
    for number, passage in enumerate(passages, start=1):
        title, *lines = passage.contents.split("\n")
        docs += f"Doc {number}(Title: {title}) {chr(10).join(lines)}\n"
    return f"\n\n<information>{docs.strip()}</information>\n\n"
