"""Training samples, their log-probs and the PPO update on a DeepSpeed engine.

A sample is one step of one episode: the prompt tokens, the response tokens, and one advantage
spread over every response token. Losses are token means over a whole mini-batch across all
ranks, so the result does not depend on how samples are split into micro-batches or ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewardflow_train.config import PPOConfig
from rewardflow_train.distributed import all_reduce, gather_objects
from rewardflow_train.losses import make_objective, token_entropy, token_logprobs


@dataclass
class Sample:
    prompt_ids: list[int]
    response_ids: list[int]
    advantage: float = 0.0
    # Unique and sortable within a step's global batch, e.g. (task seed, member, turn): the
    # global shuffle into mini-batches orders samples by it, whichever rank holds them.
    key: tuple = ()
    old_logprobs: object = None  # 1-D tensor, one value per response token
    ref_logprobs: object = None


@dataclass
class Batch:
    """Right-padded prompt+response rows, and where their response tokens are.

    Response tokens are packed: `rows[i]`, `columns[i]` is the position whose logits predict
    the i-th response token `targets[i]` (position t predicts token t+1), samples one after
    another, so that only those rows of the logits are ever cast to fp32.
    """

    input_ids: object
    attention_mask: object
    rows: object
    columns: object
    targets: object
    advantages: object
    lengths: list[int]  # response tokens per sample, to split packed values per sample
    weight: float  # 0 for a padding micro-batch that only keeps ranks in lockstep


def collate(samples: list[Sample], pad_id: int, device, dummy: bool = False) -> Batch:
    import torch

    width = max(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    input_ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(samples), width), dtype=torch.long)
    rows, columns, targets, advantages = [], [], [], []
    for row, sample in enumerate(samples):
        ids = sample.prompt_ids + sample.response_ids
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        start = len(sample.prompt_ids) - 1
        rows += [row] * len(sample.response_ids)
        columns += range(start, start + len(sample.response_ids))
        targets += sample.response_ids
        advantages += [sample.advantage] * len(sample.response_ids)
    return Batch(
        input_ids.to(device),
        attention.to(device),
        torch.tensor(rows, dtype=torch.long, device=device),
        torch.tensor(columns, dtype=torch.long, device=device),
        torch.tensor(targets, dtype=torch.long, device=device),
        torch.tensor(advantages, dtype=torch.float32, device=device),
        [len(s.response_ids) for s in samples],
        0.0 if dummy else 1.0,
    )


def global_mini_batches(samples: list[Sample], parts: int, generator) -> list[list[Sample]]:
    """This rank's share of each of `parts` mini-batches cut from one shuffle of the samples
    of all ranks: which samples train together depends on the global batch only, not on how
    it is spread over ranks. `generator` must be seeded alike on every rank."""
    import torch

    everything = sorted(key for keys in gather_objects([s.key for s in samples]) for key in keys)
    order = torch.randperm(len(everything), generator=generator).tolist()
    position = {everything[index]: place for place, index in enumerate(order)}
    bounds = [0]
    for part in split(everything, parts):
        bounds.append(bounds[-1] + len(part))
    mine = sorted(samples, key=lambda sample: position[sample.key])
    return [
        [s for s in mine if bounds[part] <= position[s.key] < bounds[part + 1]]
        for part in range(parts)
    ]


def split(samples: list, parts: int) -> list[list]:
    """`parts` nearly equal consecutive slices (some may be empty)."""
    size, extra = divmod(len(samples), parts)
    out, start = [], 0
    for part in range(parts):
        stop = start + size + (part < extra)
        out.append(samples[start:stop])
        start = stop
    return out


def micro_batches(samples: list[Sample], size: int) -> list[list[Sample]]:
    """Micro-batches of `size`, padded with empty ones to the largest count on any rank.

    Every rank must run the same number of forward/backward passes (ZeRO-3 gathers
    parameters in each, and gradients are reduced at the same boundaries).
    """
    chunks = [samples[i : i + size] for i in range(0, len(samples), size)]
    count = int(all_reduce([len(chunks)], op="max")[0])
    return chunks + [[] for _ in range(count - len(chunks))]


def dummy_sample(pad_id: int) -> Sample:
    """One padding token, for a micro-batch that only keeps ranks in lockstep (weight 0)."""
    import torch

    zero = torch.zeros(1)
    return Sample([pad_id], [pad_id], old_logprobs=zero, ref_logprobs=zero)


def response_logits(model, batch: Batch):
    """The logits that predict the batch's response tokens, packed: [response tokens, vocab]."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    return logits[batch.rows, batch.columns]


def response_logprobs(model, batch: Batch, temperature: float):
    return token_logprobs(response_logits(model, batch), batch.targets, temperature)


def per_sample(values, batch: Batch) -> list:
    """Packed per-token values split into one 1-D CPU tensor per sample."""
    return [part.detach().cpu() for part in values.split(batch.lengths)]


class PPOTrainer:
    """Old/reference log-probs and PPO epochs over one batch of samples."""

    def __init__(
        self,
        engine,
        reference,
        config: PPOConfig,
        temperature: float,
        pad_id: int,
        device,
        seed: int,
    ):
        self.engine = engine
        self.reference = reference
        self.config = config
        self.temperature = temperature
        self.pad_id = pad_id
        self.device = device
        self.seed = seed
        self.objective = make_objective(
            config.loss_backend, config.clip_low, config.clip_high, config.dual_clip
        )

    def _batches(self, samples: list[Sample]):
        for chunk in micro_batches(samples, self.config.micro_batch_size):
            dummy = not chunk
            chunk = chunk or [dummy_sample(self.pad_id)]
            yield chunk, collate(chunk, self.pad_id, self.device, dummy=dummy)

    def score(self, samples: list[Sample]) -> None:
        """Fill in old (and reference) log-probs, before any update on this batch."""
        import torch

        self.engine.eval()
        with torch.no_grad():
            for chunk, batch in self._batches(samples):
                old = per_sample(response_logprobs(self.engine, batch, self.temperature), batch)
                ref = (
                    per_sample(response_logprobs(self.reference, batch, self.temperature), batch)
                    if self.reference is not None
                    else [None] * len(chunk)
                )
                if batch.weight:
                    for sample, old_lp, ref_lp in zip(chunk, old, ref, strict=True):
                        sample.old_logprobs, sample.ref_logprobs = old_lp, ref_lp

    @staticmethod
    def _packed(samples: list[Sample], attr: str, device):
        """The stored per-token values of `samples`, packed as in their batch."""
        import torch

        return torch.cat([getattr(sample, attr) for sample in samples]).to(device)

    def _loss(self, chunk: list[Sample], batch: Batch, totals: dict[str, float]):
        """Sum over the micro-batch's response tokens of policy loss + KL - entropy bonus."""
        import torch

        config = self.config
        logits = response_logits(self.engine, batch)
        logprobs = token_logprobs(logits, batch.targets, self.temperature)
        if config.entropy_coef > 0:
            entropy = token_entropy(logits, self.temperature)
        else:
            with torch.no_grad():
                entropy = token_entropy(logits, self.temperature)
        old = self._packed(chunk, "old_logprobs", logprobs.device)
        policy_sum, clipped = self.objective.loss(logprobs, old, batch.advantages)
        loss = policy_sum - config.entropy_coef * entropy.sum()
        kl_sum = torch.zeros((), device=logprobs.device)
        if self.reference is not None:
            ref = self._packed(chunk, "ref_logprobs", logprobs.device)
            kl_sum = self.objective.kl(logprobs, ref).sum()
            loss = loss + config.kl_coef * kl_sum
        if batch.weight:
            totals["loss/policy"] += policy_sum.item()
            totals["clip_fraction"] += float(clipped)
            totals["loss/kl"] += kl_sum.item()
            totals["entropy"] += entropy.sum().item()
            totals["tokens"] += logprobs.numel()
        return loss

    def update(self, samples: list[Sample], step: int) -> dict[str, float]:
        """`ppo.epochs` passes, each of `ppo.mini_batches` optimizer steps."""
        import torch

        config = self.config
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        totals = dict.fromkeys(
            ("loss/policy", "loss/kl", "clip_fraction", "entropy", "tokens"), 0.0
        )
        grad_norms = []
        self.engine.train()
        for _ in range(config.epochs):
            for mini_batch in global_mini_batches(samples, config.mini_batches, generator):
                tokens = sum(len(s.response_ids) for s in mini_batch)
                global_tokens = all_reduce([tokens])[0]
                if global_tokens == 0:
                    continue
                # DeepSpeed averages gradients over ranks; scaling by world size / global
                # tokens makes the result the token mean over the whole mini-batch.
                scale = self.engine.world_size / global_tokens
                batches = list(self._batches(mini_batch))
                for index, (chunk, batch) in enumerate(batches):
                    self.engine.set_gradient_accumulation_boundary(index == len(batches) - 1)
                    loss = self._loss(chunk, batch, totals)
                    self.engine.backward(loss * scale * batch.weight, scale_wrt_gas=False)
                    self.engine.step()
                grad_norm = self.engine.get_global_grad_norm()
                if grad_norm is not None:
                    grad_norms.append(float(grad_norm))
        summed = dict(zip(totals, all_reduce(list(totals.values())), strict=True))
        metrics = {
            name: summed[name] / max(summed["tokens"], 1.0)
            for name in ("loss/policy", "loss/kl", "clip_fraction", "entropy")
        }
        if grad_norms:
            metrics["grad_norm"] = sum(grad_norms) / len(grad_norms)
        return metrics
