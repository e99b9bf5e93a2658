"""Shared helpers for the bench/ scripts: device description, timing, matmul peak, analytic FLOPs,
JSON output, prompt sampling, ``--set lam.KEY=VALUE`` overrides, camera-motion labels, ground-truth-action worlds.

Every bench script prints one JSON object per measurement (or one summary object) on
stdout; ``bench/run_all.py`` collects them into ``bench/results/<device>-<date>.json``.
Each object carries ``device`` (see :func:`device_info`) so results from a CPU laptop
and an H100 are never confused.

Model FLOPs (the MFU convention, used by bench_train.py)
--------------------------------------------------------
Counted analytically from the config, matmuls only (norms, softmax, GELU, RoPE, the
straight-through and loss arithmetic are ignored; they are O(tokens * d) and below 2%
here).  A matmul of an (M, K) by (K, N) matrix is ``2*M*K*N`` FLOPs.  Per ST block with
``M = B*T*S`` tokens, width ``D``, attention width ``I = heads*head_dim`` and FFN width
``F = int(D*ffn_mult)``::

    linears   = 2*M*(4*D*I) * 2      (qkv + out projection; spatial and temporal layers)
              + 2*M*(2*D*F)          (FFN up + down)
    attention = 4*B*T*S*S*I          (spatial: QK^T and AV over the S tokens of each frame)
              + 4*B*S*T*T*I          (temporal: full T x T even though it is causal, as
                                      torch's FlopCounterMode and the PaLM MFU formula do)

A training step costs 3x the forward (backward = 2x: grad wrt inputs + grad wrt weights)
except where autograd skips work: the first linear of a stack whose input is pixels
(no input grad: 2x) and the VQ nearest-code search (computed on detached latents: 1x).
Activation checkpointing recomputes the forward; that is *not* counted (model FLOPs,
not hardware FLOPs).  :func:`flop_counter` cross-checks the formula with
``torch.utils.flop_counter.FlopCounterMode`` on one real step; torch 2.13 has no formula
for the CPU flash-attention kernel (``_scaled_dot_product_flash_attention_for_cpu``), so
one is registered here with the same convention as the CUDA kernels.  That convention
counts 5 attention matmuls in backward (flash attention recomputes QK^T), so the counter
reads attention at 3.5x forward where the model-FLOP formula uses 3x;
:func:`with_flash_recompute` gives the analytic number in the counter's convention, and
bench_train.py reports both ratios (the linear layers match exactly).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


# ----------------------------------------------------------------------------- device
def pick_device(name: str | None = None) -> torch.device:
    if name and name != "auto":
        return torch.device(name)
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def device_info(device: torch.device | str | None = None) -> dict:
    """What ran the benchmark: device kind/name, threads, versions, load average when it was taken."""
    device = pick_device(str(device) if device is not None else None)
    info = {
        "type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg": load_average(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS") if k in os.environ},
    }
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        info.update(name=props.name, cuda=torch.version.cuda, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}")
    else:
        info["name"] = f"{info['cpu']} ({info['cpu_count']} cpus)"
        from genieworld.utils import bf16_supported
        # one AMD EPYC machine has avx512_bf16, the next avx2 only: compare bf16 timings only between equals
        info["native_bf16"] = bf16_supported("cpu")
    return info


def device_tag(device: torch.device | str | None = None) -> str:
    """A short file-name-safe tag: ``cpu-2c-amd-epyc`` or ``cuda-nvidia-h100-80gb-hbm3``."""
    info = device_info(device)
    if info["type"] == "cuda":
        base = "cuda-" + info["name"]
    else:
        base = f"cpu-{info['cpu_count']}c-{info['cpu']}"
    return re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:60]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- timing
def time_fn(fn: Callable[[], object], device: torch.device, warmup: int = 1, repeat: int = 3,
            min_seconds: float = 0.0) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then at least ``repeat`` times (and ``min_seconds``).

    Returns seconds per call: median, min, and every sample.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    t_start = time.perf_counter()
    while len(samples) < repeat or time.perf_counter() - t_start < min_seconds:
        t0 = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - t0)
    s = sorted(samples)
    return {"median_s": s[len(s) // 2], "min_s": s[0], "samples_s": [round(x, 5) for x in samples]}


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, sizes=(2048, 4096, 8192),
                repeats: int = 5) -> dict:
    """Best achieved GFLOP/s of square matmuls (same thread count as the caller): the 'peak' we compare to."""
    best = {}
    for n in sizes:
        if device.type == "cpu" and n > 4096:
            continue
        g = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(n, n, generator=g).to(device, dtype)
        b = torch.randn(n, n, generator=g).to(device, dtype)
        c = torch.empty(n, n, device=device, dtype=dtype)
        torch.matmul(a, b, out=c)  # warm-up
        sync(device)
        inner = 1 if device.type == "cpu" else 20
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                torch.matmul(a, b, out=c)
            sync(device)
            times.append((time.perf_counter() - t0) / inner)
        best[str(n)] = round(2 * n**3 / min(times) / 1e9, 1)
        del a, b, c
    return {"dtype": str(dtype).replace("torch.", ""), "gflops_by_size": best,
            "gflops": max(best.values()) if best else None}


# ----------------------------------------------------------------------------- analytic FLOPs
def st_stack_flops(cfg, batch: int, frames: int, spatial: int) -> dict:
    """Forward FLOPs of one STTransformer stack (config ``cfg``) on (batch, frames, spatial, d) inputs."""
    d, i, f = cfg.d_model, cfg.num_heads * cfg.head_dim, int(cfg.d_model * cfg.ffn_mult)
    m = batch * frames * spatial
    lin = cfg.num_layers * (2 * m * 4 * d * i * 2 + 2 * m * 2 * d * f)
    attn_s = cfg.num_layers * 4 * batch * frames * spatial * spatial * i
    attn_t = cfg.num_layers * 4 * batch * spatial * frames * frames * i
    return {"linear": lin, "attn_spatial": attn_s, "attn_temporal": attn_t}


def _acc(total: dict, part: dict, mult: int) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v * mult


def tokenizer_train_flops(cfg, batch: int, frames: int) -> dict:
    """Model FLOPs of one tokenizer training step (see the module docstring for the multipliers)."""
    n = cfg.tokens_per_frame
    m = batch * frames * n
    pd = cfg.patch_size**2 * cfg.channels
    de, dd, c, k = cfg.encoder.d_model, cfg.decoder.d_model, cfg.vq.code_dim, cfg.vq.num_codes
    fwd, step = {}, {}
    enc = st_stack_flops(cfg.encoder, batch, frames, n)
    dec = st_stack_flops(cfg.decoder, batch, frames, n)
    io = {"io_linear": 2 * m * (de * c + c * dd + dd * pd)}
    first = {"io_linear": 2 * m * pd * de}
    vq = {"vq_search": 2 * m * c * k}
    for part, mult in ((enc, 3), (dec, 3), (io, 3), (first, 2), (vq, 1)):
        _acc(fwd, part, 1)
        _acc(step, part, mult)
    return _summary(fwd, step, tokens=m, frames=batch * frames)


def lam_train_flops(cfg, batch: int, frames: int) -> dict:
    """Model FLOPs of one LAM training step (genieworld.lam.LatentActionModel.forward + backward)."""
    n = (cfg.image_size // cfg.patch_size) ** 2
    pd = cfg.patch_size**2 * cfg.channels
    de, dd, c, k = cfg.encoder.d_model, cfg.decoder.d_model, cfg.vq.code_dim, cfg.vq.num_codes
    b, t = batch, frames
    fwd, step = {}, {}
    enc = st_stack_flops(cfg.encoder, b, t, n + 1)  # + one action-query token per frame
    dec = st_stack_flops(cfg.decoder, b, t - 1, n)
    parts = [
        (enc, 3), (dec, 3),
        ({"io_linear": 2 * b * t * n * pd * de}, 2),  # enc_in on pixels
        ({"io_linear": 2 * b * (t - 1) * n * pd * dd}, 2),  # dec_in on pixels
        ({"io_linear": 2 * b * (t - 1) * (de * c + c * dd) + 2 * b * (t - 1) * n * dd * pd}, 3),
        ({"vq_search": 2 * b * (t - 1) * c * k}, 1),
    ]
    for part, mult in parts:
        _acc(fwd, part, 1)
        _acc(step, part, mult)
    return _summary(fwd, step, tokens=b * t * (n + 1) + b * (t - 1) * n, frames=b * t)


def dynamics_model_train_flops(cfg, batch: int, frames: int) -> dict:
    """Model FLOPs of one DynamicsModel.loss step (transformer + output head; embeddings are lookups)."""
    n = cfg.tokens_per_frame
    s = n + (1 if cfg.action_injection == "prepend" else 0)
    d = cfg.transformer.d_model
    b, t = batch, frames
    fwd, step = {}, {}
    parts = [
        (st_stack_flops(cfg.transformer, b, t, s), 3),
        ({"io_linear": 2 * b * (t - 1) * cfg.action_dim * d}, 2),  # action_proj on detached actions
        ({"head": 2 * b * t * n * d * cfg.num_codes}, 3),
    ]
    for part, mult in parts:
        _acc(fwd, part, 1)
        _acc(step, part, mult)
    return _summary(fwd, step, tokens=b * t * s, frames=b * t)


def tokenizer_encode_flops(cfg, batch: int, frames: int) -> dict:
    """Forward-only FLOPs of VideoTokenizer.encode (used inside the dynamics step, no grad)."""
    n = cfg.tokens_per_frame
    m = batch * frames * n
    pd = cfg.patch_size**2 * cfg.channels
    f = {}
    _acc(f, st_stack_flops(cfg.encoder, batch, frames, n), 1)
    _acc(f, {"io_linear": 2 * m * (pd * cfg.encoder.d_model + cfg.encoder.d_model * cfg.vq.code_dim)}, 1)
    _acc(f, {"vq_search": 2 * m * cfg.vq.code_dim * cfg.vq.num_codes}, 1)
    return _summary(f, dict(f), tokens=m, frames=batch * frames, backward=False)


def with_flash_recompute(flops: dict) -> float:
    """The train-step FLOPs as FlopCounterMode counts them: its flash-attention backward formula
    includes recomputing QK^T (5 attention matmuls instead of 4), i.e. attention that is
    back-propagated counts 3.5x forward instead of 3x."""
    return flops["train_step"] + flops.get("flash_recompute", 0)


def combine_flops(*parts: dict) -> dict:
    fwd, step = {}, {}
    tokens = frames = 0
    for p in parts:
        _acc(fwd, p["forward_by_part"], 1)
        _acc(step, p["train_step_by_part"], 1)
        tokens += p["tokens"]
        frames = max(frames, p["frames"])
    out = _summary(fwd, step, tokens=tokens, frames=frames)
    out["flash_recompute"] = sum(p["flash_recompute"] for p in parts)
    return out


def _summary(fwd: dict, step: dict, tokens: int, frames: int, backward: bool = True) -> dict:
    attn = sum(v for k, v in fwd.items() if k.startswith("attn"))
    return {"forward": sum(fwd.values()), "train_step": sum(step.values()), "forward_by_part": fwd,
            "train_step_by_part": step, "tokens": tokens, "frames": frames,
            "flash_recompute": 0.5 * attn if backward else 0}


# ----------------------------------------------------------------------------- FlopCounterMode
def _cpu_flash_mapping() -> dict:
    """FlopCounterMode formulas for the CPU flash-attention ops (missing in torch's own table)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten
    mapping = {}
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None:
        def f_fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
            return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

        mapping[fwd] = f_fwd
    if bwd is not None:
        def f_bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
            return fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

        mapping[bwd] = f_bwd
    return mapping


def flop_counter():
    """A ``FlopCounterMode`` (display off) that also counts CPU flash attention."""
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping=_cpu_flash_mapping())


# ----------------------------------------------------------------------------- output
def emit(obj: dict) -> None:
    """Print one JSON object on one line (what run_all.py collects)."""
    print(json.dumps(obj, default=str), flush=True)


def emit_json(obj: dict, out: str | None = None, indent: int | None = None) -> None:
    """Print one JSON result (``indent`` as ``json.dumps``) and, with ``out``, write it to that file too."""
    text = json.dumps(obj, indent=indent)
    print(text)
    if out:
        Path(out).write_text(text + "\n")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_rev() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@contextlib.contextmanager
def maybe_autocast(device: torch.device, precision: str):
    use = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def resolve_precision(device: torch.device, precision: str) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def random_prompts(store, n: int, seed, salt: int):
    """``n`` real frames (n, H, W, 3) of ``store``: random episodes (with replacement only when it holds fewer
    than ``n``) and a random frame of each, drawn from ``default_rng([seed, salt])`` (each bench its own salt)."""
    import numpy as np

    rng = np.random.default_rng([seed, salt])
    lengths = store.episode_lengths
    eps = rng.choice(len(lengths), size=n, replace=len(lengths) < n)
    return np.stack([store.read_frames(int(e), s, s + 1)[0]
                     for e in eps for s in [int(rng.integers(0, max(1, lengths[e] - 1)))]])


# ----------------------------------------------------------------------------- LAM settings and labels
def parse_assignment(item: str) -> tuple[str, object] | None:
    """``KEY=VALUE`` -> (KEY, VALUE parsed as JSON, else the string); None without an ``=``."""
    key, sep, value = item.partition("=")
    if not sep:
        return None
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_sets(items: list[str]) -> dict:
    """``lam.KEY=VALUE`` (VALUE as JSON, else a string) -> {KEY: VALUE}; ``lam.vq.KEY`` for the quantiser."""
    out: dict = {}
    for item in items:
        kv = parse_assignment(item)
        if kv is None or not kv[0].startswith("lam."):
            raise SystemExit(f"--set {item!r}: expected lam.KEY=VALUE (e.g. lam.residual_decoder=false)")
        out[kv[0][4:]] = kv[1]
    return out


def apply_sets(cfg, sets: dict):
    """Apply ``{KEY: VALUE}`` to a LAMConfig; ``SECTION.KEY`` reaches a nested section (``vq``, ``conv``)."""
    from dataclasses import replace

    top, nested = {}, {}
    for k, v in sets.items():
        section, dot, key = k.partition(".")
        if dot:
            nested.setdefault(section, {})[key] = v
        else:
            top[k] = v
    unknown = [k for k in top if not hasattr(cfg, k)]
    unknown += [f"{s}.{k}" for s, kv in nested.items() for k in kv
                if not hasattr(getattr(cfg, s, None), k) or not hasattr(getattr(cfg, s), "__dataclass_fields__")]
    if unknown:
        raise SystemExit(f"--set: unknown LAM setting(s) {unknown}")
    for s, kv in nested.items():
        top[s] = replace(getattr(cfg, s), **kv)
    return replace(cfg, **top)


def camera_moves(frames_thwc, max_dx: int, max_dy: int):
    """(T-1, 2): direction (-1, 0, +1) in which the picture moved from frame t to t+1, horizontally
    (+ = right) and vertically (+ = down), from the whole-pixel shift that best maps one onto the other
    (:func:`genieworld.eval.motion.frame_shifts`, which gives the view's motion: the picture's is its opposite)."""
    import numpy as np

    from genieworld.eval.motion import frame_shifts

    shift, _ = frame_shifts(frames_thwc[:-1], frames_thwc[1:], max_dx, max_dy)
    return -np.sign(shift).astype(np.int64)


# ----------------------------------------------------------------------------- ground-truth-action worlds
def true_action_world(genie, directory: Path):
    """``genie`` with its dynamics replaced by a ground-truth-action one (the recorded effective actions
    as fixed vectors, ``true_action_table.safetensors``): enough of a Genie for ``rollout``."""
    import types

    from safetensors.torch import load_file

    from genieworld.config import DynamicsConfig
    from genieworld.data.coinrun import EFFECTIVE_NAMES
    from genieworld.dynamics import DynamicsModel
    from genieworld.genie import load_component

    dyn = load_component(DynamicsModel, DynamicsConfig, directory).eval()
    table = load_file(str(directory / "true_action_table.safetensors"))["true_action_table"]
    if table.shape[0] != len(EFFECTIVE_NAMES):
        raise SystemExit(f"{directory}: expected {len(EFFECTIVE_NAMES)} true actions, found {table.shape[0]}")
    genie.dynamics = dyn
    genie._modules.pop("lam", None)  # a stand-in LAM: the recorded actions' vectors (one prompt frame, no inference)
    object.__setattr__(genie, "lam", types.SimpleNamespace(num_actions=len(table),
                                                           action_vectors=lambda ids: table.to(ids.device)[ids]))
    return genie
