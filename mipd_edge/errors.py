"""Every error mipd-edge raises for bad input derives from MipdEdgeError.

Callers can catch the family (``except MipdEdgeError``) around a frame loop and keep
going, or a specific subclass when they want to react differently, for example to skip
an unreadable image but stop on a broken bundle.
"""


class MipdEdgeError(Exception):
    """Base class of all errors the SDK raises on purpose."""


class DatasetError(MipdEdgeError):
    """A dataset file (space, annotations, split, predictions) is missing or malformed."""


class VocabularyError(MipdEdgeError):
    """A vocabulary edit or file is inconsistent (unknown entry, other encoder, other size)."""


class InvalidImageError(MipdEdgeError):
    """An image cannot be read or has a shape / dtype the pre-processing cannot take."""


class BundleError(MipdEdgeError):
    """A deployable bundle is missing a file or its files disagree with each other."""


class StreamError(MipdEdgeError):
    """A video source or sink failed: it cannot be opened or written, or it gave up reconnecting."""


class OutputExistsError(MipdEdgeError):
    """A command would write over an existing file or folder and was not told it may."""


class MissingDependencyError(MipdEdgeError, ImportError):
    """An optional extra is needed for this feature; the message names it."""


def reject_unknown_keys(obj, cls, what: str) -> None:
    """A JSON / YAML object must only name fields of the dataclass it configures: a typo
    should fail loudly rather than be ignored."""
    import difflib
    from dataclasses import fields

    known = [f.name for f in fields(cls)]
    unknown = sorted(set(obj) - set(known))
    if unknown:
        hints = [f"{k!r}: did you mean {close[0]!r}?" for k in unknown
                 for close in [difflib.get_close_matches(k, known, 1)] if close]
        raise MipdEdgeError(f"unknown {what} keys: {unknown}" + (f" ({'; '.join(hints)})" if hints else "")
                            + f" (known: {sorted(known)})")


def require(module: str, extra: str, feature: str):
    """Import an optional module or fail with the pip command that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the Python package '{module}', which is not installed: "
            f"pip install 'mipd-edge[{extra}]'"
        ) from exc
