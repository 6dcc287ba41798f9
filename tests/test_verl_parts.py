"""The verl engine's small parts: the config check, the image-count check, dataset rows -> prompts, requests ->
verl's generation DataProto, the DataProto payload's row operations; and the local engine's config untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

from tensordict import TensorDict  # noqa: E402
from verl import DataProto  # noqa: E402

from mars.engines.verl.checks import VerlConfigError, check_verl_config  # noqa: E402
from mars.engines.verl.generation import DO_SAMPLE_KEY, generation_batch  # noqa: E402
from mars.engines.verl.payload import VerlPayload  # noqa: E402
from mars.engines.verl.samples import check_image_counts, expected_num_images, samples_from_batch  # noqa: E402
from mars.training.interface import RolloutRequest, Sampling  # noqa: E402
from mars.training.requests import build_requests  # noqa: E402
from mars.training.settings import AnchorSettings  # noqa: E402


def compose(config_name: str, *overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="mars.config", version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


@pytest.fixture(scope="module")
def verl_cfg():
    return compose("verl_grpo", "actor_rollout_ref.rollout.name=vllm")


def collated_batch(n_images=(2, 2), sources=True):
    """What verl's RLHFDataset + collate_fn hand the trainer for rows with images (one `source` per image)."""
    rows = []
    for i, count in enumerate(n_images):
        names = ["visible", "infrared", "depth"][:count]
        parts = [{"type": "image", "image": f"/d/{i}_{n}.png", **({"source": n} if sources else {})} for n in names]
        rows.append({
            "raw_prompt": [{"role": "user", "content": [*parts, {"type": "text", "text": f"question {i}"}]}],
            "prompt": "replaced", "data_source": "llvip", "ability": "grounding", "index": i,
            "reward_model": {"style": "rule", "ground_truth": f"<answer>[[{i}, 0, 1, 1]]</answer>"},
            "extra_info": {"index": i, "image_sources": names}, "tools_kwargs": {}, "interaction_kwargs": {},
        })
    from verl.utils.dataset.rl_dataset import collate_fn

    return collate_fn([{**row, "dummy_tensor": torch.tensor([0], dtype=torch.uint8)} for row in rows])


# ------------------------------------------------------------------------------------------------ config


def test_entry_point_config_is_the_local_config_with_the_switch_turned(verl_cfg):
    from omegaconf import OmegaConf

    from mars.config.compose import compose_config

    check_verl_config(verl_cfg)
    assert verl_cfg.trainer.engine == "verl"
    local = OmegaConf.to_container(compose_config("mars_trainer"), resolve=True)
    verl = OmegaConf.to_container(compose_config("verl_grpo"), resolve=True)
    assert local["trainer"].pop("engine") == "local" and verl["trainer"].pop("engine") == "verl"
    assert local == verl  # one configuration: the engine is a switch, not a second config language


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.engine=local", "mars train"),
        ("trainer.use_v1=true", "use_v1"),
        ("algorithm.use_kl_in_reward=true", "use_kl_in_reward"),
        ("algorithm.adv_estimator=gae", "critic"),
        ("actor_rollout_ref.rollout.response_length=7", "response_length"),
        ("algorithm.rollout_correction.bypass_mode=true", "bypass_mode"),
        ("mars.anchor.do_sample=true", "anchor"),
        ("++mars.expected_num_images=two", "expected_num_images"),
    ],
)
def test_config_check_names_the_key_and_the_fix(override, message):
    cfg = compose("verl_grpo", "actor_rollout_ref.rollout.name=vllm", override)
    with pytest.raises(VerlConfigError, match=message):
        check_verl_config(cfg)


def test_sampled_anchors_at_the_rollout_temperature_are_fine():
    cfg = compose("verl_grpo", "actor_rollout_ref.rollout.name=vllm", "mars.anchor.do_sample=true",
                  "mars.anchor.top_p=0.9")
    check_verl_config(cfg)


# ------------------------------------------------------------------------------------------------ samples


def test_expected_num_images_values():
    from omegaconf import OmegaConf

    assert expected_num_images(OmegaConf.create({})) is None
    assert expected_num_images(OmegaConf.create({"expected_num_images": "any"})) is None
    assert expected_num_images(OmegaConf.create({"expected_num_images": 6})) == 6
    with pytest.raises(ValueError, match="positive integer"):
        expected_num_images(OmegaConf.create({"expected_num_images": 0}))


def test_image_count_check_reports_what_the_data_has():
    check_image_counts([2, 2, 2], 2, "train")
    check_image_counts([1, 6], None, "train")
    with pytest.raises(ValueError, match=r"expected_num_images=2 .* \(1 with 6\)"):
        check_image_counts([2, 6, 2], 2, "train.parquet")


def test_samples_from_a_verl_batch_keep_sources_and_row_fields():
    samples = samples_from_batch(collated_batch(), expected_images=2)
    assert [s.sources for s in samples] == [["visible", "infrared"]] * 2
    assert samples[1].ground_truth == "<answer>[[1, 0, 1, 1]]</answer>" and samples[1].index == 1
    assert samples[0].row["ability"] == "grounding"
    assert "raw_prompt" not in samples[0].row and "prompt" not in samples[0].row
    with pytest.raises(ValueError, match="expected_num_images=6"):
        samples_from_batch(collated_batch(), expected_images=6)
    # no source keys in the parts: extra_info.image_sources names them
    assert samples_from_batch(collated_batch(sources=False))[0].sources == ["visible", "infrared"]


def test_unnamed_sources_are_an_error_with_the_fix():
    batch = collated_batch(sources=False)
    for info in batch["extra_info"]:
        info.pop("image_sources")
    with pytest.raises(ValueError, match="mars data convert"):
        samples_from_batch(batch)


# ------------------------------------------------------------------------------------------------ requests


def test_generation_batch_is_one_request_with_greedy_anchor_rows(verl_cfg):
    samples = samples_from_batch(collated_batch())
    requests = build_requests(samples, "s1g0", 3, Sampling(True, 1.0, 0.9), AnchorSettings.from_config(verl_cfg),
                              with_anchors=True)
    batch = generation_batch(requests)
    n = len(requests)
    assert n == 2 * (3 + 2) and batch.batch is None
    nt = batch.non_tensor_batch
    assert all(v.shape == (n,) for v in nt.values())  # 1-D object arrays, even for lists of equal length
    assert nt[DO_SAMPLE_KEY].dtype == bool and list(nt[DO_SAMPLE_KEY]) == [not r.is_anchor for r in requests]
    assert list(nt["mars_is_anchor"]) == [r.is_anchor for r in requests]
    assert list(nt["uid"]) == ["s1g0p0"] * 5 + ["s1g0p1"] * 5
    assert "prompt" not in nt and nt["ability"][0] == "grounding"
    anchor = next(i for i, r in enumerate(requests) if r.is_anchor and r.source == "infrared")
    images = [p["image"] for p in nt["raw_prompt"][anchor][0]["content"] if p["type"] == "image"]
    assert images == ["/d/0_infrared.png"] * 2  # duplicate mode: the anchor's source in every slot


def test_generation_batch_refuses_rows_of_different_schemas():
    samples = samples_from_batch(collated_batch())
    other = type(samples[0])(**{**samples[0].__dict__, "row": {**samples[0].row, "extra_column": 1}})
    requests = [RolloutRequest(s.messages, f"g{i}", Sampling(), sample=s) for i, s in enumerate([samples[1], other])]
    with pytest.raises(ValueError, match="same columns"):
        generation_batch(requests)


def test_rows_returned_out_of_request_order_are_caught_by_their_prompt_tokens(verl_cfg):
    from mars.engines.verl.generation import check_prompts_follow_requests, join_request_fields

    samples = samples_from_batch(collated_batch())
    requests = build_requests(samples, "s1g0", 3, Sampling(True, 1.0, 0.9), AnchorSettings.from_config(verl_cfg),
                              with_anchors=True)
    generation = generation_batch(requests)
    # the agent loop's output: one prompt-token row per request (a stand-in tokenisation of its messages)
    tokens = {id(r.messages): 10 * (k + 1) for k, r in enumerate(requests)}
    prompts = torch.tensor([[0, tokens[id(r.messages)], 1] for r in requests])
    output = DataProto(batch=TensorDict({"prompts": prompts}, batch_size=(len(requests),)), non_tensor_batch={})
    check_prompts_follow_requests(requests, join_request_fields(output, generation))
    swapped = prompts.clone()
    swapped[[1, 6]] = prompts[[6, 1]]  # a rollout of p0 and one of p1 trade places; uids still joined in order
    output = DataProto(batch=TensorDict({"prompts": swapped}, batch_size=(len(requests),)), non_tensor_batch={})
    with pytest.raises(RuntimeError, match="out of request order"):
        check_prompts_follow_requests(requests, join_request_fields(output, generation))


# ------------------------------------------------------------------------------------------------ payload


def test_payload_selects_and_concatenates_rows():
    def part(offset, n):
        return VerlPayload(DataProto(
            batch=TensorDict({"responses": torch.arange(offset, offset + n).unsqueeze(1)}, batch_size=(n,)),
            non_tensor_batch={"uid": np.array([f"u{offset + i}" for i in range(n)], dtype=object)},
            meta_info={"reward_extra_keys": ["score"]},
        ))

    a, b = part(0, 4), part(10, 3)
    picked = a.select(np.array([3, 1]))
    assert picked.data.batch["responses"].squeeze(1).tolist() == [3, 1]
    assert list(picked.data.non_tensor_batch["uid"]) == ["u3", "u1"]
    assert len(a.select(np.array([], dtype=np.int64))) == 0
    joined = VerlPayload.concat([picked, b.select(np.array([2])), a.select(np.array([], dtype=np.int64))])
    assert list(joined.data.non_tensor_batch["uid"]) == ["u3", "u1", "u12"]
    assert joined.data.meta_info["reward_extra_keys"] == ["score"]


def test_mars_train_hands_trainer_engine_verl_to_the_verl_launcher(monkeypatch):
    import mars.engines.verl.launch as launch
    from mars.train_cli import main

    seen = []
    monkeypatch.setattr(launch, "run", lambda cfg, write=print: seen.append(cfg))
    assert main(["--config-name", "mars_trainer", "trainer.engine=verl", "actor_rollout_ref.rollout.n=3"]) == 0
    assert len(seen) == 1 and seen[0].trainer.engine == "verl" and seen[0].actor_rollout_ref.rollout.n == 3


WATCHDOG_SCRIPT = """
import subprocess, sys, time
import ray
from mars.engines.verl.launch import shutdown_ray

child = subprocess.Popen(["sleep", "60"])  # stands for the cluster's processes: this process's only child
hangs = sys.argv[1] == "hangs"
ray.shutdown = (lambda: child.wait(timeout=30)) if hangs else (lambda: None)
start = time.monotonic()
shutdown_ray(kill_after=0.5, write=print)
time.sleep(0.0 if hangs else 1.0)  # a shutdown that returned: the watchdog must not fire later either
print("child", "stopped" if child.poll() is not None else "running", round(time.monotonic() - start, 1))
child.kill()
"""


@pytest.mark.parametrize("case", ["hangs", "returns"])
def test_a_shutdown_that_hangs_is_ended_by_killing_the_clusters_processes(case):
    """Ctrl-C while a worker is still starting can leave ``ray.shutdown`` waiting: after the grace period the run
    stops the processes it started (here a stand-in child, in a process of its own) instead of hanging."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", WATCHDOG_SCRIPT, case], capture_output=True, text=True, timeout=120,
                          check=True)
    lines = done.stdout.splitlines()
    if case == "hangs":
        assert lines[0] == "Ray did not shut down within 0.5 s: stopping its 1 processes"
        assert lines[1].startswith("child stopped") and float(lines[1].split()[-1]) < 10
    else:
        assert len(lines) == 1 and lines[0].startswith("child running")


def test_the_driver_echoes_each_new_step_once_in_order_and_all_before_it_returns(tmp_path):
    """The step lines of a verl run are printed by the driver from metrics.jsonl as the task runner appends them:
    steps up to the resumed one are not repeated, a line still being written waits for its end, and the lines that
    arrive just before the run ends are printed before the block is left."""
    import json
    import time

    from mars.engines.verl.launch import echo_steps

    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "critic/score/mean": 0.5}) + "\n" for s in (0, 1)))
    shown = []
    with echo_steps(path, after=1, write=shown.append, every=0.01):
        with path.open("a") as f:
            f.write(json.dumps({"step": 2, "critic/score/mean": 0.25}) + "\n")
            f.flush()
            time.sleep(0.1)
            f.write('{"step": 3, "critic/sc')  # torn mid-write for a while
            f.flush()
            time.sleep(0.1)
            f.write('ore/mean": 1.0}\n' + json.dumps({"step": 4}) + "\n")
    assert shown == ["step 2: reward 0.250", "step 3: reward 1.000", "step 4: "]


def test_papo_masks_travel_with_their_rows_through_verls_update_batch():
    """Each row's masked pixel values in a micro-batch of verl's update (after its no-padding conversion and a
    reordering, as shuffling or dynamic batching make) are that row's own images under that row's mask: the same
    values the local engine masks (``mars.hf.perception.altered_prompts``)."""
    from verl.utils import tensordict_utils as tu
    from verl.workers.utils.padding import left_right_2_no_padding

    from mars.engines.verl.papo import PapoSetup, add_mask_fields, masked_pixel_values
    from mars.hf.perception import altered_prompts
    from mars.perception.views import AlteredView
    from mars.processing import PromptInputs

    merge, patch, dim = 2, 14, 6
    grids = [torch.tensor([[1, 4, 4], [1, 2, 4]]), torch.tensor([[1, 4, 2], [1, 2, 2]]), torch.tensor([[1, 2, 2], [1, 4, 4]])]
    pixels = [torch.randn(int(g.prod(-1).sum()), dim, generator=torch.Generator().manual_seed(i)) for i, g in enumerate(grids)]
    n = len(grids)
    ids = torch.ones(n, 8, dtype=torch.long)
    data = DataProto.from_dict(tensors={
        "prompts": ids[:, :4], "responses": ids[:, 4:], "input_ids": ids, "attention_mask": torch.ones_like(ids),
        "response_mask": torch.ones(n, 4, dtype=torch.long), "position_ids": torch.arange(8).expand(n, 8).clone()})
    data.non_tensor_batch["multi_modal_inputs"] = np.array(
        [{"pixel_values": p, "image_grid_thw": g} for p, g in zip(pixels, grids)], dtype=object)
    groups, sources = ["g0", "g1", "g1"], [["visible", "infrared"]] * n
    add_mask_fields(data, groups, sources, seed=5, step=7)
    td = left_right_2_no_padding(data.to_tensordict())
    view = AlteredView("patches", "patches", ratio=0.5, patch_pixels=28)
    geometry = (torch.full((dim,), -1.0), merge, patch)
    setup = PapoSetup(view, geometry, 0.02, 0.03, "token-mean")

    order = [2, 0, 1]
    got = masked_pixel_values(tu.index_select_tensor_dict(td, order), setup)  # verl's own row selection
    prompts = [PromptInputs(input_ids=ids[i:i + 1], attention_mask=ids[i:i + 1], mm_token_type_ids=ids[i:i + 1],
                            pixel_values=pixels[i],
                            image_grid_thw=grids[i]) for i in range(n)]
    expected = altered_prompts(prompts, sources, groups, view, geometry, seed=5, step=7)
    assert torch.equal(got, torch.cat([expected[i].pixel_values for i in order]))
    assert not torch.equal(got, torch.cat([pixels[i] for i in order]))  # something was masked
