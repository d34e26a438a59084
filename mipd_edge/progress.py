"""Progress bars for long work, shown on terminals only: in logs and CI their carriage
returns would turn into thousands of lines."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from tqdm import tqdm


def progress_bar(iterable: Optional[Iterable] = None, enabled: bool = True, **kwargs: Any) -> tqdm:
    return tqdm(iterable, disable=None if enabled else True, **kwargs)
