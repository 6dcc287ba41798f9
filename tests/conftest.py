import os

# Nothing in the tests may reach a model hub: fail fast instead of waiting on a network that CI does not have.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from hypothesis import HealthCheck, settings

# Shared CI machines are noisy: no per-example deadline, a bounded number of examples.
settings.register_profile(
    "mars", deadline=None, max_examples=int(os.environ.get("MARS_HYPOTHESIS_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("mars")


# --- small artefacts built once per test session (never downloaded) ---------------------------------------------
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a shared 2-core CI machine a second busy thread
    makes torch's thread pool oversubscribe (measured: 10x slower); restored at the end of the session."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-init tiny Qwen2.5-VL with its locally trained tokenizer and processor."""
    from mars.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny_qwen2_5_vl", seed=0)


@pytest.fixture(scope="session")
def ir_data_dir(tmp_path_factory):
    """40 synthetic visible+infrared grounding samples (train/val/test parquet + PNGs)."""
    from mars.data.synth.build import synthesize

    out = tmp_path_factory.mktemp("data") / "ir_grounding"
    synthesize("ir_grounding", str(out), 40, seed=0, val_frac=0.2, test_frac=0.1)
    return out
