"""genie data export: a store's episodes as MP4 files, and back through `genie data ingest` frame for frame."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from genieworld.cli import main
from genieworld.data.export import export_videos
from genieworld.data.store import EpisodeStore
from genieworld.data.synthetic import make_synthetic_store


def test_export_then_ingest_gives_the_same_episodes_back(tmp_path, capsys):
    src = make_synthetic_store(tmp_path / "store", episodes=3, length=20, fps=5.0)
    assert main(["data", "export", str(tmp_path / "store"), str(tmp_path / "videos"), "--scale", "2",
                 "--no-progress"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["written"] == 3 and r["size"] == [128, 128] and r["fps"] == 5.0
    names = sorted(os.listdir(tmp_path / "videos"))
    assert names == ["episode-000000.mp4", "episode-000001.mp4", "episode-000002.mp4"]  # no temporary left
    assert os.stat(tmp_path / "videos" / names[0]).st_mode & 0o044  # readable by others, as the umask says

    assert main(["data", "ingest", str(tmp_path / "videos"), str(tmp_path / "back"), "--fps", "5",
                 "--no-progress"]) == 0
    back = EpisodeStore(tmp_path / "back")
    assert back.num_episodes == 3
    for j in range(3):
        i = int(str(back.episode_meta(j)).split("episode-")[1][:6])
        a, _, _ = src.read_episode(i)
        b, _, _ = back.read_episode(j)
        assert len(a) == len(b)  # frame k of the video is frame k of the episode
        mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
        assert 10 * np.log10(255 ** 2 / mse) > 30
        shifted = np.mean((a[1:].astype(float) - b[:-1].astype(float)) ** 2)
        assert mse < shifted  # aligned, not off by one


def test_a_lossless_export_comes_back_pixel_for_pixel(tmp_path):
    src = make_synthetic_store(tmp_path / "store", episodes=2, length=10, fps=5.0)
    r = export_videos(src.path, tmp_path / "videos", scale=3, lossless=True, progress=False)
    assert r["written"] == 2 and r["codec"] == "libx264rgb crf 0"
    assert main(["data", "ingest", str(tmp_path / "videos"), str(tmp_path / "back"), "--fps", "5", "--min-frames", "3",
                 "--no-progress"]) == 0
    back = EpisodeStore(tmp_path / "back")
    for j in range(back.num_episodes):
        i = int(str(back.episode_meta(j)).split("episode-")[1][:6])
        np.testing.assert_array_equal(back.read_episode(j)[0], src.read_episode(i)[0])


def test_export_resumes_skips_short_episodes_and_refuses_bad_targets(tmp_path, capsys):
    store = make_synthetic_store(tmp_path / "store", episodes=2, length=12)
    out = tmp_path / "videos"
    out.mkdir()
    (out / "episode-000000.mp4").write_bytes(b"mine")  # a file already there is never overwritten
    r = export_videos(store.path, out, progress=False)
    assert (r["written"], r["existing"]) == (1, 1) and (out / "episode-000000.mp4").read_bytes() == b"mine"
    assert export_videos(store.path, tmp_path / "long", min_frames=13, progress=False)["too_short"] == 2
    with pytest.raises(ValueError, match="store's own folder"):
        export_videos(store.path, store.path, progress=False)
    (tmp_path / "file").write_text("x")
    assert main(["data", "export", str(store.path), str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a folder" in err
    assert main(["data", "export", str(store.path), str(out), "--crf", "60"]) == 2
