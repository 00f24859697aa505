"""The one atomic writer: temporary sibling, fsync, rename; nothing half-written on failure."""

from __future__ import annotations

import os

import pytest

from sigma_core import atomic_dir, atomic_write_bytes
from sigma_core._fileio import atomic_write_text


@pytest.fixture
def synced(monkeypatch):
    """The paths os.fsync was called on, in order, with the final name's state at that time."""
    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_atomic_write_syncs_the_file_before_the_rename_then_the_directory(tmp_path, synced):
    target = tmp_path / "meta.json"
    atomic_write_bytes(target, b"{}\n")
    assert target.read_bytes() == b"{}\n"
    assert len(synced) == 2
    assert os.path.basename(synced[0]).startswith(".meta.json.")  # the temporary file
    assert synced[1] == str(tmp_path)  # its directory entry, after the rename
    atomic_write_text(target, "é\n")
    assert target.read_text(encoding="utf-8") == "é\n"
    assert [p for p in tmp_path.iterdir()] == [target]  # no temporary left


def test_atomic_dir_syncs_every_file_and_keeps_the_old_one_on_error(tmp_path, synced):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"2")
    assert sorted(os.path.basename(p) for p in synced[:2]) == ["a.bin", "b.bin"]
    assert synced[-1] == str(tmp_path)
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.bin").write_bytes(b"new")
        raise RuntimeError("killed")
    assert (target / "a.bin").read_bytes() == b"1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
