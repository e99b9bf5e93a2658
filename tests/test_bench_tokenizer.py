"""bench/bench_tokenizer.py: per-store reconstruction scores of the clips `genie eval` would pick, and the worst store."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from fixtures_models import load_script, synthetic_store_dir, untrained_model_dir  # noqa: F401  (pytest fixtures)

from genieworld.data.store import EpisodeStore
from genieworld.genie import ModelDirError


@pytest.fixture(scope="module")
def bench():
    return load_script("bench/bench_tokenizer.py")


class _Stub:
    """A tokenizer whose codes are the pixels: decode gives back ``scale`` times the frames."""

    def __init__(self, scale: float):
        self.scale = scale
        self.cfg = SimpleNamespace(max_frames=4, vq=SimpleNamespace(num_codes=256), patch_size=1)

    def encode(self, x):
        return x.long()

    def decode(self, idx):
        return idx.float() / 255.0 * self.scale


def test_a_perfect_tokenizer_scores_the_cap_and_a_darker_one_less(bench, synthetic_store_dir):
    store = EpisodeStore(synthetic_store_dir)
    perfect = bench.score_store(_Stub(1.0), store, episodes=3, frames=4, seed=0)
    assert perfect["clips"] == 3 and perfect["frames"] == 4
    assert perfect["psnr_db"] == 100.0 and perfect["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert 1 < perfect["codes_used"] <= 256
    darker = bench.score_store(_Stub(0.5), store, episodes=3, frames=4, seed=0)
    assert darker["psnr_db"] < 40 and darker["ssim"] < perfect["ssim"]
    # the same seed picks the same clips: the score repeats exactly
    assert bench.score_store(_Stub(0.5), store, episodes=3, frames=4, seed=0) == darker


def test_the_summary_names_the_worst_store_and_reads_a_model_folder(bench, synthetic_store_dir, untrained_model_dir,
                                                                     tmp_path, capsys):
    out = tmp_path / "tok.json"
    assert bench.main(["--tokenizer", str(untrained_model_dir), "--data", str(synthetic_store_dir),
                       "--episodes", "2", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    s = res["stores"][str(synthetic_store_dir)]
    assert s["clips"] == 2 and 0 < s["psnr_db"] < 100  # random weights: a finite, imperfect reconstruction
    assert res["lowest"] == {"store": str(synthetic_store_dir), "psnr_db": s["psnr_db"]}
    assert json.loads(capsys.readouterr().out) == res


def test_a_folder_without_a_tokenizer_is_refused(bench, tmp_path):
    with pytest.raises(ModelDirError, match="not a tokenizer folder"):
        bench.main(["--tokenizer", str(tmp_path), "--data", str(tmp_path)])
