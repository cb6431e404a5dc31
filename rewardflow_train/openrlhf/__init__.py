"""Train on RF envs with OpenRLHF (Ray + vLLM + DeepSpeed) and per-turn RewardFlow advantages.

- `agent`: the file for ``--train.agent_func_path``; its executor plays one env episode per sample.
- `patch`: the wraps that carry each turn's reward, state and token range into OpenRLHF's
  experiences, and the ``rewardflow``, ``gigpo`` and ``grpo`` estimators.
- ``python -m rewardflow_train.openrlhf``: runs OpenRLHF's ``train_ppo_ray`` with both in place.

- `attention`: sdpa attention and no sample packing where flash-attn is not installed.

Install: ``pip install "rewardflow[vllm,openrlhf]" && pip install --no-deps openrlhf==0.11.2``
(openrlhf 0.11.2 requires flash-attn, which has no wheel for the torch its vLLM needs).
"""
