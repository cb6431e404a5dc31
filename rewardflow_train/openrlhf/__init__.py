"""Train on RF envs with OpenRLHF (Ray + vLLM + DeepSpeed) and per-turn RewardFlow advantages.

- `agent`: the file for ``--train.agent_func_path``; its executor plays one env episode per sample.
- `patch`: the wraps that carry each turn's reward, state and token range into OpenRLHF's
  experiences, and the ``rewardflow``, ``gigpo`` and ``grpo`` estimators.
- ``python -m rewardflow_train.openrlhf``: runs OpenRLHF's ``train_ppo_ray`` with both in place.

Needs the ``openrlhf`` extra (``pip install "rewardflow[openrlhf]"``, openrlhf 0.11.2).
"""
