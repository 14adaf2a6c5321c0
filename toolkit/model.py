"""``edgeseg.Model``: the Python API over a network and its checkpoint."""

import logging
from pathlib import Path

from edgeseg.config import load_model_config
from edgeseg.runtimes.errors import EdgesegError

DEFAULT_IMGSZ = 640
LOGGER = logging.getLogger("edgeseg")


class Model:
    """A YOLO11-seg model built from a YAML (``"yolo11n-seg.yaml"``) or loaded from a checkpoint.

    Args:
        source: a bundled model name or YAML path (random weights), or a ``.pt`` checkpoint: edgeseg's,
            or an Ultralytics YOLO11-seg one (imported in memory without running its pickle's code).
        nc: number of classes for a YAML-built model (default: the YAML's ``nc``).
        names: class names for a YAML-built model, ``{id: name}`` or a list.

    Attributes:
        net: the ``SegmentationModel`` (torch ``nn.Module``).
        names: ``{class id: name}``.
        imgsz: the square input size in pixels the model is meant for.
        checkpoint: the loaded checkpoint dict without its weights, or None for a YAML-built model.
    """

    def __init__(self, source: str | Path = "yolo11n-seg.yaml", nc: int | None = None, names=None):
        from edgeseg.nn.checkpoint import check_state_dict, checkpoint_parts
        from edgeseg.nn.model import SegmentationModel, check_architecture

        self.source = str(source)
        if isinstance(names, (list, tuple)):
            names = dict(enumerate(names))
        suffix = Path(self.source).suffix.lower()
        if suffix == ".pt":
            from edgeseg.nn.checkpoint import load_checkpoint

            try:
                ckpt = load_checkpoint(self.source)
            except EdgesegError:
                from edgeseg.interop.ultralytics import is_ultralytics_checkpoint, ultralytics_checkpoint

                if not is_ultralytics_checkpoint(self.source):
                    raise
                ckpt = ultralytics_checkpoint(self.source)
                LOGGER.info(
                    f"imported Ultralytics checkpoint {self.source} (scale {ckpt['config'].get('scale')}, "
                    f"{len(ckpt['names'])} classes, weights from '{ckpt['source']['weights']}'); "
                    "`edgeseg import` writes it as an edgeseg checkpoint"
                )
            cfg, ckpt_names, self.imgsz = checkpoint_parts(ckpt, self.source)
            check_state_dict(ckpt["state_dict"], check_architecture(cfg, self.source), self.source)
            self.net = SegmentationModel(cfg, names=ckpt_names)
            self.net.load_state_dict(ckpt["state_dict"])
            self.checkpoint = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer", "ema", "model_state")}
        elif suffix in (".yaml", ".yml"):
            if names and nc is None:
                nc = len(names)
            cfg = load_model_config(self.source, nc=nc)
            if names and len(names) != cfg["nc"]:
                raise EdgesegError(f"{self.source}: {len(names)} names given for nc={cfg['nc']}")
            check_architecture(cfg, self.source)
            self.net = SegmentationModel(cfg, names=names)
            self.imgsz = DEFAULT_IMGSZ
            self.checkpoint = None
        else:
            raise EdgesegError(f"{self.source}: expected a model YAML (.yaml) or an edgeseg checkpoint (.pt)")
        self.net.eval()

    @classmethod
    def from_network(cls, net, imgsz: int = DEFAULT_IMGSZ, source: str = "<memory>") -> "Model":
        """Wrap an existing ``SegmentationModel`` (e.g. one being trained) without copying it."""
        model = cls.__new__(cls)
        model.source, model.net, model.imgsz, model.checkpoint = source, net, int(imgsz), None
        return model

    @property
    def names(self) -> dict[int, str]:
        """``{class id: name}``."""
        return self.net.names

    @property
    def name(self) -> str:
        """A short label: the YAML stem with its scale (``yolo11n-seg``) or the checkpoint file stem."""
        if self.checkpoint is not None:
            return Path(self.source).stem
        stem = Path(self.source).stem
        scale = self.net.yaml.get("scale")
        return stem if scale is None or scale in stem else stem.replace("11", f"11{scale}", 1)

    def info(self, imgsz: int | None = None, detailed: bool = False) -> dict:
        """Size and metadata summary.

        Returns:
            ``{"name", "layers", "parameters", "gflops", "imgsz", "names", "checkpoint", "table"}``;
            ``gflops`` is for one image at ``imgsz`` (default: the model's) with BatchNorm unfused,
            ``table`` is the per-layer text (only when ``detailed``).
        """
        from edgeseg.nn.summary import count_parameters, gflops, layer_table

        imgsz = imgsz or self.imgsz
        return {
            "name": self.name,
            "layers": len(self.net.model),
            "parameters": count_parameters(self.net),
            "gflops": gflops(self.net, imgsz),
            "imgsz": imgsz,
            "names": dict(self.names),
            "checkpoint": self.checkpoint,
            "table": layer_table(self.net) if detailed else None,
        }

    def save(self, path: str | Path, **extra) -> Path:
        """Write this model as an edgeseg checkpoint (atomically); ``extra`` keys are stored as given."""
        from edgeseg.nn.checkpoint import atomic_torch_save, build_checkpoint

        carried = {k: v for k, v in (self.checkpoint or {}).items() if k in ("train_args", "epoch", "best_fitness", "metrics", "source")}
        return atomic_torch_save(build_checkpoint(self.net, self.imgsz, **{**carried, **extra}), path)

    def fuse(self) -> "Model":
        """Fold BatchNorm into the convolutions (inference only; in place)."""
        self.net.fuse()
        return self

    def train(self, data: str, **overrides):
        """Train this model on ``data`` (a data YAML); see ``edgeseg.train.trainer.DEFAULT_ARGS`` for options.

        Returns:
            The ``SegmentMetrics`` of the best epoch (``.box.map``, ``.seg.map50`` …); afterwards this
            Model holds the best weights and ``self.trainer.save_dir`` names the run folder.
        """
        from edgeseg.train.trainer import Trainer

        self.trainer = Trainer({**overrides, "data": data}, model=self)
        metrics = self.trainer.train()
        if self.trainer.is_main and self.trainer.best.exists():
            best = Model(self.trainer.best)
            self.net, self.checkpoint, self.source, self.imgsz = best.net, best.checkpoint, best.source, best.imgsz
        return metrics

    def __call__(self, images):
        """Raw forward: (B, 3, H, W) float tensor in [0, 1] RGB → (preds, protos) as in docs/ARCHITECTURE.md."""
        return self.net(images)

    def __repr__(self) -> str:
        return f"Model({self.source!r}, nc={self.net.nc})"

    def _runtime(self, device: str):
        """A Runtime whose torch backend wraps this in-memory network (no file written)."""
        from edgeseg.runtimes import Runtime
        from edgeseg.runtimes.backends.torch import TorchBackend

        return Runtime(TorchBackend(self, self.source, device))

    def predict(self, source, device: str = "cpu", **kwargs):
        """Segment ``source`` with this network through the runtime pipeline.

        Same arguments and results as ``edgeseg.runtimes.Runtime.predict`` (a generator of
        Results unless ``stream=False``); the input size defaults to ``self.imgsz``.
        """
        return self._runtime(device).predict(source, **kwargs)

    def val(self, data, device: str = "cpu", **kwargs):
        """Box and mask metrics of this network on a data YAML split (``Runtime.val``; no save needed).

        Returns:
            SegmentMetrics, computed exactly as for every exported artifact.
        """
        return self._runtime(device).val(data, **kwargs)

    def export(self, target: str = "onnx", **kwargs):
        """Export this network to a deployable artifact, verified against it (``edgeseg.targets.export``).

        Same keyword arguments as ``edgeseg.targets.export`` (``precision``, ``imgsz``, ``batch``,
        ``dynamic``, ``verify``, ``out`` …); the network itself is left unchanged.

        Returns:
            The ``edgeseg.targets.Artifact`` (``.path``, ``.meta``, ``.report`` …).
        """
        from edgeseg.targets import export

        return export(self, target=target, **kwargs)
