"""The local engine: the step's engine interface in one process, on a Hugging Face model (CPU or one GPU).

Generation is one batched ``generate`` call per step (rollouts and anchors together; greedy rows inside the sampling
call). Log-probs and updates run in micro-batches of right-padded prompt+response sequences; the losses are verl's
(``get_policy_loss_fn``, ``kl_penalty``, ``agg_loss``), aggregated over the whole mini-batch exactly as verl's actor
does, so gradient accumulation over micro-batches gives the mini-batch's gradient.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf

from mars.engines.local.generation import BanTokens, GreedyRows, cut_at_eos, eos_token_ids, vision_token_ids
from mars.processing import ImageCache, MultimodalEncoder, PromptInputs, collate
from mars.trainer.engine import PolicyBatch, RolloutBatch, RolloutRequest, Sampling
from mars.trainer.rewards import load_reward_fn, score_rows

logger = logging.getLogger(__name__)


@dataclass
class LocalPayload:
    """Per-row model inputs: the encoded prompt and the generated token ids (no padding)."""

    prompts: list[PromptInputs]
    responses: list[torch.Tensor]

    def select(self, rows: np.ndarray) -> "LocalPayload":
        return LocalPayload([self.prompts[i] for i in rows], [self.responses[i] for i in rows])

    @classmethod
    def concat(cls, parts: Sequence["LocalPayload"]) -> "LocalPayload":
        return cls([p for part in parts for p in part.prompts], [r for part in parts for r in part.responses])


def resolve_device(name: str) -> torch.device:
    if name in ("auto", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "npu":
        raise ValueError("the local engine runs on cpu or cuda; use trainer.engine=verl for NPUs")
    return torch.device(name)


class LocalEngine:
    """Implements ``mars.trainer.engine.Engine`` with transformers (+ peft for LoRA)."""

    def __init__(self, cfg: Any, total_steps: int):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        actor = cfg.actor_rollout_ref.actor
        model_cfg = cfg.actor_rollout_ref.model
        self.device = resolve_device(cfg.trainer.get("device", "auto"))
        # bf16 compute on CUDA through autocast; fp32 master weights everywhere (AdamW on bf16 weights drifts)
        self.autocast_dtype = torch.bfloat16 if self.device.type == "cuda" else None
        self.processor = AutoProcessor.from_pretrained(model_cfg.path)
        self.tokenizer = self.processor.tokenizer
        model = AutoModelForImageTextToText.from_pretrained(model_cfg.path, dtype=torch.float32)
        if model_cfg.get("enable_gradient_checkpointing", False):
            model.gradient_checkpointing_enable()
        self.lora = int(model_cfg.get("lora_rank", 0) or 0) > 0
        if self.lora:
            model = self._wrap_lora(model, model_cfg)
        self.model = model.to(self.device)
        # the reference policy: the adapters switched off under LoRA, else a frozen copy of the starting weights
        self.ref_model = None
        if bool(actor.use_kl_loss) and not self.lora:
            self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False)

        self.encoder = MultimodalEncoder(self.processor)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.banned = vision_token_ids(self.tokenizer)
        self.temperature = float(cfg.actor_rollout_ref.rollout.temperature) or 1.0

        optim = actor.optim
        self.optimizer = torch.optim.AdamW(
            self.trainable_parameters(), lr=float(optim.lr), weight_decay=float(optim.get("weight_decay", 0.0)),
            betas=tuple(optim.get("betas", (0.9, 0.999))),
        )
        warmup = int(optim.get("lr_warmup_steps", -1))
        if warmup < 0:
            warmup = int(float(optim.get("lr_warmup_steps_ratio", 0.0)) * total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
        self.loss_config = OmegaConf.to_container(actor, resolve=True)
        self.reward_fn = load_reward_fn(cfg)
        self.overlong = cfg.get("reward", {}).get("reward_kwargs", {}).get("overlong_buffer_cfg", None)

    # ------------------------------------------------------------------------------------------ building

    @staticmethod
    def _wrap_lora(model, model_cfg):
        from peft import LoraConfig, get_peft_model

        targets = model_cfg.get("target_modules", "all-linear")
        targets = targets if isinstance(targets, str) else list(targets)
        config = LoraConfig(r=int(model_cfg.lora_rank), lora_alpha=int(model_cfg.get("lora_alpha", 16)),
                            target_modules=targets, lora_dropout=0.0)
        return get_peft_model(model, config)

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------------------------------ generation

    def encode(self, messages: Sequence[list[dict]]) -> list[PromptInputs]:
        """Model inputs of many prompts; each distinct image is decoded and processed once."""
        return self.encoder.encode(messages, ImageCache(self.processor.image_processor))

    @torch.no_grad()
    def generate(self, requests: Sequence[RolloutRequest], max_new_tokens: int) -> RolloutBatch:
        prompts = self.encode([r.messages for r in requests])
        responses: list[torch.Tensor | None] = [None] * len(requests)
        truncated = np.zeros(len(requests), dtype=bool)
        chunk = int(self.cfg.actor_rollout_ref.rollout.get("max_num_seqs", 0) or 0) or len(requests)
        for sampling, rows in self._calls(requests):
            for start in range(0, len(rows), chunk):
                part = rows[start : start + chunk]
                greedy = torch.tensor([not requests[i].sampling.do_sample for i in part])
                out, cut = self._generate_rows([prompts[i] for i in part], greedy, sampling, max_new_tokens)
                for i, resp, trunc in zip(part, out, cut):
                    responses[i], truncated[i] = resp, trunc
        self.model.train()
        texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        return RolloutBatch(
            group_ids=np.array([r.group_id for r in requests], dtype=object),
            is_anchor=np.array([r.is_anchor for r in requests], dtype=bool),
            sources=np.array([r.source for r in requests], dtype=object),
            texts=texts,
            response_lengths=np.array([len(r) for r in responses], dtype=np.int64),
            truncated=truncated,
            samples=[r.sample for r in requests],
            payload=LocalPayload(prompts, responses),
        )

    @staticmethod
    def _calls(requests: Sequence[RolloutRequest]) -> list[tuple[Sampling, list[int]]]:
        """Rows per generate call: one call per distinct (temperature, top_p) of the sampled rows; greedy rows ride
        along with the first call (normally everything is ONE call)."""
        calls: dict[tuple[float, float], list[int]] = {}
        greedy = []
        for i, r in enumerate(requests):
            if r.sampling.do_sample:
                calls.setdefault((r.sampling.temperature, r.sampling.top_p), []).append(i)
            else:
                greedy.append(i)
        if not calls:
            return [(Sampling(do_sample=False), greedy)] if greedy else []
        ordered = [(Sampling(True, t, p), rows) for (t, p), rows in calls.items()]
        ordered[0] = (ordered[0][0], sorted(ordered[0][1] + greedy))
        return ordered

    def _generate_rows(self, prompts, greedy, sampling: Sampling, max_new_tokens: int):
        from transformers import LogitsProcessorList

        self.model.eval()
        batch = {k: v.to(self.device) for k, v in collate(prompts, self.pad_id, "left").items()}
        do_sample = sampling.do_sample and sampling.temperature > 0
        kwargs = dict(do_sample=do_sample, max_new_tokens=max_new_tokens, pad_token_id=self.pad_id,
                      eos_token_id=sorted(self.eos_ids))
        if do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        processors = LogitsProcessorList([BanTokens(self.banned)] + ([GreedyRows(greedy)] if do_sample else []))
        with self._autocast():
            out = self.model.generate(**batch, logits_processor=processors, **kwargs)
        return cut_at_eos(out[:, batch["input_ids"].shape[1] :].cpu(), self.eos_ids)

    def score(self, rows: RolloutBatch, shaping: bool = True) -> None:
        """The configured reward function, called in this process for every row."""
        score_rows(rows, self.reward_fn, self.overlong if shaping else None, int(self.cfg.data.max_response_length))

    # ------------------------------------------------------------------------------------------ log-probs

    def response_mask(self, rows: RolloutBatch) -> torch.Tensor:
        lengths = torch.as_tensor(rows.response_lengths)
        width = max(int(lengths.max()), 1) if len(lengths) else 1
        return (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).float()

    def _micro_batches(self, n: int, size: int) -> list[np.ndarray]:
        size = max(int(size or n), 1)
        return [np.arange(s, min(s + size, n)) for s in range(0, n, size)]

    def _log_probs(self, model, payload: LocalPayload, rows: np.ndarray, width: int, entropy: bool = False):
        """(b, width) log-probs of the responses of ``rows`` (zeros past each response); optionally entropies."""
        sequences = []
        for i in rows:
            p = payload.prompts[i]
            full_ids = torch.cat([p.input_ids[0], payload.responses[i]])
            sequences.append(PromptInputs(
                input_ids=full_ids.unsqueeze(0), attention_mask=torch.ones_like(full_ids).unsqueeze(0),
                mm_token_type_ids=torch.cat([p.mm_token_type_ids[0], torch.zeros_like(payload.responses[i])]).unsqueeze(0),
                pixel_values=p.pixel_values, image_grid_thw=p.image_grid_thw,
            ))
        batch = {k: v.to(self.device) for k, v in collate(sequences, self.pad_id, "right").items()}
        with self._autocast():
            logits = model(**batch, use_cache=False).logits.float()
        # the logit at position t predicts token t+1: response token j of row b sits at prompt_len_b + j
        prompt_lens = torch.tensor([payload.prompts[i].input_ids.shape[1] for i in rows], device=self.device)
        positions = (prompt_lens.unsqueeze(1) - 1 + torch.arange(width, device=self.device)).clamp(max=logits.shape[1] - 2)
        picked = logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1])) / self.temperature
        targets = batch["input_ids"].gather(1, (positions + 1).clamp(max=batch["input_ids"].shape[1] - 1))
        log_probs = torch.log_softmax(picked, dim=-1)
        token_lp = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        lengths = torch.tensor([len(payload.responses[i]) for i in rows], device=self.device)
        valid = torch.arange(width, device=self.device).unsqueeze(0) < lengths.unsqueeze(1)
        token_lp = token_lp * valid
        if not entropy:
            return token_lp, None
        ent = -(log_probs.exp() * log_probs).sum(-1) * valid
        return token_lp, ent

    @torch.no_grad()
    def compute_log_probs(self, rows: RolloutBatch, model: str = "actor") -> torch.Tensor:
        width = self.response_mask(rows).shape[1]
        ref = self.cfg.actor_rollout_ref.ref if model == "ref" else self.cfg.actor_rollout_ref.rollout
        size = ref.get("log_prob_micro_batch_size_per_gpu", None) or len(rows)
        self.model.eval()
        out = []
        for part in self._micro_batches(len(rows), size):
            if model == "ref" and self.lora:
                with self.model.disable_adapter():
                    lp, _ = self._log_probs(self.model, rows.payload, part, width)
            else:
                net = self.ref_model if model == "ref" else self.model
                if net is None:
                    raise RuntimeError("no reference model: set actor_rollout_ref.actor.use_kl_loss=true")
                lp, _ = self._log_probs(net, rows.payload, part, width)
            out.append(lp.cpu())
        self.model.train()
        return torch.cat(out)

    # ------------------------------------------------------------------------------------------ update

    def update_policy(self, batch: PolicyBatch) -> dict[str, float]:
        """PPO epochs x mini-batches x micro-batches; one optimizer step per mini-batch, lr scheduler per call."""
        from verl.trainer.ppo.core_algos import agg_loss, get_policy_loss_fn, kl_penalty

        actor = self.cfg.actor_rollout_ref.actor
        rows = batch.rows
        mask = self.response_mask(rows)
        n_rows = len(rows)
        mini = max(int(actor.ppo_mini_batch_size) * int(self.cfg.actor_rollout_ref.rollout.n), 1)
        micro = int(actor.get("ppo_micro_batch_size_per_gpu", 0) or 0) or n_rows
        mode = str(actor.loss_agg_mode)
        policy_loss = get_policy_loss_fn(str(actor.get("policy_loss", {}).get("loss_mode", "vanilla")))
        entropy_coeff = float(actor.get("entropy_coeff", 0.0) or 0.0)
        sums: dict[str, list[float]] = {}
        self.model.train()
        for _ in range(int(actor.get("ppo_epochs", 1))):
            for mb_rows in self._micro_batches(n_rows, mini):
                self.optimizer.zero_grad(set_to_none=True)
                info = {"dp_size": 1, "batch_num_tokens": float(mask[mb_rows].sum()), "global_batch_size": len(mb_rows)}
                loss_cfg = OmegaConf.create({**self.loss_config, "global_batch_info": info})
                for part in self._micro_batches(len(mb_rows), micro):
                    idx = mb_rows[part]
                    m = mask[idx].to(self.device)
                    log_prob, ent = self._log_probs(self.model, rows.payload, idx, mask.shape[1], entropy_coeff != 0)
                    pg_loss, pg_metrics = policy_loss(
                        old_log_prob=batch.old_log_probs[idx].to(self.device), log_prob=log_prob,
                        advantages=batch.advantages[idx].to(self.device), response_mask=m, loss_agg_mode=mode,
                        config=loss_cfg,
                    )
                    loss = pg_loss
                    if entropy_coeff != 0:
                        loss = loss - entropy_coeff * agg_loss(ent, m, mode, **info)
                    if batch.ref_log_probs is not None and bool(actor.use_kl_loss):
                        kl = kl_penalty(log_prob, batch.ref_log_probs[idx].to(self.device), str(actor.kl_loss_type))
                        kl_loss = agg_loss(kl, m, mode, **info)
                        loss = loss + float(actor.kl_loss_coef) * kl_loss
                        sums.setdefault("actor/kl_loss", []).append(kl_loss.item())
                    loss.backward()
                    sums.setdefault("actor/pg_loss", []).append(pg_loss.item())
                    for k, v in pg_metrics.items():
                        sums.setdefault(k, []).append(float(v))
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(actor.get("grad_clip", 1.0)))
                if math.isfinite(float(grad_norm)):
                    self.optimizer.step()
                else:  # verl skips the step on a non-finite gradient too
                    logger.warning("non-finite grad norm %s: optimizer step skipped", float(grad_norm))
                sums.setdefault("actor/grad_norm", []).append(float(grad_norm))
        self.scheduler.step()
        metrics = {k: float(np.mean(v)) for k, v in sums.items()}
        metrics["actor/lr"] = float(self.scheduler.get_last_lr()[0])
        return metrics

    # ------------------------------------------------------------------------------------------ SFT warm start

    def sft_step(self, messages: Sequence[list[dict]], targets: Sequence[str], optimizer: torch.optim.Optimizer) -> float:
        """One cross-entropy step on the target answers (prompt tokens masked): the supervised warm start.

        It has its own optimizer, so the RL optimizer and its schedule start fresh after the warm start."""
        prompts = self.encode(messages)
        eos = self.tokenizer.convert_ids_to_tokens(sorted(self.eos_ids)[0])
        answers = [torch.tensor(self.tokenizer(t + eos, add_special_tokens=False)["input_ids"]) for t in targets]
        payload = LocalPayload(prompts, answers)
        width = max(len(a) for a in answers)
        self.model.train()
        optimizer.zero_grad(set_to_none=True)
        log_prob, _ = self._log_probs(self.model, payload, np.arange(len(answers)), width)
        loss = -log_prob.sum() / sum(len(a) for a in answers)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def sync_reference(self) -> None:
        """The reference policy becomes the current one (after the warm start, RL starts from the SFT model)."""
        if self.ref_model is not None:
            self.ref_model.load_state_dict(self.model.state_dict())

    # ------------------------------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        trainable = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        state = {"model": trainable, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.ref_model is not None:
            state["ref_model"] = {k: v.detach().cpu() for k, v in self.ref_model.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ref_model is not None and "ref_model" in state:
            self.ref_model.load_state_dict(state["ref_model"])

    def save_pretrained(self, directory: str) -> None:
        """The current policy as a Hugging Face directory (LoRA merged into the weights)."""
        model = self.model
        if self.lora:
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(directory)
        self.processor.save_pretrained(directory)
