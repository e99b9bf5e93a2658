"""`make demo`: from nothing to a world you can play.

1. If a shipped model exists (``models/coinrun-cpu``), use it. Otherwise train the
   ``tiny`` pipeline end to end on freshly generated CoinRun data in ``demo/``
   (data -> tokenizer -> latent action model + dynamics; a few minutes on 2 cores,
   resumable: run it again after an interruption and it continues).
2. Write what it produced where you can see it: ``demo/reconstruction.gif`` (real
   frames next to the tokenizer's reconstruction), ``demo/rollout.gif`` (one prompt,
   one row per latent action), ``demo/metrics.json``; print the paths.
3. Start ``genie play`` on the model and print the URL (skip with ``--no-play``).

    python -m genieworld.demo [--out demo] [--no-play] [--port 8000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "coinrun-cpu"


def log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def run_cli(*args: str) -> None:
    from genieworld.cli import main

    log("genie " + " ".join(args))
    rc = main(list(args))
    if rc != 0:
        raise SystemExit(f"[demo] step failed: genie {' '.join(args)} (exit {rc})")


def train_tiny(out: Path) -> Path:
    data, test_data = out / "data" / "coinrun-train", out / "data" / "coinrun-test"
    if not (data / "manifest.json").exists() or not (out / "data" / ".train-done").exists():
        run_cli("data", "coinrun", str(data), "--levels", "40", "--start-level", "0", "--steps-per-level", "250")
        (out / "data" / ".train-done").write_text("ok\n")
    if not (out / "data" / ".test-done").exists():
        run_cli("data", "coinrun", str(test_data), "--levels", "4", "--start-level", "100000", "--steps-per-level", "100")
        (out / "data" / ".test-done").write_text("ok\n")
    tok_run, world_run = out / "runs" / "tokenizer", out / "runs" / "world"
    if not (tok_run / "tokenizer" / "model.safetensors").exists():
        run_cli("train", "tokenizer", "--data", str(data), "--out", str(tok_run), "--preset", "tiny", "--steps", "600")
    if not (world_run / "model" / "genie.json").exists():
        run_cli("train", "dynamics", "--data", str(data), "--tokenizer", str(tok_run), "--out", str(world_run),
                "--preset", "tiny", "--steps", "600")
    return world_run / "model"


def save_gif(frames_thwc: np.ndarray, path: Path, scale: int = 4, fps: int = 8) -> None:
    from genieworld.media import upscale, write_gif

    write_gif(upscale(np.asarray(frames_thwc, dtype=np.uint8), scale), path, fps)


def model_frame_skip(genie) -> int:
    """The CoinRun frame skip the model's training data was recorded with (genie.json provenance), 1 if unknown."""
    from genieworld.data.coinrun import valid_frame_skip

    skip = valid_frame_skip(genie.provenance.get("frame_skip", 1))
    return skip if skip is not None and skip <= 64 else 1


def model_recording(genie) -> dict:
    """How the model's CoinRun training data was recorded beyond its frame skip (genie.json
    provenance ``coinrun``): policy, hold and backgrounds; the paper's defaults when unknown."""
    rec = genie.provenance.get("coinrun")
    rec = rec if isinstance(rec, dict) else {}
    policy = rec.get("policy_name") if rec.get("policy_name") in ("uniform", "hold") else "uniform"
    hold = rec.get("hold")
    hold = float(hold) if policy == "hold" and isinstance(hold, (int, float)) and 1 <= hold <= 1000 else 1.0
    backgrounds = rec.get("backgrounds") if isinstance(rec.get("backgrounds"), bool) else True
    return {"policy": policy, "hold": hold if policy == "hold" else 1.0, "backgrounds": backgrounds}


def _recorded_as(store, frame_skip: int, rec: dict) -> bool:
    from genieworld.data.coinrun import frame_skip_of

    if frame_skip_of(store) != frame_skip:
        return False
    got = {"policy": "uniform", "hold": 1.0, "backgrounds": True}
    extra = store.extra.get("coinrun") or {}
    got.update({k: extra[k2] for k, k2 in (("policy", "policy_name"), ("hold", "hold"), ("backgrounds", "backgrounds"))
                if k2 in extra})
    return got == rec


def _first_clip(store_dir: Path, frame_skip: int, length: int, rec: dict) -> np.ndarray | None:
    """The first ``length`` frames of the first long-enough episode of a CoinRun store recorded
    with ``frame_skip`` and ``rec``; None if the store is missing, unreadable, recorded otherwise or too short."""
    from genieworld.data.store import EpisodeStore, StoreError

    if not (store_dir / "manifest.json").exists():
        return None
    try:
        store = EpisodeStore(store_dir)
        if not _recorded_as(store, frame_skip, rec):
            return None
    except StoreError as e:
        log(f"skipping {store_dir}: {e}")
        return None
    for i in range(store.num_episodes):
        if store.episode_length(i) >= length:
            return store.read_frames(i, 0, length)
    return None


def held_out_clip(out: Path, frame_skip: int = 1, length: int = 16, policy: str = "uniform", hold: float = 1.0,
                  backgrounds: bool = True) -> np.ndarray:
    """A real clip from held-out levels (100000 on), recorded like the model's training data (frame
    skip, policy, backgrounds): from the demo's test store when it matches, else from a small store recorded now."""
    from genieworld.data.coinrun import generate_coinrun

    rec = {"policy": policy, "hold": float(hold) if policy == "hold" else 1.0, "backgrounds": bool(backgrounds)}
    tag = f"skip{frame_skip}" + (f"-hold{rec['hold']:g}" if policy == "hold" else "") + ("" if backgrounds else "-nobg")
    fresh = out / "data" / f"coinrun-heldout-{tag}"
    for store_dir in (out / "data" / "coinrun-test", fresh):
        clip = _first_clip(store_dir, frame_skip, length, rec)
        if clip is not None:
            return clip
    generate_coinrun(fresh, levels=4, start_level=100000, steps_per_level=4 * length, frame_skip=frame_skip,
                     progress=False, policy=policy, hold=rec["hold"], backgrounds=rec["backgrounds"])
    clip = _first_clip(fresh, frame_skip, length, rec)
    if clip is None:
        raise SystemExit(f"[demo] no held-out CoinRun episode of {length} frames in {fresh}")
    return clip


def write_outputs(model_dir: Path, out: Path) -> dict:
    from genieworld.eval.metrics import psnr, ssim
    from genieworld.genie import Genie

    genie = Genie.from_pretrained(model_dir)
    frame_skip = model_frame_skip(genie)
    recording = model_recording(genie)
    clip = held_out_clip(out, frame_skip, **recording)
    video = torch.from_numpy(clip)[None]
    with torch.no_grad():
        recon = genie.tokenizer.decode(genie.tokenizer.encode(video))
    real = video.float() / 255
    rec_u8 = (recon[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    save_gif(np.concatenate([clip, rec_u8], axis=2), out / "reconstruction.gif")

    n_act, steps = genie.num_actions, 10
    prompt = video[:, :1].expand(n_act, 1, *video.shape[2:]).contiguous()
    actions = torch.arange(n_act)[:, None].expand(n_act, steps).contiguous()
    t0 = time.perf_counter()
    # the play settings (e.g. fewer MaskGIT steps), so the GIF shows what `genie play` will show
    frames = genie.rollout(prompt, actions, seed=0, **genie.play_overrides())  # (A, 1+steps, H, W, 3)
    gen_s = time.perf_counter() - t0
    grid = np.concatenate(list(frames.numpy()), axis=1)  # stack rows vertically: (T, A*H, W, 3)
    save_gif(grid, out / "rollout.gif", scale=3, fps=5)

    inferred = genie.infer_actions(video)
    regen = genie.rollout(video[:, :1], inferred[:, : video.shape[1] - 1], seed=0)
    gen_real = torch.from_numpy(regen.numpy()).float() / 255
    metrics = {
        "model": str(model_dir),
        "tokenizer_psnr_db": float(psnr(recon, real).mean()),
        "tokenizer_ssim": float(ssim(recon[0], real[0]).mean()),
        "generation_psnr_db_t4": float(psnr(gen_real[:, 3], real[:, 3]).mean()),
        "generation_psnr_db_t16": float(psnr(gen_real[:, -1], real[:, -1]).mean()),
        "num_actions": n_act,
        "frame_skip": frame_skip,
        "recording": recording,
        "seconds_per_generated_frame": gen_s / (n_act * steps),
        "note": "one held-out clip; run `genie eval` for the full protocol (PSNR/SSIM per step, ΔtPSNR, FVD, NMI)",
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m genieworld.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "demo"), help="where the demo writes data, runs and outputs")
    ap.add_argument("--no-play", action="store_true", help="do not start the play server at the end")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--retrain", action="store_true", help="train the tiny pipeline even if a shipped model exists")
    args = ap.parse_args(argv)
    from genieworld import owned
    from genieworld.errors import UserError

    try:
        out = owned.claim(args.out, "demo", "--out")
    except UserError as e:
        log(f"error: {e}")
        return 2
    if SHIPPED.joinpath("genie.json").exists() and not args.retrain:
        model_dir = SHIPPED
        log(f"using the shipped model {model_dir}")
    else:
        log(f"training the tiny pipeline in {out} (resumable; a few minutes on 2 cores)")
        model_dir = train_tiny(out)
    metrics = write_outputs(model_dir, out)
    log("metrics: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
    log(f"reconstruction (real | reconstructed): {out / 'reconstruction.gif'}")
    log(f"rollout (one row per latent action):   {out / 'rollout.gif'}")
    log(f"metrics:                               {out / 'metrics.json'}")
    log(f"model directory:                       {model_dir}")
    if args.no_play:
        return 0
    try:
        import genieworld.commands.play  # noqa: F401
    except ModuleNotFoundError:
        log("play server not available in this build; done")
        return 0
    from genieworld.cli import main as cli_main

    return cli_main(["play", str(model_dir), "--port", str(args.port)])


if __name__ == "__main__":
    sys.exit(main())
