"""The training loop every model in the SDK goes through (students of all three methods,
and the SynthSitu teacher): read it top to bottom in one sitting.

Per epoch: a permutation of the training set drawn from (seed, epoch), batches of
letterboxed images, GSR losses plus whatever the objective adds, AdamW with warm-up and a
cosine schedule, then an evaluation on dev, a checkpoint and a metrics line. Under
``torchrun`` each rank takes its share of every permutation and DistributedDataParallel
averages the gradients; only rank 0 evaluates and writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..context import RunContext
from ..deploy.postprocess import role_inputs
from ..errors import MipdEdgeError, OutputExistsError
from ..files import WEIGHTS_FILE, atomic_write_bytes
from ..machine import bf16_capable
from ..models.store import load_state, save_model
from ..models.student import Student
from ..progress import progress_bar
from ..vocabulary import Vocabulary
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import Batch
from .losses import gsr_losses

if TYPE_CHECKING:
    from .task import TrainingRun

log = logging.getLogger(__name__)

# An objective adds loss terms (distillation, the teacher's region loss) to the GSR losses.
# It is a module so that its own heads are trained, checkpointed and synchronised with the model.
Evaluator = Callable[[Student], tuple[dict, float]]  # model -> (metrics to log, selection score)


class Objective(nn.Module):
    def forward(self, model: Student, out: dict[str, torch.Tensor], batch: Batch, verb_logits: torch.Tensor,
                noun_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """Single process, or one process per rank when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return Distributed(rank, world, torch.device("cuda", local))
    return Distributed(rank, world, torch.device("cpu"))


class TrainStep(nn.Module):
    """Model + objective + the training vocabulary as tensors: one forward gives all losses."""

    def __init__(self, model: Student, objective: Objective, vocabulary: Vocabulary, cfg: TrainConfig):
        super().__init__()
        self.model, self.objective, self.cfg = model, objective, cfg
        self.trained = 0.0  # the fraction of training done, which the loop keeps up to date
        roles, verbs, mask = role_inputs(vocabulary, vocabulary.verbs, model.cfg.max_roles)
        self.register_buffer("verb_emb", torch.from_numpy(verbs), persistent=False)
        self.register_buffer("role_emb", torch.from_numpy(roles), persistent=False)
        self.register_buffer("role_mask", torch.from_numpy(mask), persistent=False)
        self.register_buffer("noun_emb", torch.from_numpy(vocabulary.noun_matrix()[1]), persistent=False)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        v = batch.verbs
        out = self.model(batch.images, self.role_emb[v], self.verb_emb[v], batch.role_mask)
        verb_logits = self.model.verb_scale() * out["glance"] @ self.verb_emb.T
        noun_logits = self.model.noun_scale() * out["nouns"] @ self.noun_emb.T
        losses = gsr_losses(out, batch, verb_logits, noun_logits, self.cfg.loss)
        losses.update(weighted(self.objective(self.model, out, batch, verb_logits, self.noun_emb),
                               self.cfg.distillation_weight(self.trained)))
        return losses


def weighted(terms: dict[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """Distillation terms at a weight (left as they are at full weight)."""
    return terms if weight == 1.0 else {k: weight * v for k, v in terms.items()}


def to_device(batch, device: torch.device):
    """A batch dataclass with every tensor, and every batch inside it, moved to ``device``."""
    def move(value):
        if value is None or torch.is_tensor(value):
            return value if value is None else value.to(device, non_blocking=True)
        return to_device(value, device)
    return type(batch)(**{k: move(v) for k, v in vars(batch).items()})


def lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))


def main_first(env: Distributed, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 first (it fills shared caches), then on the other ranks. It runs on a
    fork of torch's random state: filling a cache (NMPA trains prompts) draws random numbers
    that reading it does not, and a student must not depend on which of the two happened."""
    if env.world > 1 and not env.main:
        dist.barrier()
    with torch.random.fork_rng():
        result = fn()
    if env.world > 1 and env.main:
        dist.barrier()
    return result


def state_digest(model: nn.Module) -> str:
    """SHA-256 of the weights: equal digests, bit-identical models (runs are deterministic)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def prepare_output(out: Path, resume: bool, overwrite: bool, remove: bool = False) -> None:
    """Refuse to resume from nothing, or to train over a model without ``overwrite``; with
    ``remove``, clear an old model that is to be trained again. The training commands call
    it first, so that a refusal comes before minutes of data preparation."""
    last = out / "checkpoints" / "last.safetensors"
    if resume:
        if not last.is_file():
            raise MipdEdgeError(f"nothing to resume: {last} does not exist (train without --resume to start)")
        return
    trained = [p for p in (out / "config.json", last) if p.exists()]
    if not trained:
        return
    if not overwrite:
        raise OutputExistsError(
            f"{out} already holds a {'model' if trained[0].name == 'config.json' else 'checkpoint'}; "
            "pass --resume to continue it or --overwrite to train it again"
        )
    if remove:
        for name in ("config.json", WEIGHTS_FILE, "metrics.jsonl"):
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)


def random_state(scaler: torch.amp.GradScaler, device: torch.device) -> dict[str, Any]:
    """What an exact resume needs beyond weights and optimizer: the CPU random generator,
    on a GPU its random generator too, and the mixed-precision loss scale, which grows and
    shrinks with the steps taken."""
    state: dict[str, Any] = {"torch_rng": torch.get_rng_state(), "scaler": scaler.state_dict()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_random_state(state: dict[str, Any], scaler: torch.amp.GradScaler, device: torch.device) -> None:
    torch.set_rng_state(state["torch_rng"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if device.type == "cuda" and "cuda_rng" in state:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def training_autocast(cfg: TrainConfig, device: torch.device) -> Optional[torch.dtype]:
    """The arithmetic autocast trains in (None: FP32): FP16 with loss scaling on CUDA; on a CPU,
    bf16 where ``cfg.cpu_autocast`` asks for it and the CPU has bf16 units (AVX512_BF16 or
    AMX-BF16, read from the CPU's flags: emulated bf16 would be slower than FP32)."""
    if device.type == "cuda":
        return torch.float16
    if cfg.cpu_autocast == "off" or device.type != "cpu":
        return None
    if not bf16_capable():
        if cfg.cpu_autocast == "bf16":
            raise MipdEdgeError("cpu_autocast bf16 needs a CPU with AVX512_BF16 or AMX-BF16 (this one has neither); "
                                "use off or auto")
        return None
    return torch.bfloat16


def train(job: "TrainingRun", cfg: TrainConfig, out: Path, env: Distributed, run: RunContext) -> dict[str, Any]:
    """Train, keeping ``out/weights.safetensors`` + ``config.json`` at the best dev score.

    ``run.resume`` continues from ``out``'s last checkpoint (an error if there is none); a
    folder that already holds a trained model or a checkpoint is trained again only with
    ``run.overwrite``, so a mistyped ``--out`` never replaces a model.

    ``job.step`` maps a batch of ``job.data`` to named losses (``TrainStep`` for situations,
    ``train.hoi.HoiTrainStep`` for interactions); it holds the model and the objective."""
    model, step, data, evaluate, info = job.model, job.step, job.data, job.evaluate, job.info
    resume, progress, overwrite = run.resume, run.progress, run.overwrite
    torch.manual_seed(cfg.seed)
    step_module = step.to(env.device)
    if cfg.channels_last:  # NHWC: the layout oneDNN's convolution kernels work in, without reorders each layer
        step_module.to(memory_format=torch.channels_last)
    runner: nn.Module = step_module
    if env.world > 1:
        runner = nn.parallel.DistributedDataParallel(step_module)
    # fused: one kernel updates every tensor, instead of a dozen small ops per tensor
    optimizer = torch.optim.AdamW([p for p in step_module.parameters() if p.requires_grad], lr=cfg.lr,
                                  weight_decay=cfg.weight_decay, fused=cfg.fused_optimizer or None)
    per_rank = len(data) // env.world
    steps_per_epoch = max(1, math.ceil(per_rank / cfg.batch_size))
    total, warmup = cfg.epochs * steps_per_epoch, max(1, int(cfg.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
    amp = env.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    autocast = training_autocast(cfg, env.device)

    last = out / "checkpoints" / "last.safetensors"
    prepare_output(out, resume, overwrite, remove=env.main)
    start, best, history = 0, -math.inf, []
    if resume:
        weights, state = load_checkpoint(last)
        load_state(step_module, weights, last)
        optimizer.load_state_dict(state["optimizer"])
        for param, moments in optimizer.state.items():  # moments in their parameter's layout (channels_last)
            for key, value in moments.items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    moments[key] = torch.empty_like(param).copy_(value)
        scheduler.load_state_dict(state["scheduler"])
        restore_random_state(state, scaler, env.device)
        start, best, history = state["epoch"] + 1, state["best"], state["history"]
        log.info("resuming %s after epoch %d (best dev score %.2f)", out, start, best)  # epochs count from 1 in the log

    for epoch in range(start, cfg.epochs):
        runner.train()
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(len(data))[: per_rank * env.world][env.rank::env.world]
        flips = rng.random(len(data)) < 0.5 if cfg.flip else np.zeros(len(data), bool)
        sums: dict[str, float] = {}
        bar = progress_bar(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                           enabled=progress and env.main)
        started = time.perf_counter()
        for i in bar:
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            batch = to_device(data.batch(idx, flips[idx]), env.device)
            step_module.trained = (epoch + i / steps_per_epoch) / cfg.epochs  # for the distillation weight
            if cfg.channels_last:
                batch.images = batch.images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(env.device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                losses = runner(batch)
                loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(step_module.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            value = float(loss.detach())
            if not math.isfinite(value):
                raise MipdEdgeError(f"training diverged: the loss is {value} at epoch {epoch + 1}, step {i + 1} "
                                    f"({', '.join(f'{k} {float(v):.3g}' for k, v in losses.items())}); "
                                    "lower the learning rate or check the data")
            bar.set_postfix(loss=f"{value:.3f}")
        train_losses = {k: v / steps_per_epoch for k, v in sums.items()}
        if env.world > 1:  # batch-norm statistics saw only this rank's data: take rank 0's everywhere
            for buffer in step_module.buffers():
                dist.broadcast(buffer, 0)
        trained = time.perf_counter()

        if env.main:
            metrics, score = evaluate(model)
            improved = score > best
            best = max(best, score)
            speed = {
                "train_seconds": round(trained - started, 3),
                "eval_seconds": round(time.perf_counter() - trained, 3),
                "images_per_second": round(len(order) * env.world / (trained - started), 2),
                "autocast": str(autocast).replace("torch.", "") if autocast else "off",
            }
            history.append({"epoch": epoch + 1, "loss": sum(train_losses.values()), "losses": train_losses,
                            "selection_score": score, "best": improved, "dev": metrics, **speed})
            if improved:
                save_model(out, model, {**info, "epoch": epoch + 1, "selection_score": score, "dev": metrics})
            save_checkpoint(last, step_module.state_dict(), {
                "epoch": epoch, "best": best, "history": history, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), **random_state(scaler, env.device)})
            atomic_write_bytes(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history).encode())
            log.info("epoch %d/%d: loss %.3f, dev selection score %.2f%s; %.1f images/s in training, %.1f s on dev",
                     epoch + 1, cfg.epochs, history[-1]["loss"], score, " (best)" if improved else "",
                     speed["images_per_second"], speed["eval_seconds"])
        if env.world > 1:
            dist.barrier()
    digest = state_digest(model)
    log.info("finished: weights sha256 %s", digest[:16])
    return {"best_selection_score": best, "history": history, "weights_sha256": digest}
