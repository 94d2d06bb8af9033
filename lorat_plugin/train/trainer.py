"""The training loop: one process or many under torchrun (DistributedDataParallel), AMP, accumulation, logs,
checkpoints, exact resume, optional tracking validation at epoch ends."""
from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch import nn

from ..distributed import Distributed, all_reduce_mean, peer_failures, setup, sigkill_hook, teardown
from ..files import atomic_write_text
from ..process import choose_threads
from ..model import LoRAT, build_model, count_parameters, save_checkpoint
from ..model.weights import load_head, read_weights
from . import state as run_state
from .config import TrainConfig, config_differences, resolve_path
from .loader import PairDataset, StepBatchSampler, build_loader
from .optim import build_optimizer, build_schedule
from .pairs import PairRecipe
from .source import build_source
from .step import TrainStep, amp_dtype

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    output: Path
    checkpoint: Path | None  # model.safetensors when the run finished, else the newest periodic checkpoint
    global_step: int
    finished: bool
    history: list[dict[str, float]] = field(default_factory=list)  # logged points (rank 0)


def build_training_model(config: TrainConfig) -> LoRAT:
    """The model the config asks for, initialised identically on every rank (seeded)."""
    section = config.model
    backbone = resolve_path(section.backbone_weights, "model.backbone_weights")
    checkpoint = resolve_path(section.checkpoint, "model.checkpoint")
    torch.manual_seed(config.train.seed)
    model = build_model(section.model_config(), backbone_weights=backbone, checkpoint=checkpoint)
    head_from = resolve_path(section.head_from, "model.head_from")
    if head_from is not None:
        load_head(model, read_weights(head_from, what="checkpoint (model.head_from)"))
        log.info("head and token-type table start from %s", head_from)
    if backbone is None and checkpoint is None:
        log.warning("model.backbone_weights is not set: the backbone is randomly initialised (fine for tests, not "
                    "for tracking; LoRAT fine-tunes a pre-trained DINOv2)")
    return model


def make_deterministic() -> None:
    """Deterministic kernels for this process (``train.deterministic``): CUDA's atomic-add backward passes and
    cuDNN's algorithm search otherwise make two runs, or a run and its resumption, differ in the last bits."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: before the first matmul
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False


# (model, run folder of this validation, process context) -> headline metrics on rank 0, {} on the others.
Validation = Callable[[LoRAT, Path, Distributed], dict[str, float]]


def train(config: TrainConfig, output: str | Path | None = None, *, resume: bool = False,
          stop_after_steps: int | None = None, progress: bool = True,
          on_log: Callable[[dict[str, float]], None] | None = None,
          validation: Validation | None = None) -> TrainResult:
    """Run (or continue) training. Under torchrun every process calls this; rank 0 writes the files.

    ``stop_after_steps`` ends the run after that many optimiser steps in total (the resumable state is written
    there), e.g. to split a run into time-limited jobs. ``validation`` runs at the epochs ``config.validation``
    names; the application builds it (``lorat train`` tracks ``validation.dataset`` with the evaluation harness),
    so that training itself needs no tracking engine."""
    if config.train.deterministic:
        make_deterministic()
    # Training keeps the count it is given (its steps are checked bit-identical at a fixed count only); the
    # validation's tracking engine then keeps it too.
    if config.train.threads is not None:
        choose_threads(config.train.threads, reason="train.threads")
    else:
        choose_threads(torch.get_num_threads(), reason="torch's count (train.threads: null)")
    ctx = setup(config.train.device)
    try:
        with peer_failures("training", "rerun the same command with --resume to continue from the last saved "
                                       "state (train.state_every_steps sets how often it is saved)"):
            return _Trainer(config, Path(output or Path("runs") / config.name), ctx, resume=resume,
                            progress=progress, on_log=on_log, validation=validation).run(stop_after_steps)
    finally:
        teardown()


class _Trainer:
    def __init__(self, config: TrainConfig, output: Path, ctx: Distributed, *, resume: bool, progress: bool,
                 on_log: Callable[[dict[str, float]], None] | None, validation: Validation | None) -> None:
        config.validate(ctx.world_size)
        config.check_paths()
        self.config, self.output, self.ctx = config, output, ctx
        self.progress, self.on_log, self.validation = progress, on_log, validation
        if config.validation.dataset is not None and validation is None:
            log.warning("validation.dataset is set but no validation was passed to train(): not validating")
        self.history: list[dict[str, float]] = []
        self._sums: torch.Tensor | None = None
        t = config.train
        self.state_path = output / run_state.STATE_FILE
        self._prepare_output(resume)

        d = config.data
        # Rank 0 reads the annotations and leaves a flattened copy in the run folder for the other ranks (and for
        # resumed runs); then everyone reads that.
        cache = output / "data_index"
        if ctx.is_main:
            source = build_source(d.datasets, cache=cache)
            log.info("training data: %s", source.describe())
        ctx.barrier()
        if not ctx.is_main:
            source = build_source(d.datasets, cache=cache)

        self.model = build_training_model(config).to(ctx.device).train()
        counts = count_parameters(self.model)
        log.info("model: %s, %.2fM trainable of %.2fM parameters (%s tuning)", self.model.config.to_json(),
                 counts["trainable"] / 1e6, counts["total"] / 1e6, self.model.config.tuning)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.steps_per_epoch = config.data.samples_per_epoch // config.data.batch_size
        self.schedule = build_schedule(self.optimizer, config.optim, self.steps_per_epoch, t.epochs)
        self.amp = amp_dtype(t.dtype, ctx.device)
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=self.amp == torch.float16)

        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        if resume:
            self._load_state()

        self.network: nn.Module = self.model
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.network = DDP(self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                               static_graph=config.optim.accumulation_steps == 1, gradient_as_bucket_view=True,
                               bucket_cap_mb=100)
        if t.compile:
            self.network = torch.compile(self.network)
        self.step = TrainStep(self.model, self.network, self.optimizer, amp=self.amp, device=ctx.device,
                              grad_clip=config.optim.grad_clip, loss=config.loss, scaler=self.scaler,
                              attention=t.attention)

        self.dataset = PairDataset(source, PairRecipe.create(self.model.config, d),
                                   samples_per_epoch=d.samples_per_epoch, seed=t.seed, max_gap=d.max_gap)
        self.sampler = StepBatchSampler(global_batch=d.batch_size, steps_per_epoch=self.steps_per_epoch,
                                        world_size=ctx.world_size, rank=ctx.rank,
                                        accumulation_steps=config.optim.accumulation_steps)
        self.loader = build_loader(self.dataset, self.sampler, num_workers=d.num_workers,
                                   pin_memory=ctx.device.type == "cuda", prefetch_factor=d.prefetch_factor)
        self.writer = None
        if ctx.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the log lines carry the same numbers
                log.warning("tensorboard is not installed (pip install 'lorat-plugin[train]'): no tensorboard/ logs")
            else:
                self.writer = SummaryWriter(str(output / "tensorboard"), purge_step=self.global_step or None)

    # ---- set-up -------------------------------------------------------------------------------------------------
    def _prepare_output(self, resume: bool) -> None:
        config_file = self.output / "config.yaml"
        if self.ctx.is_main:
            if not resume and self.state_path.exists():
                raise FileExistsError(f"{self.output} already holds a training run ({self.state_path.name}); pass "
                                      "--resume to continue it, or choose another --output")
            self.output.mkdir(parents=True, exist_ok=True)
            if resume and config_file.is_file():
                before = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
                changes = config_differences(before, self.config.to_dict())
                if changes:
                    log.warning("resuming with a changed config (the result will differ from an uninterrupted run "
                                "if these matter): %s", "; ".join(changes))
            atomic_write_text(config_file, yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        self.ctx.barrier()

    def _load_state(self) -> None:
        state = run_state.load_state(self.state_path)
        run_state.restore_trainable(self.model, state["trainable"], self.state_path)
        self.optimizer.load_state_dict(state["optimizer"])
        run_state.restore_scaler(self.scaler, state["scaler"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        if state.get("world_size") != self.ctx.world_size:
            log.warning("the state was written by %s process(es), this run has %d: same samples and batches, but "
                        "gradient sums may round differently", state.get("world_size"), self.ctx.world_size)
        if self.ctx.is_main:
            log.info("resuming %s at epoch %d, step %d (global step %d)", self.output, self.epoch + 1,
                     self.step_in_epoch, self.global_step)

    # ---- the loop -----------------------------------------------------------------------------------------------
    def run(self, stop_after_steps: int | None) -> TrainResult:
        t, v = self.config.train, self.config.validation
        last_checkpoint = None
        try:
            while self.epoch < t.epochs:
                if self._train_epoch(stop_after_steps):  # stopped after stop_after_steps
                    self._save_state()
                    return TrainResult(self.output, last_checkpoint, self.global_step, False, self.history)
                self.epoch += 1
                self.step_in_epoch = 0
                self._save_state()
                last = self.epoch == t.epochs
                if self.epoch % t.checkpoint_every == 0 or last:
                    last_checkpoint = self._save_checkpoint()
                if self.validation is not None and v.dataset is not None and (last or self.epoch % v.every == 0):
                    self._validate()
            final = self._write_final() if self.ctx.is_main else None
            self.ctx.barrier()
            return TrainResult(self.output, final, self.global_step, True, self.history)
        finally:
            if self.writer is not None:
                self.writer.close()

    def _train_epoch(self, stop_after_steps: int | None) -> bool:
        cfg, ctx = self.config, self.ctx
        accumulation = cfg.optim.accumulation_steps
        self.sampler.set_epoch(self.epoch, self.step_in_epoch)
        batches = iter(self.loader)
        bar = None
        if ctx.is_main and self.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, unit="step", dynamic_ncols=True,
                       desc=f"epoch {self.epoch + 1}/{cfg.train.epochs}")
        # loss, cls, box, finite grad norms, non-finite steps: summed on the device, read at log points only
        # (float32: MPS has no float64).
        sums = self._sums = torch.zeros(5, device=ctx.device)
        count, wait, started = 0, 0.0, time.perf_counter()
        try:
            while self.step_in_epoch < self.steps_per_epoch:
                if stop_after_steps is not None and self.global_step >= stop_after_steps:
                    return True
                self.schedule.step_update(self.global_step)
                group = self.optimizer.param_groups[-1]
                lr = group["lr"] / group.get("lr_scale", 1.0)
                # Drop path and any other torch randomness in the forward pass: a function of (seed, step, rank).
                torch.manual_seed((cfg.train.seed * 1_000_003 + self.global_step * 7919 + ctx.rank) % (2 ** 63))
                for micro in range(accumulation):
                    tick = time.perf_counter()
                    batch = next(batches)
                    wait += time.perf_counter() - tick
                    sync = (self.network.no_sync() if ctx.enabled and micro < accumulation - 1 and
                            hasattr(self.network, "no_sync") else contextlib.nullcontext())
                    with sync:
                        loss, parts = self.step.backward(batch, accumulation)
                    sums[:3] += torch.stack((loss, parts["cls"], parts["box"])).float() / accumulation
                grad_norm = self.step.update().float()
                finite = torch.isfinite(grad_norm)
                sums[3] += torch.where(finite, grad_norm, 0.0)
                sums[4] += (~finite).float()
                count += 1
                self.global_step += 1
                self.step_in_epoch += 1
                sigkill_hook("train-step")
                if bar is not None:
                    bar.update(1)
                if self.global_step % cfg.train.log_every == 0 or self.step_in_epoch == self.steps_per_epoch:
                    self._log(sums, count, wait, time.perf_counter() - started, lr, bar)
                    sums.zero_()
                    count, wait, started = 0, 0.0, time.perf_counter()
                if cfg.train.state_every_steps and self.global_step % cfg.train.state_every_steps == 0 \
                        and self.step_in_epoch < self.steps_per_epoch:
                    self._save_state()
            return False
        finally:
            if bar is not None:
                bar.close()
            del batches

    def _log(self, sums: torch.Tensor, count: int, wait: float, elapsed: float, lr: float, bar: Any) -> None:
        means = all_reduce_mean(sums / max(count, 1)).tolist()
        skipped = round(means[4] * count)
        self._check_finite(skipped)
        samples = count * self.config.data.batch_size
        point = {"step": float(self.global_step), "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
                 "loss": means[0], "loss_cls": means[1], "loss_box": means[2],
                 "grad_norm": means[3] * count / max(count - skipped, 1), "lr": lr,
                 "samples_per_s": samples / max(elapsed, 1e-9), "data_wait": wait / max(elapsed, 1e-9)}
        if self.scaler.is_enabled():
            point["loss_scale"] = float(self.scaler.get_scale())
            point["skipped_steps"] = float(skipped)
            if skipped:
                log.info("%d of the last %d fp16 steps skipped by the GradScaler (non-finite gradients); loss scale "
                         "now %g", skipped, count, point["loss_scale"])
        if not self.ctx.is_main:
            return
        self.history.append(point)
        if self.on_log is not None:
            self.on_log(point)
        if self.writer is not None:
            for key, value in point.items():
                if key not in ("step", "epoch"):
                    self.writer.add_scalar(f"train/{key}", value, self.global_step)
        if bar is not None:
            bar.set_postfix(loss=f"{point['loss']:.4f}", lr=f"{lr:.2e}", sps=f"{point['samples_per_s']:.1f}")
        else:
            log.info("epoch %d step %d: loss %.4f (cls %.4f, box %.4f) lr %.3g, %.1f samples/s", self.epoch + 1,
                     self.step_in_epoch, point["loss"], point["loss_cls"], point["loss_box"], lr,
                     point["samples_per_s"])

    def _check_finite(self, skipped: int) -> None:
        # bf16/fp32 steps are not checked one by one (a host wait per step); a non-finite norm has reached the
        # weights, so the run stops before writing them anywhere.
        if skipped and not self.scaler.is_enabled():
            raise FloatingPointError(
                f"non-finite gradients in {skipped} step(s) up to global step {self.global_step} "
                f"(train.dtype={self.config.train.dtype}): the weights are no longer finite. Continue from the last "
                f"state with --resume and a lower optim.lr or optim.grad_clip")

    # ---- files --------------------------------------------------------------------------------------------------
    def _save_state(self) -> None:
        if self._sums is not None and not self.scaler.is_enabled():
            self._check_finite(int(self._sums[4].item()))  # non-finite steps since the last log point
        if self.ctx.is_main:
            run_state.save_state(self.state_path, model=self.model, optimizer=self.optimizer, scaler=self.scaler,
                                 epoch=self.epoch, step_in_epoch=self.step_in_epoch, global_step=self.global_step,
                                 config=self.config.to_dict(), world_size=self.ctx.world_size)
        self.ctx.barrier()

    def _metadata(self) -> dict[str, str]:
        return {"run": self.config.name, "epochs_done": str(self.epoch), "global_step": str(self.global_step),
                "backbone_weights": str(self.config.model.backbone_weights or "")}

    def _save_checkpoint(self) -> Path | None:
        path = None
        if self.ctx.is_main:
            path = run_state.write_checkpoint(self.model, self.output / "checkpoints", self.epoch,
                                              self.config.train.epochs, self.config.train.keep_checkpoints,
                                              include_backbone=self.config.train.include_backbone,
                                              metadata=self._metadata())
            log.info("checkpoint: %s", path)
        self.ctx.barrier()
        return path

    def _write_final(self) -> Path:
        path = save_checkpoint(self.model, self.output / run_state.FINAL_CHECKPOINT,
                               include_backbone=self.config.train.include_backbone or None,
                               extra_metadata=self._metadata())
        log.info("finished: %s", path)
        return path

    # ---- validation ---------------------------------------------------------------------------------------------
    def _validate(self) -> None:
        was_training = self.model.training
        try:
            metrics = self.validation(self.model, self.output / "validation" / f"epoch_{self.epoch}", self.ctx)
        finally:
            self.model.train(was_training)
        if self.ctx.is_main and metrics:
            log.info("validation after epoch %d: %s", self.epoch, ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
            for key, value in metrics.items() if self.writer is not None else ():
                self.writer.add_scalar(f"val/{key}", value, self.global_step)
            self.history.append({"step": float(self.global_step), "epoch": float(self.epoch),
                                 **{f"val_{k}": v for k, v in metrics.items()}})
