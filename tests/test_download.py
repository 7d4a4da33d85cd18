"""Downloading the original archives (data/download.py, download_data.sh), never touching the
network: the Drive fetch is replaced by copies of archives built here."""

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from dti_sprites import cli
from dti_sprites.data import download as dl
from dti_sprites.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _serve(monkeypatch, archives: dict[str, Path]):
    """Replace the Drive download by copying local files; returns the ids fetched."""
    fetched = []

    def fake_fetch(file_id, dest):
        fetched.append(file_id)
        if file_id not in archives:
            raise DataError(f"download of Google Drive file {file_id} failed (offline?)")
        dest.write_bytes(archives[file_id].read_bytes())

    monkeypatch.setattr(dl, "fetch", fake_fetch)
    return fetched


def _ids(*names):
    return [dl.ARCHIVES[n].file_id for n in names]


def test_download_installs_a_checked_archive_once(tmp_path, monkeypatch, capsys):
    tetro = _zip(
        tmp_path / "t.zip",
        {"tetrominoes/images/0.png": b"png", "tetrominoes/masks/0.png": b"m", "__MACOSX/tetrominoes/._0.png": b"junk"},
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("santaphoto/a.jpg")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"jpg"))
    (tmp_path / "s.tar.gz").write_bytes(buf.getvalue())
    fetched = _serve(monkeypatch, {_ids("tetrominoes")[0]: tetro, _ids("santaphoto")[0]: tmp_path / "s.tar.gz"})
    root = tmp_path / "datasets"

    assert dl.download(["tetrominoes", "santaphoto"], root) == 0
    assert (root / "tetrominoes" / "images" / "0.png").read_bytes() == b"png"
    assert (root / "instagram" / "santaphoto" / "train" / "a.jpg").read_bytes() == b"jpg"
    assert sorted(p.name for p in root.iterdir()) == ["instagram", "tetrominoes"]  # no scratch folder left
    assert not (root / "__MACOSX").exists() and not (root / "tetrominoes" / "__MACOSX").exists()
    assert fetched == _ids("tetrominoes", "santaphoto")

    capsys.readouterr()
    assert dl.download(["TETROMINOES", "instagram"], root) == 1  # weddingkiss is not served
    assert fetched[2:] == _ids("weddingkiss")  # the installed two were skipped, not fetched
    err = capsys.readouterr().err
    assert "tetrominoes: skipped" in err and "santaphoto: skipped" in err
    assert "weddingkiss: FAILED" in err and "offline" in err and "1 dataset(s) failed: weddingkiss" in err
    assert f"https://drive.google.com/file/d/{_ids('weddingkiss')[0]}/view" in err  # how to do it by hand
    assert sorted(p.name for p in (root / "instagram").iterdir()) == ["santaphoto"]


@pytest.mark.parametrize(
    "entries, message",
    [
        (None, "not a zip or tar archive"),
        ({"tetro/images/0.png": b"x"}, "holds tetro at its top; expected the single folder tetrominoes/"),
        ({"tetrominoes/a.png": b"x", "extra.txt": b"x"}, "holds extra.txt, tetrominoes at its top"),
        ({"tetrominoes/../../evil.txt": b"x"}, "unsafe entry"),
        ("truncated", "cannot be read|not a zip"),
    ],
)
def test_download_refuses_bad_archives_and_leaves_nothing(tmp_path, monkeypatch, capsys, entries, message):
    bad = tmp_path / "bad.zip"
    if entries is None:
        bad.write_bytes(b"<!DOCTYPE html><html>Google Drive - quota exceeded</html>")
    elif entries == "truncated":
        whole = _zip(tmp_path / "whole.zip", {f"tetrominoes/{i}.png": os.urandom(2000) for i in range(5)}).read_bytes()
        bad.write_bytes(whole[: len(whole) // 2])
    else:
        _zip(bad, entries)
    _serve(monkeypatch, {_ids("tetrominoes")[0]: bad})
    root = tmp_path / "datasets"
    assert dl.download(["tetrominoes"], root) == 1
    assert list(root.iterdir()) == []
    err = capsys.readouterr().err
    assert "tetrominoes: FAILED" in err
    assert any(m in err for m in message.split("|")), err


def test_failed_download_removes_the_folders_it_made_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    fetched = _serve(monkeypatch, {})  # offline: every fetch raises
    root = tmp_path / "datasets"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["download", "weddingkiss", "dsprites_gray", "--data-root", str(root)])
    assert exit_info.value.code == 1 and fetched == _ids("weddingkiss", "dsprites_gray")
    assert list(root.iterdir()) == []  # not even an empty instagram/weddingkiss/
    err = capsys.readouterr().err
    assert "weddingkiss: FAILED" in err and "dsprites_gray: FAILED" in err
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*clevr6"):
        dl.resolve_names(["mnist"])
    assert [a.name for a in dl.resolve_names(None)] == list(dl.ARCHIVES)


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for `python -m gdown ID -O DEST --quiet`."""
    script = tmp_path / "fake_python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_fetch_reports_gdown_failures_and_stalls(tmp_path, monkeypatch):
    dest_dir = tmp_path / "scratch"
    dest_dir.mkdir()
    monkeypatch.setattr(dl.sys, "executable", _fake_python(tmp_path, 'printf "zip" > "$5"'))
    dl.fetch("ID", dest_dir / "archive")
    assert (dest_dir / "archive").read_bytes() == b"zip"

    gdown_error = (
        r"Error:\n\n\tFailed to retrieve file url:\n\n\tCannot retrieve the public link\n\n"
        r"To report issues, see x.\n"
    )
    monkeypatch.setattr(dl.sys, "executable", _fake_python(tmp_path, f"printf '{gdown_error}' >&2; exit 1"))
    with pytest.raises(DataError, match="ID2 failed.*: Failed to retrieve file url: Cannot retrieve the public link$"):
        dl.fetch("ID2", dest_dir / "other")

    monkeypatch.setattr(dl, "STALL_SECONDS", 0.5)
    monkeypatch.setattr(dl, "_POLL_SECONDS", 0.1)
    monkeypatch.setattr(dl.sys, "executable", _fake_python(tmp_path, "exec sleep 30"))
    with pytest.raises(DataError, match="no data received"):
        dl.fetch("ID3", dest_dir / "stalled")


def test_download_script_is_a_thin_wrapper():
    script = REPO / "download_data.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "source scripts/setup_env.sh" in text and ".venv/bin/python -m dti_sprites download" in text
