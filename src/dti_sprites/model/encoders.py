"""The shared image encoder: a CNN trunk, adaptive average pooling and flattening.

Every prediction head reads the same feature vector, so the encoder runs once per batch.
Input (B, C, H, W) in [0, 1]; output (B, F). F depends on the trunk, the image size and
`with_pool`, so it is measured by a dry run rather than computed by hand.

All networks start from random weights: nothing is ever downloaded.
References: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (CIFAR
ResNets of section 4.2 with option A shortcuts); Simonyan & Zisserman, VGG, ICLR 2015.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models

from ..errors import ConfigError
from ..registry import Registry

# name -> factory(in_channels) returning a trunk (B, C, H, W) -> (B, C', H', W').
ENCODERS: Registry[Callable[[int], nn.Module]] = Registry("encoder")


@ENCODERS.register("default")
def default_encoder(in_channels: int) -> nn.Module:
    """Two small conv blocks: cheap and enough for MNIST-like data."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, kernel_size=7, padding=3),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 10, kernel_size=5, padding=2),
        nn.BatchNorm2d(10),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample space and zero-pad channels, so it adds no parameter."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad_before = (out_planes - in_planes) // 2
        self.pad_after = out_planes - in_planes - self.pad_before

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C_in, H / s, W / s)
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))  # (B, C_out, H / s, W / s)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = ZeroPadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: 3x3 stem, three stages of 16/32/64 channels.

    stem_stride 2 runs the same network on maps of half the size: about 2.3x cheaper, forward
    and backward, at the same depth and receptive field in layers (for a CPU's demo budget).
    """

    def __init__(self, in_channels: int, blocks_per_stage: int, stem_stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._stage(32, 64, blocks_per_stage, stride=2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, n_blocks: int, stride: int) -> nn.Sequential:
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes) for _ in range(n_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, 16, H / s, W / s)
        return self.layer3(self.layer2(self.layer1(x)))  # (B, 64, H / 4s, W / 4s)


def _register_cifar_resnet(depth: int, stem_stride: int) -> None:
    blocks_per_stage = (depth - 2) // 6
    name = f"resnet{depth}" + ("" if stem_stride == 1 else f"_s{stem_stride}")

    def factory(in_channels: int) -> nn.Module:
        return CifarResNet(in_channels, blocks_per_stage, stem_stride)

    factory.__name__ = name
    factory.__doc__ = f"CIFAR ResNet-{depth}: {blocks_per_stage} basic blocks per stage, stem stride {stem_stride}."
    ENCODERS.register(name)(factory)


for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register_cifar_resnet(_depth, 1)
for _depth in (20, 32):
    _register_cifar_resnet(_depth, 2)


def _adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Same conv with another number of input channels (e.g. 1 for grey images)."""
    if in_channels == conv.in_channels:
        return conv
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    return new


def _register_imagenet_resnet(name: str) -> None:
    def factory(in_channels: int) -> nn.Module:
        net = getattr(models, name)(weights=None)
        return nn.Sequential(
            OrderedDict(
                conv1=_adapt_first_conv(net.conv1, in_channels),
                bn1=net.bn1,
                relu=net.relu,
                maxpool=net.maxpool,
                layer1=net.layer1,
                layer2=net.layer2,
                layer3=net.layer3,
                layer4=net.layer4,
            )
        )

    factory.__name__ = name
    factory.__doc__ = f"torchvision {name} trunk up to layer4 (no pooling, no classifier)."
    ENCODERS.register(name)(factory)


for _name in ("resnet18", "resnet34", "resnet50"):
    _register_imagenet_resnet(_name)


@ENCODERS.register("vgg16")
def vgg16_encoder(in_channels: int) -> nn.Module:
    """torchvision VGG16-BN convolutional features (five 2x poolings)."""
    features = models.vgg16_bn(weights=None).features
    features[0] = _adapt_first_conv(features[0], in_channels)
    return features


def _pool_size(with_pool) -> tuple[int, int]:
    if isinstance(with_pool, int) and not isinstance(with_pool, bool) and with_pool > 0:
        return (with_pool, with_pool)
    if (
        isinstance(with_pool, Sequence)
        and len(with_pool) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in with_pool)
    ):
        return (with_pool[0], with_pool[1])
    raise ConfigError(f"model.with_pool: expected a positive int or [h, w], got {with_pool!r}")


def build_encoder(name: str, in_channels: int, img_size: tuple[int, int], with_pool=(1, 1)) -> tuple[nn.Module, int]:
    """Build the encoder named `name` and measure its feature size F with a dry run.

    Returns (encoder, F); the encoder maps (B, in_channels, H, W) to (B, F) and is left in
    train mode.
    """
    trunk = ENCODERS.get(name)(in_channels)
    encoder = nn.Sequential(
        OrderedDict(trunk=trunk, pool=nn.AdaptiveAvgPool2d(_pool_size(with_pool)), flatten=nn.Flatten())
    )
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            features = encoder(torch.zeros(1, in_channels, *img_size))  # (1, F)
    except RuntimeError as error:
        raise ConfigError(
            f"encoder {name!r} cannot encode {in_channels}x{img_size[0]}x{img_size[1]} images: {error}"
        ) from error
    finally:
        encoder.train(was_training)
    return encoder, features.size(1)
