"""Build a segmentation network (``SegmentationNet``, the nn.Module) from a resolved model config: the one factory for architectures."""

import copy
import math

import torch
from torch import nn

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.nn.blocks import C2PSA, SPPF, C2f, C3k2, Concat, Conv
from edgeseg.nn.head import Segment, Segment26

MODULES = {
    "Conv": Conv,
    "C2f": C2f,
    "C3k2": C3k2,
    "SPPF": SPPF,
    "C2PSA": C2PSA,
    "Concat": Concat,
    "Upsample": nn.Upsample,
    "nn.Upsample": nn.Upsample,
    "Segment": Segment,
    "Segment26": Segment26,
}
MAX_PARAMETERS = 250_000_000  # parameters of one architecture (YOLO26x-seg: 71 million)
_REPEATED = {C2f, C3k2, C2PSA}
_CHANNEL_CHANGING = {Conv, C2f, C3k2, SPPF, C2PSA}
_HEADS = {Segment, Segment26}
DEFAULT_REG_MAX = 16  # DFL bins of a head whose YAML sets no reg_max (YOLOv8, YOLO11)


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of ``divisor`` that is ≥ ``x``."""
    return int(math.ceil(x / divisor) * divisor)


def build_layers(cfg: dict, in_channels: int = 3) -> tuple[nn.Sequential, list[int]]:
    """Turn the config's backbone + head rows into modules.

    Args:
        cfg: a validated model config (``edgeseg.models.config.load_model_config``) with ``scale`` chosen.
        in_channels: image channels.

    Returns:
        (layers, save): ``layers[i]`` carries ``.i`` (index), ``.f`` (input index or list,
        -1 = previous), ``.type``, ``.repeats``, ``.args`` and ``.np`` (parameter count); ``save`` lists the layer
        indices whose outputs later layers read.
    """
    nc = cfg["nc"]
    depth, width, max_channels = cfg["scales"][cfg["scale"]] if cfg.get("scales") else (1.0, 1.0, float("inf"))
    channels = [in_channels]
    layers, save = [], []
    legacy = True  # YOLOv8's class branch, until a C3k2 row says the model is YOLO11 or later
    for i, (src, repeats, name, args) in enumerate(cfg["backbone"] + cfg["head"]):
        module_cls = MODULES[name]
        args, kwargs = [nc if a == "nc" else None if a == "None" else a for a in args], {}
        repeats = max(round(repeats * depth), 1) if repeats > 1 else repeats
        if module_cls in _CHANNEL_CHANGING:
            c1, c2 = channels[src], args[0]
            c2 = make_divisible(min(c2, max_channels) * width, 8)
            if module_cls is SPPF:
                kwargs["cv1_act"] = len(args) <= 2  # [c2, k] rows (YOLOv8, YOLO11); YOLO26's [c2, k, n, shortcut] have none
            args = [c1, c2, *args[1:]]
            if module_cls in _REPEATED:
                args.insert(2, repeats)
                repeats = 1
            if module_cls is C3k2:
                legacy = False
                if cfg.get("scale") in ("m", "l", "x"):
                    args[3:4] = [True]  # C3k inner blocks at the larger scales
        elif module_cls is Concat:
            c2 = sum(channels[j] for j in src)
        elif module_cls in _HEADS:
            args[2] = make_divisible(min(args[2], max_channels) * width, 8)
            kwargs = dict(
                reg_max=cfg.get("reg_max", DEFAULT_REG_MAX), end2end=bool(cfg.get("end2end")), ch=[channels[j] for j in src], legacy=legacy
            )
            c2 = None
        else:
            c2 = channels[src]
        module = nn.Sequential(*(module_cls(*args, **kwargs) for _ in range(repeats))) if repeats > 1 else module_cls(*args, **kwargs)
        shown = [*args, kwargs["ch"]] if module_cls in _HEADS else args  # a head's input channels, as Ultralytics prints them
        module.i, module.f, module.type, module.repeats, module.args = i, src, name, repeats, shown
        module.np = sum(p.numel() for p in module.parameters())
        save.extend(j % i for j in ([src] if isinstance(src, int) else src) if j != -1)
        layers.append(module)
        if i == 0:
            channels = []
        channels.append(c2)
    return nn.Sequential(*layers), sorted(set(save))


def check_architecture(cfg: dict, source: str) -> dict[str, tuple[int, ...]]:
    """Build ``cfg`` without memory (on torch's ``meta`` device) and return its state_dict shapes.

    Args:
        cfg: a model config that passed ``edgeseg.models.config.validate_model_config``.
        source: the file it came from, for messages.

    Raises:
        EdgesegError: the rows do not fit together (channels, indices), or the network would have
            more than MAX_PARAMETERS parameters; nothing has been allocated then.
    """
    try:
        with torch.device("meta"):
            net = SegmentationNet(cfg)
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError, ZeroDivisionError, AttributeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgesegError(f"{source}: the model config does not build a network ({message[:160]})") from None
    parameters = sum(p.numel() for p in net.parameters())
    if parameters > MAX_PARAMETERS:
        raise EdgesegError(f"{source}: the model config asks for {parameters:,} parameters (at most {MAX_PARAMETERS:,})")
    return {name: tuple(t.shape) for name, t in net.state_dict().items()}


class SegmentationNet(nn.Module):
    """A YOLO-seg network (YOLOv8, YOLO11 or YOLO26). Input (B, 3, H, W) RGB in [0, 1] with H, W multiples of 32.

    ``model.train()``: returns ``(levels, coeffs, protos)`` for the loss (YOLO26: one per branch and
    semantic logits, see ``Segment26``).
    ``model.eval()``: returns ``(preds (B, 4 + nc + 32, A), protos (B, 32, H/4, W/4))``.
    Parameter names follow Ultralytics (``model.23.cv4.2.2.bias``).
    """

    def __init__(self, cfg: dict, names: dict[int, str] | None = None):
        super().__init__()
        self.yaml = copy.deepcopy(cfg)
        self.model, self.save = build_layers(self.yaml)
        self.names = names or {i: f"class{i}" for i in range(cfg["nc"])}
        head = self.head
        head.stride = self._probe_strides()
        self.stride = head.stride.clone()
        head.bias_init()

    @property
    def head(self) -> Segment:
        """The Segment (or Segment26) head: the last layer."""
        return self.model[-1]

    @property
    def nc(self) -> int:
        """Number of classes."""
        return self.head.nc

    def _probe_strides(self, size: int = 256) -> torch.Tensor:
        """Each head input's stride in pixels, from a blank image (BatchNorm statistics untouched)."""
        was_training = self.training
        self.eval()
        levels = []
        hook = self.head.register_forward_pre_hook(lambda _, inputs: levels.extend(inputs[0]))
        try:
            with torch.no_grad():
                self.forward(torch.zeros(1, 3, size, size))
        finally:
            hook.remove()
            self.train(was_training)
        return torch.tensor([size / level.shape[-2] for level in levels], device="cpu")

    def forward(self, x: torch.Tensor):
        outputs = []
        for layer in self.model:
            if layer.f != -1:
                x = outputs[layer.f] if isinstance(layer.f, int) else [x if j == -1 else outputs[j] for j in layer.f]
            x = layer(x)
            outputs.append(x if layer.i in self.save else None)
        return x

    def fuse(self) -> "SegmentationNet":
        """Fold every BatchNorm into its Conv for inference (in place); outputs unchanged within float error."""
        for module in self.modules():
            if isinstance(module, Conv) and hasattr(module, "bn"):
                module.conv = fuse_conv_bn(module.conv, module.bn)
                delattr(module, "bn")
                module.forward = module.forward_fuse
        return self


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d (with bias) equal to ``bn(conv(x))`` in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    ).requires_grad_(False).to(conv.weight.device)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((conv_bias - bn.running_mean) * scale + bn.bias)
    return fused
