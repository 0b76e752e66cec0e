"""How close outputs are to targets: L1, PSNR, SSIM, and for label maps the
segmentation scores of the Pix2Pix paper (per-pixel accuracy, per-class
accuracy, mean class IoU).

L1 reads the model's float tensors in [-1, 1]. The others read what a viewer
sees, RGB uint8 images (N, H, W, 3) from `facades_dataset.to_uint8`. A colour label map is read
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


def l1(output, target):
    """Mean absolute error over every pixel and channel, on the [-1, 1] scale."""
    return (output.float() - target.float()).abs().mean().item()


def psnr(output, target):
    """PSNR in dB of one uint8 (H, W, 3) image against its target; PSNR_CAP when identical."""
    with np.errstate(divide='ignore'):
        return min(float(peak_signal_noise_ratio(target, output, data_range=255)), PSNR_CAP)


def ssim(output, target):
    """SSIM of one uint8 (H, W, 3) image against its target, averaged over channels,
    with the settings of Wang et al. 2004 (11x11 Gaussian window, sigma 1.5)."""
    return float(structural_similarity(target, output, channel_axis=-1, data_range=255, gaussian_weights=True,
                                       sigma=1.5, use_sample_covariance=False))


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
