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

from mars.hf.decoding import Decoder, eos_token_ids, vision_token_ids
from mars.hf.focus import answer_token_masks, causal_maps, focus_job, with_focus_defaults
from mars.hf.device import autocast_for, resolve_device, set_cpu_threads
from mars.hf.log_probs import response_log_probs
from mars.hf.lora import wrap_lora
from mars.hf.perception import altered_prompts, image_geometry, perception_signals, response_roles
from mars.perception.papo import papo_loss_terms
from mars.processing import ImageCache, MultimodalEncoder, PromptInputs
from mars.training.interface import PerceptionLoss, PerceptionRequest, PolicyBatch, RolloutBatch, RolloutRequest
from mars.training.scoring import load_reward_fn, score_rows

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


class LocalEngine:
    """Implements ``mars.training.interface.Engine`` with transformers (+ peft for LoRA)."""

    def __init__(self, cfg: Any, total_steps: int, model_path: str | None = None, write=print):
        """``model_path``: the weights to start from (the warm-started model); default the configured model."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        actor = cfg.actor_rollout_ref.actor
        model_cfg = cfg.actor_rollout_ref.model
        model_path = str(model_path or model_cfg.path)
        self.device = resolve_device(cfg.trainer.get("device", "auto"))
        set_cpu_threads(cfg, self.device, write)
        self.processor = AutoProcessor.from_pretrained(model_path)
        self.tokenizer = self.processor.tokenizer
        model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32)
        if model_cfg.get("enable_gradient_checkpointing", False):
            model.gradient_checkpointing_enable()
        self.lora = int(model_cfg.get("lora_rank", 0) or 0) > 0
        if self.lora:
            model = wrap_lora(model, model_cfg)
        self.model = model.to(self.device)
        # the reference policy: the adapters switched off under LoRA, else a frozen copy of the starting weights
        # (both are the warm-started model when there is a warm start)
        self.ref_model = None
        if bool(actor.use_kl_loss) and not self.lora:
            self.ref_model = copy.deepcopy(self.model).eval().requires_grad_(False)

        self.encoder = MultimodalEncoder(self.processor)
        self._focus_probe = None  # the validation prompts with regions, encoded, for focus_metrics
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.banned = vision_token_ids(self.tokenizer)
        self.temperature = float(cfg.actor_rollout_ref.rollout.temperature) or 1.0

        optim = actor.optim
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=float(optim.lr), weight_decay=float(optim.get("weight_decay", 0.0)),
            betas=tuple(optim.get("betas", (0.9, 0.999))),
        )
        warmup = int(optim.get("lr_warmup_steps", -1))
        if warmup < 0:
            warmup = int(float(optim.get("lr_warmup_steps_ratio", 0.0)) * total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)))
        self.loss_config = OmegaConf.to_container(actor, resolve=True)
        self.reward_fn = load_reward_fn(cfg)
        self.overlong = cfg.get("reward", {}).get("reward_kwargs", {}).get("overlong_buffer_cfg", None)
        self._geometry = None  # the processor's black patch row, merge and patch size, for altered views

    # ------------------------------------------------------------------------------------------ building

    def _autocast(self):
        return autocast_for(self.device)

    # ------------------------------------------------------------------------------------------ generation

    def encode(self, messages: Sequence[list[dict]]) -> list[PromptInputs]:
        """Model inputs of many prompts; each distinct image is decoded and processed once."""
        return self.encoder.encode(messages, ImageCache(self.processor.image_processor))

    def generate(self, requests: Sequence[RolloutRequest], max_new_tokens: int) -> RolloutBatch:
        prompts = self.encode([r.messages for r in requests])
        decoder = Decoder(self.model, self.pad_id, self.eos_ids, self.banned, self.device, self._autocast)
        chunk = int(self.cfg.actor_rollout_ref.rollout.get("max_num_seqs", 0) or 0)
        responses, truncated = decoder.generate(prompts, [r.sampling for r in requests], max_new_tokens, chunk)
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
        return response_log_probs(model, payload.prompts, payload.responses, rows, width, self.device, self.pad_id,
                                  self.temperature, self._autocast, entropy)

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

    @property
    def geometry(self):
        if self._geometry is None:
            self._geometry = image_geometry(self.processor.image_processor)
        return self._geometry

    @torch.no_grad()
    def compute_log_probs_with_signals(self, rows: RolloutBatch, request: PerceptionRequest):
        """The old-log-prob pass with the perception signals: the real forward gives both (no extra pass for the
        similarity); each altered view costs one no-gradient forward."""
        width = self.response_mask(rows).shape[1]
        size = self.cfg.actor_rollout_ref.rollout.get("log_prob_micro_batch_size_per_gpu", None) or len(rows)
        prompts, responses = rows.payload.prompts, rows.payload.responses
        focus = focus_job(self.tokenizer, request.focus)
        self.model.eval()
        try:
            signals = perception_signals(
                self.model, prompts, responses, rows.row_sources(), [str(g) for g in rows.group_ids], width, size,
                self.device, self.pad_id, self.temperature, self._autocast, request.views, request.similarity,
                self.geometry, request.seed, request.step, focus=focus,
            )
            if focus:
                asked = list(request.focus.causal_rows)
                signals["focus/causal"] = causal_maps(
                    self.model, [prompts[i] for i in asked], [responses[i] for i in asked],
                    answer_token_masks([responses[i] for i in asked], self.tokenizer, width), focus.cells,
                    self.geometry, self.device, self.pad_id, self.temperature, self._autocast)
        finally:
            self.model.train()
        if request.roles:
            signals["roles"] = response_roles(responses, self.tokenizer, width)
        return signals.pop("log_probs"), with_focus_defaults(signals, request, len(rows))

    def _perception_loss(self, papo: PerceptionLoss, rows: RolloutBatch, masked: list[PromptInputs], idx, width,
                         log_prob, entropy, mask, mode, info):
        """PAPO's term for one micro-batch: the masked images' forward, with gradient (``mars.perception.papo``)."""
        from verl.trainer.ppo.core_algos import agg_loss

        masked_lp, masked_ent = response_log_probs(
            self.model, masked, rows.payload.responses, idx, width, self.device, self.pad_id, self.temperature,
            self._autocast, papo.entropy_coef != 0)
        return papo_loss_terms(log_prob, masked_lp, entropy, masked_ent, lambda x: agg_loss(x, mask, mode, **info),
                               papo.kl_coef, papo.entropy_coef)

    @torch.no_grad()
    def focus_metrics(self, samples, token: str, layer: int) -> dict[str, float]:
        """Faithful-MR1's ``perception/focus_in_box`` and ``perception/focus_in_box_uniform`` on ``samples`` (those
        with regions, up to 64; ``mars.hf.focus``); empty when the model has no focus token."""
        from mars.hf.focus import as_metrics, focus_probe, measure_focus
        from mars.perception.focus import focus_token_id

        focus_id = focus_token_id(self.tokenizer, token)
        if focus_id is None:
            return {}
        if self._focus_probe is None:  # the validation prompts do not change: encoded once
            self._focus_probe = focus_probe(samples, self.encoder, ImageCache(self.processor.image_processor),
                                            int(self.processor.image_processor.merge_size))
        self.model.eval()
        try:
            result = measure_focus(self.model, *self._focus_probe, focus_id, layer, self.device, self.pad_id,
                                   self._autocast)
        finally:
            self.model.train()
        return as_metrics(result)

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
        papo = batch.perception_loss
        masked = None
        if papo is not None:
            masked = altered_prompts(rows.payload.prompts, rows.row_sources(), [str(g) for g in rows.group_ids],
                                     papo.view, self.geometry, papo.seed, papo.step)
        need_entropy = entropy_coeff != 0 or (papo is not None and papo.entropy_coef != 0)
        sums: dict[str, list[float]] = {}
        self.model.train()
        for _ in range(int(actor.get("ppo_epochs", 1))):
            for mb_rows in self._micro_batches(n_rows, mini):
                self.optimizer.zero_grad(set_to_none=True)
                info = {"dp_size": 1, "batch_num_tokens": float(mask[mb_rows].sum()), "global_batch_size": len(mb_rows)}
                loss_cfg = OmegaConf.create({**self.loss_config, "global_batch_info": info})
                # each micro-batch's loss is already divided by the whole mini-batch's size (global_batch_info), so the
                # mini-batch's loss is their SUM; verl's actor logs it that way too
                mini_losses: dict[str, float] = {}
                for part in self._micro_batches(len(mb_rows), micro):
                    idx = mb_rows[part]
                    m = mask[idx].to(self.device)
                    log_prob, ent = self._log_probs(self.model, rows.payload, idx, mask.shape[1], need_entropy)
                    pg_loss, pg_metrics = policy_loss(
                        old_log_prob=batch.old_log_probs[idx].to(self.device), log_prob=log_prob,
                        advantages=batch.advantages[idx].to(self.device), response_mask=m, loss_agg_mode=mode,
                        config=loss_cfg,
                    )
                    loss = pg_loss
                    if entropy_coeff != 0:
                        loss = loss - entropy_coeff * agg_loss(ent, m, mode, **info)
                    if papo is not None:
                        term, papo_metrics = self._perception_loss(papo, rows, masked, idx, mask.shape[1], log_prob,
                                                                   ent, m, mode, info)
                        loss = loss + term
                        for k, v in papo_metrics.items():
                            mini_losses[k] = mini_losses.get(k, 0.0) + v
                    if batch.ref_log_probs is not None and bool(actor.use_kl_loss):
                        kl = kl_penalty(log_prob, batch.ref_log_probs[idx].to(self.device), str(actor.kl_loss_type))
                        kl_loss = agg_loss(kl, m, mode, **info)
                        loss = loss + float(actor.kl_loss_coef) * kl_loss
                        mini_losses["actor/kl_loss"] = mini_losses.get("actor/kl_loss", 0.0) + kl_loss.item()
                    loss.backward()
                    mini_losses["actor/pg_loss"] = mini_losses.get("actor/pg_loss", 0.0) + pg_loss.item()
                    for k, v in pg_metrics.items():
                        sums.setdefault(k, []).append(float(v))
                for k, v in mini_losses.items():
                    sums.setdefault(k, []).append(v)
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

