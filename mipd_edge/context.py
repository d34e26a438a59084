"""What every long job shares, whatever it computes: whether it shows progress, where its
caches live, and whether it may replace an existing output or continue an interrupted one.
One object, handed down, instead of the same four arguments on every function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .files import PathLike, default_cache_dir


@dataclass(frozen=True)
class RunContext:
    progress: bool = True  # progress bars on long loops
    cache_dir: Optional[PathLike] = None  # text embeddings, teacher features, knowledge; None: the default
    overwrite: bool = False  # an existing output may be replaced (``--overwrite``)
    resume: bool = False  # continue from the output's last checkpoint (``--resume``)

    @property
    def cache(self) -> Path:
        """The cache folder: ``cache_dir``, else ``$MIPD_EDGE_CACHE`` or ``~/.cache/mipd-edge``."""
        return Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir()
