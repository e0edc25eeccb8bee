"""Training: CF networks on any registered data set, CPU or CUDA (+AMP), DDP.

`train(TrainConfig(...), out_dir)` is what `cf2neuro train` calls. Under
`torchrun` (WORLD_SIZE > 1) it trains data-parallel: gloo on CPU, NCCL on
CUDA; rank 0 evaluates and writes the checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from . import checkpoint as ckpt
from .data import encode, load_dataset, method_for, require_samples
from .device import pick_device
from .errors import CheckpointError, ConfigError, UnsupportedError
from .fileio import locked_dir
from .losses import pn_balance_loss, recording_potentials, task_loss
from .nn import functional as cff
from .nn.models import build_model
from .nn.neuron import CFNeuron

log = logging.getLogger(__name__)

# CF elements per batch (T·B·neurons) above which compiled kernels pay for
# their compile (~2 s cached, 10-20 s cold): measured on 2 CPU cores and on an
# H100, where a digits MLP also trains faster eager (17 s vs 24 s cold).
COMPILE_THRESHOLD = 1 << 20


@dataclass
class TrainConfig:
    """Defaults are the digits recipe: a 64-256-256-10 CF-MLP, beta 0.5, T 4,
    shift augmentation, batch 128, Adam at 1e-2 cosine-decayed over 100
    epochs, PN loss weight 0.3 (chosen by a sweep, benchmarks/RESULTS.md).
    `lr` None takes the model's own default (`cf2neuro.nn.models.DEFAULT_LR`:
    1e-3 for the deep networks, which stall at 1e-2)."""

    model: str = "mlp"
    data: str = "digits"
    epochs: int = 100
    timesteps: int = 4
    batch_size: int = 128
    lr: float | None = None        # None: the model's default (nn.models.DEFAULT_LR)
    weight_decay: float = 0.0
    seed: int = 0
    loss: str = "ce"               # "ce" on the time-mean output, or "tet"
    pn_lambda: float = 0.3         # weight of the PN balanced loss (0 = off)
    encoding: str = "direct"       # "direct" current or "poisson" rate
    augment: bool = True
    neuron: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    data_options: dict = field(default_factory=dict)  # e.g. frames, size for event data
    data_root: str | None = None
    device: str = "auto"           # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True               # float16 autocast + GradScaler on CUDA
    compile: str = "auto"          # "auto", "on", "off": torch.compile'd CF kernels
    target: str | None = None      # refuse up front a model this target cannot run

    @classmethod
    def from_dict(cls, d: dict, where: str = "the training config") -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"{where} must be a JSON object of training options, got a "
                              f"{type(d).__name__}; re-create it with `cf2neuro train`")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - known))
        if unknown:
            raise ConfigError(f"{where}: unknown training option(s) {unknown}; known: "
                              f"{sorted(known)}")
        return check_config(cls(**d), where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# What each option may hold: (check, what it must be). A value outside is refused
# before anything runs: a NaN rate or a zero batch otherwise fails deep inside torch.
def _is_int(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_number(v, low: float, strict: bool) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (v > low if strict else v >= low))


_OPTION_CHECKS = {
    "model": (lambda v: isinstance(v, str) and v != "", "a model name"),
    "data": (lambda v: isinstance(v, str) and v != "", "a data-set name"),
    "epochs": (lambda v: _is_int(v, 1), "an int >= 1"),
    "timesteps": (lambda v: _is_int(v, 1), "an int >= 1"),
    "batch_size": (lambda v: _is_int(v, 1), "an int >= 1"),
    "lr": (lambda v: v is None or _is_number(v, 0.0, True), "a finite number > 0"),
    "weight_decay": (lambda v: _is_number(v, 0.0, False), "a finite number >= 0"),
    "seed": (lambda v: _is_int(v, 0), "an int >= 0"),
    "loss": (lambda v: v in ("ce", "tet"), "'ce' or 'tet'"),
    "pn_lambda": (lambda v: _is_number(v, 0.0, False), "a finite number >= 0"),
    "encoding": (lambda v: v in ("direct", "poisson"), "'direct' or 'poisson'"),
    "augment": (lambda v: isinstance(v, bool), "true or false"),
    "neuron": (lambda v: isinstance(v, dict), "a dict of CF neuron options"),
    "model_options": (lambda v: isinstance(v, dict), "a dict of model options"),
    "data_options": (lambda v: isinstance(v, dict), "a dict of data-set options"),
    "data_root": (lambda v: v is None or isinstance(v, str), "a directory (string)"),
    "device": (lambda v: isinstance(v, str) and v != "", "a device name (cpu, cuda, auto)"),
    "amp": (lambda v: isinstance(v, bool), "true or false"),
    "compile": (lambda v: v in ("auto", "on", "off"), "'auto', 'on' or 'off'"),
    "target": (lambda v: v is None or isinstance(v, str), "a target name"),
}


_FLAGS = {"model_options": "--model-option", "data_options": "--data-option",
          "augment": "--no-augment", "amp": "--no-amp", "weight_decay": ""}


def check_config(cfg: "TrainConfig", where: str = "the training config") -> "TrainConfig":
    """Every option's type and range, or a ConfigError naming the option and its flag."""
    for key, (ok, want) in _OPTION_CHECKS.items():
        value = getattr(cfg, key)
        if not ok(value):
            flag = _FLAGS.get(key, f"--{key.replace('_', '-')}") if where == "train" else ""
            fix = ("pass a valid value" if where == "train" else
                   "fix it, or re-create the checkpoint with `cf2neuro train`")
            raise ConfigError(f"{where}: {key}{f' ({flag})' if flag else ''} must be {want}, "
                              f"got {value!r}; {fix}")
    return cfg


# --- distributed context -----------------------------------------------------

@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# --- helpers -------------------------------------------------------------------

def _batches(bundle, cfg: TrainConfig, dist: _Dist, generator: torch.Generator):
    if dist.world > 1:
        sampler = DistributedSampler(bundle.train, dist.world, dist.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=False)
    else:
        sampler = RandomSampler(bundle.train, generator=generator)
    return DataLoader(bundle.train, batch_size=cfg.batch_size, sampler=sampler)


def _inputs(x: torch.Tensor, cfg: TrainConfig, bundle, generator, train: bool):
    if train and cfg.augment and bundle.augment is not None:
        x = bundle.augment(x, generator)
    return encode(x, cfg.timesteps, method_for(bundle.spec.kind, cfg.encoding), generator)


def _cf_elements(model, x: torch.Tensor) -> int:
    """T·B·neurons over all CF layers for one batch (a dry forward)."""
    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        total += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, CFNeuron)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return total


def _use_compiled_kernels(cfg: TrainConfig, model, x, device) -> bool:
    if cfg.compile not in ("auto", "on", "off"):
        raise ConfigError(f"--compile must be auto, on or off, got {cfg.compile!r}")
    if cfg.compile == "auto":
        wanted = _cf_elements(model, x) >= COMPILE_THRESHOLD
    else:
        wanted = cfg.compile == "on"
    return cff.compile_kernels(wanted)


@torch.no_grad()
def evaluate(model, bundle, cfg: TrainConfig, device, batch_size: int = 512,
             seed: int = 0) -> float:
    """Test accuracy: argmax of the time-averaged output."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    correct = total = 0
    for x, y in DataLoader(bundle.test, batch_size=batch_size):
        out = model(_inputs(x, cfg, bundle, generator, train=False).to(device))
        correct += (out.mean(0).argmax(-1).cpu() == y).sum().item()
        total += y.numel()
    return correct / max(total, 1)


def _build(cfg: TrainConfig, bundle):
    options = {**cfg.model_options, "input_shape": list(bundle.spec.input_shape),
               "num_classes": bundle.spec.num_classes, "timesteps": cfg.timesteps,
               "neuron": cfg.neuron}
    return build_model(cfg.model, options)


def _check_target(model, target: str, x) -> None:
    """Refuse, before any training step, a network `target` cannot run (with the reason)."""
    from .ir.passes import run_passes
    from .ir.trace import trace_model
    from .quant import deployable

    why = deployable(run_passes(trace_model(model)), target, calibration=x.cpu().numpy())
    if why is not None:
        raise UnsupportedError(f"--target {target}: {why}. Nothing was trained; change the "
                               f"model (or its options), or train without --target")


def _resume_config(out: Path, cfg: TrainConfig) -> TrainConfig:
    saved = TrainConfig.from_dict(ckpt.read_config(out).get("train", {}),
                                  f"{out / ckpt.CONFIG} (its 'train' section)")
    changed = [k for k in ("model", "data", "timesteps", "neuron", "model_options", "data_options")
               if getattr(saved, k) != getattr(cfg, k)]
    if changed:
        raise ConfigError(f"cannot resume {out}: {changed} differ from the checkpoint's "
                          f"training config; drop --resume or use the same options")
    return dataclasses.replace(saved, epochs=cfg.epochs, device=cfg.device,
                               compile=cfg.compile, amp=cfg.amp)


def _check_size(cfg: TrainConfig, bundle, dev) -> None:
    """Refuse, before allocating it, a model and batch the device cannot hold (figures in GiB)."""
    from .device import check_fits
    from .nn.models import TRAIN_BYTES_PER_PARAM, estimate_memory

    options = {**cfg.model_options, "input_shape": list(bundle.spec.input_shape),
               "num_classes": bundle.spec.num_classes, "timesteps": cfg.timesteps,
               "neuron": cfg.neuron}
    what = f"training model {cfg.model!r}"
    size = estimate_memory(cfg.model, options)  # the weights first: a huge model's meta
    check_fits(size["parameters"] * TRAIN_BYTES_PER_PARAM,  # forward is slow too
               f"{what} ({size['parameters']:,} parameters)", dev,
               "Use smaller widths (--model-option) or another --device")
    size = estimate_memory(cfg.model, options, cfg.batch_size)
    check_fits(size["parameters"] * TRAIN_BYTES_PER_PARAM + size["activation_bytes"],
               f"{what} ({size['parameters']:,} parameters) with --batch-size "
               f"{cfg.batch_size} and T = {cfg.timesteps}", dev,
               "Use a smaller --batch-size, smaller widths (--model-option) or another --device")


def _restore(state: dict, path: Path, optimizer, scheduler, scaler, generator) -> int:
    """Load a train state into this run; one of another model is a CheckpointError."""
    def refuse(why: str):
        raise CheckpointError(f"cannot resume: {path} {why}; it belongs to another model or "
                              f"run. Train again without --resume (or restore the matching "
                              f"file)")

    need = ("optimizer", "scheduler", "scaler", "rng", "data_rng", "epoch")
    missing = [k for k in need if not isinstance(state, dict) or k not in state]
    if missing:
        refuse(f"lacks {missing}")
    ours = [p for g in optimizer.param_groups for p in g["params"]]
    try:  # optimizer.load_state_dict checks the group sizes but not the moments' shapes
        theirs = [i for g in state["optimizer"]["param_groups"] for i in g["params"]]
        moments = {i: {tuple(v.shape) for v in s.values()
                       if isinstance(v, torch.Tensor) and v.dim() > 0}
                   for i, s in state["optimizer"]["state"].items()}
    except (KeyError, TypeError, AttributeError):
        refuse("holds no optimizer state cf2neuro wrote")
    if len(theirs) != len(ours):
        refuse(f"holds optimizer state for {len(theirs)} parameter tensors, this model has "
               f"{len(ours)}")
    for i, shapes in moments.items():
        want = tuple(ours[theirs.index(i)].shape) if i in theirs else None
        if want is None or any(s != want for s in shapes):
            refuse(f"holds optimizer moments shaped {sorted(shapes)} for parameter {i}, "
                   f"which is {list(want) if want is not None else 'absent'} here")
    if not _is_int(state["epoch"], 0):
        refuse(f"says epoch {state['epoch']!r}")
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        generator.set_state(state["data_rng"])
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as e:
        refuse(f"does not fit ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
    return state["epoch"]


# --- the loop -------------------------------------------------------------------

def train(cfg: TrainConfig, out_dir, resume: bool = False, progress: bool = True,
          on_epoch=None) -> dict:
    """Train, evaluate each epoch, checkpoint to out_dir; returns metrics.json's dict.

    `on_epoch(epoch)` is called after each epoch's checkpoint is written. The
    directory is locked while training (`fileio.locked_dir`): a second run into
    it is refused at once (in a distributed run, rank 0 holds the lock).
    """
    check_config(cfg, "train")  # before the directory is locked or anything allocated
    if int(os.environ.get("RANK", "0")) != 0:
        return _train(cfg, Path(out_dir), resume, progress, on_epoch)
    with locked_dir(out_dir, "checkpoint directory"):
        return _train(cfg, Path(out_dir), resume, progress, on_epoch)


def _train(cfg: TrainConfig, out: Path, resume: bool, progress: bool, on_epoch) -> dict:
    if resume:
        cfg = _resume_config(out, cfg)
    changes = []
    if cfg.target is not None:  # the neurons the target holds, recorded as trained
        from .targets.training import constrain

        cfg, changes = constrain(cfg, cfg.target)
        for change in changes:
            log.warning("--target %s: %s", cfg.target, change)
    if cfg.lr is None:  # recorded resolved, so config.json says what ran
        from .nn.models import default_lr

        cfg = dataclasses.replace(cfg, lr=default_lr(cfg.model))
    dev = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist = _init_distributed(dev)
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed + dist.rank)

    bundle = load_dataset(cfg.data, root=cfg.data_root, seed=cfg.seed, **cfg.data_options)
    require_samples(bundle, "train", "test")  # test: each epoch is evaluated
    _check_size(cfg, bundle, dev)
    model = _build(cfg, bundle).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = _batches(bundle, cfg, dist, generator)
    total_steps = max(1, cfg.epochs * len(loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    amp = cfg.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp) if hasattr(torch.amp, "GradScaler") \
        else torch.cuda.amp.GradScaler(enabled=amp)

    # Before any RNG state is restored: the dry run may draw random numbers.
    x0, _ = next(iter(DataLoader(bundle.train, batch_size=cfg.batch_size)))
    if cfg.target is not None:  # before any step: the model and its encoded inputs
        _check_target(model, cfg.target, _inputs(x0, cfg, bundle, None, False))
    compiled = _use_compiled_kernels(cfg, model, _inputs(x0, cfg, bundle, None, False).to(dev), dev)

    start, history = 0, []
    if resume:
        loaded, _, metrics = ckpt.load_checkpoint(out, map_location=dev)
        model.load_state_dict(loaded.state_dict())
        start = _restore(ckpt.load_train_state(out), out / ckpt.TRAIN_STATE,
                         optimizer, scheduler, scaler, generator)
        history = metrics.get("history", [])

    net = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    log.info("training %s on %s: %d epochs, T=%d, device %s, world %d, compiled kernels %s",
             cfg.model, cfg.data, cfg.epochs, cfg.timesteps, dev, dist.world, compiled)
    bar = _progress(range(start, cfg.epochs), progress and dist.main, cfg)
    t_train = time.perf_counter()
    for epoch in bar:
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        stats = _train_epoch(net, model, loader, optimizer, scheduler, scaler, cfg, bundle,
                             generator, dev, amp)
        record = {"epoch": epoch + 1, **stats, "lr": scheduler.get_last_lr()[0],
                  "seconds": round(time.perf_counter() - t0, 3)}
        if dist.main:
            record["test_accuracy"] = evaluate(model, bundle, cfg, dev, seed=cfg.seed)
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", test=f"{record['test_accuracy']:.4f}")
            log.info("epoch %d: %s", epoch + 1, record)
            metrics = _metrics(history, dev, dist, time.perf_counter() - t_train, compiled)
            if changes:
                metrics["target_changes"] = changes
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "scaler": scaler.state_dict(), "rng": torch.get_rng_state(),
                     "data_rng": generator.get_state(), "epoch": epoch + 1}
            ckpt.save_checkpoint(out, model, {"train": cfg.to_dict(), "data": _spec(bundle)},
                                 metrics, state)
        if on_epoch is not None:
            on_epoch(epoch + 1)
    if dist.world > 1:
        torch.distributed.barrier()
    if not dist.main:
        return {}
    if not history:
        raise ConfigError(f"nothing to train: {out} already holds {start} epochs; "
                          f"ask for more with --epochs")
    return ckpt.read_json(out / ckpt.METRICS)


def _train_epoch(net, model, loader, optimizer, scheduler, scaler, cfg, bundle, generator,
                 dev, amp) -> dict:
    net.train()
    loss_sum = pn_sum = correct = seen = 0.0
    for x, y in loader:
        x = _inputs(x, cfg, bundle, generator, train=True).to(dev, non_blocking=True)
        y = y.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp), \
                recording_potentials(model, cfg.pn_lambda > 0) as layers:
            out = net(x)
            loss = task_loss(out.float(), y, cfg.loss)
            if cfg.pn_lambda > 0:
                pn = pn_balance_loss(layers)
                loss = loss + cfg.pn_lambda * pn
                pn_sum += pn.item() * y.numel()
        if not torch.isfinite(loss):
            raise ConfigError(f"the training loss became {loss.item()}; lower --lr "
                              f"(now {cfg.lr}) or check the data for NaN/inf")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.item() * y.numel()
        correct += (out.detach().mean(0).argmax(-1) == y).sum().item()
        seen += y.numel()
    stats = {"loss": loss_sum / seen, "train_accuracy": correct / seen}
    if cfg.pn_lambda > 0:
        stats["pn_loss"] = pn_sum / seen
    return stats


def _metrics(history, dev, dist, seconds, compiled) -> dict:
    last = history[-1]
    return {"test_accuracy": last["test_accuracy"], "train_accuracy": last["train_accuracy"],
            "epochs": last["epoch"], "train_seconds": round(seconds, 3), "device": str(dev),
            "world_size": dist.world, "compiled_kernels": compiled, "history": history}


def _spec(bundle) -> dict:
    spec = bundle.spec
    return {"name": spec.name, "input_shape": list(spec.input_shape),
            "num_classes": spec.num_classes, "kind": spec.kind}


def _progress(epochs, enabled: bool, cfg: TrainConfig):
    from tqdm.auto import tqdm

    return tqdm(epochs, desc=f"train {cfg.model} on {cfg.data}", unit="epoch",
                disable=not enabled, leave=False)
