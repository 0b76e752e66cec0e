"""The networks: the assignment's fully convolutional network (optionally with
skip connections), the Pix2Pix U-Net generator, and the 70x70 PatchGAN; and
what they need to run: image sides their downsampling can take, a device.

All generators map an image in [-1, 1] to an image in [-1, 1] of the same
size: RGB to RGB, or the channels a run's input_channels and output_channels
say (1 grey, 3 RGB, 4 RGBA). `GENERATORS` is the one list of them: a new generator is one entry
there, and the scripts' choices, size checks and patch training follow from it.
train.py checks its settings before it imports torch, so its `MODELS` repeats each
entry's side multiple and patches (tests/test_settings.py holds the two together).
`build_generator(config)` is how train, evaluate and predict make one from a
run's settings, so a checkpoint alone says which network it holds.
"""
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from errors import UserError


def init_pix2pix(module):
    """The paper's initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
    for layer in module.modules():
        if isinstance(layer, SubpixelConv):
            layer.icnr_()


def down_block(in_channels, out_channels, norm=True):
    layers = [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    return layers


UPSAMPLES = ('transpose', 'transpose_blur', 'nearest', 'bilinear', 'subpixel')


def upsample_conv(in_channels, out_channels, upsample, bias=True):
    """Twice the side, out_channels: the paper's 4x4 stride-2 transposed convolution
    ('transpose'), the same followed by a fixed binomial blur ('transpose_blur'), a
    resize ('nearest', 'bilinear') then a 3x3 convolution, or a 3x3 convolution to 4x
    the channels then a pixel shuffle ('subpixel', ICNR-initialised). A stride-2
    transposed convolution computes even and odd output pixels with different kernels,
    which leaves a lattice of period 2 per block (2, 4, 8 px after three), strongest when
    trained adversarially (Odena et al. 2016, "Deconvolution and checkerboard artifacts")."""
    if upsample in ('transpose', 'transpose_blur'):
        transposed = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)
        return [transposed, BinomialBlur(out_channels)] if upsample == 'transpose_blur' else [transposed]
    if upsample == 'subpixel':
        return [SubpixelConv(in_channels, out_channels, bias)]
    if upsample not in UPSAMPLES:
        raise ValueError(f'unknown upsample {upsample!r}; expected one of {", ".join(UPSAMPLES)}')
    return [nn.Upsample(scale_factor=2, mode=upsample), nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)]


class BinomialBlur(nn.Module):
    """A fixed [1, 2, 1] x [1, 2, 1] / 16 blur per channel, borders replicated. Its response
    is 0 at the Nyquist frequency, so after a stride-2 transposed convolution every output
    pixel mixes the even and odd kernels equally: the period-2 lattice is cancelled where it
    is made (anti-aliasing as in Zhang 2019, "Making convolutional networks shift-invariant
    again"). Replicated borders: zero padding would darken the image's edges."""

    def __init__(self, channels):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer('kernel', (torch.outer(taps, taps) / 16).expand(channels, 1, 3, 3).clone(),
                             persistent=False)

    def forward(self, x):
        return nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode='replicate'),
                                    self.kernel.to(x.dtype), groups=x.shape[1])


class SubpixelConv(nn.Sequential):
    """A 3x3 convolution to 4x the channels, then PixelShuffle(2) (Shi et al. 2016).
    Its init is ICNR (Aitken et al. 2017): the four sub-pixels of each output channel
    start with one kernel, so at init it is a convolution then a nearest-neighbour
    resize, free of the lattice; init_pix2pix keeps that (it draws one kernel per group)."""

    def __init__(self, in_channels, out_channels, bias=True):
        super().__init__(nn.Conv2d(in_channels, out_channels * 4, 3, padding=1, bias=bias), nn.PixelShuffle(2))
        self.icnr_()

    @torch.no_grad()
    def icnr_(self):
        conv = self[0]
        kernel = conv.weight[::4].clone()  # PixelShuffle reads channel c*4 + k as sub-pixel k of c
        conv.weight.copy_(kernel.repeat_interleave(4, 0))
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[::4].repeat_interleave(4, 0))


def up_block(in_channels, out_channels, upsample='transpose'):
    return [*upsample_conv(in_channels, out_channels, upsample, bias=False), nn.BatchNorm2d(out_channels)]


def encode_decode(down, up, x, skips):
    """Down blocks, then up blocks; with skips, each up block after the first
    also reads the output of its mirrored down block."""
    features = []
    for block in down:
        x = block(x)
        features.append(x)
    x = up[0](x)
    for block, skip in zip(up[1:], reversed(features[:-1])):
        x = block(torch.cat([x, skip], 1) if skips else x)
    return x


class FullyConvNetwork(nn.Module):
    """Four Conv-BN-ReLU blocks down, four ConvTranspose-BN-ReLU blocks up.

    The last up block maps to the output channels through Tanh instead of BN-ReLU. With
    `skips`, each up block also sees the output of its mirrored down block
    (U-Net style), which keeps the sharp edges that the 16x bottleneck loses.
    Sides must be multiples of 16.
    """

    def __init__(self, width=8, skips=False, upsample='transpose', channels=(3, 3)):
        super().__init__()
        self.skips = skips
        w = [channels[0], width, width * 2, width * 4, width * 8]
        self.down = nn.ModuleList(nn.Sequential(*down_block(w[i], w[i + 1]), nn.ReLU(inplace=True))
                                  for i in range(4))
        grow = 2 if skips else 1  # a skip doubles the channels an up block reads
        self.up = nn.ModuleList([
            nn.Sequential(*up_block(w[4], w[3], upsample), nn.ReLU(inplace=True)),
            nn.Sequential(*up_block(w[3] * grow, w[2], upsample), nn.ReLU(inplace=True)),
            nn.Sequential(*up_block(w[2] * grow, w[1], upsample), nn.ReLU(inplace=True)),
            nn.Sequential(*upsample_conv(w[1] * grow, channels[1], upsample), nn.Tanh()),
        ])

    def forward(self, x):
        return encode_decode(self.down, self.up, x, self.skips)


class UNet256(nn.Module):
    """The Pix2Pix generator: 8 down / 8 up with skips, dropout in the three
    innermost up blocks. Sides must be multiples of 256. Layer for layer it
    follows the paper's code (LeakyReLU 0.2 down, ReLU up, no norm on the
    outermost and innermost down convolutions)."""

    def __init__(self, width=64, dropout=0.5, upsample='transpose', channels=(3, 3)):
        super().__init__()
        w = [channels[0]] + [width * m for m in (1, 2, 4, 8, 8, 8, 8, 8)]
        self.down = nn.ModuleList()
        for i in range(8):
            norm = 0 < i < 7
            act = [] if i == 0 else [nn.LeakyReLU(0.2, inplace=True)]
            self.down.append(nn.Sequential(*act, *down_block(w[i], w[i + 1], norm=norm)))
        self.up = nn.ModuleList()
        for i in range(7, 0, -1):  # innermost first; every block but the innermost reads a skip
            in_channels = w[i + 1] if i == 7 else w[i + 1] * 2
            drop = [nn.Dropout(dropout)] if 4 <= i <= 6 else []
            self.up.append(nn.Sequential(nn.ReLU(inplace=True), *up_block(in_channels, w[i], upsample), *drop))
        self.up.append(nn.Sequential(nn.ReLU(inplace=True), *upsample_conv(w[1] * 2, channels[1], upsample),
                                     nn.Tanh()))
        init_pix2pix(self)

    def forward(self, x):
        return encode_decode(self.down, self.up, x, skips=True)


class PatchDiscriminator(nn.Module):
    """The PatchGAN: it sees input and output stacked (in_channels: 6 for RGB) and scores
    each overlapping patch as real or fake (logits). With 3 layers (the paper's)
    a score sees 70x70 pixels; each layer fewer shrinks that (1: 16x16, 2: 34x34)
    and its cost. norm="spectral" puts spectral norm on every convolution instead of
    BatchNorm, which keeps a small D from winning outright (the cGAN recipe)."""

    def __init__(self, width=64, layers=3, norm='batch', in_channels=6):
        super().__init__()
        if norm not in ('batch', 'spectral'):
            raise ValueError(f"unknown d_norm {norm!r}; expected 'batch' or 'spectral'")
        channels = [width * min(2 ** i, 8) for i in range(layers + 1)]
        batch_norm = norm == 'batch'
        blocks = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(1, layers):
            blocks += [*down_block(channels[i - 1], channels[i], norm=batch_norm), nn.LeakyReLU(0.2, inplace=True)]
        blocks += [nn.Conv2d(channels[layers - 1], channels[layers], 4, stride=1, padding=1, bias=not batch_norm),
                   *([nn.BatchNorm2d(channels[layers])] if batch_norm else []), nn.LeakyReLU(0.2, inplace=True),
                   nn.Conv2d(channels[layers], 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*blocks)
        init_pix2pix(self)
        if norm == 'spectral':  # after the init: it divides each weight by its largest singular value
            for layer in self.net:
                if isinstance(layer, nn.Conv2d):
                    nn.utils.parametrizations.spectral_norm(layer)

    def forward(self, input_image, output_image):
        return self.net(torch.cat([input_image, output_image], 1))


class Generator(NamedTuple):
    build: Callable      # a run's settings -> the network
    settings: tuple      # the settings it is built from (besides model)
    side_multiple: int   # image sides must be multiples of this (its downsampling)
    patches: bool        # can train on patch_size crops before whole images


GENERATORS = {
    'fcn': Generator(lambda config: FullyConvNetwork(config['width'], config['skips'], upsample_of(config),
                                                     channels_of(config)),
                     ('width', 'skips', 'upsample'), 16, True),
    'unet256': Generator(lambda config: UNet256(config['width'], upsample=upsample_of(config),
                                                channels=channels_of(config)),
                         ('width', 'upsample'), 256, False),
}


def upsample_of(config):
    """Checkpoints saved before the setting existed hold transposed convolutions."""
    return config.get('upsample', 'transpose')


def channels_of(config):
    """(input, output) channels; checkpoints saved before the settings existed map RGB to RGB."""
    return config.get('input_channels', 3), config.get('output_channels', 3)


class SizeError(UserError):
    """Images whose sides a network's downsampling cannot take."""


def check_sides(shape, model, source, advice):
    """One line, before any work, instead of a shape error deep inside the network.
    shape: (height, width) of the halves of the pairs in source."""
    height, width = shape
    multiple = GENERATORS[model].side_multiple
    if height % multiple or width % multiple:
        nearest = [max(multiple, round(side / multiple) * multiple) for side in (width, height)]
        raise SizeError(f'the images of {source} are {width}x{height} per half, but {model} needs sides that '
                        f'are multiples of {multiple}, such as {nearest[0]}x{nearest[1]}; {advice}')


def build_generator(config):
    """The generator a run's settings describe (model, and that entry's settings)."""
    if config['model'] not in GENERATORS:
        raise ValueError(f"unknown model {config['model']!r}; expected one of {', '.join(GENERATORS)}")
    return GENERATORS[config['model']].build(config)


def build_discriminator(config):
    return PatchDiscriminator(config['d_width'], config['d_layers'], config.get('d_norm', 'batch'),
                              sum(channels_of(config)))


def generate(generator, images, mirror=False):
    """The generator's output for a batch; with mirror, `mirrored_mean` of it."""
    output = generator(images)
    return mirrored_mean(generator, images, output) if mirror else output


def mirrored_mean(generator, images, output):
    """The mean of a batch's output and the mirrored output of the mirrored input
    (test-time augmentation: the networks train on mirrored pairs, so both passes
    are equally valid guesses); output is the generator's plain pass, reused."""
    return (output + generator(images.flip(-1)).flip(-1)) / 2


class DeviceError(UserError):
    """A device setting this machine cannot honour."""


def pick_device(name='auto', local_rank=0, allow_mps=True):
    """The torch.device of a device setting: 'auto' (CUDA, then Apple's MPS,
    then the CPU), 'cpu', 'cuda' (this process's GPU under torchrun), 'cuda:1', 'mps'."""
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'mps' if allow_mps and mps_works() else 'cpu'
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise DeviceError(f'--device={name}: CUDA is not available on this machine')
    if name == 'mps' and not mps_works():
        raise DeviceError('--device=mps: Apple\'s MPS is not available on this machine')
    try:
        device = torch.device(f'cuda:{local_rank}' if name == 'cuda' else name)
    except RuntimeError:
        raise DeviceError(f'--device={name}: expected auto, cpu, cuda, cuda:N or mps') from None
    return device


def mps_works():
    """Apple's GPU, when present and usable. This path cannot be tested off a Mac,
    so it stays this small: if MPS fails its first use, one line says so and the
    CPU is used instead."""
    if not torch.backends.mps.is_available():
        return False
    try:
        return torch.ones(2, device='mps').sum().item() == 2
    except Exception as error:  # a broken MPS fails in many ways, all meaning the same here
        print(f'note: MPS is present but failed ({str(error).splitlines()[0][:120]}); using the CPU')
        return False
