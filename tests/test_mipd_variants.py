"""MIPD's switches and the research rows built from them (``benchmarks/mipd_lab``): the
component switches, the authors' formulation, random negatives, and the component ablation
that runs them over seeds."""

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import TINY_MODEL, quiet, tiny_config
from mipd_edge.config import RationaleConfig
from mipd_edge.context import RunContext
from mipd_edge.errors import MipdEdgeError
from mipd_edge.models.student import create_student
from mipd_edge.train.checkpoint import load_checkpoint
from mipd_edge.train.config import MipdConfig, TrainConfig, load_config
from mipd_edge.train.data import Batch
from mipd_edge.train.distill import MIPDDistill, distill
from mipd_edge.train.hoi import HoiObjectiveInputs, hoi_mipd_objective
from mipd_edge.train.nmpa import AlignmentData, NmpaConfig, train_prompts
from mipd_edge.train.prompts import InstancePrompt, ScenePrompt
from mipd_edge.train.rationales import Draft, generate_rationales, judge, judgment_rng, load_judged_rationales
from mipd_edge.train.task import TrainingInputs
from mipd_edge.train.teacher_cache import TeacherCache
from mipd_lab.authors import AuthorsMIPD, RationaleTokens, hinge
from mipd_lab.variants import MIPD_VARIANTS, variant_overrides


def test_every_variant_is_a_valid_config_that_round_trips():
    for name in MIPD_VARIANTS:
        cfg = replace(TrainConfig(method="mipd"), **variant_overrides(name))
        assert TrainConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    authors = replace(TrainConfig(), **variant_overrides("authors"))
    assert authors.method == "authors" and authors.loss.verb_smoothing == 0.3 and authors.loss.exists == 5
    assert load_config(mipd={"negatives": "none"}).mipd == MipdConfig(negatives="none")
    with pytest.raises(MipdEdgeError, match="unknown mipd variant"):
        variant_overrides("mipd-but-better")
    with pytest.raises(MipdEdgeError, match="negatives"):
        MipdConfig(negatives="some")
    with pytest.raises(MipdEdgeError, match="scene or instance"):
        MipdConfig(scene=False, instance=False)
    with pytest.raises(MipdEdgeError, match="unknown training config's mipd keys"):
        TrainConfig.from_json({**TrainConfig().to_json(), "mipd": {"negative": "none"}})
    assert MipdConfig(negatives="random").judgment == "random" and MipdConfig(negatives="none").judgment == "teacher"
    ramped = replace(TrainConfig(), **variant_overrides("ramped"))
    assert [ramped.distillation_weight(t) for t in (0.0, 0.2, 0.25, 0.375, 0.5, 0.9)] == [0, 0, 0, 0.5, 1, 1]
    assert TrainConfig().distillation_weight(0.0) == 1.0
    assert MipdConfig(losses="authors").distance == "l1" and MipdConfig().distance == "cosine"
    with pytest.raises(MipdEdgeError, match="mapped into the student's text space"):
        MipdConfig(knowledge="anchored", instance_head=False)
    with pytest.raises(MipdEdgeError, match="fractions of training"):
        TrainConfig(distill_from=0.6, distill_full=0.5)


def test_prompts_without_context_tokens():
    with_ctx, without = ScenePrompt(16, 8), ScenePrompt(16, 8, n_ctx=0)
    assert without.ctx.meta is None and without.ctx.tokens.numel() == 0 and with_ctx.ctx.meta is not None
    assert sum(p.numel() for p in without.parameters()) < sum(p.numel() for p in with_ctx.parameters())
    s = without(torch.randn(3, 16))
    i = InstancePrompt(16, 8, n_ctx=0)(torch.randn(3, 2, 16), torch.randn(3, 16), torch.randn(3, 2, 8))
    assert s.shape == (3, 8) and torch.allclose(s.norm(dim=-1), torch.ones(3))
    assert i.shape == (3, 2, 8) and torch.allclose(i.norm(dim=-1), torch.ones(3, 2))


def synthetic_alignment(seed: int, n: int = 96, classes: int = 4, t_dim: int = 16, d: int = 12):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    teacher = rng.normal(size=(classes, t_dim))[labels] + 0.3 * rng.normal(size=(n, t_dim))
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    texts = rng.normal(size=(classes, d)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    negs = rng.normal(size=(n, 2, d)).astype(np.float32)
    data = AlignmentData(scene_pos=texts[labels], scene_neg=negs, scene_w=np.ones((n, 2), np.float32),
                         inst_pos=texts[labels][:, None], inst_neg=negs[:, None], inst_w=np.ones((n, 1, 2), np.float32),
                         roles=np.zeros((n, 1, d), np.float32), valid=np.ones((n, 1), bool))
    cache = TeacherCache("k", [str(i) for i in range(n)], teacher.astype(np.float16),
                         teacher[:, None].astype(np.float16), np.zeros((n, 1), np.float32), ["v"], 10.0)
    return cache, data


def test_anchored_knowledge_starts_at_the_teachers_feature_and_moves_toward_the_rationales():
    cache, data = synthetic_alignment(1, d=16)  # anchored: rationales in the teacher's (16-d) space
    g = torch.from_numpy(np.asarray(cache.global_feats, np.float32))
    regions = torch.from_numpy(np.asarray(cache.regions, np.float32))
    untrained_scene, untrained_inst = ScenePrompt(16, 16, anchored=True), InstancePrompt(16, 16, anchored=True,
                                                                                        role_dim=16)
    with torch.no_grad():
        assert torch.allclose(untrained_scene(g), torch.nn.functional.normalize(g, dim=-1), atol=1e-6)
        inst = untrained_inst(regions, g, torch.from_numpy(data.roles), torch.from_numpy(data.valid))
        assert torch.allclose(inst, torch.nn.functional.normalize(regions, dim=-1), atol=1e-6)
    before = float((g.numpy() * data.scene_pos).sum(-1).mean())
    scene, _, _ = train_prompts(cache, data, NmpaConfig(epochs=15, batch_size=32), MipdConfig(knowledge="anchored"),
                                progress=False)
    with torch.no_grad():
        after = float((scene(g).numpy() * data.scene_pos).sum(-1).mean())
    assert after > before + 0.3
    with pytest.raises(ValueError, match="teacher's space"):
        ScenePrompt(16, 8, anchored=True)
    with pytest.raises(MipdEdgeError, match="knowledge"):
        MipdConfig(knowledge="borrowed")


def test_anchored_mipd_distils_from_the_teachers_text_space(tiny_world, tmp_path, cache_dir):
    cfg = replace(tiny_config(method="mipd", epochs=1), **variant_overrides("anchored"))
    run = distill(tiny_world / "data", tmp_path / "s", cfg,
                  TrainingInputs(teacher=tiny_world / "teacher", rationales=tiny_world / "rationales.jsonl"),
                  quiet(cache_dir))
    assert {"mipd_scene", "mipd_instance", "mipd_soft"} <= set(run["history"][0]["losses"])
    info = json.loads((tmp_path / "s" / "config.json").read_text())
    mapped = distill(tiny_world / "data", tmp_path / "m", tiny_config(method="mipd", epochs=1),
                     TrainingInputs(teacher=tiny_world / "teacher", rationales=tiny_world / "rationales.jsonl"),
                     quiet(cache_dir))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["knowledge"] != info["knowledge"]
    assert mapped["weights_sha256"] != run["weights_sha256"]
    scene = np.load(cache_dir / "knowledge" / info["knowledge"] / "scene.npy")
    assert scene.shape == (info["data"]["train_images"], 384)  # the teacher's space: MiniLM's, as it was trained
    assert np.allclose(np.linalg.norm(scene, axis=1), 1, atol=1e-4)
    assert info["train"]["mipd"]["knowledge"] == "anchored"


def test_positive_only_nmpa_ignores_negatives_and_still_aligns():
    cache, data = synthetic_alignment(0)
    other = replace(data, scene_neg=-data.scene_neg, inst_neg=data.inst_neg[..., ::-1].copy())
    g = torch.from_numpy(np.asarray(cache.global_feats, np.float32))
    runs = []
    for d in (data, other):
        scene, _, losses = train_prompts(cache, d, NmpaConfig(epochs=15, batch_size=32), MipdConfig(negatives="none"),
                                         progress=False)
        with torch.no_grad():
            runs.append(scene(g).numpy())
    assert np.array_equal(runs[0], runs[1])  # the negatives never entered
    assert (runs[0] * data.scene_pos).sum(-1).mean() > 0.8 and losses["scene"] < 0.2
    scene, _, _ = train_prompts(cache, data, NmpaConfig(epochs=1, batch_size=32), progress=False)
    with torch.no_grad():
        assert not np.allclose(scene(g).numpy(), runs[0])  # with negatives, another objective


def test_random_judgment_keeps_random_candidates_with_equal_weights():
    candidates = [(f"neg {i}", f"v{i}") for i in range(6)]
    draft = Draft("pos", candidates, {}, {})
    feats = {
        "pos": np.array([1.0, 0.0]),
        **{t: np.array([np.cos(0.3 * i), np.sin(0.3 * i)]) for i, (t, _) in enumerate(candidates)},
    }
    judged = judge(draft, np.array([1.0, 0.0]), np.zeros((1, 2)), [], feats, 10.0, keep=3)
    assert [n["text"] for n in judged["glimpse"]["negatives"]] == ["neg 0", "neg 1", "neg 2"]  # closest first
    picks = [judge(draft, np.array([1.0, 0.0]), np.zeros((1, 2)), [], feats, 10.0, keep=3,
                   rng=judgment_rng("random", name))["glimpse"]["negatives"] for name in ("a.jpg", "a.jpg", "b.jpg")]
    assert picks[0] == picks[1] and len(picks[0]) == 3  # seeded by the image: a rerun draws the same
    assert [n["plausibility"] for n in picks[0]] == [1 / 3] * 3
    drawn = {tuple(n["text"] for n in judge(draft, np.array([1.0, 0.0]), np.zeros((1, 2)), [], feats, 10.0, keep=3,
                                            rng=judgment_rng("random", f"{i}.jpg"))["glimpse"]["negatives"])
             for i in range(20)}
    assert len(drawn) > 5  # not the teacher's order, nor one fixed choice
    with pytest.raises(MipdEdgeError, match="judgment"):
        judgment_rng("oracle", "a.jpg")


def test_rationale_judgments_are_never_mixed(tiny_world, tmp_path, cache_dir):
    out = tmp_path / "random.jsonl"
    generate_rationales(tiny_world / "data", tiny_world / "teacher", out, RationaleConfig(judgment="random"),
                        run=RunContext(progress=False, cache_dir=cache_dir))
    records = load_judged_rationales(out, "random")
    teacher_judged = load_judged_rationales(tiny_world / "rationales.jsonl")
    assert set(records) == set(teacher_judged)
    assert all(r["judgment"] == "random" for r in records.values())
    changed = sum(r["glimpse"]["negatives"] != teacher_judged[n]["glimpse"]["negatives"] for n, r in records.items())
    assert changed > len(records) // 2
    with pytest.raises(MipdEdgeError, match="--judgment random"):
        load_judged_rationales(tiny_world / "rationales.jsonl", "random")
    with pytest.raises(MipdEdgeError, match="chosen by 'random'"):  # completing it the other way is refused
        generate_rationales(tiny_world / "data", tiny_world / "teacher", out,
                            run=RunContext(progress=False, cache_dir=cache_dir))
    with pytest.raises(MipdEdgeError, match="--judgment random"):
        distill(tiny_world / "data", tmp_path / "s", replace(tiny_config(method="mipd"), **variant_overrides(
            "random-negatives")), TrainingInputs(teacher=tiny_world / "teacher",
                                                 rationales=tiny_world / "rationales.jsonl"), quiet(cache_dir))


def authors_objective(tokens: RationaleTokens, n: int = 2):
    torch.manual_seed(0)
    model = create_student("edge-s", image_size=64, text_dim=8, **TINY_MODEL)
    teacher = np.random.default_rng(0).normal(size=(n, 6)).astype(np.float16)
    return model, AuthorsMIPD(teacher, tokens, model, tiny_config(method="mipd"))


def test_authors_knowledge_attends_to_the_positive_tokens_only():
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(2, 4, 5)).astype(np.float16)
    padding = np.array([[False, False, True, True], [False, True, True, True]])
    t = RationaleTokens(tokens, padding, rng.normal(size=(1, 5)).astype(np.float32), np.array([0, 1]),
                        np.array([0, -1]), np.array([[1, -1]] * 2), np.array([[0, -1]] * 2))
    _, objective = authors_objective(t)
    query = torch.randn(2, 8)
    with torch.no_grad():
        k = objective.knowledge(query, torch.tensor([0, 1]), objective.scene_keys)
        objective.tokens[0, 2:] = 100.0  # padding: never read
        assert torch.allclose(k, objective.knowledge(query, torch.tensor([0, 1]), objective.scene_keys))
        # one token to attend to: the knowledge is that token's value, whatever the query
        one = objective.knowledge(torch.randn(2, 8), torch.tensor([1, 1]), objective.scene_keys)
        assert torch.allclose(one[0], one[1], atol=1e-6) and torch.allclose(one[1], k[1], atol=1e-6)
        assert torch.allclose(k.norm(dim=-1), torch.ones(2))


def test_authors_losses_by_hand_and_every_part_learns():
    rng = np.random.default_rng(2)
    t = RationaleTokens(rng.normal(size=(2, 3, 5)).astype(np.float16), np.zeros((2, 3), bool),
                        rng.normal(size=(2, 5)).astype(np.float32), np.array([0, 1]), np.array([0, -1]),
                        np.array([[1, 0, -1], [0, -1, -1]]), np.array([[1, -1, -1], [0, -1, -1]]))
    model, objective = authors_objective(t)
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.isclose(hinge(x, torch.tensor([[1.0, 1.0], [-1.0, 0.0]])), torch.tensor(2 ** -0.5 / 2))
    assert hinge(x[:0], x).item() == 0.0
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 3, 8), torch.randn(2, 8), torch.ones(2, 3))
    batch = Batch(torch.zeros(2, 3, 64, 64), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, 3, dtype=torch.long),
                  torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool), torch.ones(2, 3), torch.tensor([0, 1]))
    with torch.no_grad():
        query = objective.query(torch.from_numpy(objective.global_.astype(np.float32)))
        scene = objective.knowledge(query, torch.tensor([0, 1]), objective.scene_keys)
        first_role = objective.knowledge(query[:1], torch.tensor([1]), objective.instance_keys)
        # negatives that point where the knowledge of image 0 (and of its first role) points: cos 1
        for layer, direction in ((objective.scene_negative, scene[0]), (objective.instance_negative, first_role[0])):
            layer.weight.zero_()
            layer.bias.copy_(10 * direction)
    losses = objective(model, out, batch, torch.zeros(2, 4), torch.zeros(4, 8))
    assert set(losses) == {"authors_distill", "authors_scene_negative", "authors_instance_negative"}
    assert torch.isclose(losses["authors_distill"], 2.0 * (out["glance"] - scene).abs().mean())
    # image 1 has no glimpse negative: the mean is over image 0 alone, cos 1, weight 5
    assert torch.isclose(losses["authors_scene_negative"], torch.tensor(5.0))
    # at cos 1 the cosine's gradient vanishes (any seen there is rounding noise, and one thread
    # count rounds to exactly 0): the learning check turns the negatives a little off the knowledge
    with torch.no_grad():
        turn = torch.Generator().manual_seed(0)
        for layer in (objective.scene_negative, objective.instance_negative):
            layer.bias.add_(torch.randn(layer.bias.shape, generator=turn))
    losses = objective(model, out, batch, torch.zeros(2, 4), torch.zeros(4, 8))
    sum(losses.values()).backward()
    for name, p in objective.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} is never trained"
    assert model.glance_head.weight.grad.abs().sum() > 0  # the student is pulled to the knowledge


def test_instance_knowledge_meets_the_noun_embeddings_without_a_head():
    torch.manual_seed(0)
    model = create_student("edge-s", image_size=64, text_dim=8, **TINY_MODEL)
    instance = np.random.default_rng(0).normal(size=(3, 6, 8)).astype(np.float16)  # 3 images, 6 role slots
    cfg = replace(tiny_config(method="mipd"), **variant_overrides("gaze-on-nouns"))
    objective = MIPDDistill(None, instance, None, model, cfg, instance_head=cfg.mipd.instance_head)
    assert not list(objective.parameters())  # nothing between the nouns and the knowledge
    out = model(torch.randn(2, 3, 64, 64), torch.randn(2, 6, 8), torch.randn(2, 8), torch.ones(2, 6))
    mask = torch.tensor([[1.0, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    batch = Batch(torch.zeros(2, 3, 64, 64), torch.zeros(2, dtype=torch.long), torch.zeros(2, 6, 3, dtype=torch.long),
                  torch.zeros(2, 6, 4), torch.zeros(2, 6, dtype=torch.bool), mask, torch.tensor([2, 0]))
    losses = objective(model, out, batch, torch.zeros(2, 4), torch.zeros(4, 8))
    target = torch.from_numpy(instance[[2, 0]].astype(np.float32))
    by_hand = [1 - F.cosine_similarity(out["nouns"][b, r], target[b, r], dim=0) for b, r in mask.nonzero()]
    assert set(losses) == {"mipd_instance"}
    assert torch.isclose(losses["mipd_instance"], cfg.gaze_align_weight * torch.stack(by_hand).mean())
    losses["mipd_instance"].backward()
    assert model.noun_head.weight.grad.abs().sum() > 0  # the noun head itself is pulled
    with_head = MIPDDistill(None, instance, None, model, tiny_config(method="mipd"))
    assert [n for n, _ in with_head.named_parameters()] == ["role_proj.weight", "role_proj.bias"]
    with pytest.raises(MipdEdgeError, match="HOI distillation has it for its pairs' features only"):
        hoi_mipd_objective(HoiObjectiveInputs(cfg, model, None, None, "teacher", "rationales", "pairs",
                                              quiet(Path("cache"))))


@pytest.mark.parametrize("variant, terms", [
    ("glimpse-positive", {"mipd_soft", "mipd_scene"}),
    ("gaze", {"mipd_soft", "mipd_instance"}),
    ("with-teacher-features", {"mipd_soft", "mipd_scene", "mipd_instance", "kd_glance", "kd_gaze"}),
    ("scene-head", {"mipd_soft", "mipd_scene", "mipd_instance"}),
    ("teacher-glance", {"mipd_soft", "mipd_instance", "kd_glance", "kd_gaze"}),
    ("gaze-on-nouns", {"mipd_soft", "mipd_scene", "mipd_instance"}),
])
def test_variants_distil_what_they_name(tiny_world, tmp_path, cache_dir, variant, terms):
    cfg = replace(tiny_config(method="mipd", epochs=1), **variant_overrides(variant))
    run = distill(tiny_world / "data", tmp_path / variant, cfg,
                  TrainingInputs(teacher=tiny_world / "teacher", rationales=tiny_world / "rationales.jsonl"),
                  quiet(cache_dir))
    assert set(run["history"][0]["losses"]) == {"verb", "noun", "box_l1", "box_giou", "exists"} | terms
    info = json.loads((tmp_path / variant / "config.json").read_text())
    assert info["train"]["mipd"] == MIPD_VARIANTS[variant]["mipd"].__dict__ and info["method"] == "mipd"
    weights, _ = load_checkpoint(tmp_path / variant / "checkpoints" / "last.safetensors")
    heads = {k.split(".")[1] for k in weights if k.startswith("objective.")}
    assert ("scene_proj" in heads) == (variant == "scene-head")  # the glance itself, or a projection of it
    assert ("role_proj" in heads) == (variant not in ("glimpse-positive", "gaze-on-nouns"))  # the same for nouns


@pytest.mark.slow
def test_the_authors_formulation_trains_as_a_method_of_its_own(tiny_world, tmp_path, cache_dir, capsys):
    """Registered by the research code, never offered by the command line."""
    from mipd_edge.cli import main

    out = tmp_path / "authors"
    cfg = replace(tiny_config(method="mipd", epochs=1), **variant_overrides("authors"))
    distill(tiny_world / "data", out, cfg,
            TrainingInputs(teacher=tiny_world / "teacher", rationales=tiny_world / "rationales.jsonl"),
            quiet(cache_dir))
    info = json.loads((out / "config.json").read_text())
    assert info["method"] == "authors" and info["rationales"] == str(tiny_world / "rationales.jsonl")
    assert info["train"]["loss"]["verb_smoothing"] == 0.3 and info["train"]["loss"]["box_giou"] == 5.0
    losses = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["losses"]
    assert {"authors_distill", "authors_scene_negative", "authors_instance_negative"} <= set(losses)
    assert "mipd_soft" not in losses  # the authors' formulation has no soft-label term
    with pytest.raises(SystemExit):
        main(["distill", "--data", str(tiny_world / "data"), "--out", str(tmp_path / "x"), "--method", "authors"])
    assert "invalid choice: 'authors'" in capsys.readouterr().err


@pytest.mark.slow
def test_component_ablation_over_seeds_resumes_and_reports_every_seed(tmp_path, cache_dir, caplog):
    from mipd_edge.data.swig import SituDataset
    from mipd_edge.metrics import evaluate
    from mipd_edge.pipeline import PRESETS, Pipeline
    from mipd_lab.components import format_components, format_seeds, machine_label, run_components, this_machine

    cfg = replace(PRESETS["quick"], train=96, dev=24, test=32, teacher_epochs=1, student_epochs=1)
    pipe = Pipeline(tmp_path / "work", cfg, progress=False)
    results, plot = tmp_path / "ablation.json", tmp_path / "ablation.png"
    rows = ["authors", "teacher"]
    made = {"command": "python benchmarks/ablation.py --components", "date": "2026-12-06T03:00:00+00:00"}
    out = run_components(pipe, rows, [0, 1], results, plot, made)
    assert json.loads(results.read_text()) == out and plot.stat().st_size > 10_000
    assert out["provenance"] == made  # the file says how it was made
    assert list(out["rows"]) == rows and all(set(out["rows"][r]["seeds"]) == {"0", "1"} for r in rows)
    test = SituDataset(pipe.data, "test")
    folders = {"authors": "student-authors-seed{}", "teacher": "teacher-seed{}"}
    for row, pattern in folders.items():
        for seed in (0, 1):
            folder = pipe.workdir / ("teacher" if row == "teacher" and seed == 0 else pattern.format(seed))
            info = json.loads((folder / "config.json").read_text())
            assert info["train"]["seed"] == seed
            preds = json.loads((folder / "test-predictions.json").read_text())
            # M is exactly what `mipd-edge eval --splits` computes from the run's predictions
            assert out["rows"][row]["seeds"][str(seed)] == json.loads(json.dumps(
                evaluate(test.annotations, test.space, preds, pipe.data / "splits.json")))
    unseen = [m["unseen"]["top1"]["verb"] for m in out["rows"]["authors"]["seeds"].values()]
    s = out["summary"]["authors"]["unseen"]["top1_verb"]
    assert (s["min"], s["max"]) == (min(unseen), max(unseen)) and abs(s["mean"] - sum(unseen) / 2) < 1e-9
    assert "mipd_vs_none" not in out["goals"]  # its rows did not run
    assert "authors" in format_components(out) and "[" in format_components(out, markdown=True)
    lines = format_seeds(out, markdown=True).splitlines()  # header, rule, 2 rows x 2 seeds
    t = out["rows"]["teacher"]["seeds"]["1"]
    cells = [t["seen"]["top1"]["verb"], t["rare"]["top1"]["verb"], t["unseen"]["top1"]["verb"],
             t["all"]["top1"]["value"], t["all"]["top1"]["grnd_value"], t["all"]["gt_verb"]["value"],
             t["all"]["gt_verb"]["grnd_value"]]
    here = this_machine()
    assert len(lines) == 6 and lines[-1] == "| teacher | 1 | " + " | ".join(f"{v:.1f}" for v in cells) + \
        f" | {machine_label(here)} |"
    # every run: the machine that trained it and its history, epoch by epoch, from its metrics.jsonl
    assert out["machines"] == {r: {"0": here, "1": here} for r in rows}
    history = out["training"]["authors"]["1"]
    logged = json.loads((pipe.workdir / "student-authors-seed1" / "metrics.jsonl").read_text())
    assert [e["epoch"] for e in history] == [1] and history[0]["loss"] == round(logged["loss"], 4)
    assert history[0]["dev"]["gt_verb_value"] == round(logged["dev"]["all"]["gt_verb"]["value"], 3)
    assert set(out["training"]) == set(rows) and all(len(s) == 2 for s in out["training"].values())

    caplog.clear()
    with caplog.at_level("INFO", logger="mipd_edge.pipeline"):
        again = run_components(pipe, ["teacher"], [0, 1], results)  # a rerun of one row keeps the others
    assert not [r for r in caplog.records if r.getMessage().endswith(": running")]
    assert again["rows"] == out["rows"] and list(again["rows"]) == rows  # in the ablation's order, not the run's
    assert again["machines"] == out["machines"] and again["training"] == out["training"]
    # a run that has not reached a row yet keeps, meanwhile, the seeds the file has for it
    from mipd_lab.components import kept_results, setup

    kept = kept_results(results, setup(pipe, ["authors"], [0, 1]), ["authors"])
    assert kept["rows"]["authors"]["seeds"] == out["rows"]["authors"]["seeds"] and "teacher" in kept["rows"]
    # a file from before runs recorded their machine: each run gets its setup's machine
    older = {k: v for k, v in out.items() if k not in ("machines", "training")}
    older["setup"] = {**out["setup"], "device": {"cpu": "AMD EPYC", "cpu_features": ["avx2"], "gpu": ["none"]}}
    results.write_text(json.dumps(older))
    kept = kept_results(results, setup(pipe, ["authors"], [0, 1]), ["authors"])
    assert kept["machines"]["teacher"] == {"0": {"cpu": "AMD EPYC", "cpu_features": ["avx2"]}} | {
        "1": {"cpu": "AMD EPYC", "cpu_features": ["avx2"]}} and kept["training"] == {}
    # a new sitting reports what earlier ones finished before it trains anything new
    results.unlink()
    caplog.clear()
    with caplog.at_level("INFO", logger="mipd_lab.components"):
        both = run_components(pipe, ["none", "authors"], [0], results)
    order = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ablation: ")]
    assert order == ["ablation: authors, seed 0", "ablation: none, seed 0"]  # none comes first when neither ran
    assert both["rows"]["authors"]["seeds"]["0"] == out["rows"]["authors"]["seeds"]["0"]


@pytest.mark.slow
def test_the_knowledge_probe_scores_each_target_by_split(tiny_world, cache_dir, tmp_path):
    """benchmarks/knowledge_probe.py on a run laid out as the ablation's (data, teacher,
    rationales), and its scoring on a case worked by hand."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "knowledge_probe.py"
    spec = importlib.util.spec_from_file_location("knowledge_probe", script)
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])  # best: a, b, a, a
    gold = [{"a"}, {"a"}, {"b"}, {"b", "a"}]  # the last: any of two annotators' labels
    got = probe.top1_by_split(scores, ["a", "b"], gold, ["v1", "v1", "v2", "v2"],
                              {"seen": ["v1"], "rare": [], "unseen": ["v2"]})
    assert got["seen"] == 50.0 and got["unseen"] == 50.0 and np.isnan(got["rare"])

    r = subprocess.run([sys.executable, str(script), "--run", str(tiny_world), "--cache", str(cache_dir),
                        "--out", str(tmp_path / "probe"), "--json", str(tmp_path / "probe.json"),
                        "--variants", "full", "no-instance-prompt", "--seeds", "0", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads((tmp_path / "probe.json").read_text())
    assert out["setup"]["test_images"] == 48 and sum(out["setup"]["verbs"].values()) == 48
    assert out["setup"]["role_slots"] > 48  # every verb has at least one role with a noun
    for kind, targets in (("verbs", ("teacher", "scene knowledge", "scene knowledge, no-instance-prompt")),
                          ("nouns", ("teacher", "instance knowledge", "instance knowledge, no-instance-prompt"))):
        assert list(out[kind]) == list(targets)
        for target in targets:
            assert set(out[kind][target]) - {"seeds"} == {"seen", "rare", "unseen"}
            cell = r"(nan|[0-9.]+)" + ("" if target == "teacher" else r" \[(nan|[0-9.]+), (nan|[0-9.]+)\]")
            assert re.search(rf"^{kind} +{target}( +{cell}){{3}}$", r.stdout, re.M), r.stdout
            if target != "teacher":  # knowledge: the mean over NMPA seeds, beside each seed
                seeds = out[kind][target]["seeds"]
                assert set(seeds) == {"0", "1"}
                assert out[kind][target]["seen"] == pytest.approx((seeds["0"]["seen"] + seeds["1"]["seen"]) / 2)
    keys = out["setup"]["knowledge"]
    assert set(keys) == {"full", "no-instance-prompt"} and set(keys["full"]) == {"0", "1"}
    assert len({k for v in keys.values() for k in v.values()}) == 4  # each variant and seed its own NMPA run
    # a variant whose knowledge is not NMPA's in the student's space is refused before any work
    bad = subprocess.run([sys.executable, str(script), "--run", str(tiny_world), "--variants", "authors"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: variant 'authors'")
    folder = tmp_path / "probe" / "knowledge" / keys["full"]["0"]
    assert (folder / "scene_prompt.safetensors").is_file() and (folder / "instance_prompt.safetensors").is_file()
    # the kept prompts map the training images' teacher features to the very knowledge NMPA made
    from mipd_edge.text import load_text_encoder
    from mipd_edge.train.data import training_view
    from mipd_edge.train.nmpa import Knowledge

    knowledge = Knowledge(keys["full"]["0"], np.load(folder / "scene.npy"), np.load(folder / "instance.npy"),
                          folder)
    features = cache_dir / "teacher" / json.loads((folder / "meta.json").read_text())["teacher_cache"]
    _, train_set, train_vocab = training_view(tiny_world / "data", load_text_encoder("minilm", cache_dir / "text"))
    regions, global_feats = np.load(features / "regions.npy"), np.load(features / "global.npy")
    roles, _, _ = probe.role_slots(train_set, train_vocab, regions.shape[1])
    valid = np.abs(knowledge.instance).sum(-1) > 0
    assert valid.any() and np.allclose(knowledge.scene_of(global_feats), knowledge.scene, atol=1e-5)
    assert np.allclose(knowledge.instance_of(regions, global_feats, roles, valid), knowledge.instance, atol=1e-5)
