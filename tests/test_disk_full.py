"""A full disk (ENOSPC) while writing a checkpoint, a store or a rollout is one line with exit 2 that names
the path and the space needed, and leaves no temporary file behind."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from genieworld.cli import main
from genieworld.errors import DiskFullError


def test_checkpoint_on_a_full_disk_leaves_no_half_checkpoint(tmp_path, monkeypatch):
    from genieworld.train import checkpoint as ck

    m = torch.nn.Linear(4, 4)
    opt = torch.optim.AdamW(m.parameters())
    sch = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    ck.save_checkpoint(tmp_path / "run", 1, m, {}, opt, sch, {})

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(ck.torch, "save", full)
    with pytest.raises(DiskFullError, match="no space left.*MB needed"):
        ck.save_checkpoint(tmp_path / "run", 2, m, {}, opt, sch, {})
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["latest", "step_00000001"]  # the earlier checkpoint is intact, no .tmp-step folder


def test_recording_a_store_on_a_full_disk_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from genieworld.data import store as st

    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((16, 16, 3), i * 40, np.uint8)).save(frames / f"{i:03d}.png")
    real_write = os.write

    def full(fd, data):
        if fd > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(st.os, "write", full)
    rc = main(["data", "ingest", str(frames), str(tmp_path / "store"), "--size", "16", "--fps", "10",
               "--min-frames", "2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("genie: error:") and "no space left" in err and err.count("\n") == 1
    leftovers = [p.name for p in (tmp_path / "store").iterdir()] if (tmp_path / "store").exists() else []
    assert not [n for n in leftovers if n.startswith(".tmp-")], leftovers
