"""The training loop: data → model → loss → optimiser/EMA → val → checkpoints, resumable exactly.

Outputs go to ``<project>/<name>/``: ``weights/last.pt`` and ``weights/best.pt`` (atomic, every
epoch), ``args.yaml``, ``results.csv`` and PNG plots. ``best.pt`` is chosen by fitness
``0.1·mAP50 + 0.9·mAP50-95`` summed over box and mask.
"""

import csv
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from edgeseg.data.dataset import SegmentationDataset
from edgeseg.interop.ultralytics import is_ultralytics_checkpoint
from edgeseg.interop.ultralytics_optimizer import ultralytics_optimizer_state
from edgeseg.loss import SegmentationLoss
from edgeseg.loss26 import EndToEndSegmentationLoss
from edgeseg.nn.checkpoint import atomic_torch_save, build_checkpoint, check_state_dict, checkpoint_parts, load_checkpoint
from edgeseg.nn.head import prediction_layer_modules
from edgeseg.nn.net import SegmentationNet, check_architecture
from edgeseg.nn.network import Network, build_network, load_network, network_meta
from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.validate import evaluate, split_labels
from edgeseg.runtimes.io.data_config import load_data_config
from edgeseg.runtimes.io.files import atomic_write, atomic_write_text, ensure_folder, remove_stale
from edgeseg.runtimes.io.paths import increment_path
from edgeseg.runtimes.meta.limits import MAX_IMGSZ
from edgeseg.train import distributed
from edgeseg.train.cpu_load import busy_cpus
from edgeseg.train.loader import train_loader
from edgeseg.train.optim import ModelEMA, accumulation_steps, build_optimizer, carry_state, linear_lr, set_epoch_lr, warmup
from edgeseg.train.precision import autocast_dtype, autocast_forward, float_outputs

LOGGER = logging.getLogger("edgeseg")

DEFAULT_ARGS = {
    "model": "yolo11n-seg.yaml",
    "data": None,
    "epochs": 100,
    "batch": 16,
    "imgsz": 640,
    "workers": 2,
    "threads": 0,
    "device": None,  # None: the first CUDA GPU torch sees, else the CPU (edgeseg.devices.default_device)
    "seed": 0,
    "deterministic": True,
    "optimizer": "auto",
    "lr0": 0.01,
    "lrf": 0.01,
    "momentum": 0.937,
    "weight_decay": 0.0005,
    "warmup_epochs": 3.0,
    "warmup_momentum": 0.8,
    "warmup_bias_lr": 0.1,
    "box": 7.5,
    "cls": 0.5,
    "dfl": 1.5,
    "close_mosaic": 10,
    "patience": 100,
    "overlap_mask": True,
    "mosaic": 1.0,
    "degrees": 0.0,
    "translate": 0.1,
    "scale": 0.5,
    "shear": 0.0,
    "perspective": 0.0,
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "flipud": 0.0,
    "fliplr": 0.5,
    "cache": False,
    "amp": None,  # None: fp16 autocast on CUDA, fp32 on a CPU; True: bf16 autocast on a CPU (edgeseg.train.precision)
    "val": True,
    "plots": True,
    "project": "runs/segment",
    "name": "train",
    "exist_ok": False,
}
RESUME_KEYS = ("model_state", "optimizer", "ema_updates", "epoch", "last_opt_step")  # what a last.pt adds
CLIP_GRAD_NORM = 10.0
LOAD_SAMPLE_S = 0.1  # how long the CPU load is measured before each epoch when threads follow it


def resume_dir(last: Path) -> Path:
    """The run folder a resumed ``last.pt`` belongs to: ``<run>`` for ``<run>/weights/last.pt``, else its own folder.

    Resuming writes only there, whatever folder the checkpoint itself names.
    """
    folder = last.resolve().parent
    return folder.parent if folder.name == "weights" else folder


def check_args(args: dict, source: str) -> None:
    """Raise EdgesegError naming ``source`` for a training argument of the wrong type or out of range."""
    if not args["data"] or not isinstance(args["data"], (str, os.PathLike)):
        raise EdgesegError(f"{source}: training needs a data YAML (data=...)")
    imgsz, epochs, batch = args["imgsz"], args["epochs"], args["batch"]
    if not isinstance(imgsz, int) or isinstance(imgsz, bool) or not 32 <= imgsz <= MAX_IMGSZ or imgsz % 32:
        raise EdgesegError(f"{source}: imgsz {str(imgsz)[:20]} must be a multiple of 32 from 32 to {MAX_IMGSZ}")
    for key, value in (("epochs", epochs), ("batch", batch)):
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100_000:
            raise EdgesegError(f"{source}: {key} must be an integer from 1 to 100000, got {str(value)[:20]}")
    for key in ("workers", "threads"):
        if not isinstance(args[key], int) or isinstance(args[key], bool) or not 0 <= args[key] <= 64:
            raise EdgesegError(f"{source}: {key} must be an integer from 0 to 64, got {str(args[key])[:20]}")
    if args["amp"] not in (None, True, False):
        raise EdgesegError(f"{source}: amp must be True, False or None (automatic), got {str(args['amp'])[:20]}")


def compute_threads(threads: int, world_size: int) -> int:
    """Torch threads for one training process (at least 1).

    ``threads`` when set; else ``OMP_NUM_THREADS`` when the environment sets it; else this
    process's share of ``usable_cpus()``: several CPU processes (DDP on the CPU) split the usable
    CPUs between them, since more threads than CPUs only wait for each other, and most on a
    machine that is running something else too.
    """
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not threads and from_env.isdigit() and int(from_env) > 0:
        return int(from_env)
    return threads or max(usable_cpus() // max(world_size, 1), 1)


def _seed_everything(seed: int, deterministic: bool) -> None:
    """Seed torch and numpy; with ``deterministic`` ask torch for deterministic kernels."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


class Trainer:
    """Train a YOLO11-seg model on a YOLO-seg dataset.

    Args:
        overrides: any of ``DEFAULT_ARGS`` (``data`` is required unless resuming).
        resume: a ``last.pt`` to continue exactly where it stopped (its args are reused;
            ``epochs`` may be raised through ``overrides``).
        network: an in-memory ``edgeseg.nn.network.Network`` to train instead of opening ``args["model"]``.

    Attributes:
        callbacks: ``{"on_epoch_end": [fn(trainer)]}``; called on rank 0 after each epoch's
            checkpoint is written.
        save_dir, last, best: output folder and checkpoint paths.
        metrics: the latest ``SegmentMetrics``.
    """

    def __init__(self, overrides: dict | None = None, resume: str | Path | None = None, network: Network | None = None):
        overrides = dict(overrides or {})
        self.resume_ckpt, self.resume_path = None, None
        if resume:
            self.resume_path = Path(resume)
            self.resume_ckpt = load_checkpoint(resume)
            missing = [k for k in RESUME_KEYS if k not in self.resume_ckpt]
            if missing:
                raise EdgesegError(f"{resume}: has no training state to resume from (no {missing[0]}; use a last.pt)")
            saved = self.resume_ckpt.get("train_args") or {}
            if not isinstance(saved, dict) or not all(isinstance(k, str) for k in saved):
                raise EdgesegError(f"{resume}: its train_args are not a mapping of argument names")
            saved = {k: v for k, v in saved.items() if k not in ("project", "name", "exist_ok")}
            epochs = overrides.pop("epochs", None)
            unknown = sorted(set(overrides) - {"workers", "threads", "device"})
            if unknown:
                raise EdgesegError(f"{resume}: cannot change {', '.join(unknown)} when resuming")
            saved.update(overrides)
            if epochs is not None:
                saved["epochs"] = int(epochs)
            overrides = saved
        unknown = sorted(set(overrides) - set(DEFAULT_ARGS))
        if unknown:
            raise EdgesegError(f"{resume or 'training'}: unknown training argument(s): {', '.join(str(u)[:40] for u in unknown)}")
        # paths as strings: args.yaml and checkpoints store plain types only
        self.args = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in {**DEFAULT_ARGS, **overrides}.items()}
        check_args(self.args, source=str(resume) if resume else "training")
        self.rank, self.world_size = distributed.rank_and_world_size()
        self.device = distributed.select_device(self.args["device"], self.rank)
        self.callbacks: dict[str, list[Callable]] = {"on_epoch_end": []}
        self.metrics = None
        self._network_arg = network
        self.save_dir = resume_dir(self.resume_path) if resume else None

    @property
    def is_main(self) -> bool:
        """True on the process that validates, logs and writes files."""
        return self.rank in (-1, 0)

    def _setup(self) -> None:
        """Data, model, loss, optimiser, EMA and output folder (restored from the checkpoint when resuming)."""
        args = self.args
        _seed_everything(args["seed"] + max(self.rank, 0), args["deterministic"])
        cpu_processes = self.world_size if self.device.type == "cpu" else 1
        self.threads = compute_threads(args["threads"], cpu_processes)
        torch.set_num_threads(self.threads)
        # fitting the thread count to the load changes the arithmetic: only when results need not be reproducible
        self.fit_threads = not (args["threads"] or args["deterministic"] or "OMP_NUM_THREADS" in os.environ or cpu_processes > 1)
        self.data = load_data_config(args["data"])
        names, nc = self.data["names"], self.data["nc"]
        if self._network_arg is not None:
            self.network = _rebuild_for_classes(self._network_arg, names)
        elif self.resume_ckpt:
            cfg, _, _ = checkpoint_parts(self.resume_ckpt, str(self.resume_path))
            if cfg["nc"] != nc:
                raise EdgesegError(f"{self.resume_path}: the model has {cfg['nc']} classes, the data YAML {nc}")
            shapes = check_architecture(cfg, str(self.resume_path))
            for key in ("state_dict", "model_state"):
                check_state_dict(self.resume_ckpt[key], shapes, f"{self.resume_path} ({key})")
            net = SegmentationNet(cfg, names=dict(names))
            self.network = Network(net, network_meta(net, args["imgsz"]), None, str(self.resume_path))
        elif str(args["model"]).endswith(".pt"):
            self.network = _rebuild_for_classes(load_network(args["model"]), names)
        else:
            self.network = build_network(args["model"], names=names)
        net = self.network.net.to(self.device)
        net.names = dict(names)
        self.net = net

        hyp = {k: args[k] for k in ("mosaic", "degrees", "translate", "scale", "shear", "perspective", "hsv_h", "hsv_s", "hsv_v", "flipud", "fliplr")}
        self.train_set = SegmentationDataset(
            self.data, args["imgsz"], augment=True, hyp=hyp, overlap_mask=args["overlap_mask"],
            seed=args["seed"], cache_images=args["cache"], split="train",
        )
        self.val_labels = split_labels(self.data, "val") if self.is_main and args["val"] else []
        self.batch_per_process = max(args["batch"] // max(self.world_size, 1), 1)
        self.batches_per_epoch = math.ceil(len(self.train_set) / (self.batch_per_process * max(self.world_size, 1)))
        self.accumulate = accumulation_steps(args["batch"])
        weight_decay = args["weight_decay"] * args["batch"] * self.accumulate / 64
        iterations = math.ceil(len(self.train_set) / max(args["batch"], 64)) * args["epochs"]
        self.optimizer, choice = build_optimizer(
            net, args["optimizer"], args["lr0"], args["momentum"], weight_decay, iterations, nc
        )
        self.momentum = choice["momentum"]
        self.warmup_bias_lr = 0.0 if choice["auto"] and choice["name"] in ("AdamW", "MuSGD") else args["warmup_bias_lr"]
        if self.is_main:
            LOGGER.info(
                f"optimizer: {choice['name']}(lr={choice['lr0']}, momentum={choice['momentum']})"
                f"{' chosen by optimizer=auto' if choice['auto'] else ''}; weight_decay={weight_decay:g}, "
                f"accumulate {self.accumulate} batches"
            )
        if self._network_arg is None and not self.resume_ckpt and str(args["model"]).endswith(".pt"):
            self._carry_optimizer_state(Path(args["model"]), choice["name"])
        strides = tuple(int(s) for s in net.stride)
        if net.head.has_one2one:
            self.criterion = EndToEndSegmentationLoss(nc, args["epochs"], stride=strides, overlap_mask=args["overlap_mask"], hyp=args)
        else:
            self.criterion = SegmentationLoss(nc, stride=strides, reg_max=net.head.reg_max, overlap_mask=args["overlap_mask"], hyp=args)
        self.ema = ModelEMA(net)
        # the trained copy computes in channels-last (measured 12 % faster per step on the CPU); the
        # EMA, validation and checkpoints keep the default layout
        net.to(memory_format=torch.channels_last)
        self.amp_dtype, amp_line = autocast_dtype(args["amp"], self.device.type)
        self.float_layers = prediction_layer_modules(net)
        if self.is_main:
            LOGGER.info(amp_line)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        # fitness is negative without val (minus the summed loss): any first epoch must beat the start
        self.start_epoch, self.best_fitness, self.last_opt_step, self.best_epoch = 0, -math.inf, -1, -1
        if self.resume_ckpt:
            self._restore(self.resume_ckpt)
        else:
            self.save_dir = increment_path(Path(args["project"]) / args["name"], exist_ok=args["exist_ok"]) if self.is_main else None
        if self.world_size > 1:
            self.save_dir = distributed.broadcast_object(self.save_dir)
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        else:
            self.train_model = net
        self.weights_dir = self.resume_path.resolve().parent if self.resume_ckpt else self.save_dir / "weights"
        self.last, self.best = self.weights_dir / "last.pt", self.weights_dir / "best.pt"
        if self.is_main:
            ensure_folder(self.weights_dir)
            for checkpoint in (self.last, self.best):
                remove_stale(checkpoint)
            atomic_write_text(self.save_dir / "args.yaml", yaml.safe_dump(self.args, sort_keys=False))

    def _carry_optimizer_state(self, path: Path, name: str) -> None:
        """Fine-tuning an interrupted Ultralytics run's ``last.pt``: start from its optimizer state when it is ``name``'s (logged either way)."""
        if not is_ultralytics_checkpoint(path):
            return
        found = ultralytics_optimizer_state(path)
        if found is None:
            if self.is_main:
                LOGGER.info(f"{path}: no optimizer state (a finished run's checkpoint): the optimizer starts fresh")
            return
        kind, state = found
        if kind != name:
            if self.is_main:
                LOGGER.warning(f"{path}: its optimizer state is {kind}'s, this run's optimizer {name}: it starts fresh (--optimizer {kind} carries it)")
            return
        carried = carry_state(self.optimizer, self.net, state)
        if self.is_main:
            total = sum(1 for _ in self.net.parameters())
            LOGGER.info(f"optimizer state: {carried} of {total} parameters start from {path.name}'s {kind} state")

    def _restore(self, ckpt: dict) -> None:
        """Load raw weights, EMA, optimiser and counters from a last.pt."""
        try:
            self.net.load_state_dict(ckpt["model_state"])
            self.ema.ema.load_state_dict(ckpt["state_dict"])
            self.ema.updates = int(ckpt["ema_updates"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.start_epoch = int(ckpt["epoch"]) + 1
            self.best_fitness = float(ckpt.get("best_fitness", -math.inf))
            self.best_epoch = int(ckpt.get("best_epoch", -1))
            self.last_opt_step = int(ckpt["last_opt_step"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            message = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise EdgesegError(f"{self.resume_path}: its training state does not fit the model ({message})") from None
        if self.start_epoch >= self.args["epochs"]:
            raise EdgesegError(
                f"{self.save_dir}: training already finished ({self.start_epoch} of {self.args['epochs']} epochs); "
                "pass a larger epochs to train further"
            )
        if self.is_main:
            LOGGER.info(f"resuming {self.save_dir} from epoch {self.start_epoch + 1} of {self.args['epochs']}")

    def train(self):
        """Run every epoch; return the final ``SegmentMetrics`` of ``best.pt`` (None without val)."""
        if self.world_size > 1:
            distributed.init(self.device)
        try:
            self._setup()
            self._train_epochs()
        finally:
            if self.world_size > 1:
                distributed.cleanup()
        return self.metrics

    def _train_epochs(self) -> None:
        args = self.args
        epochs, nb = args["epochs"], self.batches_per_epoch
        warmup_iterations = max(round(args["warmup_epochs"] * nb), 100) if args["warmup_epochs"] > 0 else -1
        if self.is_main:
            LOGGER.info(
                f"training {self.network.name} on {len(self.train_set)} images, imgsz {args['imgsz']}, batch {args['batch']}, "
                f"{epochs} epochs, device {self.device}{f' x{self.world_size}' if self.world_size > 1 else ''}; results to {self.save_dir}"
            )
        for epoch in range(self.start_epoch, epochs):
            epoch_start = time.time()
            if self.fit_threads:
                self._fit_threads_to_load()
            if epoch >= epochs - args["close_mosaic"] and self.train_set.mosaic:
                if self.is_main:
                    LOGGER.info(f"closing mosaic for the last {epochs - epoch} epochs")
                self.train_set.close_mosaic()
            set_epoch_lr(self.optimizer, epoch, epochs, args["lrf"])
            if hasattr(self.criterion, "set_epoch"):
                self.criterion.set_epoch(epoch)
            loader = train_loader(
                self.train_set, self.batch_per_process, args["workers"], args["seed"], epoch,
                self.rank, self.world_size,
            )
            self.train_model.train()
            mean_loss = torch.zeros(len(self.criterion.names))
            short_names = " ".join(name.removesuffix("_loss") for name in self.criterion.names)
            bar = tqdm(
                enumerate(loader), total=nb, disable=not self.is_main, unit="batch", dynamic_ncols=True,
                bar_format="{l_bar}{bar:10}{r_bar}",
            )
            for i, batch in bar:
                step = i + nb * epoch
                accumulate = self.accumulate
                if step <= warmup_iterations:
                    warmup(
                        self.optimizer, step, warmup_iterations, linear_lr(epoch, epochs, args["lrf"]),
                        self.momentum, args["warmup_momentum"], self.warmup_bias_lr,
                    )
                    accumulate = max(1, int(np.interp(step, [0, warmup_iterations], [1, self.accumulate]).round()))
                items = self._train_step(batch)
                if step - self.last_opt_step >= accumulate or i == nb - 1:
                    self._optimizer_step()
                    self.last_opt_step = step
                mean_loss = (mean_loss * i + items) / (i + 1)
                if self.is_main:
                    losses = " ".join(f"{v:.3f}" for v in mean_loss.tolist())
                    bar.set_description(f"epoch {epoch + 1}/{epochs} {short_names} {losses} inst {len(batch['cls'])}")
            stop = self._end_epoch(epoch, mean_loss, time.time() - epoch_start)
            if self.world_size > 1:
                stop = distributed.broadcast_object(stop)
            if stop:
                break
        if self.is_main:
            self._final_report()

    def _fit_threads_to_load(self) -> None:
        """Use the CPUs other processes leave free (at least one thread), measured between epochs while this one is idle."""
        others = busy_cpus(LOAD_SAMPLE_S)
        threads = max(1, self.threads - round(others))
        if threads != torch.get_num_threads():
            LOGGER.info(f"threads: {threads} (other processes keep {others:.1f} of {self.threads} CPUs busy)")
            torch.set_num_threads(threads)

    def _train_step(self, batch: dict) -> torch.Tensor:
        """Forward + backward on one batch; returns the loss items named ``criterion.names`` (box, seg, cls, dfl; YOLO26: l1, sem)."""
        images = (batch["img"].to(self.device, non_blocking=True).float() / 255).contiguous(memory_format=torch.channels_last)
        targets = {k: batch[k].to(self.device) for k in ("cls", "bboxes", "batch_idx", "masks")}
        targets["img"] = images
        with autocast_forward(self.net, self.amp_dtype, self.device.type, self.float_layers):
            preds = self.train_model(images)
        loss, items = self.criterion(float_outputs(preds), targets)
        if self.world_size > 1:
            loss = loss * self.world_size
        self.scaler.scale(loss).backward()
        return items.detach().cpu()

    def _optimizer_step(self) -> None:
        """Unscale, clip gradients at norm 10, step, zero, and update the EMA."""
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_norm=CLIP_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.net)

    def validate(self, model: torch.nn.Module | None = None):
        """Box and mask metrics of ``model`` (default: the EMA) on the val split, through the runtime's pipeline."""
        model = model or self.ema.ema
        model.eval()

        def infer(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                preds, protos = model(torch.from_numpy(batch).to(self.device))
            return preds.float().cpu().numpy(), protos.float().cpu().numpy()

        return evaluate(infer, self.val_labels, self.data["nc"], self.args["imgsz"], batch=self.args["batch"])

    def _end_epoch(self, epoch: int, mean_loss: torch.Tensor, seconds: float) -> bool:
        """Validate, log, save checkpoints and plots on rank 0; return True to stop early."""
        if not self.is_main:
            return False
        val_start = time.time()
        metrics = self.validate() if self.args["val"] else None
        val_seconds = time.time() - val_start
        fitness = metrics.fitness if metrics else -float(mean_loss.sum())
        if fitness > self.best_fitness:
            self.best_fitness, self.best_epoch = fitness, epoch
        self.metrics = metrics
        row = {"epoch": epoch + 1, **{f"train/{n}": float(v) for n, v in zip(self.criterion.names, mean_loss)}}
        if metrics:
            row.update({k: v for k, v in metrics.results_dict.items() if k != "fitness"})
            LOGGER.info(
                f"epoch {epoch + 1}: box mAP50 {metrics.box.map50:.3f} mAP50-95 {metrics.box.map:.3f} | "
                f"mask mAP50 {metrics.seg.map50:.3f} mAP50-95 {metrics.seg.map:.3f} | train {seconds:.1f}s, val {val_seconds:.1f}s"
            )
        row.update({f"lr/pg{j}": g["lr"] for j, g in enumerate(self.optimizer.param_groups)})
        row["time"] = seconds
        self._append_results(row)
        self._save(epoch, metrics)
        for callback in self.callbacks["on_epoch_end"]:
            callback(self)
        stop = epoch - self.best_epoch >= self.args["patience"]
        if stop:
            LOGGER.info(f"stopping early: no improvement for {self.args['patience']} epochs (best: epoch {self.best_epoch + 1})")
        return stop

    def _append_results(self, row: dict) -> None:
        """Append one epoch to results.csv (rewriting it without rows past this epoch when resuming)."""
        path = self.save_dir / "results.csv"
        rows = []
        if path.is_file() and not path.is_symlink():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if str(r.get("epoch", "")).isdigit() and int(r["epoch"]) < row["epoch"]]
        rows.append(row)

        def write(f) -> None:
            writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

        atomic_write(path, write, binary=False)

    def _save(self, epoch: int, metrics) -> None:
        """Write best.pt when this epoch is the best, then last.pt (with the training state).

        In that order, a last.pt always has the best.pt it names: a run killed between the two
        writes resumes from the previous epoch and writes the same best.pt again.
        """
        common = {
            "train_args": self.args,
            "epoch": epoch,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "metrics": metrics.results_dict if metrics else None,
        }
        training_state = {
            "model_state": {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "ema_updates": self.ema.updates,
            "last_opt_step": self.last_opt_step,
        }
        if self.best_epoch == epoch:
            atomic_torch_save(build_checkpoint(self.ema.ema, self.args["imgsz"], **common), self.best)
        atomic_torch_save(build_checkpoint(self.ema.ema, self.args["imgsz"], **common, **training_state), self.last)

    def _final_report(self) -> None:
        """Validate best.pt, print its per-class table and write the plots."""
        if not self.best.exists():
            return
        LOGGER.info(f"{self.args['epochs'] - self.start_epoch} epochs done; best epoch {self.best_epoch + 1}; weights in {self.weights_dir}")
        if self.args["val"]:
            best = load_network(self.best).net.to(self.device)
            self.metrics = self.validate(best)
            LOGGER.info(self.metrics.table(self.data["names"]))
        if self.args["plots"]:
            self._plots()

    def _plots(self) -> None:
        """results.png, PR curves, a labelled training batch and val predictions next to labels."""
        from edgeseg import plots

        plots.plot_results(self.save_dir / "results.csv")
        if self.metrics:
            plots.plot_pr_curves(self.metrics, self.data["names"], self.save_dir)
        loader = train_loader(self.train_set, self.batch_per_process, 0, self.args["seed"], 0)
        batch = next(iter(loader))
        plots.plot_labelled_batch({k: v.numpy() if torch.is_tensor(v) else v for k, v in batch.items()}, self.data["names"], self.save_dir / "train_batch0.png")
        if self.val_labels:
            from edgeseg.nn.backend import network_runtime
            from edgeseg.runtimes.evaluation.validate import ground_truth
            from edgeseg.runtimes.io.images import read_image

            chunk = self.val_labels[:8]
            images = [read_image(label.im_file) for label in chunk]
            ema = network_runtime(self.ema.ema, self.args["imgsz"], "EMA", str(self.device))
            results = ema.predict(images, stream=False)
            plots.plot_val_predictions(
                images, results, [ground_truth(label) for label in chunk], self.data["names"], self.save_dir / "val_predictions.png"
            )


def _rebuild_for_classes(network: Network, names: dict[int, str]) -> Network:
    """``network`` named ``names``; rebuilt for ``len(names)`` classes (keeping every weight whose shape fits) when its count differs."""
    if network.net.nc == len(names):
        network.net.names = dict(names)
        return network
    net = SegmentationNet({**network.net.yaml, "nc": len(names)}, names=dict(names))
    own = net.state_dict()
    kept = {k: v for k, v in network.net.state_dict().items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(kept, strict=False)
    LOGGER.info(f"transferred {len(kept)}/{len(own)} tensors from {network.source} (nc {network.net.nc} -> {len(names)})")
    return Network(net, network_meta(net, network.meta.imgsz), network.checkpoint, network.source)
