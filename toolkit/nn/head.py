"""The segmentation heads of the YOLO-seg families: ``Segment`` (YOLOv8, YOLO11) and ``Segment26`` (YOLO26).

One head class per family shape, one output contract:

* YOLOv8: DFL box regression (``reg_max`` 16), a class branch of two 3x3 Convs (``legacy``), ``Proto``.
* YOLO11: as YOLOv8 with a depthwise class branch.
* YOLO26: no DFL (``reg_max`` 1: the box branch gives the four distances directly), a one-to-one
  copy of every branch beside the one-to-many one (``one2one_cv2`` …), and ``Proto26``, which
  fuses the three levels and has a semantic branch used only in training. ``branch`` picks which
  branch eval runs: ``one2many`` (the default, as Ultralytics 8.4 predicts: its detections go
  through NMS) or ``one2one`` (its detections need no NMS: the host or the graph keeps the
  ``max_det`` best scores, ``edgeseg.runtimes.pipeline.topk``).

Train mode returns what the loss needs; eval/export mode returns the output contract of docs/ARCHITECTURE.md:
``preds (B, 4 + nc + nm, A)`` (cx, cy, w, h in input pixels, sigmoid scores, mask
coefficients) and ``protos (B, nm, H/4, W/4)``, or, with ``Segment.split`` set, the split
outputs int8 formats keep (``SPLIT_OUTPUTS``, decoded in numpy by
``edgeseg.runtimes.pipeline.head_decode.join_split_head``).

The head also names what int8 quantisers must keep in float (``float_kept_modules``), found
in the module tree by type, so no exporter depends on the head's layer index.
"""

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from edgeseg.nn.blocks import Conv, DWConv
from edgeseg.nn.boxes import dist2bbox, make_anchors
from edgeseg.runtimes.pipeline.head_decode import OUTPUTS, SPLIT_OUTPUTS


class DFL(nn.Module):
    """Distribution Focal Loss integral: (B, 4*c1, A) bin logits → (B, 4, A) expected distances in bins."""

    def __init__(self, c1: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class Proto(nn.Module):
    """Prototype masks: (B, c1, H/8, W/8) → upsample ×2 → (B, c2, H/4, W/4)."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32):
        super().__init__()
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.ConvTranspose2d(c_, c_, 2, 2, 0, bias=True)
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


class Proto26(Proto):
    """YOLO26's prototypes: the stride-16 and -32 maps refined to the stride-8 width, upsampled and added, then ``Proto``.

    (B, C_i, H/s_i, W/s_i) per level → (B, c2, H/4, W/4). ``semseg`` (training only) maps the fused
    stride-8 features to (B, nc, H/8, W/8) semantic logits (``semantic``).
    """

    def __init__(self, ch: tuple[int, ...], c_: int = 256, c2: int = 32, nc: int = 80):
        super().__init__(c_, c_, c2)
        self.feat_refine = nn.ModuleList(Conv(x, ch[0], k=1) for x in ch[1:])
        self.feat_fuse = Conv(ch[0], c_, k=3)
        self.semseg = nn.Sequential(Conv(ch[0], c_, k=3), Conv(c_, c_, k=3), nn.Conv2d(c_, nc, 1))

    def fused_features(self, x: list[torch.Tensor]) -> torch.Tensor:
        """The levels refined to ``ch[0]`` channels, upsampled (nearest) to stride 8 and added: (B, ch[0], H/8, W/8)."""
        feat = x[0]
        for i, refine in enumerate(self.feat_refine):
            feat = feat + F.interpolate(refine(x[i + 1]), scale_factor=2 ** (i + 1), mode="nearest")
        return feat

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return super().forward(self.feat_fuse(self.fused_features(x)))

    def semantic(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Semantic-segmentation logits (B, nc, H/8, W/8) of the training-only branch."""
        return self.semseg(self.fused_features(x))

    def with_semantic(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward(x), semantic(x))`` with the levels fused once: prototypes (B, c2, H/4, W/4), logits (B, nc, H/8, W/8)."""
        feat = self.fused_features(x)
        return Proto.forward(self, self.feat_fuse(feat)), self.semseg(feat)


class Detect(nn.Module):
    """Anchor-free detection head over feature maps at strides 8/16/32.

    Train: list of (B, 4*reg_max + nc, H/s, W/s). Eval: (B, 4 + nc, A) decoded boxes
    (cx, cy, w, h in input pixels) and sigmoid scores.

    Args:
        nc: number of classes.
        reg_max: DFL bins per box side (16); 1 for a head that regresses the distances directly (YOLO26).
        end2end: also build the one-to-one branches (``one2one_cv2``, ``one2one_cv3``), YOLO26's.
        ch: input channels per level.
        legacy: the YOLOv8 class branch (two 3x3 Convs) instead of the depthwise one.
    """

    def __init__(self, nc: int = 80, reg_max: int = 16, end2end: bool = False, ch: tuple[int, ...] = (), legacy: bool = False):
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = reg_max
        self.no = nc + self.reg_max * 4
        self.branch = "one2many"
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)
        c2 = max(16, ch[0] // 4, self.reg_max * 4)
        c3 = max(ch[0], min(self.nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1)) for x in ch
        )
        if legacy:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, self.nc, 1)) for x in ch)
        else:
            self.cv3 = nn.ModuleList(
                nn.Sequential(
                    nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                    nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                    nn.Conv2d(c3, self.nc, 1),
                )
                for x in ch
            )
        self.dfl = DFL(self.reg_max) if self.reg_max > 1 else nn.Identity()
        if end2end:
            self.one2one_cv2 = copy.deepcopy(self.cv2)
            self.one2one_cv3 = copy.deepcopy(self.cv3)

    @property
    def has_one2one(self) -> bool:
        """True for a head with one-to-one branches (YOLO26)."""
        return hasattr(self, "one2one_cv2")

    def select_branch(self, branch: str) -> None:
        """Make eval run the ``one2many`` or the ``one2one`` branch.

        Raises:
            ValueError: an unknown branch, or ``one2one`` on a head without one.
        """
        if branch not in ("one2many", "one2one") or (branch == "one2one" and not self.has_one2one):
            raise ValueError(f"this head has no {branch!r} branch (it has: {', '.join(self.branches)})")
        self.branch = branch

    @property
    def branches(self) -> list[str]:
        """The branches eval can run."""
        return ["one2many", "one2one"] if self.has_one2one else ["one2many"]

    def branch_module(self, name: str) -> nn.ModuleList:
        """The ModuleList ``name`` (``cv2``, ``cv3``, ``cv4``) of the branch this mode runs (training: the one-to-many one)."""
        return getattr(self, f"one2one_{name}" if self.branch == "one2one" and not self.training else name)

    def level_outputs(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level raw outputs: list of (B, 4*reg_max + nc, H/s, W/s)."""
        box, cls = self.branch_module("cv2"), self.branch_module("cv3")
        return [torch.cat((box[i](x[i]), cls[i](x[i])), 1) for i in range(self.nl)]

    def decode(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Raw level outputs → (B, 4 + nc, A): boxes cx, cy, w, h in input pixels, sigmoid scores.

        Args:
            levels: per level (B, 4 * reg_max + nc, H/s, W/s): DFL bin logits (l, t, r, b, reg_max
                bins each, in grid cells of the level; with reg_max 1 the four distances
                themselves) then class logits.

        Returns:
            (B, 4 + nc, A) with A = sum of H/s * W/s, level by level, row-major. Its numpy twin on
            the split outputs is ``edgeseg.runtimes.pipeline.head_decode.join_split_head``; the two must agree.
        """
        b = levels[0].shape[0]
        anchors, strides = (t.transpose(0, 1) for t in make_anchors(levels, self.stride, 0.5))
        flat = torch.cat([xi.view(b, self.no, -1) for xi in levels], 2)
        box, cls = flat.split((self.reg_max * 4, self.nc), 1)
        boxes = dist2bbox(self.dfl(box), anchors.unsqueeze(0), xywh=True, dim=1) * strides
        return torch.cat((boxes, cls.sigmoid()), 1)

    def bias_init(self) -> None:
        """Initial biases: box outputs 2.0; class logits for ~5 objects per 640² image (needs ``stride``).

        The box value is Ultralytics 8.4's; it matters only without DFL (reg_max 1, YOLO26), where it is
        each side's starting distance in grid cells (with DFL the softmax ignores a shared offset).
        """
        pairs = [(self.cv2, self.cv3)] + ([(self.one2one_cv2, self.one2one_cv3)] if self.has_one2one else [])
        for boxes, classes in pairs:
            for box_branch, cls_branch, s in zip(boxes, classes, self.stride):
                box_branch[-1].bias.data[:] = 2.0
                cls_branch[-1].bias.data[: self.nc] = math.log(5 / self.nc / (640 / float(s)) ** 2)

    def flat_branch(self, branch: nn.ModuleList, x: list[torch.Tensor], channels: int) -> torch.Tensor:
        """``branch`` (a ModuleList, one per level) over the levels' feature maps x (B, C_i, H/s, W/s), concatenated along the anchors: (B, channels, A)."""
        b = x[0].shape[0]
        return torch.cat([branch[i](x[i]).view(b, channels, -1) for i in range(self.nl)], 2)

    def float_kept(self) -> list[str]:
        """Names, relative to the head, of the submodules int8 quantisers keep in float.

        The DFL (when the head has one) and the last conv of every branch (``cv2.0.2`` …): they carry pixel-scale box bins
        and raw logits next to 0–1 scores (docs/ARCHITECTURE.md, "Converter choices"). The head's
        own decode arithmetic (anchor and stride adds, subtractions, products and divisions in
        ``decode``) is float-kept as well; it belongs to the head module itself, not to a submodule.
        """
        return (["dfl"] if self.reg_max > 1 else []) + self.branch_output_convs()

    def branch_output_convs(self) -> list[str]:
        """Names, relative to the head, of the last conv of every branch (``cv2.0.2``, …, ``one2one_cv4.2.2``): raw box, class and coefficient outputs."""
        names = []
        for name, child in self.named_children():
            if isinstance(child, nn.ModuleList):
                names += [f"{name}.{i}.{len(branch) - 1}" for i, branch in enumerate(child)]
        return names

    def prediction_layers(self) -> list[str]:
        """Names, relative to the head, of the layers whose outputs the training loss reads as predictions.

        The last conv of every branch, and in a segmentation head the prototypes' output layer
        (``proto.cv3``) and YOLO26's semantic logits (``proto.semseg.2``). Mixed-precision training
        computes these in float32 (``edgeseg.train.precision``): bf16's 8-bit mantissa would round
        box distances, logits and prototype values that the loss compares at sub-pixel scale.
        """
        names = self.branch_output_convs()
        proto = getattr(self, "proto", None)
        if proto is not None:
            names.append("proto.cv3")
            if hasattr(proto, "semseg"):
                names.append(f"proto.semseg.{len(proto.semseg) - 1}")
        return names

    def forward(self, x: list[torch.Tensor]):
        levels = self.level_outputs(x)
        return levels if self.training else self.decode(levels)


class Segment(Detect):
    """Detect plus ``nm`` mask coefficients per anchor and a Proto branch on the stride-8 map.

    Train: ``(levels, coeffs (B, nm, A), protos (B, nm, H/4, W/4))``.
    Eval/export: ``(preds (B, 4 + nc + nm, A), protos (B, nm, H/4, W/4))``, named ``OUTPUTS``.
    Eval/export with ``split`` set: the ``SPLIT_OUTPUTS`` ``(box_logits (B, 4 * reg_max, A) DFL bin
    logits, scores (B, nc, A) sigmoid, coefficients (B, nm, A), protos (B, nm, H/4, W/4))``. The
    branches are concatenated over the levels separately and never joined, so no quantised tensor
    mixes pixels and scores; DFL and box decoding stay out of the graph (an int8 softmax, output
    scale 1/256, moved boxes 5-9 px at 320 on a trained yolo11n-seg).
    Eval runs the branch ``branch`` names (``Detect``); training always trains the one-to-many one.
    """

    split = False

    def __init__(
        self,
        nc: int = 80,
        nm: int = 32,
        npr: int = 256,
        reg_max: int = 16,
        end2end: bool = False,
        ch: tuple[int, ...] = (),
        legacy: bool = False,
    ):
        super().__init__(nc, reg_max, end2end, ch, legacy)
        self.nm = nm
        self.npr = npr
        self.proto = self.make_proto(ch)
        c4 = max(ch[0] // 4, self.nm)
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, self.nm, 1)) for x in ch)
        if end2end:
            self.one2one_cv4 = copy.deepcopy(self.cv4)

    def make_proto(self, ch: tuple[int, ...]) -> nn.Module:
        """The prototype module: ``Proto`` on the stride-8 map."""
        return Proto(ch[0], self.npr, self.nm)

    def protos(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Prototypes (B, nm, H/4, W/4) from the levels' feature maps."""
        return self.proto(x[0])

    @property
    def output_names(self) -> list[str]:
        """The names of the eval outputs, in order: ``SPLIT_OUTPUTS`` with ``split`` set, else ``OUTPUTS``."""
        return list(SPLIT_OUTPUTS if self.split else OUTPUTS)

    def forward(self, x: list[torch.Tensor]):
        """Feature maps (B, C_i, H/s, W/s) per level → the train, eval or split outputs of the class docstring."""
        protos = self.protos(x)
        coeffs = self.flat_branch(self.branch_module("cv4"), x, self.nm)
        if self.split and not self.training:
            box_logits = self.flat_branch(self.branch_module("cv2"), x, 4 * self.reg_max)
            return box_logits, self.flat_branch(self.branch_module("cv3"), x, self.nc).sigmoid(), coeffs, protos
        levels = self.level_outputs(x)
        if self.training:
            return levels, coeffs, protos
        return torch.cat((self.decode(levels), coeffs), 1), protos


class Segment26(Segment):
    """YOLO26's head: ``Segment`` with ``Proto26`` over all three levels (built with ``reg_max`` 1 and ``end2end``).

    Train: ``{"one2many": (levels, coeffs, protos), "one2one": (levels, coeffs, protos), "semantic":
    (B, nc, H/8, W/8) logits}``, each branch's tuple as ``Segment``'s. The one-to-one branch runs on
    detached feature maps and gets detached prototypes, so its loss trains its own convs only; the
    backbone, neck, ``Proto26`` and the semantic branch learn from the one-to-many loss.
    Eval/export: as ``Segment``.
    """

    def forward(self, x: list[torch.Tensor]):
        if not self.training:
            return super().forward(x)
        protos, semantic = self.proto.with_semantic(x)
        one2many = (self.level_outputs(x), self.flat_branch(self.cv4, x, self.nm), protos)
        detached = [xi.detach() for xi in x]
        one2one_levels = [torch.cat((box(xi), cls(xi)), 1) for box, cls, xi in zip(self.one2one_cv2, self.one2one_cv3, detached)]
        one2one = (one2one_levels, self.flat_branch(self.one2one_cv4, detached, self.nm), protos.detach())
        return {"one2many": one2many, "one2one": one2one, "semantic": semantic}

    def make_proto(self, ch: tuple[int, ...]) -> nn.Module:
        """``Proto26`` over the three levels."""
        return Proto26(ch, self.npr, self.nm, self.nc)

    def protos(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Prototypes (B, nm, H/4, W/4) fused from all levels."""
        return self.proto(x)


def head_module_name(net: nn.Module) -> str:
    """The qualified module name of ``net``'s head (the first ``Detect``, e.g. a ``Segment``), found by type.

    Raises:
        ValueError: ``net`` has no head.
    """
    name = next((name for name, module in net.named_modules() if isinstance(module, Detect)), None)
    if name is None:
        raise ValueError(f"{type(net).__name__} has no Detect/Segment head")
    return name


def float_kept_modules(net: nn.Module) -> list[str]:
    """Qualified names (as in ``net.named_modules()``) of the head submodules int8 quantisers keep in float.

    ``Detect.float_kept`` prefixed with ``head_module_name(net)``; the head's own decode
    arithmetic (ops directly in the module ``head_module_name(net)``) is to be kept in float too.
    """
    head = head_module_name(net)
    return [f"{head}.{name}" for name in net.get_submodule(head).float_kept()]


def prediction_layer_modules(net: nn.Module) -> list[str]:
    """Qualified names (as in ``net.named_modules()``) of ``Detect.prediction_layers``: the layers whose outputs the loss reads."""
    head = head_module_name(net)
    return [f"{head}.{name}" for name in net.get_submodule(head).prediction_layers()]
