"""The file to pass as OpenRLHF's ``--train.agent_func_path``; OpenRLHF loads ``AgentExecutor``.

    python -m openrlhf.cli.train_ppo_ray --train.agent_func_path \\
        $(python -c "import rewardflow_train.openrlhf.agent as a; print(a.__file__)") ...

``python -m rewardflow_train.openrlhf`` passes it for you.
"""

from rewardflow_train.openrlhf.executor import RewardFlowAgentExecutor as AgentExecutor

__all__ = ["AgentExecutor"]
