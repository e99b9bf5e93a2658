"""Peak memory of one training step (forward + backward) as the number of frames T grows:
ST-transformer (spatial attention over S tokens + causal temporal attention over T frames)
vs a full space-time attention baseline with the same parameters; prints JSON.

    python bench/bench_memory.py                                   # T = 4, 8, 16, 32 on the cpu preset shape
    python bench/bench_memory.py --frames 4,8,16,32,64 --device cuda
    python bench/bench_memory.py --baseline-backend math           # materialised attention matrix

The baseline ("full") uses the very same blocks and weights (two attention layers and one
FFW per block) but each attention layer attends over all T*S tokens of the clip with a
block-causal mask (a token of frame i sees every token of frames <= i), i.e. what a
Genie without the ST factorisation would do.  Both are timed/measured on the same random
(B, T, S, D) input with a sum-of-outputs loss.

How memory is measured (one fresh subprocess per point, so nothing is cached from
another point):

* CUDA: ``torch.cuda.max_memory_allocated`` during the step minus the memory allocated
  before it (model, input): the step's activation + gradient + workspace peak.
* CPU: there is no allocator peak counter for CPU tensors in torch, so the child reads its
  resident set size (``/proc/self/status`` VmRSS) after building the model and input, runs
  one step, and reads the high-water mark (``VmHWM``, the kernel's peak RSS of the
  process).  ``peak_step_mib = VmHWM_after - VmRSS_before``.  Large tensors are mmap'd by
  glibc and returned on free, so this follows the tensor peak closely; it also includes
  allocator slack and oneDNN scratch, i.e. what the machine actually had to provide.  The
  import/start-up peak is below the step peak for every point reported (checked:
  ``hwm_before_mib`` <= ``rss_before_mib`` + a few MiB is recorded in each point).

``growth_exponent`` between consecutive T is log(mem2/mem1)/log(T2/T1): ~1 is linear,
~2 is quadratic.  Points whose attention matrices alone would exceed ``--max-gib`` are
skipped (recorded with the estimate) instead of swapping the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import emit  # noqa: E402


# ----------------------------------------------------------------------------- child: one point
def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def measure_point(arch: str, frames: int, args) -> dict:
    import torch
    import torch.nn.functional as F
    from einops import rearrange

    from genieworld.config import STConfig, load_preset
    from genieworld.nn.st_transformer import STBlock, STTransformer, apply_rope, rope_angles

    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.pick_device(args.device)
    preset = load_preset(args.preset)
    base = getattr(preset, args.model).encoder if args.model in ("tokenizer", "lam") else preset.dynamics.transformer
    cfg = STConfig(**{**base.__dict__, "num_layers": args.layers or base.num_layers})
    s = args.spatial
    torch.manual_seed(0)
    model = STTransformer(cfg, s, window=max(frames, 1)).to(device)
    x = torch.randn(args.batch, frames, s, cfg.d_model, device=device, requires_grad=False)

    def full_attention(attn, x_btsd, mask):
        b, t, n, _ = x_btsd.shape
        xf = rearrange(x_btsd, "b t s d -> b (t s) d")
        q, k, v = attn.project(xf)
        # RoPE over the frame index of every token, as the temporal layer would use it
        pos = torch.arange(t, device=x_btsd.device).repeat_interleave(n)
        cos, sin = rope_angles(pos, attn.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = attn.attend(q, k, v, attn_mask=mask)
        return rearrange(y, "b (t s) d -> b t s d", t=t)

    def full_block(blk: STBlock, x_btsd, mask):
        y = x_btsd + full_attention(blk.spatial, blk.norm_s(x_btsd), mask)
        y = y + full_attention(blk.temporal, blk.norm_t(y), mask)
        return y + blk.ffw(blk.norm_f(y))

    def step():
        if arch == "st":
            out = model(x)
        else:
            fr = torch.arange(frames, device=device).repeat_interleave(s)
            mask = fr[None, :] <= fr[:, None]  # (T*S, T*S) block-causal
            h = x + model.pos_s
            for blk in model.blocks:
                h = full_block(blk, h, mask)
            out = model.norm_out(h)
        out.float().square().mean().backward()

    backend_ctx = _backend(args.baseline_backend if arch == "full" else "default")
    params_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    res = {"arch": arch, "frames": frames, "tokens": args.batch * frames * s}
    with backend_ctx:
        if device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            res["peak_step_mib"] = round((torch.cuda.max_memory_allocated() - before) / 2**20, 1)
            res["method"] = "torch.cuda.max_memory_allocated - memory_allocated before the step"
        else:
            rss0, hwm0 = _status_mib("VmRSS"), _status_mib("VmHWM")
            step()
            hwm1 = _status_mib("VmHWM")
            res.update(peak_step_mib=round(hwm1 - rss0, 1), rss_before_mib=round(rss0, 1),
                       hwm_before_mib=round(hwm0, 1), hwm_after_mib=round(hwm1, 1),
                       method="VmHWM after the step - VmRSS before it (fresh process)")
    res["params_mib"] = round(params_mib, 2)
    return res


def _backend(name: str):
    import contextlib

    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
                        "efficient": SDPBackend.EFFICIENT_ATTENTION}[name])


# ----------------------------------------------------------------------------- parent
def attention_matrix_gib(arch: str, frames: int, args, cfg) -> float:
    """Bytes of ONE materialised fp32 attention-score tensor, times layers*2 attention layers (rough)."""
    if arch == "st":
        per = args.batch * frames * cfg.num_heads * args.spatial**2 + args.batch * args.spatial * cfg.num_heads * frames**2
    else:
        per = args.batch * cfg.num_heads * (frames * args.spatial) ** 2
    layers = args.layers or cfg.num_layers
    return per * 4 * 2 * layers * 3 / 2**30  # scores + softmax + grad, per attention layer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", default="4,8,16,32")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--model", default="dynamics", choices=["tokenizer", "lam", "dynamics"],
                    help="whose transformer shape to use (widths/heads); default: the dynamics model's")
    ap.add_argument("--layers", type=int, default=2, help="blocks (default 2; memory is additive over blocks)")
    ap.add_argument("--spatial", type=int, default=256, help="tokens per frame S (cpu preset: 64x64 / patch 4 = 256)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--baseline-backend", default="default",
                    help="SDPA backend(s) for the full-attention baseline, comma list of default|math|flash|efficient "
                         "(math = materialised T*S x T*S scores); one JSON object per backend")
    ap.add_argument("--max-gib", type=float, default=6.0, help="skip points whose attention matrices would exceed this")
    ap.add_argument("--point", help=argparse.SUPPRESS)  # child mode: "arch,frames"
    args = ap.parse_args(argv)

    if args.point:
        arch, t = args.point.split(",")
        emit(measure_point(arch, int(t), args))
        return 0
    st_points = None  # measured with the first backend, reused for the ratios of the next ones
    for backend in args.baseline_backend.split(","):
        args.baseline_backend = backend
        st_points = run_backend(args, st_points)
    return 0


def run_backend(args, st_points: list | None = None) -> list:
    """Measure every point for one baseline backend and return the ST points; given ``st_points``
    (from an earlier backend) the ST-transformer is not measured again."""

    from genieworld.config import load_preset

    preset = load_preset(args.preset)
    base = getattr(preset, args.model).encoder if args.model in ("tokenizer", "lam") else preset.dynamics.transformer
    device = common.pick_device(args.device)
    frames = [int(f) for f in args.frames.split(",")]
    points = {"st": [], "full": []}
    passthrough = ["--preset", args.preset, "--model", args.model, "--layers", str(args.layers), "--spatial",
                   str(args.spatial), "--batch", str(args.batch), "--device", args.device,
                   "--baseline-backend", args.baseline_backend]
    if args.threads:
        passthrough += ["--threads", str(args.threads)]
    for arch in ("full",) if st_points else ("st", "full"):
        for t in frames:
            est = attention_matrix_gib(arch, t, args, base)
            if args.baseline_backend == "math" or arch == "st":
                if est > args.max_gib:
                    points[arch].append({"arch": arch, "frames": t, "skipped": f"~{est:.1f} GiB of attention matrices"})
                    continue
            cmd = [sys.executable, __file__, "--point", f"{arch},{t}", *passthrough]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=dict(os.environ))
            if p.returncode != 0:
                tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
                points[arch].append({"arch": arch, "frames": t, "error": tail[0][:300], "returncode": p.returncode})
                continue
            points[arch].append(json.loads(p.stdout.strip().splitlines()[-1]))
    for arch, pts in points.items():
        ok = [p for p in pts if "peak_step_mib" in p]
        for a, b in zip(ok, ok[1:]):
            if a["peak_step_mib"] > 0 and b["peak_step_mib"] > 0:
                b["growth_exponent_from_prev"] = round(
                    math.log(b["peak_step_mib"] / a["peak_step_mib"]) / math.log(b["frames"] / a["frames"]), 2)
        for p in ok:
            p["mib_per_frame"] = round(p["peak_step_mib"] / p["frames"], 2)
    ratio = {}
    for st, fu in zip(points["st"] or st_points, points["full"]):
        if "peak_step_mib" in st and "peak_step_mib" in fu:
            ratio[str(st["frames"])] = round(fu["peak_step_mib"] / st["peak_step_mib"], 2)
    emit({"bench": "memory", "device": common.device_info(device), "preset": args.preset, "model_shape": args.model,
          "config": {**base.__dict__, "num_layers": args.layers or base.num_layers, "spatial_tokens": args.spatial,
                     "batch": args.batch}, "baseline_backend": args.baseline_backend,
          "st_transformer": points["st"] or "see the first object", "full_attention": points["full"],
          "full_over_st": ratio})
    return points["st"] or st_points


if __name__ == "__main__":
    sys.exit(main())
