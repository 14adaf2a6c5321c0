"""``edgeseg.Model``: the Python API over a network and its checkpoint."""

from pathlib import Path

from edgeseg.nn.network import Network, load_network, network_meta, network_name, open_network


class Model:
    """A YOLOv8-, YOLO11- or YOLO26-seg model built from a YAML (``"yolo11n-seg.yaml"``) or loaded from a checkpoint.

    Args:
        source: a bundled model name or YAML path (random weights), or a ``.pt`` checkpoint: edgeseg's,
            or an Ultralytics YOLOv8/YOLO11/YOLO26-seg one (imported in memory without running its pickle's code).
        nc: number of classes for a YAML-built model (default: the YAML's ``nc``).
        names: class names for a YAML-built model, ``{id: name}`` or a list.

    Attributes:
        net: the ``SegmentationNet`` (torch ``nn.Module``); ``model`` is the same object under
            Ultralytics' name.
        task: ``"segment"``.
        names: ``{class id: name}``.
        imgsz: the square input size in pixels the model is meant for.
        checkpoint: the loaded checkpoint dict without its weights, or None for a YAML-built model.
        source_hash: the SHA-256 prefix of the checkpoint file as loaded ('' for a YAML-built model).
    """

    task = "segment"

    def __init__(self, source: str | Path = "yolo11n-seg.yaml", nc: int | None = None, names=None):
        network = open_network(source, nc=nc, names=names)
        self.source, self.net, self.checkpoint = network.source, network.net, network.checkpoint
        self.imgsz, self.source_hash = network.meta.imgsz[0], network.meta.source_hash

    @property
    def network(self) -> Network:
        """This model as an ``edgeseg.nn.network.Network`` (the network itself, not a copy).

        Its ``meta.source_hash`` is the hash of the checkpoint file this model was loaded from (as
        read then), '' for a model built from a YAML.
        """
        return Network(self.net, network_meta(self.net, self.imgsz, self.source_hash), self.checkpoint, self.source)

    @property
    def model(self):
        """The ``SegmentationNet`` (``nn.Module``) under Ultralytics' name: the same object as ``net``."""
        return self.net

    @property
    def names(self) -> dict[int, str]:
        """``{class id: name}``."""
        return self.net.names

    @property
    def name(self) -> str:
        """A short label: the YAML stem with its scale (``yolo11n-seg``) or the checkpoint file stem."""
        return network_name(self.source, self.net, self.checkpoint is not None)

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

        self.trainer = Trainer({**overrides, "data": data}, network=self.network)
        metrics = self.trainer.train()
        if self.trainer.is_main and self.trainer.best.exists():
            best = load_network(self.trainer.best)
            self.net, self.checkpoint, self.source = best.net, best.checkpoint, best.source
            self.imgsz, self.source_hash = best.meta.imgsz[0], best.meta.source_hash
        return metrics

    def __call__(self, images):
        """Raw forward: (B, 3, H, W) float tensor in [0, 1] RGB → (preds, protos) as in docs/ARCHITECTURE.md."""
        return self.net(images)

    def __repr__(self) -> str:
        return f"Model({self.source!r}, nc={self.net.nc})"

    def _runtime(self, device: str | None, end2end: bool = False):
        """A Runtime whose torch backend wraps this in-memory network (no file written).

        ``end2end``: run a copy of the network on its one-to-one branch (top-k, no NMS; YOLO26),
        so that this Model's own branch stays as it is.
        """
        import copy

        from edgeseg.nn.backend import network_runtime

        net = copy.deepcopy(self.net) if end2end else self.net
        runtime = network_runtime(net, self.imgsz, self.source, device)
        return runtime.select_branch("one2one") if end2end else runtime

    def predict(self, source, device: str | None = None, **kwargs):
        """Segment ``source`` with this network through the runtime pipeline.

        Same arguments and results as ``edgeseg.runtimes.Runtime.predict`` (a generator of
        Results unless ``stream=False``); the input size defaults to ``self.imgsz``.
        Ultralytics' ``agnostic_nms=`` is taken for ``agnostic=``. ``end2end=True`` runs a YOLO26
        model's one-to-one branch with top-k instead of its one-to-many branch with NMS.
        """
        return self._runtime(device, kwargs.pop("end2end", False)).predict(source, **_runtime_kwargs(kwargs))

    def track(self, source, device: str | None = None, **kwargs):
        """Segment and track objects in ``source`` with this network (``edgeseg.runtimes.Runtime.track``).

        Same arguments and results as ``Runtime.track``: Results per frame with ``track_ids``.
        Ultralytics' ``agnostic_nms=`` is taken for ``agnostic=``; ``end2end=True`` as for ``predict``.
        """
        return self._runtime(device, kwargs.pop("end2end", False)).track(source, **_runtime_kwargs(kwargs))

    def val(self, data, device: str | None = None, **kwargs):
        """Box and mask metrics of this network on a data YAML split (``Runtime.val``; no save needed).

        ``end2end=True`` evaluates a YOLO26 model's one-to-one branch (top-k) instead of its
        one-to-many branch (NMS).

        Returns:
            SegmentMetrics, computed exactly as for every exported artifact.
        """
        return self._runtime(device, kwargs.pop("end2end", False)).val(data, **kwargs)

    def export(self, target: str = "onnx", *, format: str | None = None, half: bool = False, int8: bool = False, nms: bool = False, **kwargs):
        """Export this network to a deployable artifact, verified against it (``edgeseg.targets.export``).

        Same keyword arguments as ``edgeseg.targets.export`` (``precision``, ``imgsz``, ``batch``,
        ``dynamic``, ``verify``, ``out`` …); the network itself is left unchanged. Ultralytics'
        spellings are accepted too: ``format="openvino"`` for ``target``, ``half=True`` /
        ``int8=True`` for ``precision="fp16"`` / ``"int8"``, ``nms=True`` for ``end2end=True``.

        Returns:
            The ``edgeseg.targets.Artifact`` (``.path``, ``.meta``, ``.report`` …).

        Raises:
            EdgesegError: both ``half`` and ``int8``, or one of them with a different ``precision``.
        """
        from edgeseg.runtimes.errors import EdgesegError
        from edgeseg.targets import export

        if half or int8:
            wanted = "int8" if int8 else "fp16"
            if (half and int8) or kwargs.get("precision", wanted) != wanted:
                raise EdgesegError(f"give one precision: half={half}, int8={int8}, precision={kwargs.get('precision')!r}")
            kwargs["precision"] = wanted
        if nms:
            kwargs["end2end"] = True
        return export(self.network, target=format or target, **kwargs)


def _runtime_kwargs(kwargs: dict) -> dict:
    """``kwargs`` for ``Runtime.predict``/``track`` with Ultralytics' ``agnostic_nms`` renamed ``agnostic``."""
    renamed = dict(kwargs)
    if "agnostic_nms" in renamed:
        renamed["agnostic"] = renamed.pop("agnostic_nms")
    return renamed
