"""The shared training step against a fake engine: one generation call, anchors by group id, DAPO filtering."""

import numpy as np
import pytest
import torch

from mars.config.compose import compose_config
from mars.data.samples import PromptSample
from mars.training.interface import RolloutBatch, Sampling
from mars.training.requests import build_requests
from mars.training.scoring import overlong_penalty, score_rows
from mars.training.settings import AnchorSettings, StepSettings
from mars.training.step import TooManyGenerationBatches, train_step


class ListPayload:
    def __init__(self, ids):
        self.ids = list(ids)

    def select(self, rows):
        return ListPayload([self.ids[i] for i in rows])

    @classmethod
    def concat(cls, parts):
        return cls([i for p in parts for i in p.ids])


class FakeEngine:
    """Scores rows by a table (prompt index, source) -> reward; records what the step asks for."""

    def __init__(self, reward_of):
        self.reward_of = reward_of
        self.generate_calls = []
        self.updates = []

    def generate(self, requests, max_new_tokens):
        self.generate_calls.append(requests)
        return RolloutBatch(
            group_ids=np.array([r.group_id for r in requests], dtype=object),
            is_anchor=np.array([r.is_anchor for r in requests]),
            sources=np.array([r.source for r in requests], dtype=object),
            texts=["x"] * len(requests),
            response_lengths=np.full(len(requests), 3),
            truncated=np.zeros(len(requests), dtype=bool),
            samples=[r.sample for r in requests],
            payload=ListPayload(range(len(requests))),
        )

    def score(self, rows, shaping=True):
        rows.rewards = np.array([self.reward_of(s.index, src, gid) for s, src, gid in
                                 zip(rows.samples, rows.sources, rows.group_ids)], dtype=float)
        rows.reward_extras = {"format": np.ones(len(rows))}

    def response_mask(self, rows):
        return torch.ones(len(rows), 3)

    def compute_log_probs(self, rows, model="actor"):
        return torch.zeros(len(rows), 3)

    def update_policy(self, batch):
        self.updates.append(batch)
        return {"actor/pg_loss": 0.0}


def prompt(i, sources=("visible", "infrared")):
    parts = [{"type": "image", "image": f"{s}{i}.png", "source": s} for s in sources] + [{"type": "text", "text": "q"}]
    return PromptSample(messages=[{"role": "user", "content": parts}], sources=list(sources), ground_truth="x",
                        data_source="test", index=i)


def settings(*overrides):
    cfg = compose_config("mars_trainer", ["data.train_batch_size=2", "actor_rollout_ref.rollout.n=3", *overrides])
    return StepSettings.from_config(cfg)


def feeder(indices):
    it = iter(indices)
    return lambda: [prompt(next(it)), prompt(next(it))]


def test_rollouts_and_anchors_in_one_call_and_anchors_feed_the_advantage():
    # multi-source rollouts all score 1; the infrared anchor 1, the visible anchor 0
    engine = FakeEngine(lambda i, src, gid: 0.0 if src == "visible" else 1.0)
    metrics = train_step(engine, feeder(range(10)), 1, settings())
    assert len(engine.generate_calls) == 1
    requests = engine.generate_calls[0]
    assert len(requests) == 2 * 3 + 2 * 2  # 2 prompts x (3 rollouts + 2 anchors)
    anchors = [r for r in requests if r.is_anchor]
    assert all(not r.sampling.do_sample for r in anchors) and all(r.sampling.do_sample for r in requests if not r.is_anchor)
    assert {r.group_id for r in anchors} == {r.group_id for r in requests if not r.is_anchor}
    update = engine.updates[0]
    assert len(update.rows) == 6 and not update.rows.is_anchor.any()  # anchors are never trained on
    # equal rewards: no GRPO signal, but MARS pushes every response up (fusion beats the visible anchor)
    assert (update.advantages[:, 0] > 0).all()
    assert metrics["mars/signal_mars_only"] == 1.0
    assert metrics["mars/anchor_reward/visible"] == 0.0 and metrics["mars/anchor_reward/infrared"] == 1.0
    assert metrics["mars/information_gain"] == pytest.approx(0.5)


def test_grpo_estimator_generates_no_anchors():
    engine = FakeEngine(lambda i, src, gid: float(i % 2))
    train_step(engine, feeder(range(10)), 1, settings("algorithm.adv_estimator=grpo"))
    assert not any(r.is_anchor for r in engine.generate_calls[0])


def dapo(*overrides):
    return settings("algorithm.filter_groups.enable=true", "algorithm.filter_groups.metric=seq_reward",
                    "algorithm.filter_groups.max_num_gen_batches=5", *overrides)


def test_dapo_filter_regenerates_until_full_and_keeps_anchors_attached():
    # prompts 0-3: all rollouts equal; only odd prompts have anchors that differ -> rescued under MARS
    def reward(i, src, gid):
        return 1.0 if not src else (0.0 if i % 2 else 1.0)

    engine = FakeEngine(reward)
    metrics = train_step(engine, feeder(range(10)), 7, dapo())
    assert len(engine.generate_calls) == 2  # the first batch kept one group (prompt 1), the second one more
    update = engine.updates[0]
    kept_groups = sorted(set(update.rows.group_ids))
    assert kept_groups == ["s7g0p1", "s7g1p1"]
    assert metrics["mars/filter/gen_batches"] == 2.0
    assert metrics["mars/filter/rescued_by_anchors"] == 2.0


def test_plain_dapo_mode_fails_clearly_when_nothing_has_signal():
    engine = FakeEngine(lambda i, src, gid: 1.0 if not src else 0.0)
    with pytest.raises(TooManyGenerationBatches, match="max_num_gen_batches"):
        train_step(engine, feeder(range(100)), 1, dapo("mars.filter_mode=dapo"))
    assert len(engine.generate_calls) == 5


def test_filtered_batch_is_trimmed_to_train_batch_size():
    engine = FakeEngine(lambda i, src, gid: 1.0 if src else 0.0)  # every group rescued by its anchors
    train_step(engine, lambda: [prompt(0), prompt(1), prompt(2)], 1, dapo())
    assert sorted(set(engine.updates[0].rows.group_ids)) == ["s1g0p0", "s1g0p1"]


def test_score_rows_never_lets_a_reward_crash_the_run():
    def bad_reward(**kwargs):
        raise RuntimeError("boom")

    cfg = compose_config("mars_trainer")
    rows = FakeEngine(None).generate(build_requests([prompt(0)], "t", 2, Sampling(), AnchorSettings.from_config(cfg)), 4)
    score_rows(rows, bad_reward)
    assert (rows.rewards == 0).all() and (rows.reward_extras["reward_error"] == 1).all()
    score_rows(rows, lambda **kw: float("nan"))
    assert (rows.rewards == 0).all()
    score_rows(rows, lambda **kw: {"score": 0.5, "format": 0.25})
    assert (rows.rewards == 0.5).all() and (rows.reward_extras["format"] == 0.25).all()


def test_overlong_penalty_is_dapos_linear_ramp():
    lengths = np.array([10, 60, 80, 100])
    penalty = overlong_penalty(lengths, max_length=100, buffer=40, factor=1.0)
    assert penalty.tolist() == pytest.approx([0.0, 0.0, -0.5, -1.0])


def test_one_source_samples_have_no_anchors():
    engine = FakeEngine(lambda i, src, gid: float(i))
    train_step(engine, lambda: [prompt(0, ("visible",)), prompt(1)], 1, settings())
    anchors = [r for r in engine.generate_calls[0] if r.is_anchor]
    assert {r.group_id for r in anchors} == {"s1g0p1"}


def test_equal_rewards_of_rollouts_and_anchors_give_exactly_zero_advantage():
    # G=14, K=2, every reward 0.7: the rollouts' float32 token rewards and the anchors' rewards form one union
    engine = FakeEngine(lambda i, src, gid: 0.7)
    train_step(engine, feeder(range(10)), 1, settings("actor_rollout_ref.rollout.n=14"))
    update = engine.updates[0]
    assert len(update.rows) == 28 and (update.advantages == 0).all()


def test_a_nan_reward_from_the_engine_scores_zero_and_is_counted(caplog):
    # verl's reward loop hands a NaN through; the step applies the local engine's rule to every engine
    engine = FakeEngine(lambda i, src, gid: float("nan") if (i, src) == (1, "visible") else float(i))
    with caplog.at_level("WARNING", logger="mars.training.scoring"):
        metrics = train_step(engine, feeder(range(10)), 1, settings())
    assert "not finite" in caplog.text
    assert metrics["mars/anchor_reward/visible"] == pytest.approx(0.0)  # prompt 0's 0.0 and prompt 1's NaN -> 0
    assert metrics["reward/reward_error"] == 0.0  # counted on the anchor row, the trained rows are clean
    assert torch.isfinite(engine.updates[0].advantages).all()


def test_prompt_sampler_stops_after_total_epochs_of_batches():
    from mars.training.prompts import DataExhausted, PromptSampler

    sampler = PromptSampler([prompt(i) for i in range(5)], batch_size=2, seed=0, max_epochs=2)  # 2 batches an epoch
    drawn = [sorted(s.index for s in sampler.next_batch()) for _ in range(4)]
    assert sampler.epoch == 1 and len(drawn) == 4
    with pytest.raises(DataExhausted, match="total_epochs=2 x 2 batches per epoch"):
        sampler.next_batch()
    # the step does not swallow it: a DAPO step that runs out of data ends the run instead of training
    engine = FakeEngine(lambda i, src, gid: 1.0 if not src else 0.0)
    with pytest.raises(DataExhausted):
        train_step(engine, PromptSampler([prompt(i) for i in range(4)], 2, 0, max_epochs=1).next_batch, 1,
                   dapo("mars.filter_mode=dapo"))
    assert not engine.updates


class PerceptionEngine(FakeEngine):
    """A fake engine whose perception signals are a fixed function of each row's identity (group id and position
    in its generation call), so the weights a trained row gets can be recomputed from the row alone."""

    def __init__(self, reward_of):
        super().__init__(reward_of)
        self.requests = []

    @staticmethod
    def signal(group_id, row_id, salt=""):
        import zlib

        return [zlib.crc32(f"{salt}{group_id}:{row_id}:{t}".encode()) / 2**32 for t in range(3)]

    def compute_log_probs_with_signals(self, rows, request):
        self.requests.append(request)
        signals = {"similarity": torch.tensor([self.signal(g, i) for g, i in zip(rows.group_ids, rows.payload.ids)])}
        for view in request.views:
            signals[f"kl/{view.name}"] = torch.tensor(
                [self.signal(g, i, view.name) for g, i in zip(rows.group_ids, rows.payload.ids)])
            signals[f"log_probs/{view.name}"] = -torch.tensor(
                [self.signal(g, i, "lp" + view.name) for g, i in zip(rows.group_ids, rows.payload.ids)])
        if request.roles:  # a perception token, a reasoning token, a tag
            signals["roles"] = torch.tensor([[1, 2, 0]] * len(rows))
        return self.compute_log_probs(rows), signals


@pytest.mark.parametrize("method", ["vgpo", "vppo", "srpo"])
def test_token_weights_stay_with_their_rows_through_dapos_filter(method):
    from mars.perception import vgpo_weights
    from mars.perception.srpo import srpo_weights
    from mars.perception.vppo import vppo_weights

    def reward(i, src, gid):
        return 1.0 if not src else (0.0 if i % 2 else 1.0)

    base, weighted = FakeEngine(reward), PerceptionEngine(reward)
    train_step(base, feeder(range(10)), 7, dapo())
    metrics = train_step(weighted, feeder(range(10)), 7, dapo(f"perception={method}"))
    assert len(weighted.generate_calls) == 2  # two generation batches, filtered and concatenated
    rows = weighted.updates[0].rows
    assert list(rows.group_ids) == list(base.updates[0].rows.group_ids)
    mask = torch.ones(len(rows), 3)
    if method == "vgpo":
        signal = torch.tensor([PerceptionEngine.signal(g, i) for g, i in zip(rows.group_ids, rows.payload.ids)])
        expected = vgpo_weights(signal, mask, rows.group_ids)
    elif method == "vppo":
        signal = torch.tensor([PerceptionEngine.signal(g, i, "patches")
                               for g, i in zip(rows.group_ids, rows.payload.ids)])
        expected = vppo_weights(signal, mask, rows.group_ids, 0.4, 0.9, 1.1)
    else:
        old = weighted.compute_log_probs(rows)
        masked, blind = (-torch.tensor([PerceptionEngine.signal(g, i, "lp" + view)
                                        for g, i in zip(rows.group_ids, rows.payload.ids)])
                         for view in ("patches", "no_image"))
        expected = srpo_weights(old - masked, blind - old, torch.tensor([[1, 2, 0]] * len(rows)), mask)
    assert not torch.allclose(expected, torch.ones_like(expected))
    assert torch.allclose(weighted.updates[0].advantages, base.updates[0].advantages * expected)
    assert weighted.updates[0].perception_loss is None
    # every method logs which source the words rely on: one view per source, a metric per source
    assert {v.name for v in weighted.requests[0].views} >= {"drop_infrared", "drop_visible"}
    assert {"perception/dependency/infrared", "perception/dependency/visible"} <= set(metrics)
    assert all(r.step == 7 for r in weighted.requests)


def test_papo_reaches_the_update_and_anchors_stay_out_of_it():
    engine = PerceptionEngine(lambda i, src, gid: 0.0 if src == "visible" else 1.0)
    metrics = train_step(engine, feeder(range(10)), 2, settings("perception=papo"))
    update = engine.updates[0]
    assert update.perception_loss is not None and update.perception_loss.view.ratio == 0.6
    assert update.perception_loss.kl_coef == 0.02 and update.perception_loss.step == 2
    assert not update.rows.is_anchor.any()
    assert metrics["mars/anchor_reward/visible"] == 0.0  # the anchors' meaning is unchanged
    dapo_papo = StepSettings.from_config(compose_config("mars_trainer", ["preset=dapo", "perception=papo"]))
    assert dapo_papo.perception.kl_coef == 0.01
