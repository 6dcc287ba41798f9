"""The installed stack against the pins: versions from package metadata, never by importing the packages (a
broken or slow import must not hide the others, and torch alone takes seconds).

The pins are the installed ``mars-rl`` distribution's requirements, or this checkout's ``pyproject.toml`` when
``mars-rl`` is not installed or is an editable install of another folder; a package MARS does not pin itself is
looked up in the requirements of what MARS pins (``ray`` and ``vllm`` come with ``verl`` and its extras).
"""

from __future__ import annotations

import importlib.util
import json
import platform
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mars.doctor.report import Check

DIST = "mars-rl"


@dataclass(frozen=True)
class Piece:
    dist: str
    needed_for: str
    optional: bool = False
    extra: str | None = None  # the extra that installs it, when no requirement names one


PIECES = (
    Piece("torch", "training and inference"),
    Piece("torchvision", "the Qwen-VL image processors"),
    Piece("transformers", "the models, both engines"),
    Piece("verl", "the policy loss, estimators and reward loader of both engines; the verl engine"),
    Piece("ray", "the verl engine (verl imports it)"),
    Piece("hydra-core", "the config (mars train)"),
    Piece("qwen-vl-utils", "verl's dataset and agent loop (trainer.engine=verl)"),
    Piece("peft", "LoRA (actor_rollout_ref.model.lora_rank)"),
    Piece("vllm", "rollouts on GPU (actor_rollout_ref.rollout.name=vllm) and fast inference", True, "vllm"),
    Piece("sglang", "rollouts on GPU with SGLang (actor_rollout_ref.rollout.name=sglang)", True, "sglang"),
    Piece("flash-attn", "flash-attention and remove-padding on GPU (the launch scripts' use_remove_padding=True)",
          True, "flash-attn"),
)


@dataclass(frozen=True)
class Pin:
    spec: str          # "==5.9.0", ">=2.41.0", "" for any version
    extra: str | None  # the mars-rl extra that brings it; None: the base install
    via: str           # whose requirement it is: mars-rl or verl


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, from its metadata (the tests replace this)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def dist_requires(dist: str) -> list[str] | None:
    try:
        return metadata.requires(dist) or []
    except metadata.PackageNotFoundError:
        return None


def editable_location(dist: str) -> Path | None:
    """The folder an editable install points to (PEP 610 ``direct_url.json``), else None."""
    try:
        text = metadata.distribution(dist).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    info = json.loads(text) if text else {}
    url = info.get("url", "")
    if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return Path(url[len("file://"):])
    return None


def pyproject_requirements(root: Path) -> tuple[list[str], str | None] | None:
    """``pyproject.toml``'s dependencies as requirement strings (extras as markers) and its requires-python."""
    path = root / "pyproject.toml"
    if not path.exists():
        return None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            return None
    project = tomllib.loads(path.read_text()).get("project", {})
    reqs = list(project.get("dependencies", []))
    for extra, items in project.get("optional-dependencies", {}).items():
        reqs += [f'{item}; extra == "{extra}"' for item in items]
    return reqs, project.get("requires-python")


def mars_requirements(root: Path | None) -> tuple[list[str], str | None, str]:
    """MARS's requirement strings, its requires-python, and where they were read."""
    installed = dist_requires(DIST)
    editable = editable_location(DIST)
    same_checkout = editable is None or root is None or editable.resolve() == root.resolve()
    if installed is not None and same_checkout:
        return installed, metadata.metadata(DIST).get("Requires-Python"), f"the installed {DIST}"
    from_file = pyproject_requirements(root) if root is not None else None
    if from_file is not None:
        return from_file[0], from_file[1], str(root / "pyproject.toml")
    if installed is not None:
        return installed, metadata.metadata(DIST).get("Requires-Python"), f"the installed {DIST}"
    return [], None, "nowhere (mars-rl is not installed and pyproject.toml was not found)"


def _parse(req: str) -> tuple[Requirement, str | None] | None:
    """A requirement and the extra its marker names (``; extra == "vllm"``), or None if it does not parse."""
    try:
        parsed = Requirement(req)
    except InvalidRequirement:
        return None
    match = re.search(r"""extra\s*==\s*["']([^"']+)["']""", str(parsed.marker or ""))
    return parsed, match.group(1) if match else None


def find_pin(dist: str, mars_reqs: Iterable[str], requires: Callable[[str], list[str] | None] | None = None
             ) -> Pin | None:
    """What MARS expects of ``dist``: its own requirement (base first, then extras), else a requirement of a
    package it requires, counting that package's extras that MARS asks for (``verl[vllm]`` -> vllm==0.24.0)."""
    requires = requires or dist_requires
    want = canonicalize_name(dist)
    parsed = sorted(filter(None, map(_parse, mars_reqs)), key=lambda p: p[1] is not None)
    for req, extra in parsed:
        if canonicalize_name(req.name) == want:
            return Pin(str(req.specifier), extra, DIST)
    for req, extra in parsed:
        if canonicalize_name(req.name) == canonicalize_name(DIST):
            continue  # mars-rl[gpu] names mars-rl's own extras, already searched
        subs = sorted(filter(None, map(_parse, requires(req.name) or [])), key=lambda p: p[1] is not None)
        for sub, sub_extra in subs:
            if canonicalize_name(sub.name) == want and (sub_extra is None or sub_extra in req.extras):
                return Pin(str(sub.specifier), extra, req.name)
    return None


def satisfies(version: str, spec: str) -> bool:
    """PEP 440: a local build tag (2.11.0+cu130) satisfies ==2.11.0."""
    try:
        return SpecifierSet(spec).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def install_command(extra: str | None) -> str:
    return f'pip install -e ".[{extra}]"' if extra else "pip install -e ."


def torch_cuda_build() -> str | None:
    """torch's CUDA build ("13.0"), read from torch/version.py without importing torch; None for a CPU build."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    match = re.search(r"^cuda\s*(?::[^=]*)?=\s*'([^']+)'", version_file.read_text(), re.MULTILINE) \
        if version_file.exists() else None
    return match.group(1) if match else None


def check_piece(piece: Piece, mars_reqs: list[str]) -> Check:
    """One package: installed or not, and its version against the pin; a mismatch names the install that fixes it."""
    pin = find_pin(piece.dist, mars_reqs)
    extra = pin.extra if pin else piece.extra
    found = installed_version(piece.dist)
    expected = "any version"
    if pin and pin.spec:
        expected = f"{pin.spec} ({pin.via}" + (f", extra [{extra}])" if extra else ")")
    if found is None:
        if piece.optional:
            return Check(piece.dist, "skip", f"not installed: needed for {piece.needed_for}; "
                         f"{install_command(extra)} installs {expected}")
        return Check(piece.dist, "fail", f"not installed; expected {expected}, needed for {piece.needed_for}",
                     fix=install_command(extra))
    shown = found
    if piece.dist == "torch":
        cuda = torch_cuda_build()
        shown += f" (CUDA {cuda} build)" if cuda else " (CPU build)"
    if pin and pin.spec and not satisfies(found, pin.spec):
        return Check(piece.dist, "fail", f"{shown} installed, expected {expected}", fix=install_command(extra))
    return Check(piece.dist, "pass", f"{shown}, expected {expected}")


def check_python(requires_python: str | None) -> Check:
    found = platform.python_version()
    if requires_python and not satisfies(found, requires_python):
        return Check("python", "fail", f"{found}, {DIST} requires {requires_python}",
                     fix=f"a Python {requires_python} environment")
    return Check("python", "pass", f"{found} ({platform.python_implementation()}), requires {requires_python or '?'}")


def check_mars(root: Path | None, source: str) -> Check:
    """Which MARS runs, and whether it is the installed one: the verl plugin entry point (the ``mars`` estimator in
    Ray workers) and the ``mars`` command come from the installed distribution."""
    installed = installed_version(DIST)
    running = f"mars from {root}" if root else "mars"
    if installed is None:
        return Check("mars", "warn", f"{running}; {DIST} is not installed (no mars command, no verl plugin entry "
                     f"point); pins read from {source}", fix="pip install -e . (in the repository)")
    editable = editable_location(DIST)
    if editable is not None and root is not None and editable.resolve() != root.resolve():
        return Check("mars", "warn", f"{running}, but the installed {DIST} {installed} is an editable install of "
                     f"{editable}; pins read from {source}", fix=f"pip install -e . (in {root})")
    return Check("mars", "pass", f"{running}, {DIST} {installed}; pins read from {source}")


def stack_checks(root: Path | None) -> list[Check]:
    """Python, MARS itself and every package of ``PIECES``."""
    reqs, requires_python, source = mars_requirements(root)
    return [check_python(requires_python), check_mars(root, source)] + [check_piece(p, reqs) for p in PIECES]
