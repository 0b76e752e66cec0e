"""A split of paired images served as batches: the dataset that training and evaluation read.

A split's pairs are found by `pairs.list_pairs`, each decoded once into one
left | right array (`images.decode_pair`) and kept in a memory-mapped cache
file (`pixel_cache`), so everything here is the same work whatever the layout.
A training set is stored with mirrored borders of JITTER_PAD pixels around each
half, so augmenting a batch is only a random crop (a shift of up to JITTER_PAD
pixels each way) and a mirror per image, cut from both halves at once
(`cut_pairs`); no resampling happens per epoch. A batch leaves here as a uint8
(or uint16) pair (2, B, C, S, S): input then target, each in the memory format
the network reads (channels-last unless asked otherwise). `to_float` turns it
into (input, target) in [-1, 1], dropping the zero channels a side with fewer
channels than the other is stored with, and `to_uint8` (`to_uint16`) turns a
network's output back into pictures.
"""
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from images import decode_pair
from pairs import list_pairs
from pixel_cache import build_cache, cache_file, decode_all, read_index
# what users of this file imported from it before pairs.py and images.py split off: still here
from images import read_image, resize_image  # noqa: F401
from pairs import DatasetError, make_split, parse_image_size, split_source  # noqa: F401

DIRECTIONS = ('AtoB', 'BtoA')
# Training pairs are shifted by up to this many pixels each way, at the scale the network
# is validated and used at, instead of pix2pix's jitter (upscale to 286, crop 256), which
# trains at 1.12x that scale and scored worse on facades (docs/results.md).
JITTER_PAD = 16


class FacadesDataset(Dataset):
    """A split of paired images.

    source: a list file or a folder of pairs (see `list_pairs`). direction: 'AtoB'
    (left or A -> right or B) or 'BtoA'. augment: store the halves with mirrored borders of JITTER_PAD
    pixels, so that `cut_pairs` can take randomly shifted crops and mirror images
    of them; un-augmented batches are then the centre crops, the images
    themselves. image_size: the size
    each half is resized to at decode time (`parse_image_size`), 0 keeps the native size.
    cache_dir: where the decoded array file lives; '' decodes into RAM instead. skip_bad_images: warn and
    skip unreadable files and unmatched A/B files instead of stopping. channels: of the
    input and of the target, each 1, 3 or 4 (see `read_image`).
    """

    def __init__(self, source, direction='AtoB', augment=False, image_size=256,
                 cache_dir='datasets/cache', skip_bad_images=False, progress=True, channels=(3, 3)):
        if direction not in DIRECTIONS:
            raise ValueError(f'direction must be one of {DIRECTIONS}, not {direction!r}')
        if not set(channels) <= {1, 3, 4}:
            raise ValueError(f'channels must be 1, 3 or 4, not {channels}')
        self.source, self.direction, self.augment = Path(source), direction, augment
        self.channels = tuple(channels)
        self.image_size, self.skip_bad_images, self.progress = image_size, skip_bad_images, progress
        self.pad = JITTER_PAD if augment else 0
        self.pairs = list_pairs(source, skip_bad_images)
        self.cache_path, self._pixels, self.skipped = None, None, []
        if cache_dir:
            self.cache_path = cache_file(cache_dir, self.source, self.pairs, image_size, self.pad, self.file_channels)
            if not self.cache_path.exists():
                self.skipped = build_cache(self.cache_path, self.source, self.pairs, self.decode, skip_bad_images,
                                           progress)
            self.index = read_index(self.cache_path)
        else:
            self._pixels, self.index, self.skipped = decode_all(self.source, self.pairs, self.decode,
                                                                skip_bad_images, progress)

    @property
    def pixels(self):
        """uint8 or uint16 (N, H, 2W, C) as stored (with the borders when augmenting); opened lazily
        so that each loader process maps the cache file itself instead of
        receiving a pickled copy."""
        if self._pixels is None:
            self._pixels = np.load(self.cache_path, mmap_mode='r')
        return self._pixels

    @property
    def image_shape(self):
        """(height, width) of the halves a batch holds: the stored size, less the borders."""
        return self.pixels.shape[1] - 2 * self.pad, self.pixels.shape[2] // 2 - 2 * self.pad

    @property
    def bits(self):
        """16 when the split holds a 16-bit file (and is stored as uint16), else 8."""
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def file_channels(self):
        """The channels of the left (A) and right (B) halves: the input's and the target's in
        the direction's order."""
        return self.channels if self.direction == 'AtoB' else self.channels[::-1]

    def decode(self, files):
        """One pair's files as this split stores them: left | right, resized, with its borders."""
        return decode_pair(files, self.image_size, self.pad, self.file_channels)

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.cache_path is not None:
            state['_pixels'] = None
        return state

    def __len__(self):
        return len(self.index)

    def gather(self, indices):
        """uint8 or uint16 (B, H, 2W, C) images as stored: the loader's collate_fn, a plain copy."""
        return torch.from_numpy(np.ascontiguousarray(self.pixels[np.asarray(indices)]))

    def cut_pairs(self, images, generator=None, pin_memory=False, channels_last=True, side=None):
        """Images from `gather` -> pair (2, B, C, H, W) of their dtype, input then target.
        With a generator, each image gets a randomly shifted crop and a coin-flip
        mirroring, the same for both of its halves; without one, the centre crop
        (for an augmented set, the image without its borders). side: crops of
        side x side (patches) instead of the image's size, where it is larger.
        pin_memory: page-locked, for CUDA copies. channels_last: the planes'
        memory format, else contiguous (NCHW)."""
        count, stored_height, stored_width = images.shape[0], images.shape[1], images.shape[2] // 2
        height, width = (min(side, length) for length in self.image_shape) if side else self.image_shape
        if generator is None:
            offsets = [((stored_height - height) // 2, (stored_width - width) // 2)] * count
            flips = [False] * count
        else:
            offsets = zip(torch.randint(0, stored_height - height + 1, (count,), generator=generator).tolist(),
                          torch.randint(0, stored_width - width + 1, (count,), generator=generator).tolist())
            flips = (torch.rand(count, generator=generator) < 0.5).tolist()
        channels = images.shape[3]
        shape = (height, width, channels) if channels_last else (channels, height, width)
        pair = torch.empty((2, count) + shape, dtype=images.dtype, pin_memory=pin_memory)
        source, planes = images.numpy(), pair.numpy()
        sides = (0, 1) if self.direction == 'AtoB' else (1, 0)
        # OpenCV, per image: several times faster than numpy's [:, ::-1] and torch's NHWC -> NCHW copy
        for i, ((y, x), flip) in enumerate(zip(offsets, flips)):
            for half, side in enumerate(sides):
                left = half * stored_width + x
                crop = source[i, y:y + height, left:left + width]
                if not channels_last:
                    cv2.split(cv2.flip(crop, 1) if flip else crop, list(planes[side, i]))
                elif flip:
                    cv2.flip(crop, 1, dst=planes[side, i])
                else:
                    planes[side, i] = crop
        return pair.permute(0, 1, 4, 2, 3) if channels_last else pair

    def pair_batch(self, indices, generator=None):
        """Pair (2, B, C, H, W) of the given images; see `cut_pairs`."""
        return self.cut_pairs(self.gather(indices), generator)

    def file_of(self, i):
        """The file that names pair i: its left|right file, or its A file."""
        return self.pairs[self.index[i]][0]


def to_float(pair, memory_format=torch.preserve_format, channels=(None, None)):
    """uint8 or uint16 pair (2, B, C, H, W) -> (input, target), float in [-1, 1]
    (0..255 or 0..65535), in the given memory format (by default the pair's own).
    channels: the input's and the target's counts (`FacadesDataset.channels`), where
    the pair holds a side with zero channels added; by default every channel."""
    scale = 1 / 127.5 if pair.dtype == torch.uint8 else 1 / 32767.5
    # one converting copy, then in place: no second fresh tensor to allocate and fault in,
    # about half the time of `pair / 127.5 - 1` on a 2-core CPU
    return tuple(plane[:, :count].to(torch.float32, memory_format=memory_format).mul_(scale).sub_(1)
                 for plane, count in zip(pair, channels))


def to_uint8(images):
    """(N, C, H, W) in [-1, 1] -> uint8 numpy (N, H, W, C), rounded: the
    pictures that are saved and shown, and that the metrics score."""
    images = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).numpy()


def to_uint16(images):
    """(N, C, H, W) in [-1, 1] -> uint16 numpy (N, H, W, C), rounded: the pictures of a
    network trained on 16-bit targets."""
    images = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 32767.5).round().to(torch.int32)
    return images.permute(0, 2, 3, 1).numpy().astype(np.uint16)
