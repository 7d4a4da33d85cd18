"""Encoders: feature sizes from the dry run, CIFAR ResNet structure, pooling and errors."""

import pytest
import torch

from dti_sprites.errors import ConfigError
from dti_sprites.model.encoders import (
    ENCODERS,
    BasicBlock,
    ZeroPadShortcut,
    build_encoder,
)


@pytest.mark.parametrize(
    "name, in_channels, size, expected_features",
    [
        ("default", 3, (35, 35), 10),
        ("resnet20", 1, (28, 28), 64),
        ("resnet18", 3, (35, 35), 512),
        ("resnet50", 3, (32, 32), 2048),
        ("vgg16", 3, (32, 32), 512),
    ],
)
def test_output_shape_matches_dry_run(name, in_channels, size, expected_features):
    torch.manual_seed(0)
    encoder, n_features = build_encoder(name, in_channels, size)
    assert n_features == expected_features
    assert encoder.training
    out = encoder(torch.rand(2, in_channels, *size))
    assert out.shape == (2, n_features)


@pytest.mark.parametrize("name, in_channels", [("resnet18", 1), ("vgg16", 4)])
def test_first_conv_adapted_to_channels(name, in_channels):
    encoder, n_features = build_encoder(name, in_channels, (32, 32))
    first_conv = next(m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == in_channels
    assert encoder(torch.rand(2, in_channels, 32, 32)).shape == (2, n_features)


@pytest.mark.parametrize("name, blocks", [("resnet20", 3), ("resnet32", 5), ("resnet110", 18)])
def test_cifar_resnet_blocks_per_stage(name, blocks):
    trunk = ENCODERS.get(name)(3)
    for stage, width in [(trunk.layer1, 16), (trunk.layer2, 32), (trunk.layer3, 64)]:
        assert len(stage) == blocks and all(isinstance(b, BasicBlock) for b in stage)
        assert stage[-1].conv2.out_channels == width
    assert sum(isinstance(m, BasicBlock) for m in trunk.modules()) == 3 * blocks
    assert trunk.conv1.kernel_size == (3, 3) and trunk.conv1.stride == (1, 1)


def test_strided_stem_runs_the_same_network_on_half_size_maps():
    """resnet20_s2: the demo's encoder, the same blocks and weights' shapes as resnet20."""
    torch.manual_seed(0)
    full, strided = ENCODERS.get("resnet20")(3), ENCODERS.get("resnet20_s2")(3)
    assert strided.conv1.stride == (2, 2)
    assert [p.shape for p in full.parameters()] == [p.shape for p in strided.parameters()]
    x = torch.rand(2, 3, 35, 35)
    assert full(x).shape == (2, 64, 9, 9) and strided(x).shape == (2, 64, 5, 5)
    encoder, n_features = build_encoder("resnet20_s2", 3, (35, 35), with_pool=(2, 2))
    assert n_features == 256 and encoder(x).shape == (2, 256)


def test_option_a_shortcut_is_parameter_free_subsample_and_pad():
    trunk = ENCODERS.get("resnet20")(3)
    shortcut = trunk.layer2[0].shortcut
    assert isinstance(shortcut, ZeroPadShortcut)
    assert sum(p.numel() for p in shortcut.parameters()) == 0
    assert isinstance(trunk.layer1[0].shortcut, torch.nn.Identity)
    x = torch.rand(2, 16, 6, 6)
    out = shortcut(x)  # (2, 32, 3, 3)
    assert out.shape == (2, 32, 3, 3)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_pool_size_scales_features():
    _, f11 = build_encoder("default", 3, (20, 20), with_pool=(1, 1))
    _, f22 = build_encoder("default", 3, (20, 20), with_pool=[2, 2])
    _, f4 = build_encoder("default", 3, (20, 20), with_pool=4)
    assert f22 == 4 * f11 and f4 == 16 * f11
    with pytest.raises(ConfigError, match="with_pool"):
        build_encoder("default", 3, (20, 20), with_pool=[2, 0])


def test_unknown_encoder_and_too_small_image():
    with pytest.raises(ConfigError, match="'resnet7'") as info:
        build_encoder("resnet7", 3, (32, 32))
    assert "resnet20" in str(info.value)
    with pytest.raises(ConfigError, match="'default' cannot encode 3x3x3"):
        build_encoder("default", 3, (3, 3))  # the second 2x max-pool has nothing left


def test_registered_names():
    expected = ["default", "resnet110", "resnet14", "resnet18", "resnet20", "resnet32", "resnet34", "resnet44"]
    expected += ["resnet20_s2", "resnet32_s2", "resnet50", "resnet56", "resnet8", "vgg16"]
    assert ENCODERS.names() == sorted(expected)


def test_encoder_is_trainable():
    encoder, _ = build_encoder("resnet20", 3, (16, 16))
    encoder(torch.rand(2, 3, 16, 16)).sum().backward()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
