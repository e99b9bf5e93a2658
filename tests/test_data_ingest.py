"""Video decoding, resizing policy, image loading and `genie data ingest`."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from genieworld.data.ingest import REPORT_NAME, ingest
from genieworld.data.store import EpisodeStore
from genieworld.data.video import iter_video_frames, load_image, natural_key, prepare_frame


def write_video(path, n, fps, size=(48, 80), codec="libx264", start_value=0):
    """Frame i has red channel value (start_value + 3 * i) % 256 so frames can be identified after decoding."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.height, s.width = size
        s.pix_fmt = "yuv420p" if codec != "gif" else "rgb8"
        if codec == "libx264":
            s.options = {"crf": "0", "preset": "ultrafast"}
        for i in range(n):
            img = np.zeros((*size, 3), np.uint8)
            img[..., 0] = (start_value + 3 * i) % 256
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def write_gif(path, n, duration_ms=100, size=(40, 40)):
    imgs = [Image.fromarray(np.full((*size, 3), (i * 20) % 256, np.uint8)) for i in range(n)]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0)


def snapshot(root: Path, exclude: Path):
    out = {}
    for dirpath, _, files in os.walk(root):
        if Path(dirpath) == exclude or exclude in Path(dirpath).parents:
            continue
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


# ----------------------------------------------------------------------------- prepare / load


def test_prepare_frame_centre_crop_and_pad():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # the centred square is white, the sides black
    out = prepare_frame(img, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out.min() == 255  # centre crop keeps exactly the white square
    padded = prepare_frame(img, 64, fit="pad")
    assert padded.shape == (64, 64, 3)
    assert padded[:15].max() == 0 and padded[-15:].max() == 0  # letterbox bars
    assert padded[32, 32].min() == 255
    tall = prepare_frame(np.full((210, 160, 3), 9, np.uint8), (32, 48))  # non-square target
    assert tall.shape == (32, 48, 3) and (tall == 9).all()
    # area filter: a 2x2 checker shrinks to its mean
    checker = np.indices((64, 64)).sum(0) % 2 * 200
    small = prepare_frame(np.repeat(checker[..., None], 3, 2).astype(np.uint8), 32)
    assert np.all(small == 100)
    assert prepare_frame(np.zeros((10, 10), np.uint8), 20).shape == (20, 20, 3)  # grey, upscaled
    with pytest.raises(ValueError):
        prepare_frame(np.zeros((10, 10, 3), np.float32), 8)


def test_load_image_formats_and_errors(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    np.testing.assert_array_equal(load_image(buf.getvalue()), rgb)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:2, :, 3] = 255  # top half opaque, bottom transparent -> black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.shape == (4, 4, 3) and (out[:2] == 200).all() and (out[2:] == 0).all()
    Image.fromarray(rgb).save(tmp_path / "b.jpg", quality=95)
    assert load_image(str(tmp_path / "b.jpg")).shape == (12, 20, 3)
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "g.bmp")
    assert load_image(tmp_path / "g.bmp").shape == (12, 20, 3)
    (tmp_path / "t.png").write_text("hello, not an image")
    with pytest.raises(ValueError, match="t.png"):
        load_image(tmp_path / "t.png")
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_image(tmp_path / "e.png")
    with pytest.raises(ValueError):
        load_image(b"\x00\x01garbage")
    with pytest.raises(ValueError):
        load_image(tmp_path / "missing.png")


def test_natural_key():
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_3.png"]
    assert sorted(names, key=natural_key) == ["frame_1.png", "frame_2.png", "Frame_3.png", "frame_10.png"]


# ----------------------------------------------------------------------------- resampling


def test_fps_resampling_by_timestamps(tmp_path):
    write_video(tmp_path / "c30.mp4", 90, 30)  # 3 s at 30 fps
    info = {}
    frames = list(iter_video_frames(tmp_path / "c30.mp4", fps=10, size=16, info=info))
    assert len(frames) == 30 and info["decoded"] == 90
    red = [int(f[8, 8, 0]) for f in frames]
    np.testing.assert_allclose(red, [(3 * 3 * k) % 256 for k in range(30)], atol=3)  # source frames 0, 3, 6, ...
    write_video(tmp_path / "c5.mp4", 10, 5)  # 2 s at 5 fps -> each frame held for two outputs
    frames = list(iter_video_frames(tmp_path / "c5.mp4", fps=10, size=16))
    assert len(frames) == 20
    red = [int(f[8, 8, 0]) for f in frames]
    np.testing.assert_allclose(red, [3 * (k // 2) for k in range(20)], atol=3)
    write_gif(tmp_path / "g.gif", 8, duration_ms=200)  # 1.6 s -> 16 frames at 10 fps
    assert len(list(iter_video_frames(tmp_path / "g.gif", fps=10, size=16))) == 16


# ----------------------------------------------------------------------------- ingest


def test_ingest_mixed_folder_reports_bad_inputs_and_writes_only_inside_out(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    write_video(src / "good_a.mp4", 60, 30)  # 2 s -> 20 frames
    write_gif(src / "good_b.gif", 20)  # 2 s -> 20 frames
    sub = src / "nested"
    sub.mkdir()
    write_video(sub / "good_c.mp4", 45, 15, size=(64, 36))
    write_video(tmp_path / "full.mp4", 60, 30)
    data = (tmp_path / "full.mp4").read_bytes()
    (src / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (src / "text.mp4").write_text("this is not a video at all\n" * 20)
    (src / "empty.webm").write_bytes(b"")
    write_video(src / "short.mp4", 9, 30)  # 0.3 s -> 3 frames < 16
    (src / "notes.txt").write_text("readme")
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path, out)

    report = ingest([src, tmp_path / "does_not_exist.mp4"], out, fps=10, size=32, min_frames=16, progress=False)

    assert snapshot(tmp_path, out) == before  # nothing written outside OUT (sources untouched, cwd empty)
    assert not list(cwd.iterdir())
    got = {Path(r["source"]).name: r["frames"] for r in report["ingested"]}
    assert got == {"good_a.mp4": 20, "good_b.gif": 20, "good_c.mp4": 30}
    reasons = {Path(r["source"]).name: r["reason"] for r in report["skipped"]}
    assert set(reasons) == {"truncated.mp4", "text.mp4", "empty.webm", "short.mp4", "notes.txt",
                            "does_not_exist.mp4"}
    assert "truncated" in reasons["truncated.mp4"] or "unreadable" in reasons["truncated.mp4"]
    assert "unreadable" in reasons["text.mp4"]
    assert "empty" in reasons["empty.webm"]
    assert "too short" in reasons["short.mp4"]
    assert "unsupported" in reasons["notes.txt"]
    assert "does not exist" in reasons["does_not_exist.mp4"]
    on_disk = json.loads((out / REPORT_NAME).read_text())
    assert on_disk["skipped"] == report["skipped"]
    s = EpisodeStore(out)
    assert s.num_episodes == 3 and s.resolution == (32, 32) and s.fps == 10 and not s.has_actions
    assert s.verify() == []
    assert {Path(s.episode_meta(i)["source"]).name for i in range(3)} == set(got)
    # resume: nothing is ingested twice
    again = ingest([src], out, fps=10, size=32, min_frames=16, progress=False)
    assert again["ingested"] == [] and len(again["already_in_store"]) == 3
    assert EpisodeStore(out).num_episodes == 3


def test_ingest_numbered_images_in_numeric_order(tmp_path):
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(1, 21):
        Image.fromarray(np.full((30, 40, 3), i * 10, np.uint8)).save(seq / f"frame_{i}.png")
    out = tmp_path / "out"
    report = ingest([seq], out, fps=10, size=16, min_frames=16, progress=False)
    assert [r["frames"] for r in report["ingested"]] == [20]
    frames = EpisodeStore(out).read_frames(0)
    assert [int(f[0, 0, 0]) for f in frames] == [i * 10 for i in range(1, 21)]  # frame_2 before frame_10


def test_ingest_refuses_out_as_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_video(src / "a.mp4", 60, 30)
    out = src / "store"  # OUT inside SRC: its own files must not be ingested
    ingest([src], out, fps=10, size=16, progress=False)
    report = ingest([src], out, fps=10, size=16, progress=False)
    assert all("store" not in Path(r["source"]).parts for r in report["skipped"])
    assert EpisodeStore(out).num_episodes == 1


def test_ingest_cli(tmp_path):
    from genieworld.cli import main

    write_video(tmp_path / "a.mp4", 60, 30)
    (tmp_path / "bad.mp4").write_text("nope")
    rc = main(["data", "ingest", str(tmp_path / "a.mp4"), str(tmp_path / "bad.mp4"), str(tmp_path / "out"),
               "--fps", "5", "--size", "24", "--min-frames", "4", "--no-progress"])
    assert rc == 0
    s = EpisodeStore(tmp_path / "out")
    assert s.num_frames == 10 and s.resolution == (24, 24)
    rc = main(["data", "ingest", str(tmp_path / "bad.mp4"), str(tmp_path / "out2"), "--no-progress"])
    assert rc == 1  # nothing usable


def test_planted_symlinks_in_out_are_not_followed(tmp_path):
    write_video(tmp_path / "a.mp4", 60, 30)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / REPORT_NAME)  # a trick: the report name points outside OUT
    ingest([tmp_path / "a.mp4"], out, fps=10, size=16, progress=False)
    assert victim.read_text() == "precious"
    assert not (out / REPORT_NAME).is_symlink() and json.loads((out / REPORT_NAME).read_text())["ingested"]
