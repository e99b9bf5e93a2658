"""Shared model fixtures: one tiny *trained* Genie per test session.

    from fixtures_models import tiny_model_dir, synthetic_store_dir   # noqa: F401  (pytest fixtures)

(each fixture depends only on pytest's built-in fixtures, so importing the ones a
test uses is enough)

    def test_something(tiny_model_dir):
        genie = Genie.from_pretrained(tiny_model_dir)

``tiny_model_dir`` trains a micro model (the ``tiny`` preset shrunk further: 8x8
patches = 64 tokens per frame, one-layer transformers, 4 latent actions, 4 MaskGIT
steps) on the synthetic moving-square store (:func:`synthetic_store_dir`, whose 4
ground-truth actions are left/right/up/down), ``TINY_STEPS`` optimizer steps for
the tokenizer and as many for LAM + dynamics, through the real ``genie train`` CLI.

Caching: the trained model is kept in pytest's cache folder
(``.pytest_cache/d/genieworld-tiny-model/<key>``), keyed by a hash of the model,
training and sampling sources and of this recipe, and reused by later sessions
until one of those files changes (``pytest --cache-clear`` or
``GENIEWORLD_TEST_RETRAIN=1`` forces a retrain).  ``GENIEWORLD_TINY_MODEL=DIR``
uses an existing model directory instead.  ``tiny_model_dir`` is a copy outside
the cache shared by the whole session: copy it again (``shutil.copytree``) before
writing into it (e.g. ``actions.json``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

TINY_STEPS = 30
SYNTHETIC_KW = dict(episodes=8, length=32, size=64, num_actions=4, seed=0)
_SRC = Path(__file__).resolve().parents[1] / "src" / "genieworld"
_KEY_FILES = ["config.py", "tokenizer.py", "lam.py", "dynamics.py", "genie.py", "sampling.py", "nn", "train",
              "commands/train.py", "data/synthetic.py"]


def micro_preset_dict() -> dict:
    """The ``tiny`` preset shrunk for tests (module docstring)."""
    from genieworld.config import load_preset

    d = dataclasses.asdict(load_preset("tiny"))
    d["name"] = "test-micro"
    small = dict(num_layers=1, d_model=32, num_heads=2, head_dim=16)
    tok, lam, dyn = d["tokenizer"], d["lam"], d["dynamics"]
    tok["patch_size"] = 8
    tok["max_frames"] = 8
    tok["encoder"].update(small)
    tok["decoder"].update(small)
    tok["vq"].update(num_codes=64, dead_code_steps=5)
    lam["max_frames"] = 8
    lam["encoder"].update(small)
    lam["decoder"].update(small)
    lam["vq"].update(num_codes=4, dead_code_steps=5)
    dyn.update(num_codes=64, tokens_per_frame=(tok["image_size"] // 8) ** 2, action_dim=lam["vq"]["code_dim"],
               max_frames=8)
    dyn["transformer"].update(small)
    d["sampling"].update(maskgit_steps=4, context_frames=8)
    for sec in ("tokenizer_train", "dynamics_train"):
        d[sec].update(batch_size=4, seq_len=8, warmup_steps=5, checkpoint_every=1000, num_workers=0)
    return d


def _cache_key() -> str:
    h = hashlib.sha256(json.dumps([micro_preset_dict(), SYNTHETIC_KW, TINY_STEPS], sort_keys=True).encode())
    for name in _KEY_FILES:
        p = _SRC / name
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            if f.exists():
                h.update(str(f.relative_to(_SRC)).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Run a block with ``n`` torch threads, then restore the previous count.

    Small models on a shared 2-core machine run many times faster on one thread: two
    OpenMP threads competing with other processes spin and wait for each other (a micro
    model's frame: 8 ms on one thread, 1.4 s on two under load).
    """
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture
def one_torch_thread():
    with torch_threads(1):
        yield


def build_tiny_model(workdir: Path, data_dir: Path, steps: int = TINY_STEPS) -> Path:
    """Train the micro model on ``data_dir`` inside ``workdir``; returns the model directory."""
    from genieworld.cli import main

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    preset = workdir / "micro-preset.json"
    preset.write_text(json.dumps(micro_preset_dict(), indent=2))
    common = ["--data", str(data_dir), "--preset", str(preset), "--steps", str(steps), "--no-progress",
              "--num-workers", "0"]
    with torch_threads(1):
        rc = main(["train", "tokenizer", "--out", str(workdir / "tok"), *common])
        assert rc == 0, "tokenizer training failed"
        rc = main(["train", "dynamics", "--tokenizer", str(workdir / "tok"), "--out", str(workdir / "world"),
                   *common])
        assert rc == 0, "dynamics training failed"
    model = workdir / "world" / "model"
    assert (model / "genie.json").is_file(), f"no model written to {model}"
    return model


# Each test module that imports these fixtures gets its own copy of the definitions (and so
# its own "session" instance); this memo makes them share one build per pytest session.
_MEMO: dict[tuple[str, str], Path] = {}


def _memo(name: str, tmp_path_factory, build) -> Path:
    key = (name, str(tmp_path_factory.getbasetemp()))
    if key not in _MEMO:
        _MEMO[key] = build()
    return _MEMO[key]


def _synthetic(tmp_path_factory) -> Path:
    from genieworld.data.synthetic import make_synthetic_store

    def build():
        path = tmp_path_factory.mktemp("synthetic") / "store"
        make_synthetic_store(path, **SYNTHETIC_KW)
        return path

    return _memo("synthetic", tmp_path_factory, build)


def load_script(relpath: str):
    """Import one of the repository's scripts (``bench/bench_grid.py``, ``scripts/...``) as a module; a
    script's own folder goes on sys.path first, for its sibling imports (``bench/common.py``)."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / relpath
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synthetic_store_dir(tmp_path_factory) -> Path:
    """A synthetic moving-square store with ground-truth actions (0 left, 1 right, 2 up, 3 down)."""
    return _synthetic(tmp_path_factory)


def _tiny_cached(request, tmp_path_factory) -> Path:
    return _memo("tiny-cached", tmp_path_factory,
                 lambda: _build_or_load_tiny(request, tmp_path_factory, _synthetic(tmp_path_factory)))


def _build_or_load_tiny(request, tmp_path_factory, synthetic_store_dir) -> Path:
    env = os.environ.get("GENIEWORLD_TINY_MODEL")
    if env:
        return Path(env)
    cache_root = None
    try:
        cache_root = Path(request.config.cache.mkdir("genieworld-tiny-model"))
    except Exception:  # cache provider disabled (-p no:cacheprovider)
        pass
    key = _cache_key()
    if cache_root is not None and not os.environ.get("GENIEWORLD_TEST_RETRAIN"):
        cached = cache_root / key / "model"
        if (cached / "genie.json").is_file():
            return cached
    work = tmp_path_factory.mktemp("tiny-train")
    model = build_tiny_model(work, synthetic_store_dir)
    if cache_root is None:
        return model
    dest = cache_root / key
    tmp = cache_root / f".{key}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model, tmp / "model")
    for old in cache_root.iterdir():  # one cached model at a time
        if old.name != tmp.name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, dest)
    return dest / "model"


@pytest.fixture(scope="session")
def _tiny_model_cached(request, tmp_path_factory) -> Path:
    """The cached model itself (read-only). Kept for modules that import it; not needed by tiny_model_dir."""
    return _tiny_cached(request, tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model_dir(request, tmp_path_factory) -> Path:
    """The tiny trained model directory (a session-wide copy: copy it again before writing into it)."""
    def build():
        dest = tmp_path_factory.mktemp("tiny-model") / "model"
        shutil.copytree(_tiny_cached(request, tmp_path_factory), dest)
        return dest

    return _memo("tiny", tmp_path_factory, build)


def build_untrained_model(path: Path, seed: int = 0) -> Path:
    """The micro architecture with random weights, saved as a model directory (about a second).

    Its frames are noise, but every latent action changes them (random action
    embeddings), so it is the model for tests of the action plumbing (a briefly
    trained model may still ignore its actions).
    """
    import torch

    from genieworld.config import Preset, from_dict
    from genieworld.dynamics import DynamicsModel
    from genieworld.genie import Genie
    from genieworld.lam import LatentActionModel
    from genieworld.tokenizer import VideoTokenizer

    p = from_dict(Preset, micro_preset_dict())
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        genie = Genie(VideoTokenizer(p.tokenizer), LatentActionModel(p.lam), DynamicsModel(p.dynamics), p.sampling)
    finally:
        torch.random.set_rng_state(state)
    genie.save_pretrained(path)
    return Path(path)


@pytest.fixture(scope="session")
def untrained_model_dir(tmp_path_factory) -> Path:
    """A random-weight micro model directory (see :func:`build_untrained_model`)."""
    return _memo("untrained", tmp_path_factory,
                 lambda: build_untrained_model(tmp_path_factory.mktemp("untrained") / "model"))
