import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY_MODEL, quiet, tiny_config
from mipd_edge.context import RunContext
from mipd_edge.data.split import load_split, training_verbs
from mipd_edge.data.swig import read_annotations, read_space
from mipd_edge.errors import MipdEdgeError
from mipd_edge.metrics import evaluate
from mipd_edge.train.checkpoint import load_checkpoint, save_checkpoint
from mipd_edge.train.distill import distill
from mipd_edge.train.loop import random_state, restore_random_state
from mipd_edge.train.task import TrainingInputs
from mipd_edge.vocabulary import Vocabulary


@pytest.fixture(scope="module")
def students(tiny_world, tmp_path_factory, cache_dir):
    """One tiny student per method, two epochs each."""
    out = tmp_path_factory.mktemp("students")
    runs = {}
    for method in ("none", "kd", "mipd"):
        runs[method] = distill(tiny_world / "data", out / method, tiny_config(method=method, epochs=2),
                               TrainingInputs(teacher=tiny_world / "teacher",
                                              rationales=tiny_world / "rationales.jsonl"),
                               quiet(cache_dir))
        runs[method]["dir"] = out / method
    return runs


@pytest.mark.parametrize("method, terms", [("none", set()), ("kd", {"kd_glance", "kd_gaze", "kd_soft"}),
                                           ("mipd", {"mipd_scene", "mipd_instance", "mipd_soft"})])
def test_each_method_trains_and_writes_a_model(students, tiny_world, method, terms):
    run = students[method]
    history = run["history"]
    assert len(history) == 2 and history[1]["loss"] < history[0]["loss"]
    assert set(history[0]["losses"]) == {"verb", "noun", "box_l1", "box_giou", "exists"} | terms
    out = run["dir"]
    info = json.loads((out / "config.json").read_text())
    assert info["kind"] == "student" and info["method"] == method
    assert set(info["dev"]) == {"all", "seen", "rare", "unseen"}
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    split = load_split(tiny_world / "data" / "splits.json")
    assert Vocabulary.load(out / "vocabulary.npz").verbs == training_verbs(split)  # never an unseen verb


def test_predict_dataset_cli_writes_scorable_predictions(students, tiny_world, tmp_path):
    out = tmp_path / "preds.json"
    r = subprocess.run([sys.executable, "-m", "mipd_edge.cli", "predict-dataset", "--model",
                        str(students["mipd"]["dir"]), "--data", str(tiny_world / "data"), "--split", "test",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    preds = json.loads(out.read_text())
    space = read_space(tiny_world / "data" / "space.json")
    test = read_annotations(tiny_world / "data" / "test.json", space)
    assert set(preds) == set(test)
    entry = next(iter(preds.values()))
    assert len(entry["verbs"]) == 5 and all(v["roles"] for v in entry["verbs"]) and entry["gt_verb_roles"]
    metrics = evaluate(test, space, preds, load_split(tiny_world / "data" / "splits.json"))
    assert "gt_verb" in metrics["unseen"]


@pytest.mark.slow
def test_resume_after_a_real_sigkill_is_exact(tiny_world, tmp_path):
    """`mipd-edge distill` killed with SIGKILL after its first epoch, then `--resume`: the
    final weights are bit-identical to an uninterrupted run's. Every run is its own fresh
    process, as a user's would be: CPU kernels reduce in an order that depends on the thread
    count, which an earlier test in this process may have changed."""
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({"model": TINY_MODEL, "eval_batch_size": 32}))

    def command(out, *extra):
        return [sys.executable, "-m", "mipd_edge.cli", "distill", "--data", str(tiny_world / "data"),
                "--out", str(out), "--method", "none", "--epochs", "4", "--seed", "3", "--image-size", "64",
                "--batch-size", "16", "--config", str(config), *extra]

    whole, out = tmp_path / "whole", tmp_path / "killed"
    r = subprocess.run(command(whole), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (
            (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text().count("\n") >= 1):
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no handler runs, whatever was being written stays as it was
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 1 <= len(done) < 4
    r = subprocess.run(command(out, "--resume"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    history = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert history == [1, 2, 3, 4]
    assert (out / "weights.safetensors").read_bytes() == (whole / "weights.safetensors").read_bytes()


def test_unseen_verbs_cannot_influence_student_training(tiny_world, tmp_path, cache_dir):
    """Rewrite every unseen verb's description and delete its training images: rationales
    and the trained student must come out bit-identical."""
    data = tiny_world / "data"
    other = tmp_path / "data"
    shutil.copytree(data, other)
    split = load_split(data / "splits.json")
    space = json.loads((other / "space.json").read_text())
    for verb in split["unseen"]:
        entry = space["verbs"][verb]
        entry["def"] = entry["abstract"] = "a completely different description of something else"
        for role in entry["roles"].values():
            role["def"] = "changed"
    (other / "space.json").write_text(json.dumps(space))
    train = json.loads((other / "train.json").read_text())
    for name in [n for n, e in train.items() if e["verb"] in split["unseen"]]:
        (other / "images" / name).unlink()
        del train[name]
    (other / "train.json").write_text(json.dumps(train))

    from mipd_edge.train.rationales import generate_rationales

    generate_rationales(other, tiny_world / "teacher", tmp_path / "r.jsonl",
                        run=RunContext(progress=False, cache_dir=cache_dir))
    assert (tmp_path / "r.jsonl").read_bytes() == (tiny_world / "rationales.jsonl").read_bytes()
    cfg = tiny_config(method="mipd", epochs=1)
    a = distill(data, tmp_path / "a", cfg,
                TrainingInputs(teacher=tiny_world / "teacher", rationales=tiny_world / "rationales.jsonl"),
                quiet(cache_dir))
    b = distill(other, tmp_path / "b", cfg,
                TrainingInputs(teacher=tiny_world / "teacher", rationales=tmp_path / "r.jsonl"), quiet(cache_dir))
    assert a["weights_sha256"] == b["weights_sha256"]
    # checkpoint selection looks at training verbs only, so it cannot tell the two worlds apart either
    assert a["history"][0]["selection_score"] == b["history"][0]["selection_score"]


def test_a_student_is_the_same_whether_its_caches_were_filled_before(tiny_world, tmp_path):
    """Filling the teacher and NMPA caches draws random numbers (NMPA trains prompts) that reading
    them does not: the student trained on cold caches and the one trained on warm caches are one."""
    cfg = tiny_config(method="mipd", epochs=1)
    inputs = TrainingInputs(teacher=tiny_world / "teacher", rationales=tiny_world / "rationales.jsonl")
    cold = distill(tiny_world / "data", tmp_path / "cold", cfg, inputs, quiet(tmp_path / "cache"))
    warm = distill(tiny_world / "data", tmp_path / "warm", cfg, inputs, quiet(tmp_path / "cache"))
    assert cold["weights_sha256"] == warm["weights_sha256"]


def test_missing_inputs_give_clear_errors(tiny_world, tmp_path, cache_dir):
    with pytest.raises(MipdEdgeError, match="needs --teacher"):
        distill(tiny_world / "data", tmp_path / "x", tiny_config(method="kd"), run=quiet(cache_dir))
    with pytest.raises(MipdEdgeError, match="needs --rationales"):
        distill(tiny_world / "data", tmp_path / "x", tiny_config(method="mipd"),
                TrainingInputs(teacher=tiny_world / "teacher"), quiet(cache_dir))
    (tmp_path / "partial.jsonl").write_text("")
    with pytest.raises(MipdEdgeError, match="have no rationales"):
        distill(tiny_world / "data", tmp_path / "x", tiny_config(method="mipd"),
                TrainingInputs(teacher=tiny_world / "teacher", rationales=tmp_path / "partial.jsonl"), quiet(cache_dir))


@pytest.mark.slow
def test_two_ranks_of_batch_8_train_as_one_process_of_batch_16(tiny_world, tmp_path, cache_dir):
    """`torchrun --nproc-per-node 2 -m mipd_edge.cli distill` as the README shows it, with a
    teacher (kd), so the rank-0-first stage (the teacher cache) runs with two ranks: the same
    16 images per step, split over two ranks, give the weights of one process at batch 16.
    What differs is only batch norm, whose statistics each rank takes over its own 8 images."""
    from safetensors.numpy import load_file

    # a narrow ViT student without dropout: layer norm only, so nothing depends on which rank
    # an image is on (batch norm takes its statistics per rank; each rank draws its own dropout)
    config = tmp_path / "tiny.yaml"
    # FP32: bf16 rounds each rank's half-batch differently, which is not what this compares
    config.write_text(json.dumps({"model": {"width": 0.03, "d_model": 32, "heads": 2, "dec_layers": 1, "ffn": 64,
                                            "dropout": 0.0}, "eval_batch_size": 32, "cpu_autocast": "off"}))

    def distill_cmd(out, batch, seed=3):
        return ["-m", "mipd_edge.cli", "distill", "--data", str(tiny_world / "data"), "--out", str(out),
                "--method", "kd", "--teacher", str(tiny_world / "teacher"), "--epochs", "1", "--seed", str(seed),
                "--student", "authors", "--image-size", "56", "--batch-size", str(batch), "--config", str(config)]

    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", *distill_cmd(tmp_path / "ddp", 8)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, *distill_cmd(tmp_path / "one", 16)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, *distill_cmd(tmp_path / "half", 8)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    def weights(run):
        return load_file(tmp_path / run / "weights.safetensors")

    def distance(a, b):
        return np.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in a))

    written = sorted(str(p.relative_to(tmp_path / "ddp")) for p in (tmp_path / "ddp").rglob("*"))
    assert written == sorted(str(p.relative_to(tmp_path / "one")) for p in (tmp_path / "one").rglob("*"))
    ddp, one, half = weights("ddp"), weights("one"), weights("half")
    # the yardstick: the same images and steps at batch 8 in one process end this far from batch 16
    assert distance(ddp, one) < 0.01 * distance(half, one)


def test_a_teacher_that_saw_the_students_images_is_refused(tiny_world, tmp_path, cache_dir):
    from mipd_edge.train.seen import SEEN_FILE, record_seen

    teacher = shutil.copytree(tiny_world / "teacher", tmp_path / "teacher")
    record_seen(teacher, tiny_world / "teacher-data", sources=[tiny_world / "data"])  # as if cut from their data
    with pytest.raises(MipdEdgeError, match=r"trained on \d+ images of .*never have seen the students"):
        distill(tiny_world / "data", tmp_path / "s", tiny_config(method="kd"), TrainingInputs(teacher=teacher),
                quiet(cache_dir))
    (teacher / SEEN_FILE).unlink()
    with pytest.raises(MipdEdgeError, match="does not record which images"):
        distill(tiny_world / "data", tmp_path / "s", tiny_config(method="kd"), TrainingInputs(teacher=teacher),
                quiet(cache_dir))


def scaled_steps(device: str, steps: int = 3) -> "torch.amp.GradScaler":
    """A loss scaler after a few steps that grow its scale (every step, from 1024)."""
    scaler = torch.amp.GradScaler(device, init_scale=1024.0, growth_interval=1)
    p = torch.nn.Parameter(torch.ones(3, device=device))
    opt = torch.optim.SGD([p], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        scaler.scale((p * 2).sum()).backward()
        scaler.step(opt)
        scaler.update()
    return scaler


def test_checkpoints_keep_the_loss_scale_and_the_random_state(tmp_path):
    """What an exact resume on a GPU needs beyond weights and optimizer: the AMP loss scale
    (the CPU scaler stands in for CUDA's here) and the random generators."""
    device = torch.device("cpu")
    scaler = scaled_steps("cpu")
    torch.manual_seed(5)
    torch.rand(3)
    save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(1)}, random_state(scaler, device))
    expected = torch.rand(4)
    _, state = load_checkpoint(tmp_path / "c.safetensors")
    fresh = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=1)
    torch.manual_seed(0)
    restore_random_state(state, fresh, device)
    assert fresh.get_scale() == scaler.get_scale() == 8192.0
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on the development machines)")
def test_checkpoints_keep_the_cuda_random_state_and_loss_scale(tmp_path):
    device = torch.device("cuda", torch.cuda.current_device())
    scaler = scaled_steps("cuda")
    torch.cuda.manual_seed(5)
    torch.rand(3, device=device)
    save_checkpoint(tmp_path / "c.safetensors", {"w": torch.zeros(1)}, random_state(scaler, device))
    expected = torch.rand(4, device=device)
    _, state = load_checkpoint(tmp_path / "c.safetensors")
    fresh = torch.amp.GradScaler("cuda", init_scale=1.0, growth_interval=1)
    torch.cuda.manual_seed(0)
    restore_random_state(state, fresh, device)
    assert fresh.get_scale() == scaler.get_scale() == 8192.0
    assert torch.equal(torch.rand(4, device=device), expected)


def test_cpu_autocast_trains_in_bf16_only_where_the_cpu_has_it(tiny_world, tmp_path, cache_dir, monkeypatch):
    """bf16 where asked and native; auto falls back to FP32 on a CPU without bf16 units (read
    from its flags, never assumed), and an explicit bf16 there is one clear error."""
    from mipd_edge.machine import bf16_capable
    from mipd_edge.train import loop

    cpu = torch.device("cpu")
    run = distill(tiny_world / "data", tmp_path / "auto", tiny_config(method="none", epochs=1, cpu_autocast="auto"),
                  TrainingInputs(), quiet(cache_dir))
    assert run["history"][0]["autocast"] == ("bfloat16" if bf16_capable() else "off")
    assert np.isfinite(run["history"][0]["loss"]) and run["best_selection_score"] > -np.inf
    assert loop.training_autocast(tiny_config(cpu_autocast="off"), cpu) is None
    monkeypatch.setattr(loop, "bf16_capable", lambda: False)
    assert loop.training_autocast(tiny_config(cpu_autocast="auto"), cpu) is None
    with pytest.raises(MipdEdgeError, match="cpu_autocast bf16 needs a CPU with AVX512_BF16 or AMX-BF16"):
        loop.training_autocast(tiny_config(cpu_autocast="bf16"), cpu)
    assert loop.training_autocast(tiny_config(cpu_autocast="bf16"), torch.device("cuda")) == torch.float16
    with pytest.raises(MipdEdgeError, match="cpu_autocast must be one of off, bf16, auto"):
        tiny_config(cpu_autocast="fp8")
