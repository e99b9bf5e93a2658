"""Load-test `genie play`: N WebSocket players against a local server; prints JSON.

    python bench/bench_play_load.py                       # trains a throwaway `tiny` model first (seconds)
    python bench/bench_play_load.py runs/world/model --clients 8 --seconds 30
    python bench/bench_play_load.py MODEL --mode open --rate 20   # keys faster than frames: the queue at work

Starts ``genie play MODEL --host 127.0.0.1 --port 0`` in a subprocess (loopback only,
a free port), connects ``--clients`` WebSocket players and drives them for
``--seconds``, then stops the server.  Everything is bounded: the run, each wait for
a frame (``--frame-timeout``), the server start-up and shutdown.

Modes:

* ``closed`` (default): each player sends one action and waits for its frame before
  the next (``--think-ms`` pause in between) -- latency is the round trip of one key.
* ``open``: each player sends ``--rate`` actions per second regardless of frames; the
  server's bounded queue replaces surplus presses, so ``dropped`` > 0 and latency is
  measured only for the actions that produced a frame.

Output (one JSON object): frames served, errors (by code), latency p50/p90/p99 in ms
(send -> frame received, client side), frames per second per client and in total,
the server's own generation time per frame, dropped (coalesced) presses, the server's
resident memory before and after the run (a leak shows as growth across runs), and
whether it still answered /healthz afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return round(s[k], 2)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def make_tiny_model(workdir: Path, steps: int) -> Path:
    """A throwaway model: the `tiny` preset trained for a few steps on the synthetic store."""
    from genieworld.data.synthetic import make_synthetic_store

    data = workdir / "data"
    make_synthetic_store(data, episodes=4, length=32)
    env = dict(os.environ, OMP_NUM_THREADS="1", GENIEWORLD_NO_PROGRESS="1")
    common = ["--data", str(data), "--preset", "tiny", "--steps", str(steps), "--no-progress", "--num-workers", "0",
              "--checkpoint-every", str(max(steps, 1))]
    for cmd in (["tokenizer", "--out", str(workdir / "tok")],
                ["dynamics", "--tokenizer", str(workdir / "tok"), "--out", str(workdir / "world")]):
        subprocess.run([sys.executable, "-m", "genieworld.cli", "train", *cmd, *common], check=True, env=env,
                       stdout=subprocess.DEVNULL, timeout=900)
    return workdir / "world" / "model"


def start_server(model: Path, args) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "genieworld.cli", "play", str(model), "--host", "127.0.0.1", "--port", "0",
           "--max-sessions", str(max(args.clients, 1)), "--workers", str(args.workers),
           "--max-pending", str(args.max_pending)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.data:
        cmd += ["--data", str(args.data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + args.startup_timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
        if m:
            return proc, m.group(1)
    stop_server(proc)
    raise SystemExit("server did not start:\n" + "".join(lines))


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


async def player(i: int, ws_url: str, args, deadline: float, out: dict) -> None:
    from websockets.asyncio.client import connect

    rng = random.Random(i)
    stats = {"frames": 0, "latency_ms": [], "gen_ms": [], "errors": {}, "dropped": 0}
    out[i] = stats
    sent: dict[int, float] = {}
    next_id = 0

    def error(code: str) -> None:
        stats["errors"][code] = stats["errors"].get(code, 0) + 1

    try:
        async with connect(f"{ws_url}?seed={i}", max_size=2**22, compression=None, open_timeout=30,
                           close_timeout=5) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), args.frame_timeout))
            n_actions = int(hello["num_actions"])
            await asyncio.wait_for(ws.recv(), args.frame_timeout)  # the prompt frame: meta
            await asyncio.wait_for(ws.recv(), args.frame_timeout)  # ... and its PNG

            async def send_action():
                nonlocal next_id
                next_id += 1
                sent[next_id] = time.perf_counter()
                await ws.send(json.dumps({"type": "action", "action": rng.randrange(n_actions), "id": next_id}))

            async def receive_until(stop_at: float, want_id: int | None = None) -> bool:
                """Read frames/errors; True once the frame for ``want_id`` arrived (closed loop)."""
                meta = None
                while True:
                    # a frame may take up to --frame-timeout; after the deadline an open-loop player
                    # only drains what is still queued (--drain seconds of silence end it)
                    drain = want_id is None and time.perf_counter() >= stop_at
                    msg = await asyncio.wait_for(ws.recv(), args.drain if drain else args.frame_timeout)
                    if isinstance(msg, bytes):
                        now = time.perf_counter()
                        if meta is None:
                            error("binary_without_meta")
                            continue
                        stats["frames"] += 1
                        if meta.get("gen_ms") is not None:
                            stats["gen_ms"].append(meta["gen_ms"])
                        stats["dropped"] = meta.get("dropped", stats["dropped"])
                        t0 = sent.pop(meta.get("id"), None)
                        if t0 is not None:
                            stats["latency_ms"].append((now - t0) * 1000)
                        got, meta = meta.get("id"), None
                        if want_id is not None and got == want_id:
                            return True
                        continue
                    obj = json.loads(msg)
                    if obj.get("type") == "frame":
                        meta = obj
                    elif obj.get("type") == "error":
                        error(obj.get("code", "?"))
                        if want_id is not None and obj.get("code") == "rate_limited":
                            sent.pop(want_id, None)  # our key was dropped (faster than the server's rate limit)
                            await asyncio.sleep(0.05)
                            return True
                        if want_id is not None and obj.get("id") == want_id:
                            return True

            if args.mode == "closed":
                while time.perf_counter() < deadline:
                    await send_action()
                    await receive_until(deadline, want_id=next_id)
                    if args.think_ms:
                        await asyncio.sleep(args.think_ms / 1000)
            else:
                async def sender():
                    period = 1.0 / args.rate
                    t = time.perf_counter()
                    while t < deadline:
                        await send_action()
                        t += period
                        await asyncio.sleep(max(0.0, t - time.perf_counter()))

                async def receiver():
                    try:
                        await receive_until(deadline)
                    except asyncio.TimeoutError:
                        pass  # quiet after the deadline: done

                await asyncio.gather(sender(), receiver())
    except asyncio.TimeoutError:
        error("client_timeout")
    except Exception as e:  # connection refused/closed: count it, never hang
        error(f"client_{type(e).__name__}")


async def drive(ws_url: str, args) -> dict:
    out: dict[int, dict] = {}
    t0 = time.perf_counter()
    deadline = t0 + args.seconds
    await asyncio.wait_for(asyncio.gather(*(player(i, ws_url, args, deadline, out) for i in range(args.clients))),
                           timeout=args.seconds + 2 * args.frame_timeout + 30)
    out["_wall_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="model directory (default: train a throwaway `tiny` model)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--mode", choices=["closed", "open"], default="closed")
    ap.add_argument("--rate", type=float, default=20.0, help="actions/s per client in open mode")
    ap.add_argument("--think-ms", type=float, default=0.0, help="pause between frame and next key (closed mode)")
    ap.add_argument("--data", help="episode store offered as prompts (as `genie play --data`)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, help="torch threads in the server (default: its own default)")
    ap.add_argument("--max-pending", type=int, default=4)
    ap.add_argument("--train-steps", type=int, default=5, help="steps per component for the throwaway model")
    ap.add_argument("--frame-timeout", type=float, default=60.0, help="longest wait for one frame (s)")
    ap.add_argument("--drain", type=float, default=3.0, help="open mode: quiet seconds that end a player after the run")
    ap.add_argument("--startup-timeout", type=float, default=180.0)
    args = ap.parse_args()
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 3600 and args.rate > 0):
        ap.error("need 1 <= --clients <= 256, 0 < --seconds <= 3600, --rate > 0")

    with tempfile.TemporaryDirectory(prefix="bench-play-") as tmp:
        model = Path(args.model) if args.model else make_tiny_model(Path(tmp), args.train_steps)
        proc, url = start_server(model, args)
        try:
            rss_before = rss_mb(proc.pid)
            results = asyncio.run(drive(url.replace("http://", "ws://") + "ws", args))
            rss_after = rss_mb(proc.pid)
            try:
                with urllib.request.urlopen(url + "healthz", timeout=10) as r:
                    health = json.loads(r.read())
            except OSError as e:
                health = {"ok": False, "error": str(e)}
            with urllib.request.urlopen(url + "api/info", timeout=10) as r:
                info = json.loads(r.read())
        finally:
            stop_server(proc)

    wall = results.pop("_wall_s")
    players = [results[i] for i in sorted(results)]
    lat = [x for p in players for x in p["latency_ms"]]
    gen = [x for p in players for x in p["gen_ms"]]
    errors: dict[str, int] = {}
    for p in players:
        for k, v in p["errors"].items():
            errors[k] = errors.get(k, 0) + v
    fps = [round(p["frames"] / args.seconds, 2) for p in players]
    device = None
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        import common  # noqa: E402

        device = common.device_info("cpu")
    except Exception:
        pass
    print(json.dumps({
        "bench": "play_load",
        "device": device,
        "model": str(model) if args.model else "throwaway tiny preset",
        "image_size": info["image_size"], "num_actions": info["num_actions"],
        "mode": args.mode, "clients": args.clients, "seconds": args.seconds, "wall_s": round(wall, 2),
        "frames_served": sum(p["frames"] for p in players),
        "errors": sum(errors.values()), "error_codes": errors,
        "latency_ms": {"p50": percentile(lat, 50), "p90": percentile(lat, 90), "p99": percentile(lat, 99),
                       "max": round(max(lat), 2) if lat else None, "n": len(lat)},
        "server_gen_ms": {"p50": percentile(gen, 50), "p90": percentile(gen, 90)},
        "fps_per_client": fps, "fps_total": round(sum(fps), 2),
        "dropped": sum(p["dropped"] for p in players),
        "server_rss_mb": {"before": rss_before, "after": rss_after},
        "server_healthy_after": bool(health.get("ok")), "server_stats": health,
        "server": {"workers": args.workers, "threads": args.threads, "max_pending": args.max_pending},
    }))


if __name__ == "__main__":
    main()
