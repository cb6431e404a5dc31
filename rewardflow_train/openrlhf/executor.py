"""OpenRLHF agent executor that plays one episode of a Gymnasium text env per sample.

OpenRLHF's rollout actor calls ``execute`` once per sample, ``n_samples_per_prompt`` times per
prompt at once; each call builds its own env from the prompt's label (see `episodes`), so the N
calls of one prompt are the N members of one RewardFlow group. Unlike OpenRLHF's
``MultiTurnAgentExecutor``, which sums the step rewards into one number, each turn keeps its
reward, its state key, whether its action was valid, and its token range.
"""

from __future__ import annotations

import asyncio
from copy import deepcopy

from openrlhf.utils.agent import AgentExecutorBase

from rewardflow_envs.group import default_state_key, make_member
from rewardflow_train.config import import_callable
from rewardflow_train.openrlhf.chat import ChatTurns
from rewardflow_train.openrlhf.episodes import EpisodeRecord, EpisodeSpec

# The key under which a sample's EpisodeRecord travels from the rollout to the advantages.
RECORD_KEY = "rewardflow_episode"


class RewardFlowAgentExecutor(AgentExecutorBase):
    async def execute(
        self, prompt, label, sampling_params, max_length: int, hf_tokenizer, llm_engine, images=None
    ):
        spec = EpisodeSpec.from_label(label)
        state_key = (
            import_callable(spec.state_key, "label state_key")
            if spec.state_key
            else default_state_key
        )
        build = spec.env or import_callable(spec.factory, "label factory")
        env = await asyncio.to_thread(make_member, build, spec.kwargs)
        try:
            observation, info = await asyncio.to_thread(
                env.reset, seed=spec.seed, options=spec.reset_options
            )
            return await self._play(
                env, spec, state_key, observation, info, prompt, label,
                sampling_params, max_length, hf_tokenizer, llm_engine,
            )  # fmt: skip
        finally:
            await asyncio.to_thread(env.close)

    async def _play(
        self, env, spec, state_key, observation, info, prompt, label,
        sampling_params, max_length, tokenizer, llm_engine,
    ):  # fmt: skip
        chat = ChatTurns(tokenizer, spec.system_prompt)
        tokens = chat.first(observation)
        if len(tokens) >= max_length:
            raise ValueError(
                f"{spec.describe()}: the first prompt is {len(tokens)} tokens, which leaves no "
                f"room to answer within --data.max_len {max_length}"
            )
        record = EpisodeRecord(states=[state_key(observation, info)])
        log_probs = [0.0] * len(tokens) if sampling_params.logprobs is not None else None
        turn_cap = sampling_params.max_tokens
        cut_by_length = False
        while spec.max_turns is None or len(record.rewards) < spec.max_turns:
            params = deepcopy(sampling_params)
            params.max_tokens = max_length - len(tokens)
            if turn_cap is not None:
                params.max_tokens = min(params.max_tokens, turn_cap)
            output = (await llm_engine.generate(tokens, params)).outputs[0]
            reply = list(output.token_ids)
            cut_by_length = output.finish_reason == "length"
            record.action_ranges.append((len(tokens), len(tokens) + len(reply)))
            tokens = tokens + reply
            if log_probs is not None:
                log_probs += [
                    step[token].logprob for step, token in zip(output.logprobs, reply, strict=True)
                ]

            action = tokenizer.decode(reply, skip_special_tokens=True)
            observation, reward, terminated, truncated, info = await asyncio.to_thread(
                env.step, action
            )
            record.states.append(state_key(observation, info))
            record.rewards.append(float(reward))
            record.valid.append(bool(info.get("action_valid", True)))
            if terminated or truncated:
                record.won = bool(info.get("won", False))
                break
            feedback = chat.next_turn(reply, observation)
            if len(tokens) + len(feedback) >= max_length:
                break  # no room for another reply: the episode ends unfinished
            tokens = tokens + feedback
            if log_probs is not None:
                log_probs += [0.0] * len(feedback)

        return {
            "prompt": prompt,
            "label": label,
            "images": None,
            "mm_train_inputs": None,
            "reward": record.episode_return,
            "scores": float(record.won),
            "observation_tokens": tokens,
            "action_ranges": record.action_ranges,
            "rollout_log_probs": log_probs,
            "truncated": cut_by_length,
            "extra_logs": {
                "success": float(record.won),
                "episode_length": float(len(record.rewards)),
                "invalid_actions": float(record.valid.count(False)),
            },
            RECORD_KEY: record,
        }
