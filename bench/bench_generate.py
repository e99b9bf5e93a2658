"""Generation speed (and, given a trained model, quality) of MaskGIT frame generation; prints JSON.

    python bench/bench_generate.py                          # cpu preset shapes, random-init weights
    python bench/bench_generate.py --quick                  # fewer points (used by run_all.py)
    python bench/bench_generate.py --shapes 6x192x6x32,4x128x4x32,2x128x4x32 --steps 1,2,4,8,25
    python bench/bench_generate.py --model runs/world/model --data data/coinrun --psnr-steps 1,2,4,8,25

Three measurements:

``dynamics`` (kernel level, per dynamics shape ``LAYERSxDMODELxHEADSxHEADDIM``): milliseconds
to generate the tokens of ONE new frame with ``genieworld.sampling.sample_frame`` at
1/2/4/8/25 MaskGIT steps, for context lengths C = 1, 4, 16 frames (C = frames the new frame's
temporal attention sees, itself included, i.e. ``SamplingConfig.context_frames``):

* ``cache``: the dynamics model's ring-buffer KV cache (``step_logits``): each MaskGIT step
  is one single-frame pass, plus one pass to commit the final tokens (steps + 1 passes);
* ``no_cache``: each MaskGIT step recomputes a full pass over the C-frame window
  (``forward_embedded``), the standard way without a cache (the exact reference path of
  ``World(use_cache=False)`` recomputes L*(C-1)+1 frames and is slower still).

``play`` (end to end): ``Genie.world(prompt).step(action)`` with random-init tokenizer, LAM and
dynamics of the preset (or ``--shapes`` for the dynamics) after the rollout has filled its
context: dynamics MaskGIT + KV-cached tokenizer decode of the new frame + uint8 conversion.
Reported as ms/frame and frames/s, with the tokenizer ``decode_step`` alone for reference.

``psnr`` (needs ``--model`` and ``--data``): for clips from an episode store, prompt with the
first ``--prompt-frames`` ground-truth frames, drive the model with the LAM-inferred actions of
the clip, and compare per-frame PSNR of rollouts made with each step count against the ground
truth and against the 25-step rollout of the same seed.  ``delta_db_vs_25`` is the quality
criterion of the play-speed issue (within 0.5 dB of 25-step MaskGIT).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import emit  # noqa: E402

from genieworld.config import STConfig, load_preset  # noqa: E402


def parse_shape(spec: str, base: STConfig) -> STConfig:
    """``6x192x6x32`` -> STConfig(num_layers=6, d_model=192, num_heads=6, head_dim=32); ``preset`` -> base."""
    if spec in ("preset", ""):
        return base
    layers, d, heads, hd = (int(x) for x in spec.lower().split("x"))
    return replace(base, num_layers=layers, d_model=d, num_heads=heads, head_dim=hd)


def shape_name(cfg: STConfig) -> str:
    return f"{cfg.num_layers}x{cfg.d_model}x{cfg.num_heads}x{cfg.head_dim}"


def dyn_forward_gflop(cfg, context: int) -> dict:
    """Analytic forward GFLOP of one single-frame cached pass and of one C-frame full pass."""
    t = cfg.transformer
    n = cfg.tokens_per_frame
    head = 2 * n * t.d_model * cfg.num_codes
    one = common.st_stack_flops(t, 1, 1, n)
    i = t.num_heads * t.head_dim
    cached = one["linear"] + one["attn_spatial"] + t.num_layers * 4 * n * context * i + head
    full = sum(common.st_stack_flops(t, 1, context, n).values()) + context * head
    return {"cached_pass": round(cached / 1e9, 3), "full_pass": round(full / 1e9, 3)}


# ----------------------------------------------------------------------------- dynamics kernel
@torch.no_grad()
def time_dynamics(dyn, context: int, steps: int, use_cache: bool, device, frames: int, temperature: float) -> dict:
    from genieworld.sampling import sample_frame

    n, v = dyn.tokens_per_frame, dyn.num_codes
    g = torch.Generator(device=device).manual_seed(0)
    vec = torch.randn(1, dyn.cfg.action_dim, device=device, generator=g)
    rand_tokens = lambda: torch.randint(0, v, (1, n), device=device, generator=g)  # noqa: E731
    if use_cache:
        cache = dyn.new_cache(1, window=context)
        for _ in range(context + 1):  # fill the ring buffer: steady state
            dyn.step_logits(rand_tokens(), vec, cache, advance=True)

        def one_frame():
            new = sample_frame(lambda tok: dyn.step_logits(tok, vec, cache, advance=False), 1, n, dyn.mask_id, steps,
                               temperature, g, device=device)
            dyn.step_logits(new, vec, cache, advance=True)
    else:
        hist = torch.randint(0, v, (1, context - 1, n), device=device, generator=g)
        act = dyn.frame_action_embeddings(torch.randn(1, context - 1, dyn.cfg.action_dim, device=device,
                                                      generator=g), context) if context > 1 else \
            dyn.action_embedding(None, 1)[:, None]

        def one_frame():
            def fn(tok):
                return dyn.forward_embedded(torch.cat([hist, tok[:, None]], dim=1), act)[:, -1]

            sample_frame(fn, 1, n, dyn.mask_id, steps, temperature, g, device=device)

    t = common.time_fn(one_frame, device, warmup=1, repeat=frames)
    return {"ms_per_frame": round(1e3 * t["median_s"], 2), "ms_min": round(1e3 * t["min_s"], 2),
            "passes_per_frame": steps + 1 if use_cache else steps}


# ----------------------------------------------------------------------------- play loop
def build_genie(preset, dyn_transformer: STConfig, device):
    from genieworld.dynamics import DynamicsModel
    from genieworld.genie import Genie
    from genieworld.lam import build_lam
    from genieworld.tokenizer import VideoTokenizer

    torch.manual_seed(0)
    tok = VideoTokenizer(preset.tokenizer)
    lam = build_lam(preset.lam)
    dyn = DynamicsModel(replace(preset.dynamics, transformer=dyn_transformer))
    return Genie(tok, lam, dyn, preset.sampling).to(device)


@torch.no_grad()
def time_play(genie, steps: int, context: int, frames: int, use_cache: bool = True) -> dict:
    import numpy as np

    size = genie.image_size
    prompt = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    world = genie.world(prompt, seed=0, maskgit_steps=steps, context_frames=context, use_cache=use_cache)
    rng = np.random.default_rng(1)
    for _ in range(context):  # fill the context so every timed frame costs the steady-state amount
        world.step(int(rng.integers(genie.num_actions)))
    times = []
    for _ in range(frames):
        a = int(rng.integers(genie.num_actions))
        t0 = time.perf_counter()
        world.step(a)
        common.sync(genie.device)
        times.append(time.perf_counter() - t0)
    s = sorted(times)
    med = s[len(s) // 2]
    return {"ms_per_frame": round(1e3 * med, 2), "ms_min": round(1e3 * s[0], 2), "fps": round(1.0 / med, 2),
            "frames_timed": frames}


@torch.no_grad()
def time_decode(genie, frames: int) -> float:
    tok = genie.tokenizer
    device = genie.device
    cache = tok.new_decode_cache(1)
    idx = torch.randint(0, tok.num_codes, (1, tok.cfg.tokens_per_frame), device=device)
    for _ in range(tok.cfg.max_frames):
        tok.decode_step(idx, cache)
    t = common.time_fn(lambda: tok.decode_step(idx, cache), device, warmup=1, repeat=frames)
    return round(1e3 * t["median_s"], 2)


# ----------------------------------------------------------------------------- quality
@torch.no_grad()
def psnr_vs_steps(args, device) -> dict:
    import numpy as np

    from genieworld.data.store import EpisodeStore
    from genieworld.eval.metrics import psnr
    from genieworld.genie import Genie

    genie = Genie.from_pretrained(args.model, device=device)
    store = EpisodeStore(args.data)
    t_total = args.prompt_frames + args.rollout_frames
    rng = np.random.default_rng(args.seed)
    eligible = [e for e in range(store.num_episodes) if store.episode_lengths[e] >= t_total]
    if not eligible:
        raise SystemExit(f"{args.data}: no episode has {t_total} frames")
    clips = []
    for _ in range(args.clips):
        e = int(rng.choice(eligible))
        s = int(rng.integers(0, store.episode_lengths[e] - t_total + 1))
        clips.append(store.read_frames(e, s, s + t_total))
    gt = torch.from_numpy(np.stack(clips)).to(device)  # (B, T, H, W, 3) uint8
    actions = genie.infer_actions(gt)[:, args.prompt_frames - 1:]  # transitions out of the last prompt frame on
    steps_list = sorted({int(x) for x in args.psnr_steps.split(",")} | {25})
    target = gt[:, args.prompt_frames:].float() / 255.0
    videos, out = {}, {}
    for s in steps_list:
        per_seed = []
        for seed in range(args.seeds):
            v = genie.rollout(gt[:, :args.prompt_frames], actions, seed=seed, maskgit_steps=s)
            per_seed.append(v[:, args.prompt_frames:].to(device).float() / 255.0)
        videos[s] = per_seed
    for s in steps_list:
        vs_gt = torch.stack([psnr(v, target) for v in videos[s]])  # (seeds, B, T)
        vs_25 = torch.stack([psnr(v, r) for v, r in zip(videos[s], videos[25])])
        out[str(s)] = {"psnr_vs_gt_db": round(float(vs_gt.mean()), 3),
                       "psnr_vs_gt_per_frame_db": [round(float(x), 2) for x in vs_gt.mean(dim=(0, 1))],
                       "psnr_vs_25_step_rollout_db": round(float(vs_25.mean()), 3)}
    ref = out["25"]["psnr_vs_gt_db"]
    for s in out:
        out[s]["delta_db_vs_25"] = round(out[s]["psnr_vs_gt_db"] - ref, 3)
        out[s]["within_0_5_db"] = abs(out[s]["delta_db_vs_25"]) <= 0.5 or out[s]["delta_db_vs_25"] > 0
    return {"bench": "generate_psnr", "model": str(args.model), "data": str(args.data), "clips": args.clips,
            "seeds": args.seeds, "prompt_frames": args.prompt_frames, "rollout_frames": args.rollout_frames,
            "sampling": genie.sampling.__dict__, "by_steps": out, "device": common.device_info(device)}


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--shapes", default="preset,4x128x4x32,2x128x4x32",
                    help="dynamics transformer shapes LAYERSxDMODELxHEADSxHEADDIM ('preset' = the preset's)")
    ap.add_argument("--steps", default="1,2,4,8,25", help="MaskGIT steps to time")
    ap.add_argument("--contexts", default="1,4,16", help="context lengths C (frames, the new one included)")
    ap.add_argument("--play-contexts", default="16", help="context lengths for the end-to-end play timing")
    ap.add_argument("--frames", type=int, default=3, help="timed frames per point (median)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--quick", action="store_true",
                    help="preset shape only, contexts 1 and 16, no-cache points up to 8 steps")
    ap.add_argument("--skip-kernel", action="store_true")
    ap.add_argument("--skip-play", action="store_true")
    ap.add_argument("--no-cache-max-steps", type=int, default=25, help="skip no-cache points above this many steps")
    ap.add_argument("--model", help="trained model dir: also measure PSNR vs step count (needs --data)")
    ap.add_argument("--data", help="episode store for --model")
    ap.add_argument("--psnr-steps", default="1,2,4,8,25")
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--prompt-frames", type=int, default=1)
    ap.add_argument("--rollout-frames", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = common.pick_device(args.device)
    preset = load_preset(args.preset)
    if args.quick:
        args.contexts, args.shapes = "1,16", "preset"
        args.no_cache_max_steps = min(args.no_cache_max_steps, 8)
    steps = [int(x) for x in args.steps.split(",")]
    contexts = [int(x) for x in args.contexts.split(",")]
    shapes = [parse_shape(s, preset.dynamics.transformer) for s in args.shapes.split(",")]
    info = common.device_info(device)  # for the summary; every point records its own (load average)
    summary = []

    if args.model:
        if not args.data:
            ap.error("--model needs --data")
        emit(psnr_vs_steps(args, device))

    for shape in shapes:
        genie = build_genie(preset, shape, device)
        dyn = genie.dynamics
        params = sum(p.numel() for p in dyn.parameters())
        if not args.skip_kernel:
            for c in contexts:
                if c > dyn.cfg.max_frames:
                    continue
                for s in steps:
                    for use_cache in (True, False):
                        if not use_cache and s > args.no_cache_max_steps:
                            continue
                        r = time_dynamics(dyn, c, s, use_cache, device, args.frames, args.temperature)
                        emit({"bench": "generate_dynamics", "preset": preset.name, "shape": shape_name(shape),
                              "dynamics_params": params, "context": c, "maskgit_steps": s,
                              "kv_cache": use_cache, **r, "gflop": dyn_forward_gflop(dyn.cfg, c),
                              "device": common.device_info(device)})
        if not args.skip_play:
            decode_ms = time_decode(genie, args.frames)
            for c in [int(x) for x in args.play_contexts.split(",")]:
                for s in steps:
                    r = time_play(genie, s, c, args.frames)
                    row = {"bench": "generate_play", "preset": preset.name, "shape": shape_name(shape),
                           "dynamics_params": params, "context": c, "maskgit_steps": s, **r,
                           "tokenizer_decode_ms": decode_ms, "device": common.device_info(device)}
                    emit(row)
                    summary.append(row)
    if summary:
        fast = [r for r in summary if r["fps"] >= 10]
        emit({"bench": "generate_summary", "preset": preset.name, "device": info, "target_fps": 10,
              "play": [{k: r[k] for k in ("shape", "context", "maskgit_steps", "ms_per_frame", "fps")} for r in summary],
              "reaching_target": [{k: r[k] for k in ("shape", "context", "maskgit_steps", "fps")} for r in fast]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
