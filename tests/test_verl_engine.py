"""The verl engine driven through whole training steps on the CPU, with verl 0.9.1's own code wherever it can run.

Real verl code in these tests: ``RLHFDataset`` + ``collate_fn`` + the ``StatefulDataLoader`` (our data, our
``source`` keys), ``AgentLoopManager.generate_sequences`` and ``AgentLoopWorker`` (per-row ``__do_sample__``,
padding, ``rm_scores``, ``reward_extra_keys``, ``multi_modal_inputs``), ``RewardLoopWorker`` with verl's naive and
DAPO reward managers loading ``utils/reward_score/vqa.py`` by path, and every ``RayPPOTrainer`` method the MARS
trainer reuses (``_balance_batch``, ``_compute_old_log_prob``, ``_compute_ref_log_prob``, ``_update_actor``,
``_validate``, ``_save_checkpoint``, ``_load_checkpoint``, the metric functions).

Fakes, speaking verl's formats: the LLM server (a scripted agent loop answers instead), the Ray handles (in-process
objects with ``.remote``), the FSDP worker group (no-padding TensorDicts in, nested log-probs / metrics out, four
data-parallel ranks so that balancing reorders rows) and the checkpoint engine (which checks the hybrid engine's
sleep/wake order).
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

from tensordict import TensorDict  # noqa: E402
from verl.experimental.agent_loop.agent_loop import (  # noqa: E402
    AgentLoopBase,
    AgentLoopManager,
    AgentLoopMetrics,
    AgentLoopOutput,
    AgentLoopWorker,
    register,
)
from verl.utils import tensordict_utils as tu  # noqa: E402

from mars.advantage.reference import mars_advantage_loop  # noqa: E402
from mars.rewards import vqa_score  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AGENT_NAME = "mars_scripted_agent"
N_PROMPTS, N_ROLLOUTS, DP_SIZE = 4, 4, 4

# every request the scripted agent loop answered: uid, anchor flag, source, sampling temperature, images, validate
ANSWERED: list[dict] = []


# ------------------------------------------------------------------------------------------------ scripted policy


def group_position(uid: str) -> int:
    match = re.search(r"p(\d+)$", uid)
    return int(match.group(1)) if match else -1


def answer_is_right(uid: str, is_anchor: bool, source: str, k: int) -> bool:
    """A fixed script: which answers are right, by the prompt's position in its batch.

    p0: every rollout right, depth anchor right, rgb anchor wrong (GRPO: no signal, MARS: signal)
    p1: everything wrong, anchors too (no signal under MARS either: DAPO's filter drops it)
    p2: rollouts alternate; both anchors right
    p3: rollouts right; both anchors wrong
    """
    p = group_position(uid) % 4
    if is_anchor:
        return {0: source == "depth", 1: False, 2: True, 3: False}[p]
    return {0: True, 1: False, 2: k % 2 == 0, 3: True}[p]


@register(AGENT_NAME)
class ScriptedAgentLoop(AgentLoopBase):
    """Answers from the script instead of an LLM server, in verl's AgentLoopOutput format; records each request."""

    def __init__(self, *args, **kwargs):  # no server, no chat template: nothing of AgentLoopBase is needed
        self.tokenizer = kwargs["tokenizer"]
        self.rollout_config = kwargs["trainer_config"].config.actor_rollout_ref.rollout

    async def run(self, sampling_params, **kwargs) -> AgentLoopOutput:
        uid = str(kwargs.get("uid", "val"))
        is_anchor = bool(kwargs.get("mars_is_anchor", False))
        source = str(kwargs.get("mars_source", "") or "")
        images = [p["image"] for m in kwargs["raw_prompt"] if isinstance(m["content"], list)
                  for p in m["content"] if p.get("type") == "image"]
        k = sum(1 for a in ANSWERED if a["uid"] == uid and a["anchor"] == is_anchor)
        truth = re.search(r"<answer>(.*?)</answer>", kwargs["reward_model"]["ground_truth"]).group(1)
        right = answer_is_right(uid, is_anchor, source, k)
        answer = truth if right else ("No" if truth == "Yes" else "Yes")
        text = f"<think>{uid} {source or 'all'} {k}</think><answer>{answer}</answer>"
        ANSWERED.append(dict(uid=uid, anchor=is_anchor, source=source, k=k, text=text,
                             temperature=sampling_params["temperature"], top_p=sampling_params["top_p"],
                             images=images, ground_truth=kwargs["reward_model"]["ground_truth"]))
        prompt_ids = self.tokenizer.encode(f"{source or 'all'} {len(images)} {uid}")
        prompt_ids = prompt_ids[: self.rollout_config.prompt_length]
        response_ids = self.tokenizer.encode(text)[: self.rollout_config.response_length]
        return AgentLoopOutput(
            prompt_ids=prompt_ids, response_ids=response_ids, response_mask=[1] * len(response_ids),
            response_logprobs=[-0.5] * len(response_ids), multi_modal_data={"images": images}, num_turns=2,
            metrics=AgentLoopMetrics(), extra_fields={"turn_scores": [], "tool_rewards": []},
        )


# ------------------------------------------------------------------------------------------------ fake Ray pieces


class Remote:
    """A Ray method handle stand-in: ``.remote(...)`` returns an awaitable, as an ObjectRef is."""

    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


class ImageGridAgentLoopWorker(AgentLoopWorker):
    """verl's worker with the processor's output replaced by one 2x2 grid per image (no processor on CPU)."""

    def _compute_multi_modal_inputs(self, output, input_ids):
        images = (output.multi_modal_data or {}).get("images") or []
        if not images:
            return {}
        grid = torch.tensor([[1, 2, 2]] * len(images))
        return {"image_grid_thw": grid, "images_seqlens": torch.full((len(images),), 4)}


def agent_loop_worker(config, tokenizer, reward_handle):
    """verl's AgentLoopWorker without its __init__ (which builds the model config from a real checkpoint)."""
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.rollout_trace import RolloutTraceConfig

    worker = object.__new__(ImageGridAgentLoopWorker)
    worker.config = config
    worker.llm_client = None
    worker.teacher_client = None
    worker.reward_loop_worker_handles = [reward_handle]
    worker.rollout_config = omega_conf_to_dataclass(config.actor_rollout_ref.rollout)
    worker.dataset_cls = RLHFDataset
    worker.tokenizer = tokenizer
    worker.processor = None
    worker.hf_model_type = None
    worker.mm_processor_kwargs = {}
    worker.distillation_enabled = False
    worker.tools = []
    RolloutTraceConfig.init("mars", "test", None, False, None)
    return worker


class InProcessRewardWorker:
    """verl's RewardLoopWorker (real __init__: tokenizer from disk, reward manager, our reward file by path)."""

    def __init__(self, config):
        from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

        self.worker = RewardLoopWorker(config)
        self.compute_score = Remote(self._compute_score)

    async def _compute_score(self, data):
        loop = asyncio.get_running_loop()  # verl binds its reward manager to the loop it was built in
        self.worker.loop = self.worker.reward_manager.loop = loop
        return await self.worker.compute_score(data)


class InProcessAgentLoopManager(AgentLoopManager):
    """verl's AgentLoopManager (chunking, concatenation, timing metrics) over in-process workers."""

    def __init__(self, config, tokenizer, checkpoint_manager):
        self.config = config
        self.rollout_config = config.actor_rollout_ref.rollout
        reward = InProcessRewardWorker(config)
        count = int(self.rollout_config.agent.num_workers)
        workers = [agent_loop_worker(config, tokenizer, reward) for _ in range(count)]
        self.agent_loop_workers = [type("Handle", (), {"generate_sequences": Remote(w.generate_sequences)})()
                                   for w in workers]
        self.checkpoint_manager = checkpoint_manager
        self.calls: list[dict] = []

    def generate_sequences(self, prompts):
        assert self.checkpoint_manager.awake, "generation while the rollout servers sleep"
        start = len(ANSWERED)
        output = super().generate_sequences(prompts)
        self.calls.append({"meta": dict(prompts.meta_info), "answered": ANSWERED[start:]})
        return output


class FakeCheckpointManager:
    """verl's CheckpointEngineManager protocol: update_weights wakes the servers with new weights, sleep frees them."""

    def __init__(self):
        self.awake = False
        self.events: list[tuple[str, int | None]] = []

    def update_weights(self, global_steps=None):
        self.awake = True
        self.events.append(("update_weights", global_steps))

    def sleep_replicas(self):
        self.awake = False
        self.events.append(("sleep", None))


def fake_log_prob(tokens: torch.Tensor, version: int) -> torch.Tensor:
    """The fake policy's log-probability of each token: depends on the token and the policy version only."""
    return -((tokens % 50) + 1).float() / 100 - 0.001 * version


def fake_sum_pi_squared(tokens: torch.Tensor) -> torch.Tensor:
    """The fake policy's sum of squared probabilities at each position (verl's calculate_sum_pi_squared)."""
    return (tokens % 7).float() / 10


class FakeActorWorkerGroup:
    """The FSDP actor/ref worker group as verl's trainer calls it: no-padding TensorDicts in, verl's outputs back."""

    def __init__(self, checkpoint_manager, dp_size=DP_SIZE):
        self._dispatch_info = {}
        self.dp_size = dp_size
        self.checkpoint_manager = checkpoint_manager
        self.version = 0
        self.log_prob_calls: list[dict] = []
        self.updates: list[dict] = []
        self.saved: list[str] = []
        self.loaded: list[str] = []

    def _query_dispatch_info(self, role):
        return list(range(self.dp_size))

    def _forward(self, data: TensorDict, version: int) -> TensorDict:
        assert not self.checkpoint_manager.awake, "training call while the rollout servers hold the GPUs"
        input_ids = data["input_ids"]
        assert input_ids.is_nested, "verl's workers take no-padding (nested) input_ids"
        values, offsets = input_ids.values(), input_ids.offsets()
        log_probs, sum_pi_squared = torch.zeros(values.shape[0]), torch.zeros(values.shape[0])
        for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
            log_probs[start : end - 1] = fake_log_prob(values[start + 1 : end], version)  # position t scores t+1
            sum_pi_squared[start : end - 1] = fake_sum_pi_squared(values[start + 1 : end])
        nested = lambda v: torch.nested.nested_tensor_from_jagged(v, offsets=offsets)  # noqa: E731
        self.log_prob_calls.append({"uid": tu.get(data, "uid"), "version": version,
                                    "global_token_num": tu.get(data, "global_token_num")})
        metrics = {"mfu": 0.25} if tu.get(data, "global_token_num") is not None else {}
        outputs = {"log_probs": nested(log_probs), "entropy": nested(torch.full_like(log_probs, 0.5))}
        if tu.get(data, "calculate_sum_pi_squared"):
            outputs["sum_pi_squared"] = nested(sum_pi_squared)
        return tu.get_tensordict(outputs, non_tensor_dict={"metrics": metrics})

    def compute_log_prob(self, data):
        return self._forward(data, self.version)

    def compute_ref_log_prob(self, data):
        return self._forward(data, 0)

    def update_actor(self, data):
        assert not self.checkpoint_manager.awake
        self.updates.append({
            "uid": list(tu.get(data, "uid")),
            "is_anchor": list(tu.get(data, "mars_is_anchor")),
            "responses": data["responses"].clone(),
            "response_mask": data["response_mask"].clone(),
            "advantages": data["advantages"].clone(),
            "old_log_probs": data["old_log_probs"].clone(),
            "ref_log_prob": data["ref_log_prob"].clone() if "ref_log_prob" in data.keys() else None,
            "sum_pi_squared": data["sum_pi_squared"].clone() if "sum_pi_squared" in data.keys() else None,
            "mini_batch_size": tu.get(data, "mini_batch_size"),
            "temperature": tu.get(data, "temperature"),
        })
        self.version += 1
        return tu.get_tensordict({}, non_tensor_dict={"metrics": {"pg_loss": [0.1, 0.3], "mfu": [0.5], "lr": 1e-6,
                                                                  "grad_norm": 0.7}})

    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        Path(local_path).mkdir(parents=True, exist_ok=True)
        (Path(local_path) / "fake_actor.txt").write_text(str(self.version))
        self.saved.append(local_path)

    def load_checkpoint(self, local_path, hdfs_path=None, del_local_after_load=False):
        self.version = int((Path(local_path) / "fake_actor.txt").read_text())
        self.loaded.append(local_path)


def recording_engine_class():
    from mars.engines.verl import VerlEngine

    class RecordingEngine(VerlEngine):
        """The verl engine, remembering what each generate call was asked (the rows it must return, in order)."""

        def __init__(self, trainer):
            super().__init__(trainer)
            self.asked: list[list[tuple[str, bool, str]]] = []

        def generate(self, requests, max_new_tokens):
            self.asked.append([(r.group_id, r.is_anchor, r.source) for r in requests])
            rows = super().generate(requests, max_new_tokens)
            assert len(rows) == len(requests)
            return rows

    return RecordingEngine


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from mars.models.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(400).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def depth_data(tmp_path_factory):
    """Synthetic rgb+depth yes/no questions in verl's parquet schema, with a `source` per image."""
    from mars.data.synth.build import synthesize

    out = tmp_path_factory.mktemp("data") / "depth_vqa"
    synthesize("depth_vqa", str(out), 30, seed=0, val_frac=0.2, test_frac=0.0)
    return out


def compose(tokenizer_dir, data_dir, out_dir, preset="grpo", *extra):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    overrides = [
        f"actor_rollout_ref.model.path={tokenizer_dir}",
        f"data.train_files={data_dir}/train.parquet",
        f"data.val_files={data_dir}/val.parquet",
        f"data.train_batch_size={N_PROMPTS}",
        "data.max_prompt_length=256",  # the longest variant of the synthetic data: 2 x 18 image tokens + the text
        "data.max_response_length=48",
        "data.dataloader_num_workers=0",
        "data.seed=0",
        f"actor_rollout_ref.rollout.n={N_ROLLOUTS}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={N_PROMPTS}",
        # each of the DP_SIZE ranks computes log-probs for N_PROMPTS x N_ROLLOUTS / DP_SIZE rows (verl needs divisors)
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=2",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.agent.num_workers=5",  # 5 divides neither 24 nor 6 rows: the engine pads
        f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_NAME}",
        f"reward.custom_reward_function.path={REPO}/utils/reward_score/vqa.py",
        "reward.num_workers=1",
        f"trainer.n_gpus_per_node={DP_SIZE}",
        f"trainer.default_local_dir={out_dir}",
        "trainer.logger=[console]",
        "++mars.expected_num_images=2",
        *extra,
    ]
    from mars.config.compose import finalize_config

    config_name = "verl_dapo" if preset == "dapo" else "verl_grpo"
    with initialize_config_module(config_module="mars.config", version_base=None):  # as the entry points compose
        return finalize_config(hydra_compose(config_name=config_name, overrides=overrides))


def build_trainer(cfg, tokenizer_dir):
    """MarsRayPPOTrainer through verl's __init__ (real datasets and dataloaders), with the fakes as its workers."""
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.single_controller.ray import ResourcePoolManager
    from verl.trainer.ppo.utils import Role, create_rl_dataset, create_rl_sampler
    from verl.utils.dataset.rl_dataset import collate_fn

    from mars.engines.verl import MarsRayPPOTrainer, check_verl_config
    from mars.engines.verl.launch import check_dataset_images

    check_verl_config(cfg)
    OmegaConf.resolve(cfg)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    processor = object()  # RLHFDataset only checks that one exists for image rows; nothing is processed on CPU
    datasets = {split: create_rl_dataset(getattr(cfg.data, f"{split}_files"), cfg.data, tokenizer, processor,
                                         is_train=split == "train") for split in ("train", "val")}
    for split, dataset in datasets.items():
        check_dataset_images(dataset, cfg, split)
    trainer = MarsRayPPOTrainer(
        config=cfg, tokenizer=tokenizer, processor=None,
        role_worker_mapping={Role.ActorRolloutRef: object},
        resource_pool_manager=ResourcePoolManager(resource_pool_spec={"global_pool": [DP_SIZE]}, mapping={}),
        train_dataset=datasets["train"], val_dataset=datasets["val"], collate_fn=collate_fn,
        train_sampler=create_rl_sampler(cfg.data, datasets["train"]),
    )
    trainer.checkpoint_manager = FakeCheckpointManager()
    trainer.actor_rollout_wg = trainer.ref_policy_wg = FakeActorWorkerGroup(trainer.checkpoint_manager)
    trainer.async_rollout_manager = InProcessAgentLoopManager(cfg, tokenizer, trainer.checkpoint_manager)
    return trainer


# ------------------------------------------------------------------------------------------------ expectations


def expected_reward(entry: dict) -> float:
    return vqa_score(entry["text"], entry["ground_truth"])["score"]


def real_answers(trainer, engine) -> list[dict]:
    """What was answered for the engine's own requests: each training call holds them in request order, then the
    copies the engine padded the request with (to split it evenly over the agent-loop workers), which it drops."""
    calls = [c for c in trainer.async_rollout_manager.calls if not c["meta"].get("validate")]
    assert len(calls) == len(engine.asked)
    workers = int(trainer.config.actor_rollout_ref.rollout.agent.num_workers)
    answers = []
    for call, asked in zip(calls, engine.asked):
        assert len(call["answered"]) == len(asked) + (-len(asked)) % workers
        kept = call["answered"][: len(asked)]
        assert [(a["uid"], a["anchor"], a["source"]) for a in kept] == asked
        answers += kept
    return answers


def check_updates(trainer, answered: list[dict], norm_by_std: bool = True) -> None:
    """The last update's rows: multi-source only; each row's tokens are its own; its advantage is MARS over its
    group's rollouts and anchors (rewards recomputed here from what was answered); its old (and reference)
    log-probs are the policy's log-probs of its own tokens."""
    rollouts, anchors = defaultdict(list), defaultdict(list)
    for entry in answered:
        (anchors if entry["anchor"] else rollouts)[entry["uid"]].append(expected_reward(entry))
    truth = {entry["uid"]: entry["ground_truth"] for entry in answered}
    update = trainer.actor_rollout_wg.updates[-1]
    assert not any(update["is_anchor"]), "anchors must never be trained on"
    groups = list(dict.fromkeys(update["uid"]))
    scores = [r for g in groups for r in rollouts[g]]
    index = [g for g in groups for _ in rollouts[g]]
    advantages = mars_advantage_loop(scores, index, [a for g in groups for a in anchors[g]],
                                     [g for g in groups for _ in anchors[g]], norm_by_std=norm_by_std)
    expected = {(g, round(r, 6)): a for g, r, a in zip(index, scores, advantages)}
    version = trainer.actor_rollout_wg.version - 1  # the policy before this update
    for row, uid in enumerate(update["uid"]):
        mask = update["response_mask"][row].bool()
        tokens = update["responses"][row][mask]
        text = trainer.tokenizer.decode(tokens.tolist(), skip_special_tokens=True)
        assert text.startswith(f"<think>{uid} all "), (uid, text)
        reward = round(vqa_score(text, truth[uid])["score"], 6)
        advantage = update["advantages"][row]
        assert torch.allclose(advantage[mask], torch.full_like(advantage[mask], expected[(uid, reward)]), atol=1e-5)
        assert not advantage[~mask].any()
        assert torch.allclose(update["old_log_probs"][row][mask], fake_log_prob(tokens, version))
        if update["ref_log_prob"] is not None:
            assert torch.allclose(update["ref_log_prob"][row][mask], fake_log_prob(tokens, 0))
        if update["sum_pi_squared"] is not None:  # kept from the old-log-prob call, with its own row
            assert torch.allclose(update["sum_pi_squared"][row][mask], fake_sum_pi_squared(tokens))


def check_one_request(call: dict, rollout_temperature: float) -> None:
    """Rollouts and anchors in ONE generation call; anchors greedy through verl's per-row flag, rollouts sampled."""
    answered = call["answered"]
    anchors = [a for a in answered if a["anchor"]]
    assert anchors and len(anchors) < len(answered)
    assert all(a["temperature"] == 0 and a["top_p"] == 1.0 for a in anchors)
    assert all(a["temperature"] == rollout_temperature for a in answered if not a["anchor"])
    for anchor in anchors:  # duplicate mode: the anchor's source in both slots
        assert len(anchor["images"]) == 2 and all(anchor["source"] in Path(p).name for p in anchor["images"])


# ------------------------------------------------------------------------------------------------ tests


def test_grpo_fit_validates_trains_checkpoints_and_resumes(tokenizer_dir, depth_data, tmp_path, monkeypatch):
    """MarsRayPPOTrainer.fit: verl's validation before and after, two MARS steps (one generation call each),
    verl's checkpoint at the last step; then a resumed run continues at step 3 from that checkpoint."""
    ANSWERED.clear()
    # verl's own validation here (the per-view one adds a generation call per validation: tests/test_verl_cpu_e2e.py)
    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "grpo", "trainer.total_training_steps=2",
                  "trainer.save_freq=2", "trainer.test_freq=2", "trainer.val_before_train=true",
                  "actor_rollout_ref.actor.calculate_sum_pi_squared=true", "mars.val_views=false")
    trainer = build_trainer(cfg, tokenizer_dir)
    batch_ends = []
    trainer.train_dataset.on_batch_end = lambda batch: batch_ends.append(list(batch.non_tensor_batch["uid"]))
    logged = []
    from mars.training.tracking import MetricsLog

    original_log = MetricsLog.log

    def record(self, metrics, step, *args, **kwargs):
        logged.append((step, dict(metrics)))
        return original_log(self, metrics, step, *args, **kwargs)

    monkeypatch.setattr(MetricsLog, "log", record)
    monkeypatch.setattr("mars.engines.verl.ray_trainer.VerlEngine", recording_engine_class())
    trainer.fit()

    calls = trainer.async_rollout_manager.calls
    train_calls = [c for c in calls if not c["meta"].get("validate")]
    assert len(train_calls) == 2 and len(calls) == 4  # val, step 1, step 2, val
    for call in train_calls:
        check_one_request(call, float(cfg.actor_rollout_ref.rollout.temperature))
        assert len([a for a in call["answered"] if not a["anchor"]]) >= N_PROMPTS * N_ROLLOUTS
    answers = real_answers(trainer, trainer.engine)
    check_updates(trainer, [a for a in answers if a["uid"].startswith("s2")])
    update = trainer.actor_rollout_wg.updates[-1]
    assert update["mini_batch_size"] == N_PROMPTS * N_ROLLOUTS and update["temperature"] == 1.0
    assert all(c["global_token_num"] is not None for c in trainer.actor_rollout_wg.log_prob_calls)

    steps = dict(logged)
    assert set(steps) == {0, 1, 2}
    assert any(k.startswith("val-core/") for k in steps[0]) and any(k.startswith("val-core/") for k in steps[2])
    for key in ("mars/multi_source_reward", "mars/information_gain", "mars/anchor_reward/depth", "actor/pg_loss",
                "actor/entropy", "perf/mfu/actor", "critic/advantages/mean", "timing_s/gen", "perf/throughput",
                "global_seqlen/min", "agent_loop/generate_sequences/mean", "training/global_step"):
        assert key in steps[1], key
    # p0 has every rollout right: GRPO sees no signal there, MARS does (the rgb anchor is wrong)
    assert steps[1]["mars/signal_mars_only"] > 0
    # verl's debug metrics where the data exists: rollout log-probs (-0.5 per token) vs the actor's, variance proxy
    for key in ("training/rollout_probs_diff_mean", "training/rollout_actor_probs_pearson_corr",
                "variance_proxy/expected_w", "variance_proxy/proxy1_signal_strength"):
        assert key in steps[1], key
    # generation time per token over every generated token (anchors too), the slowest row labelled as any row
    assert steps[1]["timing_per_token_ms/gen"] == pytest.approx(
        1000 * steps[1]["timing_s/gen"] / steps[1]["mars/generated_tokens"])
    assert steps[1]["mars/generated_tokens"] > steps[1]["response_length/mean"] * N_PROMPTS * N_ROLLOUTS
    assert "agent_loop/slowest_of_all_rows/response_length" in steps[1]
    assert not any(k.startswith("agent_loop/slowest/") for k in steps[1])
    # verl's per-step hooks: the skip manager's step, the dataset's on_batch_end after every step but the last
    from verl.utils.skip.skip_manager import SkipManager

    assert SkipManager.step == 2
    assert len(batch_ends) == 1 and batch_ends[0] == trainer.actor_rollout_wg.updates[0]["uid"]

    run = tmp_path / "run"
    assert (run / "latest_checkpointed_iteration.txt").read_text() == "2"
    assert (run / "global_step_2" / "data.pt").exists()
    assert (run / "global_step_2" / "actor" / "fake_actor.txt").exists()
    events = [e for e, _ in trainer.checkpoint_manager.events]
    assert events[0] == "update_weights" and events.count("update_weights") == 3 and events.count("sleep") == 2

    # resume: total 3 steps, the checkpoint says 2 are done
    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "grpo", "trainer.total_training_steps=3",
                  "trainer.save_freq=-1", "trainer.test_freq=-1", "trainer.val_before_train=false")
    resumed = build_trainer(cfg, tokenizer_dir)
    resumed.fit()
    assert resumed.actor_rollout_wg.loaded and resumed.actor_rollout_wg.version == 3  # 2 from the checkpoint, +1
    assert [c["meta"]["global_steps"] for c in resumed.async_rollout_manager.calls] == [3]


def test_dapo_step_filters_concatenates_and_keeps_anchors_attached(tokenizer_dir, depth_data, tmp_path):
    """DAPO+MARS through train_step on the verl engine: verl's DAPO reward manager scores (overlong buffer on), the
    anchor-aware filter drops the degenerate group p1 of each generation batch, a second batch is generated and
    concatenated, rows are balanced across 4 ranks; every trained row still carries its own group's advantage."""
    from mars.engines.verl.ray_trainer import verl_prompt_stream
    from mars.training.settings import StepSettings
    from mars.training.step import train_step

    ANSWERED.clear()
    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "dapo",
                  "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
                  "reward.reward_kwargs.overlong_buffer_cfg.len=16",
                  "reward.reward_kwargs.overlong_buffer_cfg.log=true")
    # buffer 16 of 48 tokens: the answers (< 32 tokens) are not shaped, so p1 stays degenerate for the filter
    trainer = build_trainer(cfg, tokenizer_dir)
    trainer.global_steps = 1
    engine = trainer.engine = recording_engine_class()(trainer)
    prompts = verl_prompt_stream(trainer.train_dataloader, expected_images=2)
    metrics = train_step(engine, prompts, 1, StepSettings.from_config(cfg))

    calls = trainer.async_rollout_manager.calls
    assert len(calls) == 2  # the filter kept 3 of 4 groups per batch: two batches for 4 groups
    for call in calls:
        check_one_request(call, float(cfg.actor_rollout_ref.rollout.temperature))
    assert metrics["mars/filter/gen_batches"] == 2
    update = trainer.actor_rollout_wg.updates[-1]
    assert len(update["uid"]) == N_PROMPTS * N_ROLLOUTS
    groups = list(dict.fromkeys(update["uid"]))
    assert len(groups) == N_PROMPTS and not any(group_position(g) == 1 for g in groups)
    assert {g.split("p")[0] for g in groups} == {"s1g0", "s1g1"}  # both generation batches contributed
    assert update["ref_log_prob"] is None  # DAPO: no KL, no reference
    positions = [groups.index(u) for u in update["uid"]]
    assert positions != sorted(positions), "balancing across 4 ranks should have reordered the rows"
    check_updates(trainer, real_answers(trainer, engine))
    assert metrics["reward/overlong_reward"] == 0.0  # verl's DAPO manager ran and logged its shaping


def test_dapo_overlong_shaping_reaches_every_row(tokenizer_dir, depth_data, tmp_path):
    """With a 40-token buffer of 48, verl's DAPO reward manager penalises each row by its length, anchors too."""

    ANSWERED.clear()
    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "dapo",
                  "reward.reward_kwargs.overlong_buffer_cfg.len=40")
    trainer = build_trainer(cfg, tokenizer_dir)
    requests, rows = generate_and_score_one_batch(trainer, cfg)
    penalty = np.minimum(-(rows.response_lengths - (48 - 40)) / 40, 0.0)
    task = np.array([vqa_score(text, r.sample.ground_truth)["score"] for text, r in zip(rows.texts, requests)])
    assert rows.is_anchor.any() and (penalty < 0).all()
    np.testing.assert_allclose(rows.rewards, task + penalty, atol=1e-6)


def generate_and_score_one_batch(trainer, cfg):
    """The step's first two phases on the verl engine for the first batch: its requests and their scored rows."""
    from mars.engines.verl import VerlEngine
    from mars.engines.verl.ray_trainer import verl_prompt_stream
    from mars.training.requests import build_requests
    from mars.training.settings import StepSettings

    trainer.global_steps = 1
    engine = VerlEngine(trainer)
    settings = StepSettings.from_config(cfg)
    requests = build_requests(verl_prompt_stream(trainer.train_dataloader)(), "s1g0", N_ROLLOUTS, settings.sampling,
                              settings.anchors)
    rows = engine.generate(requests, settings.max_response_length)
    engine.score(rows)
    return requests, rows


def test_engine_refuses_what_verl_cannot_serve(tokenizer_dir, depth_data, tmp_path):
    from mars.engines.verl import VerlEngine
    from mars.training.interface import RolloutRequest, Sampling

    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run")
    trainer = build_trainer(cfg, tokenizer_dir)
    engine = VerlEngine(trainer)
    batch = next(iter(trainer.train_dataloader))
    from mars.engines.verl.samples import samples_from_batch

    sample = samples_from_batch(batch)[0]
    request = RolloutRequest(sample.messages, "g", Sampling(True, 0.7, 1.0), True, "rgb", sample)
    with pytest.raises(ValueError, match="temperature"):
        engine.generate([request], int(cfg.data.max_response_length))
    with pytest.raises(ValueError, match="response_length"):
        engine.generate([request], 7)


def test_both_engines_score_with_the_same_default_reward_and_overlong_buffer(tokenizer_dir, depth_data, tmp_path,
                                                                            caplog):
    """No reward path and the DAPO preset's 4096-token buffer with a 24-token limit: verl's reward loop (naive
    fallback: verl's default_compute_score raises for MARS data; DAPO manager: asserts the buffer fits) scores
    every row exactly as the local engine's score_rows does, with MARS's reward and a buffer of half the limit."""
    from mars.training.scoring import load_reward_fn, score_rows

    ANSWERED.clear()
    overrides = ("reward.custom_reward_function.path=null", "reward.reward_kwargs.overlong_buffer_cfg.len=4096",
                 "data.max_response_length=24")
    with caplog.at_level("WARNING", logger="mars.training.scoring"):
        cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "dapo", *overrides)
        trainer = build_trainer(cfg, tokenizer_dir)
    assert "overlong_buffer_cfg.len=4096 is longer than data.max_response_length=24: using 12" in caplog.text
    requests, rows = generate_and_score_one_batch(trainer, cfg)

    local_cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "dapo", *overrides)
    local_rows = rows.select(np.arange(len(rows)))
    score_rows(local_rows, load_reward_fn(local_cfg), local_cfg.reward.reward_kwargs.overlong_buffer_cfg, 24)
    assert local_cfg.reward.reward_kwargs.overlong_buffer_cfg.len == 12
    np.testing.assert_allclose(rows.rewards, local_rows.rewards, atol=1e-6)
    task = np.array([vqa_score(text, r.sample.ground_truth)["score"] for text, r in zip(rows.texts, requests)])
    assert (rows.rewards < task).any()  # the 12-token buffer shapes the longer answers


def batch_indices(samples) -> list[int]:
    return [s.index for s in samples]


@pytest.mark.parametrize("global_steps", [3, 6])
def test_resume_continues_at_the_batch_dynamic_sampling_reached(tokenizer_dir, depth_data, tmp_path, global_steps):
    """DAPO drew 7 batches (6 per epoch) in `global_steps` steps. A resumed run draws the 8th next, and counts epochs
    by batches. verl restores the dataloader only when the step number is not a multiple of the epoch (step 6 would
    replay the data from the start), and its epoch is global_steps // batches per epoch (step 3 would say epoch 0)."""
    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "dapo")
    trainer = build_trainer(cfg, tokenizer_dir)
    trainer.prompts = stream = trainer._prompt_stream()
    assert stream.batches_per_epoch == 6
    for _ in range(7):
        stream()
    trainer.global_steps = global_steps
    trainer._save_checkpoint()
    expected = batch_indices(stream())

    resumed = build_trainer(compose(tokenizer_dir, depth_data, tmp_path / "run", "dapo"), tokenizer_dir)
    resumed._load_checkpoint()
    assert resumed.global_steps == global_steps
    restored = resumed._prompt_stream()
    assert restored.batches == 7 and restored.epoch == 1
    assert batch_indices(restored()) == expected and restored.epoch == 1


def test_dapo_run_ends_when_total_epochs_of_data_are_drawn(tokenizer_dir, depth_data, tmp_path, capsys):
    """One epoch is 6 batches and each DAPO step here draws 2 (the filter drops p1 of each batch): with
    trainer.total_epochs=1 the run ends after step 3 although total_training_steps is 5, as verl's DAPO recipe."""
    ANSWERED.clear()
    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "dapo", "trainer.total_epochs=1",
                  "trainer.total_training_steps=5", "trainer.save_freq=-1", "trainer.test_freq=-1",
                  "trainer.val_before_train=false", "reward.reward_kwargs.overlong_buffer_cfg.len=16")
    trainer = build_trainer(cfg, tokenizer_dir)
    trainer.fit()
    assert len(trainer.actor_rollout_wg.updates) == 3
    assert trainer.prompts.batches == 6 and trainer.prompts.epoch == 0
    captured = capsys.readouterr()
    assert "the training data is used up: 6 batches = trainer.total_epochs=1" in captured.out + captured.err


def test_a_variant_longer_than_the_rollout_prompt_length_stops_the_run_before_training(tokenizer_dir, depth_data,
                                                                                      tmp_path):
    """The synthetic prompts need 36 image tokens plus their text: with a 40-token prompt_length verl's agent loop
    would refuse them mid-step; the trainer refuses the data when it is built, naming the row and the fix."""
    from mars.data.samples import BadDataError

    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "grpo", "data.max_prompt_length=40")
    with pytest.raises(BadDataError, match=r"train.parquet row 0: the multi-source prompt has \d+ tokens \(36 image "
                                           r"\+ \d+ text tokens\), more than rollout.prompt_length=40"):
        build_trainer(cfg, tokenizer_dir)


def test_a_nan_reward_scores_zero_on_the_verl_engine_too(tokenizer_dir, depth_data, tmp_path):
    """verl's reward loop passes a NaN from the reward function through; the step scores it 0 and counts it, as the
    local engine's score_rows does, instead of stopping in the advantage."""
    from mars.engines.verl.ray_trainer import verl_prompt_stream
    from mars.training.settings import StepSettings
    from mars.training.step import train_step

    reward_file = tmp_path / "nan_reward.py"
    reward_file.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):\n"
                           "    return float('nan') if ' rgb ' in solution_str else 1.0\n")
    ANSWERED.clear()
    cfg = compose(tokenizer_dir, depth_data, tmp_path / "run", "grpo",
                  f"reward.custom_reward_function.path={reward_file}")
    trainer = build_trainer(cfg, tokenizer_dir)
    trainer.global_steps = 1
    engine = trainer.engine = recording_engine_class()(trainer)
    metrics = train_step(engine, verl_prompt_stream(trainer.train_dataloader), 1, StepSettings.from_config(cfg))
    assert metrics["mars/anchor_reward/rgb"] == 0.0 and metrics["mars/anchor_reward/depth"] == 1.0
    assert torch.isfinite(trainer.actor_rollout_wg.updates[-1]["advantages"]).all()
