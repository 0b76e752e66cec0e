"""Paired images (left half | right half), decoded once, served as batches.

Every JPEG is decoded a single time into a uint8 array file (a cache) that is
memory-mapped afterwards: loader processes share its pages without copying,
the OS keeps it in RAM when it fits and streams it when it does not (edges2shoes
is ~25 GB decoded), and the next run starts without decoding. The cache is
rebuilt when any source image changes (name, size or modification time).

A training set is stored with mirrored borders of JITTER_PAD pixels around each
half, so augmenting a batch is only a random crop (a shift of up to JITTER_PAD
pixels each way) and a mirror per image, cut from both halves at once
(`cut_pairs`); no resampling happens per epoch. A batch leaves
here as a uint8 pair (2, B, 3, S, S): input then target, each in the memory
format the network reads (channels-last unless asked otherwise). `to_float`
turns it into (input, target) in [-1, 1], and `to_uint8` turns a network's
output back into pictures. Channels are RGB everywhere;
OpenCV's BGR is converted at decode time.
"""
import hashlib
import os
import re
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
DIRECTIONS = ('AtoB', 'BtoA')
# Training pairs are shifted by up to this many pixels each way, at the scale the network
# is validated and used at, instead of pix2pix's jitter (upscale to 286, crop 256), which
# trains at 1.12x that scale and scored worse on facades (docs/results.md).
JITTER_PAD = 16


class DatasetError(UserError):
    """Bad input data; the message names the file and says what is wrong."""


def numeric_key(path):
    """Sort 1, 2, 10 rather than 1, 10, 2; non-numeric names after, by name."""
    stem = Path(path).stem
    return (0, int(stem), '') if re.fullmatch(r'\d+', stem) else (1, 0, stem)


def list_images(source):
    """Image paths of a split: a list file (one path per line) or a folder."""
    source = Path(source)
    if source.is_dir():
        paths = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=numeric_key)
    elif source.is_file():
        paths = []
        for line in source.read_text().splitlines():
            line = line.strip()
            if line:
                path = Path(line)
                # the download script writes paths relative to the repo root; accept them
                # relative to the list file too, so a list works from any directory
                candidates = [path, source.parent / path, source.parent / path.parent.name / path.name]
                paths.append(next((p for p in candidates if p.exists()), path))
    else:
        raise DatasetError(f'{source}: no such folder or list file')
    if not paths:
        raise DatasetError(f'{source}: no images found')
    return paths


def split_source(dataset, split):
    """The list file or folder of one split: dataset is a name under datasets/
    or a folder holding train/ and val/ (or their list files)."""
    root = Path(dataset)
    if not root.is_dir():
        root = Path('datasets') / dataset
    if not root.is_dir():
        raise DatasetError(f"dataset {dataset!r} not found (looked in {dataset} and {root}); "
                           f"run: bash download_facades_dataset.sh {Path(dataset).name}")
    list_file = root / f'{split}_list.txt'
    if list_file.is_file():
        return list_file
    if (root / split).is_dir():
        return root / split
    raise DatasetError(f'{root} has no {split}/ folder or {split}_list.txt')


def read_rgb(path):
    """Any image file -> RGB uint8 (H, W, 3); grey, alpha, 16-bit and CMYK are
    converted. Raises DatasetError naming the file and the problem."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DatasetError(f'{path}: cannot read ({error.strerror or error})') from None
    if data.size == 0:
        raise DatasetError(f'{path}: empty file')
    # OpenCV silently fills the missing part of a cut-off JPEG with grey
    if data[:2].tobytes() == b'\xff\xd8' and not data.tobytes().rstrip(b'\0\r\n ').endswith(b'\xff\xd9'):
        raise DatasetError(f'{path}: truncated JPEG')
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f'{path}: not a readable image')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_rgb(image, width, height):
    """An (H, W, 3) image resized to width x height: INTER_AREA when either side
    shrinks (it averages the pixels it drops instead of aliasing), INTER_LINEAR
    otherwise. Training data and single images (translate.py) go through this one rule."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def decode_pair(path, image_size, pad=0):
    """One file -> RGB uint8 (H + 2 pad, 2 (W + 2 pad), 3): both halves resized to
    image_size squared (the native size when image_size is 0), then each given a
    mirrored border of pad pixels. Raises DatasetError."""
    image = read_rgb(path)
    height, width = image.shape[:2]
    if width % 2 or width < 2:
        raise DatasetError(f'{path}: {width}x{height} is not two equal halves side by side (odd width)')
    half = width // 2
    size = (image_size, image_size) if image_size else (half, height)  # OpenCV's order: width, height
    halves = [image[:, :half], image[:, half:]]
    if size != (half, height):
        halves = [resize_rgb(side, *size) for side in halves]
    if pad:
        halves = [cv2.copyMakeBorder(side, pad, pad, pad, pad, cv2.BORDER_REFLECT_101) for side in halves]
    return np.concatenate(halves, axis=1) if pad or size != (half, height) else image


class FacadesDataset(Dataset):
    """A split of paired images.

    source: a list file or a folder of images. direction: 'AtoB' (left -> right)
    or 'BtoA'. augment: store the halves with mirrored borders of JITTER_PAD
    pixels, so that `cut_pairs` can take randomly shifted crops and mirror images
    of them; un-augmented batches are then the centre crops, the images
    themselves. image_size: side
    each half is resized to at decode time, 0 keeps the native size.
    cache_dir: where the decoded array file lives; '' decodes into RAM instead. skip_bad_images: warn and
    skip unreadable files instead of stopping.
    """

    def __init__(self, source, direction='AtoB', augment=False, image_size=256,
                 cache_dir='datasets/cache', skip_bad_images=False, progress=True):
        if direction not in DIRECTIONS:
            raise ValueError(f'direction must be one of {DIRECTIONS}, not {direction!r}')
        self.source, self.direction, self.augment = Path(source), direction, augment
        self.image_size, self.skip_bad_images, self.progress = image_size, skip_bad_images, progress
        self.pad = JITTER_PAD if augment else 0
        self.paths = list_images(source)
        self.skipped = []
        self.cache_path = None
        self._pixels = None
        if cache_dir:
            self.cache_path = Path(cache_dir) / f'{self._cache_name()}.npy'
            if not self.cache_path.exists():
                self._build(self.cache_path)
            self.index = np.load(self.cache_path.with_suffix('.index.npy'))
        else:
            self._pixels, self.index = self._decode_all()

    @property
    def pixels(self):
        """uint8 (N, H, 2W, 3) as stored (with the borders when augmenting); opened lazily
        so that each loader process maps the cache file itself instead of
        receiving a pickled copy."""
        if self._pixels is None:
            self._pixels = np.load(self.cache_path, mmap_mode='r')
        return self._pixels

    @property
    def image_shape(self):
        """(height, width) of the halves a batch holds: the stored size, less the borders."""
        return self.pixels.shape[1] - 2 * self.pad, self.pixels.shape[2] // 2 - 2 * self.pad

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.cache_path is not None:
            state['_pixels'] = None
        return state

    def _cache_name(self):
        signature = hashlib.sha1(f'{self.image_size}|{self.pad}'.encode())
        for path in self.paths:
            try:
                stat = os.stat(path)
                signature.update(f'{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n'.encode())
            except OSError:  # a missing file is reported when decoding
                signature.update(f'{path}|missing\n'.encode())
        name = re.sub(r'[^A-Za-z0-9]+', '_', f'{self.source.resolve().parent.name}_{self.source.stem}')
        borders = f'p{self.pad}' if self.pad else ''
        return f'{name}_{self.image_size}{borders}_{signature.hexdigest()[:16]}'

    def _decode_or_skip(self, path):
        try:
            return decode_pair(path, self.image_size, self.pad)
        except DatasetError as error:
            if not self.skip_bad_images:
                raise DatasetError(f'{error} (set skip_bad_images to skip such files)') from None
            return error

    def _decoded_in_order(self):
        """Decoded images in file order, decoding in threads (OpenCV releases the
        GIL) with a bounded window in flight, so RAM stays flat when the writer lags."""
        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
            pending = deque()
            for path in self.paths:
                pending.append(pool.submit(self._decode_or_skip, path))
                if len(pending) >= 64:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _decoded(self):
        """(position, RGB array) for each good file. Bad files raise, or are
        skipped with a warning."""
        images = tqdm(self._decoded_in_order(), total=len(self.paths), desc=f'decoding {self.source}',
                      disable=not self.progress, leave=False)
        for position, image in enumerate(images):
            if isinstance(image, DatasetError):
                warnings.warn(f'skipping {image}')
                self.skipped.append(str(self.paths[position]))
                continue
            yield position, image

    def _check_shape(self, position, image, shape):
        if image.shape != shape:
            raise DatasetError(f'{self.paths[position]}: size {image.shape[1]}x{image.shape[0]} differs from '
                               f'{shape[1]}x{shape[0]} of the first image (set image_size to resize all)')

    def _decode_all(self):
        images, index = [], []
        for position, image in self._decoded():
            if images:
                self._check_shape(position, image, images[0].shape)
            images.append(image)
            index.append(position)
        if not images:
            raise DatasetError(f'{self.source}: no readable images')
        return np.stack(images), np.array(index)

    def _build(self, cache_path):
        """Decode straight into a memory-mapped file, so RAM stays bounded, and
        rename it into place only when complete."""
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in cache_path.parent.glob(cache_path.name.rsplit('_', 1)[0] + '_*'):
            # an older cache of the same split; not this one, which another run may be
            # reading, nor a temporary, which another run may be writing
            if not stale.name.startswith(cache_path.stem) and not stale.name.endswith('.tmp'):
                stale.unlink(missing_ok=True)
        temporary = cache_path.with_name(cache_path.name + f'.{os.getpid()}.tmp')
        array, count, index = None, 0, []
        try:
            for position, image in self._decoded():
                if array is None:
                    array = np.lib.format.open_memmap(temporary, mode='w+', dtype=np.uint8,
                                                      shape=(len(self.paths),) + image.shape)
                self._check_shape(position, image, array.shape[1:])
                array[count] = image
                index.append(position)
                count += 1
            if array is None:
                raise DatasetError(f'{self.source}: no readable images')
            array.flush()
            del array
            if count < len(self.paths):  # skipped files: shrink the file to the images kept
                full = np.load(temporary, mmap_mode='r')
                np.save(temporary.with_suffix('.short.npy'), full[:count])
                del full
                os.replace(temporary.with_suffix('.short.npy'), temporary)
            np.save(cache_path.with_suffix('.index.npy'), np.array(index))
            os.replace(temporary, cache_path)
        finally:
            temporary.unlink(missing_ok=True)

    def __len__(self):
        return len(self.index)

    def gather(self, indices):
        """uint8 (B, H, 2W, 3) images as stored: the loader's collate_fn, a plain copy."""
        return torch.from_numpy(np.ascontiguousarray(self.pixels[np.asarray(indices)]))

    def cut_pairs(self, images, generator=None, pin_memory=False, channels_last=True, side=None):
        """Images from `gather` -> uint8 pair (2, B, 3, H, W), input then target.
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
        shape = (height, width, 3) if channels_last else (3, height, width)
        pair = torch.empty((2, count) + shape, dtype=torch.uint8, pin_memory=pin_memory)
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
        """uint8 pair (2, B, 3, H, W) of the given images; see `cut_pairs`."""
        return self.cut_pairs(self.gather(indices), generator)

    def file_of(self, i):
        return self.paths[self.index[i]]


def to_float(pair, memory_format=torch.preserve_format):
    """uint8 pair (2, B, 3, H, W) -> (input, target), float in [-1, 1], in the
    given memory format (by default the pair's own)."""
    # one converting copy, then in place: no second fresh tensor to allocate and fault in,
    # about half the time of `pair / 127.5 - 1` on a 2-core CPU
    return tuple(plane.to(torch.float32, memory_format=memory_format).mul_(1 / 127.5).sub_(1) for plane in pair)


def to_uint8(images):
    """(N, 3, H, W) in [-1, 1] -> RGB uint8 numpy (N, H, W, 3), rounded: the
    pictures that are saved and shown, and that the metrics score."""
    images = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).numpy()
