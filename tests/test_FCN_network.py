import pytest
import torch

from FCN_network import FullyConvNetwork, PatchDiscriminator, UNet256, build_generator


@pytest.mark.parametrize('skips', [False, True])
@pytest.mark.parametrize('size', [(256, 256), (48, 80)])
def test_fcn_keeps_size_and_range(skips, size):
    network = FullyConvNetwork(width=4, skips=skips)
    output = network(torch.randn(2, 3, *size) * 3)
    assert output.shape == (2, 3, *size)
    assert output.min() >= -1 and output.max() <= 1


def test_fcn_is_four_blocks_down_and_up():
    network = FullyConvNetwork(width=8)
    convs = [m for m in network.down.modules() if isinstance(m, torch.nn.Conv2d)]
    transposed = [m for m in network.up.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64]
    assert [c.out_channels for c in transposed] == [32, 16, 8, 3]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs + transposed)
    assert isinstance(network.up[-1][-1], torch.nn.Tanh)


def test_skips_feed_every_up_block_its_mirrored_down_block():
    plain, joined = FullyConvNetwork(8), FullyConvNetwork(8, skips=True)
    in_channels = [[m for m in block.modules() if isinstance(m, torch.nn.ConvTranspose2d)][0].in_channels
                   for block in joined.up]
    assert in_channels == [64, 64, 32, 16]
    assert sum(p.numel() for p in joined.parameters()) > sum(p.numel() for p in plain.parameters())


def test_unet256_keeps_size_and_has_dropout():
    network = UNet256(width=4)
    output = network(torch.randn(1, 3, 256, 256))
    assert output.shape == (1, 3, 256, 256) and output.abs().max() <= 1
    assert sum(isinstance(m, torch.nn.Dropout) for m in network.modules()) == 3
    assert len(network.down) == len(network.up) == 8


def test_patch_discriminator_scores_70px_patches():
    scores = PatchDiscriminator(width=4)(torch.randn(2, 3, 256, 256), torch.randn(2, 3, 256, 256))
    assert scores.shape == (2, 1, 30, 30)


def test_build_generator():
    assert isinstance(build_generator({'model': 'fcn', 'width': 4, 'skips': True}), FullyConvNetwork)
    assert isinstance(build_generator({'model': 'unet256', 'width': 4, 'skips': False}), UNet256)
    with pytest.raises(ValueError, match='unknown model'):
        build_generator({'model': 'resnet', 'width': 4, 'skips': False})
