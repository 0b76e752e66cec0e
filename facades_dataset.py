"""Paired images (left half | right half), decoded once, served as batches.

Every JPEG is decoded a single time into a uint8 array file (a cache) that is
memory-mapped afterwards: loader processes share its pages without copying,
the OS keeps it in RAM when it fits and streams it when it does not (edges2shoes
is ~20 GB decoded), and the next run starts without decoding. The cache is
rebuilt when any source image changes (name, size or modification time).

A batch leaves here as uint8 (B, 6, S, S): input channels then target
channels, so one crop and one flip in `augment_batch` always hit both halves.
`to_float` turns it into the model's (input, target) in [-1, 1]. Channels are
RGB everywhere; OpenCV's BGR is converted at decode time.
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
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
DIRECTIONS = ('AtoB', 'BtoA')
JITTER_SCALE = 286 / 256  # pix2pix: upscale 256 -> 286, then crop 256 back


class DatasetError(Exception):
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


def decode_pair(path, image_size):
    """One file -> RGB uint8 (S, 2S, 3) with both halves resized to S x S
    (or the native size when image_size is 0). Raises DatasetError."""
    image = read_rgb(path)
    height, width = image.shape[:2]
    if width % 2 or width < 2:
        raise DatasetError(f'{path}: {width}x{height} is not two equal halves side by side (odd width)')
    if image_size:
        half = width // 2
        halves = [cv2.resize(image[:, i * half:(i + 1) * half], (image_size, image_size),
                             interpolation=cv2.INTER_AREA) for i in (0, 1)]
        image = np.concatenate(halves, axis=1)
    return image


class FacadesDataset(Dataset):
    """A split of paired images.

    source: a list file or a folder of images. direction: 'AtoB' (left -> right)
    or 'BtoA'. augment: random jitter and mirroring in __getitem__ (the training
    loop applies `augment_batch` itself). image_size: side each half is resized
    to at decode time, 0 keeps the native size. cache_dir: where the decoded
    array file lives; '' decodes into RAM instead. skip_bad_images: warn and
    skip unreadable files instead of stopping.
    """

    def __init__(self, source, direction='AtoB', augment=False, image_size=256,
                 cache_dir='datasets/cache', skip_bad_images=False, progress=True):
        if direction not in DIRECTIONS:
            raise ValueError(f'direction must be one of {DIRECTIONS}, not {direction!r}')
        self.source, self.direction, self.augment = Path(source), direction, augment
        self.image_size, self.skip_bad_images, self.progress = image_size, skip_bad_images, progress
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
        """uint8 (N, S, 2S, 3); opened lazily so that each loader process maps
        the cache file itself instead of receiving a pickled copy."""
        if self._pixels is None:
            self._pixels = np.load(self.cache_path, mmap_mode='r')
        return self._pixels

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.cache_path is not None:
            state['_pixels'] = None
        return state

    def _cache_name(self):
        signature = hashlib.sha1(str(self.image_size).encode())
        for path in self.paths:
            try:
                stat = os.stat(path)
                signature.update(f'{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n'.encode())
            except OSError:  # a missing file is reported when decoding
                signature.update(f'{path}|missing\n'.encode())
        name = re.sub(r'[^A-Za-z0-9]+', '_', f'{self.source.resolve().parent.name}_{self.source.stem}')
        return f'{name}_{self.image_size}_{signature.hexdigest()[:16]}'

    def _decode_or_skip(self, path):
        try:
            return decode_pair(path, self.image_size)
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
            stale.unlink(missing_ok=True)  # an older cache of the same split
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

    def pair_batch(self, indices):
        """uint8 (B, 6, S, S): input then target channels, by direction."""
        images = torch.from_numpy(np.ascontiguousarray(self.pixels[np.asarray(indices)]))
        images = images.permute(0, 3, 1, 2)  # (B, 3, S, 2S)
        half = images.shape[-1] // 2
        left, right = images[..., :half], images[..., half:]
        pair = (left, right) if self.direction == 'AtoB' else (right, left)
        return torch.cat(pair, 1).contiguous()

    def __getitem__(self, i):
        batch = self.pair_batch([i])
        if self.augment:
            batch = augment_batch(batch)
        input_image, target_image = to_float(batch)
        return input_image[0], target_image[0]

    def file_of(self, i):
        return self.paths[self.index[i]]


def augment_batch(batch, generator=None):
    """pix2pix random jitter (upscale, random crop back) and mirroring, drawn per
    image but identical for its input and target, which share the tensor.
    Returns float on the input's scale (0-255 for uint8), ready for `to_float`."""
    size = batch.shape[-1]
    jitter = int(round(size * JITTER_SCALE))
    count = batch.shape[0]
    offsets = torch.randint(0, jitter - size + 1, (count, 2), generator=generator).tolist()
    flips = (torch.rand(count, generator=generator) < 0.5).tolist()
    upscaled = F.interpolate(batch.float(), size=(jitter, jitter), mode='bilinear', align_corners=False)
    crops = [upscaled[i, :, y:y + size, x:x + size] for i, (y, x) in enumerate(offsets)]
    return torch.stack([crop.flip(-1) if flip else crop for crop, flip in zip(crops, flips)])


def to_float(batch):
    """(B, 6, S, S) on the 0-255 scale (uint8, or float from `augment_batch`)
    -> (input, target), float in [-1, 1]."""
    batch = batch / 127.5 - 1
    return batch[:, :3], batch[:, 3:]
