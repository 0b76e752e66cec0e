"""How close outputs are to targets: L1, PSNR, SSIM, and for label maps the
segmentation scores of the Pix2Pix paper (per-pixel accuracy, per-class
accuracy, mean class IoU); and how photo-like outputs look in the frequency
domain: the lattice that stride-2 transposed convolutions leave (`grid_logs`)
and the fine detail (`radial_power`).

L1 reads the model's float tensors in [-1, 1]. The others read what a viewer
sees, RGB uint8 images (N, H, W, 3) from `facades_dataset.to_uint8` (PSNR, SSIM
and the spectra also grey or RGBA, and uint16 from `to_uint16`). A colour label map is read
back as classes by giving every pixel the class of its nearest palette colour:
that is the paper's protocol, and it absorbs the JPEG noise of the datasets.
"""
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

IGNORE = -1      # class id of label colours that no score counts (Cityscapes' void labels)
PSNR_CAP = 100.0  # dB for identical images, whose PSNR is infinite, so that means stay finite


class Palette(NamedTuple):
    classes: tuple  # class names; a class id indexes this
    colours: dict   # (r, g, b) -> class id, or IGNORE


# The 12 classes of the CMP Facade Database (Tylecek and Sara, GCPR 2013) in the
# order of its label ids 1..12, which the pix2pix facades set draws along a jet
# colour map. The colours are the modes of the flat regions of its 500 train and
# val label halves (no published table of them was found); 99.4% of the pixels inside
# regions lie within 30 of one, only edges blended by JPEG chroma subsampling are
# further. Each class fits its position and shape: doors and shops sit at the
# bottom; sills, moldings and cornices are wide and flat; pillars and blinds are
# tall and thin.
FACADES = Palette(
    classes=('background', 'facade', 'window', 'door', 'cornice', 'sill', 'balcony', 'blind', 'deco',
             'molding', 'pillar', 'shop'),
    colours={(0, 0, 222): 0, (0, 48, 255): 1, (0, 128, 255): 2, (1, 207, 255): 3, (32, 255, 224): 4,
             (112, 254, 142): 5, (192, 255, 63): 6, (255, 240, 1): 7, (255, 159, 0): 8, (255, 80, 0): 9,
             (254, 0, 0): 10, (174, 0, 1): 11})

# The official label colours of cityscapesScripts (helpers/labels.py), mapped to
# the 19 trainId classes that every Cityscapes benchmark scores. Labels with
# trainId 255 are void (IGNORE). polegroup and license plate share a colour with
# pole and car, so a colour map cannot tell them apart: that colour is the
# scored class.
CITYSCAPES = Palette(
    classes=('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign',
             'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
             'bicycle'),
    colours={(128, 64, 128): 0, (244, 35, 232): 1, (70, 70, 70): 2, (102, 102, 156): 3, (190, 153, 153): 4,
             (153, 153, 153): 5, (250, 170, 30): 6, (220, 220, 0): 7, (107, 142, 35): 8, (152, 251, 152): 9,
             (70, 130, 180): 10, (220, 20, 60): 11, (255, 0, 0): 12, (0, 0, 142): 13, (0, 0, 70): 14,
             (0, 60, 100): 15, (0, 80, 100): 16, (0, 0, 230): 17, (119, 11, 32): 18,
             (0, 0, 0): IGNORE,          # unlabeled, ego vehicle, rectification border, out of roi, static
             (111, 74, 0): IGNORE,       # dynamic
             (81, 0, 81): IGNORE,        # ground
             (250, 170, 160): IGNORE,    # parking
             (230, 150, 140): IGNORE,    # rail track
             (180, 165, 180): IGNORE,    # guard rail
             (150, 100, 100): IGNORE,    # bridge
             (150, 120, 90): IGNORE,     # tunnel
             (0, 0, 90): IGNORE,         # caravan
             (0, 0, 110): IGNORE})       # trailer

PALETTES = {'facades': FACADES, 'cityscapes': CITYSCAPES}


def palette_name(dataset):
    """'facades' or 'cityscapes' when the last part of a dataset name or path
    contains it (a run's config['dataset']), else None."""
    name = Path(str(dataset)).name.lower()
    return next((key for key in PALETTES if key in name), None)


def abs_error(output, target):
    """The sum of absolute errors over every pixel and channel of a batch: summed over
    the batches and divided by their pixels, a split's L1, on the [-1, 1] scale (a float
    sum of float32 batch sums, which validation logs to the last digit)."""
    return (output.float() - target.float()).abs().sum().item()


def psnr(output, target):
    """PSNR in dB of one uint8 or uint16 (H, W, C) image against its target (peak 255 or
    65535); PSNR_CAP when identical."""
    with np.errstate(divide='ignore'):
        return min(float(peak_signal_noise_ratio(target, output, data_range=np.iinfo(target.dtype).max)), PSNR_CAP)


def ssim(output, target):
    """SSIM of one uint8 or uint16 (H, W, C) image against its target, averaged over channels,
    with the settings of Wang et al. 2004 (11x11 Gaussian window, sigma 1.5)."""
    return float(structural_similarity(target, output, channel_axis=-1, data_range=np.iinfo(target.dtype).max,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def nearest_class(images, palette):
    """uint8 (N, H, W, 3) label maps -> int64 (N, H, W) class ids (IGNORE included)."""
    colours = torch.tensor(list(palette.colours), dtype=torch.float32)
    class_of = torch.tensor(list(palette.colours.values()))
    pixels = torch.as_tensor(np.asarray(images)).reshape(-1, 3).float()
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2, where |p|^2 is the same for every colour;
    # exact in float32, since every term is an integer below 2^24
    nearest = torch.cat([(colours.square().sum(1) - 2 * chunk @ colours.T).argmin(1)
                         for chunk in pixels.split(1 << 20)])
    return class_of[nearest].reshape(np.shape(images)[:-1])


def label_confusion(outputs, targets, palette):
    """Pixel counts (C, C + 1): row = target class, column = output class, with
    the last column for outputs in an ignored colour (always wrong). Pixels
    whose target is ignored are left out. Sum over batches, then `label_scores`."""
    count = len(palette.classes)
    output_class, target_class = nearest_class(outputs, palette), nearest_class(targets, palette)
    scored = target_class != IGNORE
    output_class = torch.where(output_class == IGNORE, count, output_class)
    pairs = target_class[scored] * (count + 1) + output_class[scored]
    return torch.bincount(pairs, minlength=count * (count + 1)).reshape(count, count + 1).numpy()


def label_scores(confusion):
    """{pixel_acc, class_acc, class_iou} from a `label_confusion` sum.

    class_acc averages over the classes present in the targets: a class with no
    target pixel has no accuracy. class_iou averages over the classes present in
    the targets or the outputs: a class that is only predicted is a real error
    (IoU 0), and one absent from both is undefined (0 / 0), not perfect.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)  # the last column (ignored output colour) is never a hit
    in_target = confusion.sum(1)
    in_output = confusion[:, :-1].sum(0)
    union = in_target + in_output - hits
    total = in_target.sum()
    return {'pixel_acc': float(hits.sum() / total) if total else float('nan'),
            'class_acc': float(np.mean(hits[in_target > 0] / in_target[in_target > 0])) if total else float('nan'),
            'class_iou': float(np.mean(hits[union > 0] / union[union > 0])) if union.any() else float('nan')}


GRID_PERIOD = 8          # px: three stride-2 upsamplings repeat every 8 px (and their harmonics every 4 and 2)
GRID_RING = (2, 3)       # the reference bins: this many bins away from a lattice frequency (Chebyshev distance)
GRID_MIN_SIDE = 64       # below it the rings of neighbouring lattice frequencies overlap
HIGH_FREQUENCIES = (0.25, 0.5)  # cycles per pixel: the upper half of the radial frequencies up to Nyquist
RADIAL_BINS = 32


def power_spectra(images):
    """(N, H, W, C) RGB, RGBA or grey -> float64 (N, H, W): the power spectrum of each image's
    luma (ITU-R 601; grey is its own), mean removed and under a 2-D Hann window (no edge leakage)."""
    pixels = torch.as_tensor(np.asarray(images)).double()
    if pixels.shape[-1] == 1:
        luma = pixels[..., 0]
    else:
        luma = pixels[..., :3] @ torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
    luma = luma - luma.mean((-2, -1), keepdim=True)
    height, width = luma.shape[-2:]
    window = torch.outer(torch.hann_window(height, periodic=False, dtype=torch.float64),
                         torch.hann_window(width, periodic=False, dtype=torch.float64))
    return torch.fft.fft2(luma * window).abs().square()


def grid_logs(spectra):
    """`power_spectra` -> float64 (N,): per image, the mean over the lattice frequencies (k H/8, l W/8) but DC
    of log(power there / geometric mean power of the ring GRID_RING bins around it).
    exp of the mean over images is the grid score: a smooth spectrum gives 1 (a bin's log
    power is its ring's mean log power, in expectation), an 8-px lattice gives peaks
    there. None when a side is below GRID_MIN_SIDE."""
    height, width = spectra.shape[-2:]
    if min(height, width) < GRID_MIN_SIDE:
        return None
    near, far = GRID_RING
    ring = [(dy, dx) for dy in range(-far, far + 1) for dx in range(-far, far + 1) if max(abs(dy), abs(dx)) >= near]
    log_power = spectra.clamp_min(1e-12).log()
    logs = []
    for k in range(GRID_PERIOD):
        for l in range(GRID_PERIOD):
            if k or l:
                y, x = round(k * height / GRID_PERIOD), round(l * width / GRID_PERIOD)
                around = torch.stack([log_power[:, (y + dy) % height, (x + dx) % width] for dy, dx in ring], 1)
                logs.append(log_power[:, y, x] - around.mean(1))
    return torch.stack(logs, 1).mean(1)


def radial_power(spectra):
    """`power_spectra` -> float64 (RADIAL_BINS,): summed over images and over rings of
    radial frequency from 0 to Nyquist (0.5 cycles per pixel) in equal steps."""
    height, width = spectra.shape[-2:]
    radius = torch.hypot(*torch.meshgrid(torch.fft.fftfreq(height, dtype=torch.float64),
                                         torch.fft.fftfreq(width, dtype=torch.float64), indexing='ij'))
    bins = (radius / 0.5 * RADIAL_BINS).long()
    inside = bins < RADIAL_BINS  # the corners beyond Nyquist along the diagonal are left out
    return torch.bincount(bins[inside], weights=spectra.sum(0)[inside], minlength=RADIAL_BINS)


def high_frequency_log_ratio(output_power, target_power):
    """Mean over the radial bins in HIGH_FREQUENCIES of log10(output power / target power),
    from two `radial_power` sums: 0 is the targets' fine detail, -1 a tenth of it, and
    positive values more (noise, or a lattice)."""
    centres = (torch.arange(RADIAL_BINS, dtype=torch.float64) + 0.5) / RADIAL_BINS * 0.5
    high = (centres >= HIGH_FREQUENCIES[0]) & (centres < HIGH_FREQUENCIES[1])
    return float((output_power[high] / target_power[high]).log10().mean())
