"""What a teacher saw, so that no student learns from a teacher that saw its images.

The built-in teacher stands in for a foundation model, and a foundation model never saw
the benchmark's images: it is trained on its own SynthSitu sample (same world, another
generator seed). Training records the SHA-256 of every image in the teacher's data (and in
the data its crops were cut from) in ``seen.json``; distillation compares them with every
image of the student's data (train, dev and test) and refuses any overlap. Content hashes,
not names: two SynthSitu samples reuse file names for different pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..deploy.bundle import file_digest
from ..deploy.image import image_files
from ..errors import MipdEdgeError
from ..files import PathLike, read_json, write_json

SEEN_FILE = "seen.json"


def image_digests(data_dir: PathLike) -> set[str]:
    """SHA-256 of every image file under a dataset folder."""
    return {file_digest(p) for p in image_files(data_dir, recursive=True)}


def record_seen(teacher_dir: PathLike, data_dir: PathLike, sources: Sequence[PathLike] = ()) -> None:
    """Write ``seen.json``: the teacher's data, the data its images were cut from, and the
    hashes of all their images."""
    folders = [Path(data_dir), *map(Path, sources)]
    digests = set().union(*(image_digests(f) for f in folders))
    manifest = Path(data_dir) / "synthsitu.json"
    write_json(Path(teacher_dir) / SEEN_FILE, {
        "data": [str(f) for f in folders], "synthsitu": read_json(manifest) if manifest.is_file() else None,
        "images": len(digests), "sha256": sorted(digests)}, indent=None)


def check_unseen(teacher_dir: PathLike, data_dir: PathLike) -> Optional[int]:
    """Refuse a built-in teacher that saw any image of the student's data; the number of
    images it saw, or None for a teacher from elsewhere (a CLIP checkpoint records nothing)."""
    teacher_dir = Path(teacher_dir)
    config = teacher_dir / "config.json"
    if not config.is_file() or read_json(config).get("kind") != "teacher":
        return None
    seen_file = teacher_dir / SEEN_FILE
    if not seen_file.is_file():
        raise MipdEdgeError(f"{teacher_dir} does not record which images it was trained on ({SEEN_FILE}); "
                            "train it again with `mipd-edge train-teacher`")
    seen = set(read_json(seen_file, "teacher's seen images")["sha256"])
    shared = seen & image_digests(data_dir)
    if shared:
        raise MipdEdgeError(f"the teacher {teacher_dir} was trained on {len(shared)} images of {data_dir}: a "
                            "stand-in for a foundation model must never have seen the students' images; train it "
                            "on its own sample (e.g. `mipd-edge data synth --seed` with another seed)")
    return len(seen)
