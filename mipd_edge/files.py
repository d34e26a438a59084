"""Reading and writing the JSON files the SDK exchanges, with errors that name the file.

Writes go to a temporary file in the same directory and are renamed into place, so a
killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Union

from .errors import DatasetError, OutputExistsError

PathLike = Union[str, os.PathLike]

WEIGHTS_FILE = "weights.safetensors"  # a model folder's and a bundle's weights

# JSON files are read whole: a limit keeps a wrong path (a disk image, /dev/zero) from
# exhausting memory. $MIPD_EDGE_MAX_JSON_BYTES raises it for very large annotation files.
MAX_JSON_BYTES = int(os.environ.get("MIPD_EDGE_MAX_JSON_BYTES", 2 << 30))


def default_cache_dir() -> Path:
    """Where derived data (text embeddings, teacher features) is cached; $MIPD_EDGE_CACHE wins."""
    return Path(os.environ.get("MIPD_EDGE_CACHE", Path.home() / ".cache" / "mipd-edge"))


def regular_file(path: PathLike, what: str, max_bytes: int, error: type = DatasetError) -> Path:
    """``path`` if it is a regular file of at most ``max_bytes``; else ``error`` saying why.

    Checked with one ``stat`` before anything is opened: a FIFO would block a read forever,
    a device such as /dev/zero never ends, and a huge file should fail before it is read."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        raise error(f"{what} not found: {path}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file")
    if info.st_size > max_bytes:
        raise error(f"{what} {path} is {info.st_size:,} bytes, more than the limit of {max_bytes:,}")
    return path


def read_json(path: PathLike, what: str = "JSON file", max_bytes: int | None = None) -> Any:
    """A JSON file, bounded in size (``max_bytes``, default ``MAX_JSON_BYTES``) and nesting."""
    path = regular_file(path, what, MAX_JSON_BYTES if max_bytes is None else max_bytes)
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{what} {path} is not valid JSON: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{what} {path} is not UTF-8 text: {exc}") from exc
    except RecursionError:
        raise DatasetError(f"{what} {path} is nested too deeply to be read") from None


def temporary_name(path: Path) -> Path:
    """A hidden sibling of ``path`` that names this process, so that a later start can tell
    a dead writer's leftover from a live one's work in progress. It keeps the suffix, which
    some writers (OpenCV's video writer) read the container from."""
    return path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp{path.suffix}"


_TEMPORARY = re.compile(r"\.(\d+)\.[0-9a-f]+\.tmp")  # the PID part of a temporary_name


def clean_temporaries(folder: PathLike, name: str = "*") -> None:
    """Remove what killed writers left behind in ``folder`` (temporary files or folders), of
    the output called ``name`` (a glob pattern; by default of every output there)."""
    for leftover in Path(folder).glob(f".{name}.*.tmp*"):
        pid = _TEMPORARY.search(leftover.name)
        if pid and not _alive(int(pid.group(1))):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fsync_dir(folder: PathLike) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes, clean: bool = True) -> None:
    with atomic_output(path, clean) as tmp:
        tmp.write_bytes(data)


@contextmanager
def atomic_output(path: PathLike, clean: bool = True) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; on success it is synced and
    renamed into place (and the rename synced), on failure removed. A killed process leaves
    the old file or the new one, never half of one, and a hidden leftover the next write
    removes (``clean=False`` leaves that to a caller writing many files into one folder, which
    cleans it once). Works for files and for folders (the old folder is replaced whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if clean:
        clean_temporaries(path.parent, glob.escape(path.name))
    tmp = temporary_name(path)
    try:
        yield tmp
        if tmp.is_dir():
            for file in (p for p in tmp.rglob("*") if p.is_file()):
                _fsync_file(file)
            if path.exists():
                old = temporary_name(path)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
            else:
                os.replace(tmp, path)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # the permissions open() would give
            _fsync_file(tmp)
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def check_output(path: PathLike, overwrite: bool, what: str = "output") -> Path:
    """``path`` if writing it loses nothing: it does not exist, is an empty folder, or
    ``overwrite`` is set. A user's files are never replaced by accident."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        occupied = any(path.iterdir())
    else:
        occupied = path.exists() or path.is_symlink()
    if occupied and not overwrite:
        kind = "folder" if path.is_dir() else "file"
        raise OutputExistsError(f"{what} {path} already exists ({kind}); pass --overwrite to replace it")
    return path


def write_json(path: PathLike, obj: Any, indent: int | None = 1) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=indent, ensure_ascii=False).encode("utf-8"))
