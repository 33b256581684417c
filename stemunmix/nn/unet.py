"""The fully convolutional network of the study: a U-Net with a dilated bottleneck.

Built from small named blocks; configuration in the constructor, no I/O here.
``forward`` returns class logits; :meth:`DilatedUNet.predict_proba` applies the
softmax over classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DilatedBottleneck(nn.Sequential):
    """3x3 convolutions at growing dilation rates: a wide view at low resolution."""

    def __init__(self, in_channels: int, width: int, rates: Sequence[int]):
        layers = []
        for i, rate in enumerate(rates):
            layers += [
                nn.Conv2d(
                    in_channels if i == 0 else width,
                    width,
                    3,
                    padding=rate,
                    dilation=rate,
                    bias=False,
                ),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
        super().__init__(*layers)


def _upsample_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``x`` upsampled to the skip's size, concatenated with the skip."""
    up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear")
    return torch.cat([up, skip], dim=1)


STRIP_ROWS = 128  # output rows per strip of a decoder level in inference


def _decode_in_strips(x, skip, decoder, head=None):
    """``decoder(_upsample_cat(x, skip))``, then ``head`` if given, computed
    ``STRIP_ROWS`` output rows at a time (inference): the upsampled and concatenated
    maps of a level, its widest tensors, are never whole in memory, and the
    strips stay in the CPU's caches.

    Each strip carries two rows of margin for the block's two 3x3
    convolutions and one row of ``x`` beyond what bilinear upsampling reads,
    so it equals the whole computation (the margins are cut off)."""
    height, low = skip.shape[-2], x.shape[-2]
    out = None
    for r0 in range(0, height, STRIP_ROWS):
        r1 = min(height, r0 + STRIP_ROWS)
        a0, a1 = max(0, r0 - 2), min(height, r1 + 2)  # rows the convolutions read
        s0, s1 = max(0, a0 // 2 - 1), min(low, (a1 + 1) // 2 + 1)  # rows of x
        up = F.interpolate(
            x[:, :, s0:s1], size=(2 * (s1 - s0), skip.shape[-1]), mode="bilinear"
        )
        y = _first_conv(
            decoder[0], up[:, :, a0 - 2 * s0 : a1 - 2 * s0], skip[:, :, a0:a1]
        )
        for layer in list(decoder)[1:]:
            y = layer(y)
        y = y[:, :, r0 - a0 : r1 - a0]
        if head is not None:
            y = head(y)
        if out is None:
            out = torch.empty(
                (*y.shape[:2], height, y.shape[-1]),
                dtype=y.dtype,
                device=y.device,
                memory_format=_layout(skip),
            )
        out[:, :, r0:r1] = y
    return out


def _first_conv(conv: nn.Conv2d, up: torch.Tensor, skip: torch.Tensor):
    """``conv`` of ``up`` and ``skip`` concatenated (channels), as the sum of
    its two halves of the input channels: the concatenated copy, the widest
    tensor of a decoder level, is never made (about 10 % of the network's
    time on the CPU; the same logits to float32 rounding, tested)."""
    cu = up.shape[1]
    layout = _layout(skip)
    w_up = conv.weight[:, :cu].contiguous(memory_format=layout)
    w_skip = conv.weight[:, cu:].contiguous(memory_format=layout)
    geometry = (conv.stride, conv.padding, conv.dilation)
    y = F.conv2d(up, w_up, conv.bias, *geometry)
    return y.add_(F.conv2d(skip, w_skip, None, *geometry))


def _layout(t: torch.Tensor):
    if t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class DilatedUNet(nn.Module):
    """U-Net with ``len(widths)`` levels and a dilated bottleneck.

    Parameters
    ----------
    class_names : sequence of str
        One output channel per class; default ``("A", "B", "background")``.
    widths : sequence of int
        Filters of each encoder/decoder level (default 16, 32, 64).
    bottleneck : int
        Filters of the bottleneck (default 128).
    rates : sequence of int
        Dilation rates of the bottleneck convolutions (default 2, 4, 6).
    in_channels : int
        Input channels (1 for a HAADF image).

    Input height and width must be multiples of ``2 ** len(widths)``.
    """

    def __init__(
        self,
        class_names: Sequence[str] = ("A", "B", "background"),
        widths: Sequence[int] = (16, 32, 64),
        bottleneck: int = 128,
        rates: Sequence[int] = (2, 4, 6),
        in_channels: int = 1,
    ):
        super().__init__()
        self.class_names = [str(c) for c in class_names]
        self.config = dict(
            class_names=self.class_names,
            widths=[int(w) for w in widths],
            bottleneck=int(bottleneck),
            rates=[int(r) for r in rates],
            in_channels=int(in_channels),
        )
        self.encoders = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.encoders.append(ConvBlock(prev, w))
            prev = w
        self.bottleneck = DilatedBottleneck(prev, bottleneck, rates)
        self.decoders = nn.ModuleList()
        prev = bottleneck
        for w in reversed(widths):
            self.decoders.append(ConvBlock(prev + w, w))
            prev = w
        self.head = nn.Conv2d(prev, len(self.class_names), 1)

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this."""
        return 2 ** len(self.config["widths"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Strips need every level exactly twice the next (sizes that are
        # multiples of ``multiple``, as all of stemunmix's calls are).
        strips = not torch.is_grad_enabled() and all(
            n % self.multiple == 0 for n in x.shape[-2:]
        )
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        if strips:
            last = len(self.decoders) - 1
            for i, decoder in enumerate(self.decoders):
                head = self.head if i == last else None
                x = _decode_in_strips(x, skips.pop(), decoder, head)
            return x
        for decoder in self.decoders:
            x = decoder(_upsample_cat(x, skips.pop()))
        return self.head(x)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax over classes of the logits."""
        return torch.softmax(self.forward(x), dim=1)

    def receptive_field(self) -> int:
        """Receptive field in input pixels (one side), from the layer geometry."""
        rf, jump = 1, 1
        levels = len(self.config["widths"])
        for _ in range(levels):
            rf += 2 * 2 * jump  # two 3x3 convolutions
            rf += jump  # 2x2 max pool
            jump *= 2
        rf += 2 * jump * sum(self.config["rates"])
        for _ in range(levels):
            jump //= 2
            rf += 2 * 2 * jump + 2 * jump  # bilinear upsampling reaches 2 more
        return rf

    def flops_per_pixel(self) -> float:
        """FLOPs (2 x multiply-adds) of the convolutions per input pixel."""

        def conv(cin, cout, k=9):
            return 2.0 * cin * cout * k

        widths, total, prev = self.config["widths"], 0.0, self.config["in_channels"]
        for level, w in enumerate(widths):
            total += (conv(prev, w) + conv(w, w)) / 4**level
            prev = w
        b, rates = self.config["bottleneck"], self.config["rates"]
        total += (conv(prev, b) + (len(rates) - 1) * conv(b, b)) / 4 ** len(widths)
        prev = b
        for level in reversed(range(len(widths))):
            w = widths[level]
            total += (conv(prev + w, w) + conv(w, w)) / 4**level
            prev = w
        return total + conv(prev, len(self.class_names), 1)
