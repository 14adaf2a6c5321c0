"""The YOLO11 segmentation head: DFL box regression, depthwise class branch, mask coefficients, Proto.

Train mode returns what the loss needs; eval/export mode returns the output contract of docs/ARCHITECTURE.md:
``preds (B, 4 + nc + nm, A)`` (cx, cy, w, h in input pixels, sigmoid scores, mask
coefficients) and ``protos (B, nm, H/4, W/4)``.
"""

import math

import torch
from torch import nn

from edgeseg.nn.blocks import Conv, DWConv
from edgeseg.nn.boxes import dist2bbox, make_anchors


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


class Detect(nn.Module):
    """Anchor-free detection head over feature maps at strides 8/16/32.

    Train: list of (B, 4*reg_max + nc, H/s, W/s). Eval: (B, 4 + nc, A) decoded boxes
    (cx, cy, w, h in input pixels) and sigmoid scores.
    """

    reg_max = 16

    def __init__(self, nc: int = 80, ch: tuple[int, ...] = ()):
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.no = nc + self.reg_max * 4
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)
        c2 = max(16, ch[0] // 4, self.reg_max * 4)
        c3 = max(ch[0], min(self.nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * self.reg_max, 1)) for x in ch
        )
        self.cv3 = nn.ModuleList(
            nn.Sequential(
                nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                nn.Conv2d(c3, self.nc, 1),
            )
            for x in ch
        )
        self.dfl = DFL(self.reg_max)

    def level_outputs(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per level raw outputs: list of (B, 4*reg_max + nc, H/s, W/s)."""
        return [torch.cat((self.cv2[i](x[i]), self.cv3[i](x[i])), 1) for i in range(self.nl)]

    def decode(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """Raw level outputs → (B, 4 + nc, A): boxes cx, cy, w, h in input pixels, sigmoid scores."""
        b = levels[0].shape[0]
        anchors, strides = (t.transpose(0, 1) for t in make_anchors(levels, self.stride, 0.5))
        flat = torch.cat([xi.view(b, self.no, -1) for xi in levels], 2)
        box, cls = flat.split((self.reg_max * 4, self.nc), 1)
        boxes = dist2bbox(self.dfl(box), anchors.unsqueeze(0), xywh=True, dim=1) * strides
        return torch.cat((boxes, cls.sigmoid()), 1)

    def bias_init(self) -> None:
        """Initial biases: box logits 1.0; class logits for ~5 objects per 640² image (needs ``stride``)."""
        for box_branch, cls_branch, s in zip(self.cv2, self.cv3, self.stride):
            box_branch[-1].bias.data[:] = 1.0
            cls_branch[-1].bias.data[: self.nc] = math.log(5 / self.nc / (640 / float(s)) ** 2)

    def forward(self, x: list[torch.Tensor]):
        levels = self.level_outputs(x)
        return levels if self.training else self.decode(levels)


class Segment(Detect):
    """Detect plus ``nm`` mask coefficients per anchor and a Proto branch on the stride-8 map.

    Train: ``(levels, coeffs (B, nm, A), protos (B, nm, H/4, W/4))``.
    Eval/export: ``(preds (B, 4 + nc + nm, A), protos (B, nm, H/4, W/4))``.
    """

    def __init__(self, nc: int = 80, nm: int = 32, npr: int = 256, ch: tuple[int, ...] = ()):
        super().__init__(nc, ch)
        self.nm = nm
        self.npr = npr
        self.proto = Proto(ch[0], self.npr, self.nm)
        c4 = max(ch[0] // 4, self.nm)
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, self.nm, 1)) for x in ch)

    def forward(self, x: list[torch.Tensor]):
        protos = self.proto(x[0])
        b = protos.shape[0]
        coeffs = torch.cat([self.cv4[i](x[i]).view(b, self.nm, -1) for i in range(self.nl)], 2)
        levels = self.level_outputs(x)
        if self.training:
            return levels, coeffs, protos
        return torch.cat((self.decode(levels), coeffs), 1), protos
