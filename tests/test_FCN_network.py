import pytest
import torch

import FCN_network
from FCN_network import (GENERATORS, DeviceError, FullyConvNetwork, Generator, PatchDiscriminator, SizeError, UNet256,
                         build_generator, check_sides, generate, pick_device)


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


def test_check_sides_names_the_multiple():
    check_sides((256, 512), 'unet256', 'x', 'advice')
    check_sides((48, 80), 'fcn', 'x', 'advice')
    with pytest.raises(SizeError, match='are 80x40 per half, but fcn needs sides that are multiples of 16, such as 80x32; fix it'):
        check_sides((40, 80), 'fcn', 'x', 'fix it')
    with pytest.raises(SizeError, match='multiples of 256'):
        check_sides((256, 128), 'unet256', 'x', 'fix it')


def test_mirrored_generation_averages_both_passes():
    """A 'generator' that adds a left-to-right ramp: its mirrored pass adds the
    mirrored ramp, so the mean adds the ramp's mean, the same in every column."""
    ramp = torch.arange(4.0)
    images = torch.zeros(1, 1, 2, 4)
    assert torch.equal(generate(lambda x: x + ramp, images), ramp.expand(1, 1, 2, 4))
    assert torch.equal(generate(lambda x: x + ramp, images, mirror=True), torch.full((1, 1, 2, 4), 1.5))
    # the input is mirrored too, not only the output: an image-dependent network shows it
    image = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    assert torch.equal(generate(lambda x: x * ramp, image, mirror=True),
                       (image * ramp + (image.flip(-1) * ramp).flip(-1)) / 2)


def test_pick_device():
    if not torch.backends.mps.is_available():
        assert pick_device('auto') == torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')
    assert pick_device('cpu') == torch.device('cpu')
    with pytest.raises(DeviceError, match='expected auto, cpu, cuda, cuda:N or mps'):
        pick_device('gpu')
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match='CUDA is not available'):
            pick_device('cuda:1')
    else:
        assert pick_device('cuda', local_rank=0) == torch.device('cuda:0')


@pytest.mark.skipif(torch.backends.mps.is_available(), reason='a working MPS would be used')
def test_a_failing_mps_falls_back_to_the_cpu_in_one_line(monkeypatch, capsys):
    """Off a Mac, MPS 'present' but failing its first use stands for a broken one."""
    monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: True)
    if not torch.cuda.is_available():
        assert pick_device('auto') == torch.device('cpu')
        note = capsys.readouterr().out.strip().splitlines()
        assert len(note) == 1 and note[0].startswith('note: MPS is present but failed') and 'using the CPU' in note[0]
    assert pick_device('auto', allow_mps=False).type != 'mps'
    with pytest.raises(DeviceError, match='MPS is not available'):
        pick_device('mps')


def test_discriminator_depth_sets_the_patch_each_score_sees():
    """A score's receptive field, found by perturbing one input pixel: the paper's
    3 layers see 70x70, 2 see 34x34, 1 sees 16x16."""
    for layers, side in ((1, 16), (2, 34), (3, 70)):
        network = PatchDiscriminator(width=4, layers=layers).eval()
        image = torch.zeros(1, 3, 160, 160, requires_grad=True)
        network(image, torch.zeros(1, 3, 160, 160))[0, 0, 3, 3].backward()
        rows, columns = image.grad.abs().sum((0, 1)).nonzero(as_tuple=True)
        assert (rows.max() - rows.min() + 1, columns.max() - columns.min() + 1) == (side, side)


def test_discriminator_width_and_depth_set_its_channels():
    network = PatchDiscriminator(width=8, layers=2)
    convolutions = [layer for layer in network.modules() if isinstance(layer, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convolutions] == [(6, 8), (8, 16), (16, 32), (32, 1)]


def test_a_new_generator_is_one_registry_entry(monkeypatch):
    """Everything that depends on the network reads GENERATORS: building, the side
    check, patch training and the checkpoint's description."""
    import checkpoint
    import training
    monkeypatch.setitem(GENERATORS, 'tiny', Generator(lambda config: torch.nn.Conv2d(3, 3, config['width']),
                                                      ('width',), 8, True))
    config = {'model': 'tiny', 'width': 1, 'augment': True, 'patch_size': 24, 'patch_epochs': 0.5, 'num_epochs': 2}
    assert isinstance(build_generator(config), torch.nn.Conv2d)
    check_sides((16, 24), 'tiny', 'x', 'advice')
    with pytest.raises(SizeError, match='tiny needs sides that are multiples of 8'):
        check_sides((16, 20), 'tiny', 'x', 'advice')
    assert training.patch_side(config, 1) == 24
    monkeypatch.setitem(GENERATORS, 'tiny', GENERATORS['tiny']._replace(patches=False))
    assert training.patch_side(config, 1) is None
    assert checkpoint.describe(config) == 'tiny (width 1)'


@pytest.mark.parametrize('upsample', FCN_network.UPSAMPLES)
def test_every_upsampling_doubles_the_side_in_each_up_block(upsample):
    fcn, unet = FullyConvNetwork(4, skips=True, upsample=upsample), UNet256(4, upsample=upsample)
    assert fcn(torch.randn(2, 3, 48, 80)).shape == (2, 3, 48, 80)
    assert unet(torch.randn(1, 3, 256, 256)).shape == (1, 3, 256, 256)
    transposed = sum(isinstance(m, torch.nn.ConvTranspose2d) for m in fcn.modules())
    assert transposed == (4 if upsample.startswith('transpose') else 0)
    assert build_generator(dict(model='fcn', width=4, skips=True, upsample=upsample)).up[-1][0].__class__ == \
        fcn.up[-1][0].__class__


def test_subpixel_starts_as_a_nearest_neighbour_resize():
    """ICNR: at init, all four sub-pixels of an output pixel are equal, so no lattice can
    come from the initial weights; the paper's initialisation keeps that."""
    torch.manual_seed(0)
    for network in (FullyConvNetwork(4, upsample='subpixel'), UNet256(4, upsample='subpixel')):
        FCN_network.init_pix2pix(network)
        block = next(m for m in network.modules() if isinstance(m, FCN_network.SubpixelConv))
        output = block(torch.randn(2, block[0].in_channels, 8, 8))
        for dy, dx in ((0, 1), (1, 0), (1, 1)):
            assert torch.equal(output[..., dy::2, dx::2], output[..., ::2, ::2])
        assert output[..., ::2, ::2].std() > 0


def test_train_offers_the_upsamplings_the_networks_have():
    import train
    assert train.CHOICES['upsample'] == FCN_network.UPSAMPLES and train.config['upsample'] == 'transpose'


def test_checkpoints_from_before_the_upsample_setting_load_as_transposed(tmp_path):
    import checkpoint
    from conftest import save_generator
    config = dict(model='fcn', width=4, skips=True, direction='AtoB', image_size=32, dataset='tiny')
    path = save_generator(tmp_path / 'old.pth', config, FullyConvNetwork(4, skips=True))
    generator, state = checkpoint.load_generator(path)
    assert state['config']['upsample'] == 'transpose'
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in generator.modules()) == 4


def test_the_blur_cancels_the_transposed_convolutions_lattice():
    """On a flat input, a trained-looking (random) transposed-convolution FCN draws a period-2
    checkerboard; with transpose_blur, even and odd pixels mix both kernels equally and the
    interior is flat to rounding. The blur is [1, 2, 1] x [1, 2, 1] / 16 with edges replicated."""
    def checkerboard(upsample):
        torch.manual_seed(0)
        network = FullyConvNetwork(8, skips=True, upsample=upsample)
        FCN_network.init_pix2pix(network)
        inside = network.eval()(torch.full((1, 3, 64, 64), 0.3))[..., 8:-8, 8:-8]
        return max((inside[..., ::2, ::2] - inside[..., dy::2, dx::2]).abs().max().item()
                   for dy, dx in ((0, 1), (1, 0), (1, 1)))
    assert checkerboard('transpose') > 1e-3 and checkerboard('transpose_blur') < 1e-5
    blur = FCN_network.BinomialBlur(1)
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[..., 2, 2] = 16
    assert blur(impulse)[0, 0, 1:4, 1:4].tolist() == [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    assert torch.equal(blur(torch.full((1, 1, 4, 4), 5.0)), torch.full((1, 1, 4, 4), 5.0))  # no dark border


def test_spectral_norm_discriminator_has_unit_spectral_norms_and_no_batchnorm():
    torch.manual_seed(0)
    batch, spectral = PatchDiscriminator(8, 2), PatchDiscriminator(8, 2, norm='spectral')
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in batch.modules()) == 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in spectral.modules())
    images = torch.randn(2, 3, 64, 64)
    for _ in range(30):  # the power iteration runs once per training forward
        spectral(images, images)
    convs = [m for m in spectral.net if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4
    for conv in convs:
        assert torch.linalg.matrix_norm(conv.weight.flatten(1), 2).item() == pytest.approx(1, abs=1e-3)
    assert spectral(images, images).shape == batch(images, images).shape == (2, 1, 14, 14)
    assert FCN_network.build_discriminator(dict(d_width=8, d_layers=2, d_norm='spectral')).net[0].parametrizations
