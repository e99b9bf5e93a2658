"""Benchmark the episode store and window loader on real CoinRun frames; prints JSON.

    PYTHONPATH=src python bench/bench_data.py                   # generate 30 levels x 1000 steps in a temp dir
    PYTHONPATH=src python bench/bench_data.py --store data/coinrun --seconds 10

Measures: generation speed (when it generates), bytes on disk per frame and the
compression ratio against raw uint8, the projected size of 1M frames, random
window reads (``store.read_frames``) and WindowLoader batches of 32 x 16 frames
with 0, 1 and 2 worker processes (windows/s and frames/s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit_json  # noqa: E402
from genieworld.data.loader import WindowLoader  # noqa: E402
from genieworld.data.store import EpisodeStore  # noqa: E402


def timed_loader(store, workers: int, seconds: float, batch: int, seq: int) -> dict:
    loader = WindowLoader(store, seq_len=seq, batch_size=batch, seed=0, num_workers=workers)
    it = iter(loader)
    next(it)  # start-up (worker fork, first index reads) is not steady state
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = next(it)
        n += b["frames"].shape[0]
    dt = time.perf_counter() - t0
    del it
    return {"num_workers": workers, "windows_per_s": round(n / dt, 1), "frames_per_s": round(n * seq / dt, 1),
            "batches_per_s": round(n / batch / dt, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="existing store (default: generate CoinRun into a temp dir)")
    ap.add_argument("--levels", type=int, default=30)
    ap.add_argument("--steps-per-level", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per timed measurement")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=16)
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--json-out", help="also write the JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    result: dict = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__}}
    tmp = None
    if args.store:
        path = Path(args.store)
    else:
        from genieworld.data.coinrun import generate_coinrun

        tmp = tempfile.TemporaryDirectory(prefix="bench_data_")
        path = Path(tmp.name) / "coinrun"
        t0 = time.perf_counter()
        generate_coinrun(path, levels=args.levels, steps_per_level=args.steps_per_level, progress=False)
        dt = time.perf_counter() - t0
        s = EpisodeStore(path)
        result["generation"] = {"levels": args.levels, "steps_per_level": args.steps_per_level,
                                "frames": s.num_frames, "seconds": round(dt, 2),
                                "frames_per_s": round(s.num_frames / dt, 1)}
    store = EpisodeStore(path)
    h, w = store.resolution
    raw = h * w * 3
    bpf = store.bytes_on_disk / store.num_frames
    result["store"] = {"path": str(path) if args.store else "(temp CoinRun store)", "source": store.source,
                       "episodes": store.num_episodes, "frames": store.num_frames, "resolution": [h, w],
                       "bytes_on_disk": store.bytes_on_disk, "bytes_per_frame": round(bpf, 1),
                       "raw_bytes_per_frame": raw, "compression_ratio": round(raw / bpf, 2),
                       "projected_GB_per_1M_frames": round(bpf * 1e6 / 1e9, 3)}
    t0 = time.perf_counter()
    bad = store.verify()
    result["store"]["verify_MB_per_s"] = round(store.bytes_on_disk / 1e6 / (time.perf_counter() - t0), 1)
    assert not bad, bad

    # random single-window reads
    seq = args.seq_len
    rng = np.random.default_rng(0)
    lengths = store.episode_lengths
    ok = np.nonzero(lengths >= seq)[0]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        e = int(rng.choice(ok))
        s = int(rng.integers(0, lengths[e] - seq + 1))
        store.read_frames(e, s, s + seq)
        store.read_actions(e, s, s + seq - 1)
        n += 1
    dt = time.perf_counter() - t0
    result["random_window_reads"] = {"seq_len": seq, "windows_per_s": round(n / dt, 1),
                                     "frames_per_s": round(n * seq / dt, 1),
                                     "ms_per_window": round(1000 * dt / n, 3)}
    result["loader"] = {"batch": args.batch, "seq_len": seq, "runs": [
        timed_loader(store, int(wk), args.seconds, args.batch, seq) for wk in args.workers.split(",")]}
    emit_json(result, args.json_out, indent=2)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
