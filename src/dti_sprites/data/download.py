"""Fetch the original release's preprocessed datasets (public Google Drive archives).

Each archive is downloaded with gdown into a scratch folder beside its destination,
checked (a readable zip or tar whose entries all sit under the expected top folder),
unpacked there and renamed into place, so a dataset folder is either complete or absent.
A dataset whose folder exists is skipped. Failures are reported per dataset and the
command exits non-zero when any failed.

    python -m dti_sprites download [NAME ...] [--data-root datasets]
    ./download_data.sh [NAME ...]
"""

import argparse
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError
from .writing import publish, staging_dir

STALL_SECONDS = 120  # give up on a download that receives nothing for this long (gdown may hang)
_POLL_SECONDS = 2
_IGNORED_TOP = ("__MACOSX",)  # resource-fork folders some zip tools add beside the real content


@dataclass(frozen=True)
class Archive:
    """One published archive: its Drive file id, the folder it holds at its top, and where
    that folder goes under the data root."""

    name: str
    file_id: str
    top: str
    target: str


ARCHIVES: dict[str, Archive] = {
    a.name: a
    for a in (
        Archive("tetrominoes", "1unCVwJbytG1wHZCQfk41otdtmR8yU1AH", "tetrominoes", "tetrominoes"),
        Archive("dsprites_gray", "110RrDlhx_fjXymzmTx1nkC3ZMPmMXjsv", "dsprites_gray", "dsprites_gray"),
        Archive("clevr6", "12c7ZRNWKzqosz5aUOfL0XBmLHrcN240r", "clevr6", "clevr6"),
        Archive("gtsrb", "1d5rlgYeH087oT6AnTNAHtwrnRXv3WeRR", "GTSRB", "GTSRB"),
        Archive("weizmann_horse", "1fQSWQUCwIB6zkA65D4wlbaGmIg8iO6Ja", "weizmann_horse", "weizmann_horse"),
        # The Instagram collections hold the images only; the loader reads instagram/<tag>/train/.
        Archive("santaphoto", "1tv5-_Iz-LD6-FqFxF67py9ot97BOZbUc", "santaphoto", "instagram/santaphoto/train"),
        Archive("weddingkiss", "1OCLvojYDomLnI6zP6QghgIkZ8PWwmqCD", "weddingkiss", "instagram/weddingkiss/train"),
    )
}
GROUPS = {"instagram": ("santaphoto", "weddingkiss")}


def resolve_names(names: list[str] | None) -> list[Archive]:
    """Archives for the given names (case-insensitive; `instagram` means both collections)."""
    if not names:
        return list(ARCHIVES.values())
    picked = []
    for raw in names:
        name = raw.lower()
        for member in GROUPS.get(name, (name,)):
            if member not in ARCHIVES:
                raise DataError(f"unknown dataset {raw!r}; expected one of: {', '.join([*ARCHIVES, *GROUPS])}")
            if ARCHIVES[member] not in picked:
                picked.append(ARCHIVES[member])
    return picked


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fetch(file_id: str, dest: Path) -> None:
    """Download one Drive file to dest with gdown, in a subprocess that is stopped when no
    byte arrives for STALL_SECONDS. Raises DataError with gdown's last words on failure."""
    log_path = dest.with_name(dest.name + ".log")
    cmd = [sys.executable, "-m", "gdown", file_id, "-O", str(dest), "--quiet"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            size, last_change = -1, time.monotonic()
            while True:
                try:
                    proc.wait(timeout=_POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now_size = _folder_bytes(dest.parent) - log_path.stat().st_size  # gdown's .part file grows here
                if now_size != size:
                    size, last_change = now_size, time.monotonic()
                elif time.monotonic() - last_change > STALL_SECONDS:
                    raise DataError(
                        f"no data received for {STALL_SECONDS} s from Google Drive file {file_id}; "
                        "the link or the network is stalled"
                    )
        finally:
            if proc.poll() is None:  # stalled or interrupted: stop it before its folder is removed
                proc.kill()
                proc.wait()
    if proc.returncode != 0 or not dest.is_file():
        reason = _gdown_reason(log_path.read_text(errors="replace")) or f"gdown exited with status {proc.returncode}"
        raise DataError(f"download of Google Drive file {file_id} failed (offline, or the link is dead?): {reason}")


def _gdown_reason(log: str, limit: int = 300) -> str:
    """gdown's error text on one line, without its 'Error:' label and bug-report footer."""
    lines = [ln.strip() for ln in log.splitlines()]
    kept = [ln for ln in lines if ln and ln != "Error:" and not ln.startswith("To report issues")]
    text = " ".join(kept)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def archive_members(path: Path) -> list[str]:
    """Names of the entries of a zip or tar archive, after reading it whole (a truncated or
    corrupt file fails here, not halfway through unpacking)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()  # CRC of every entry
                if bad is not None:
                    raise DataError(f"archive {path} is corrupt: entry {bad} fails its checksum")
                return zf.namelist()
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as tf:
                return tf.getnames()
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"archive {path} cannot be read: {err}") from None
    raise DataError(
        f"{path} is not a zip or tar archive (Google Drive may have sent a web page instead: "
        "quota exceeded, or the link changed)"
    )


def check_layout(members: list[str], top: str, path: Path) -> None:
    """Every entry must sit under `top/`, with no absolute path and no `..`."""
    tops = set()
    for name in members:
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if not parts or parts[0] in _IGNORED_TOP:
            continue
        if parts[0] == "/" or ".." in parts:
            raise DataError(f"archive {path} has an unsafe entry {name!r}; refusing to unpack it")
        tops.add(parts[0])
    if tops != {top}:
        found = ", ".join(sorted(tops)) or "nothing"
        raise DataError(f"archive {path} holds {found} at its top; expected the single folder {top}/")


def _wanted(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and parts[0] not in _IGNORED_TOP


def unpack(path: Path, dest: Path) -> None:
    """Extract a checked archive into dest (without __MACOSX clutter)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            zf.extractall(dest, members=[m for m in zf.namelist() if _wanted(m)])
    else:
        with tarfile.open(path) as tf:
            tf.extractall(dest, members=[m for m in tf.getmembers() if _wanted(m.name)], filter="data")


def download_one(archive: Archive, data_root: str | Path) -> str:
    """Fetch, check and install one archive; returns what happened. Raises DataError (after
    removing everything it wrote) when it cannot."""
    data_root = Path(data_root)
    target = data_root / archive.target
    if target.exists():
        return f"skipped: {target} already exists"
    data_root.mkdir(parents=True, exist_ok=True)
    created = [p for p in reversed(target.parents) if not p.exists()]  # below data_root, outermost first
    try:
        with staging_dir(target) as tmp:
            archive_path = tmp / "archive"
            fetch(archive.file_id, archive_path)
            check_layout(archive_members(archive_path), archive.top, archive_path)
            unpacked = tmp / "unpacked"
            unpack(archive_path, unpacked)
            archive_path.unlink()  # frees the space before the rename on small disks
            publish(unpacked / archive.top, target)
    except BaseException:
        for folder in reversed(created):  # the parents this call made, innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return f"installed in {target}"


def download(names: list[str] | None = None, data_root: str | Path = "datasets") -> int:
    """Fetch every named dataset (default: all); returns the number that failed."""
    failed = []
    for archive in resolve_names(names):
        if not (Path(data_root) / archive.target).exists():
            print(f"{archive.name}: fetching Google Drive file {archive.file_id}", file=sys.stderr, flush=True)
        try:
            status = download_one(archive, data_root)
        except (DataError, OSError) as err:  # OSError: disk full, permissions; the next dataset may still work
            failed.append(archive.name)
            status = (
                f"FAILED: {err}; nothing was written. By hand: download "
                f"https://drive.google.com/file/d/{archive.file_id}/view and unpack its {archive.top}/ "
                f"as {Path(data_root) / archive.target}"
            )
        print(f"{archive.name}: {status}", file=sys.stderr, flush=True)
    if failed:
        print(
            f"{len(failed)} dataset(s) failed: {', '.join(failed)}. Rerun the same command to retry them "
            "(finished ones are skipped).",
            file=sys.stderr,
        )
    return len(failed)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"datasets to fetch (default: all): {', '.join([*ARCHIVES, *GROUPS])}"
    )
    parser.add_argument("--data-root", default="datasets", help="folder the datasets go into")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dti_sprites.data.download", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        n_failed = download(args.names, args.data_root)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if n_failed else 0)


if __name__ == "__main__":
    main()
