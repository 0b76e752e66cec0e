"""Paired images, decoded once, served as batches.

A pair is one file holding the input and the target side by side (left half |
right half), or two files: the input in a folder A/ and the target of the same
name (stem) in a folder B/ beside it, each of any size. Both are stored alike,
as one left | right array, so everything after decoding is the same work.

Every JPEG is decoded a single time into a uint8 array file (a cache) that is
memory-mapped afterwards: loader processes share its pages without copying,
the OS keeps it in RAM when it fits and streams it when it does not (edges2shoes
is ~25 GB decoded), and the next run starts without decoding. The cache is
rebuilt when any source image changes (name, size or modification time).

A training set is stored with mirrored borders of JITTER_PAD pixels around each
half, so augmenting a batch is only a random crop (a shift of up to JITTER_PAD
pixels each way) and a mirror per image, cut from both halves at once
(`cut_pairs`); no resampling happens per epoch. A batch leaves
here as a uint8 (or uint16) pair (2, B, C, S, S): input then target, each in the memory
format the network reads (channels-last unless asked otherwise). `to_float`
turns it into (input, target) in [-1, 1], and `to_uint8` (`to_uint16`) turns a
network's output back into pictures. Channels are RGB everywhere;
OpenCV's BGR is converted at decode time.

Each side is read at its own channel count (`read_image`): 1 (grey), 3 (RGB) or 4
(RGBA). A side with fewer channels than the other is stored with zero channels
added, so both halves share one array, and `to_float` drops them again. 16-bit
PNG and TIFF files are read at full depth: a split with any 16-bit file is
stored as uint16 (its 8-bit files x 257, exactly the same levels), any other as
uint8, so 8-bit data takes the same path and space as ever.
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
from files import atomic_write

# the real pix2pix sets beside the repo on this project's machines (read-only), for the benchmark,
# the demo's examples and the tests that need real data; elsewhere, point PIX2PIX_SHARED_DATA at a copy
SHARED_DATA = Path(os.environ.get('PIX2PIX_SHARED_DATA') or Path(__file__).resolve().parent.parent / 'shared' / 'datasets')
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


def parse_image_size(image_size):
    """The image_size setting -> (height, width) each half is resized to, or None
    for the files' own size: n is n x n, 'WIDTHxHEIGHT' (e.g. '512x256') a
    rectangle, 0 the native size."""
    match = re.fullmatch(r'(\d+)(?:x(\d+))?', str(image_size).strip().lower())
    if not match or (int(match[1]) == 0) != (int(match[2] or match[1]) == 0):
        raise DatasetError(f'image_size {image_size!r}: expected a side like 256, WIDTHxHEIGHT like 512x256, '
                           'or 0 for the native size')
    width, height = int(match[1]), int(match[2] or match[1])
    return (height, width) if width else None


def list_images(source):
    """Image paths of a split: a list file (one path per line) or a folder."""
    source = Path(source)
    if source.is_dir():
        paths = sorted((p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                       key=lambda p: (numeric_key(p), p.name))  # the name: one order for a.jpg, a.png too
    elif source.is_file():
        paths = []
        for line in source.read_text().splitlines():
            line = line.strip()
            if line:
                path = Path(line)
                # relative to the list file first (train.py's made splits, which then work from any
                # directory), then to the current one (the download script's, from the repo root);
                # a missing file is named where its folder is, and reported when decoded
                candidates = [source.parent / path, path, source.parent / path.parent.name / path.name]
                paths.append(next((p for p in candidates if p.exists()), None) or
                             next((p for p in candidates if p.parent.is_dir()), path))
    else:
        raise DatasetError(f'{source}: no such folder or list file')
    if not paths:
        splits = [name for name in ('train', 'val', 'test') if (source / name).is_dir()]
        hint = f' (it holds {"/, ".join(splits)}/: name one, e.g. {source / splits[-1]})' if splits else ''
        raise DatasetError(f'{source}: no images found{hint}')
    return paths


def pair_folders(folder):
    """(folder/A, folder/B) when folder holds inputs and targets as two folders, else None."""
    folder = Path(folder)
    a, b = folder / 'A', folder / 'B'
    if a.is_dir() != b.is_dir():
        have, lack = (a, b) if a.is_dir() else (b, a)
        raise DatasetError(f'{have} has no {lack.name}/ beside it: A/ holds the inputs and B/ the targets, '
                           'matched by file name')
    return (a, b) if a.is_dir() else None


def inputs_of(folder, direction):
    """The folder of a network's inputs: of a folder holding A/ and B/, the one that
    direction reads (A/ for AtoB); any other folder is itself."""
    folders = pair_folders(folder)
    return folders[direction == 'BtoA'] if folders else Path(folder)


def images_by_stem(folder):
    """{stem: path} of the images in folder; two files with one stem are an error."""
    by_stem = {}
    for path in list_images(folder):
        if path.stem in by_stem:
            raise DatasetError(f'{by_stem[path.stem]} and {path} have the same name; '
                               f'keep one, so that {path.stem} names one image')
        by_stem[path.stem] = path
    return by_stem


def report_unmatched(unmatched, what, skip):
    """Paths without a partner: an error naming the first few, or with skip a warning."""
    if not unmatched:
        return
    names = ', '.join(map(str, unmatched[:5])) + (f' and {len(unmatched) - 5} more' if len(unmatched) > 5 else '')
    message = f'{len(unmatched)} {what}: {names}'
    if not skip:
        raise DatasetError(f'{message} (every input needs a target of the same name; set skip_bad_images to '
                           'skip them)')
    warnings.warn(f'skipping {message}')


def list_pairs(source, skip_unmatched=False):
    """The pairs of a split, each a tuple of its files: (left|right file,) or
    (A file, B file). source: a folder of left|right files, a folder holding A/
    and B/ (matched by stem), or a list file of either (an entry in an A/ folder
    with a B/ beside it is an input; its target is B/'s file of that stem).
    Unmatched files raise DatasetError, or with skip_unmatched are left out with a warning."""
    folders = pair_folders(source) if Path(source).is_dir() else None
    if folders:
        inputs, targets = map(images_by_stem, folders)
        unmatched = sorted((path for side, other in ((inputs, targets), (targets, inputs))
                            for stem, path in side.items() if stem not in other), key=numeric_key)
        report_unmatched(unmatched, f'files in only one of {folders[0]} and {folders[1]}', skip_unmatched)
        return [(path, targets[stem]) for stem, path in inputs.items() if stem in targets]
    pairs, unmatched, targets = [], [], {}
    for path in list_images(source):
        if path.parent.name != 'A' or not (path.parent.parent / 'B').is_dir():
            pairs.append((path,))
            continue
        b = path.parent.parent / 'B'
        if b not in targets:
            targets[b] = images_by_stem(b)
        if path.stem in targets[b]:
            pairs.append((path, targets[b][path.stem]))
        else:
            unmatched.append(path)
    report_unmatched(unmatched, f'inputs listed in {source} have no file of their name in B/', skip_unmatched)
    return pairs


def dataset_root(dataset):
    """The folder of a dataset setting: a folder, or a name under datasets/."""
    root = Path(dataset)
    if not root.is_dir():
        root = Path('datasets') / dataset
    if not root.is_dir():
        raise DatasetError(f"dataset {dataset!r} not found (looked in {dataset} and {root}); "
                           f"run: bash download_facades_dataset.sh {Path(dataset).name}")
    return root


def split_source(dataset, split):
    """The list file or folder of one split: dataset is a name under datasets/
    or a folder holding train/ and val/ (or their list files)."""
    root = dataset_root(dataset)
    list_file = root / f'{split}_list.txt'
    if list_file.is_file():
        return list_file
    if (root / split).is_dir():
        return root / split
    raise DatasetError(f'{root} has no {split}/ folder or {split}_list.txt')


def make_split(dataset, val_fraction, seed=0, skip_unmatched=False):
    """A validation split for a dataset that has none: the pairs in its A/ and B/
    (or in its train/ folder, without a val/), val_fraction of them (at least
    one) held out as drawn by seed, written as train_list.txt and val_list.txt
    beside the data. Made once: every later run, resume and evaluation reads the
    lists. Returns a line to print (what was made, or pairs the lists miss), or None."""
    root = dataset_root(dataset)
    lists = [root / f'{split}_list.txt' for split in ('train', 'val')]
    if any(path.is_file() for path in lists):
        return unlisted_pairs(root, lists)
    if (root / 'val').is_dir() or not ((root / 'train').is_dir() or pair_folders(root)):
        return None  # a split of its own, or nothing to split (split_source says what is missing)
    pool = root / 'train' if (root / 'train').is_dir() else root
    pairs = list_pairs(pool, skip_unmatched)
    if len(pairs) < 2:
        raise DatasetError(f'{pool}: {len(pairs)} pair; a validation split needs at least 2')
    held = min(len(pairs) - 1, max(1, round(val_fraction * len(pairs))))
    val = set(np.random.default_rng(seed).permutation(len(pairs))[:held].tolist())
    names = [files[0].relative_to(root).as_posix() for files in pairs]
    try:  # val last: both lists present means the split is complete
        for path, keep in zip(lists, (False, True)):
            atomic_write(path, ''.join(f'{name}\n' for i, name in enumerate(names) if (i in val) == keep))
    except OSError as error:
        raise DatasetError(f'cannot write a validation split into {root} ({error.strerror or error}); make it '
                           f'writable, or split the pairs yourself into {root}/train/ and {root}/val/') from None
    return (f'made a validation split of {pool}: {len(pairs) - held} train, {held} val pairs (val_fraction '
            f'{val_fraction}, seed {seed}), listed in {lists[0]} and {lists[1]}; delete both to split again')


def unlisted_pairs(root, lists):
    """A note when A/ holds inputs that a made split's lists leave out (added since)."""
    if not all(path.is_file() for path in lists) or not (root / 'A').is_dir():
        return None
    listed = {path.resolve() for source in lists for path in list_images(source)}
    new = [path for path in list_images(root / 'A') if path.resolve() not in listed]
    if not new:
        return None
    return (f'note: {len(new)} inputs in {root / "A"} are in neither {lists[0].name} nor {lists[1].name} '
            f'(e.g. {new[0].name}); delete both lists to split again with them')


def read_image(path, channels=3):
    """Any image file -> uint8 (H, W, channels), or uint16 for a 16-bit file, RGB(A) or grey:
    3: grey becomes R = G = B, alpha is dropped, CMYK converted; 1: colour becomes grey
    (ITU-R 601 luma); 4: RGBA, and a file without alpha is an error. Raises DatasetError
    naming the file and the problem."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DatasetError(f'{path}: cannot read ({error.strerror or error})') from None
    if data.size == 0:
        raise DatasetError(f'{path}: empty file')
    # OpenCV silently fills the missing part of a cut-off JPEG with grey
    if data[:2].tobytes() == b'\xff\xd8' and not data.tobytes().rstrip(b'\0\r\n ').endswith(b'\xff\xd9'):
        raise DatasetError(f'{path}: truncated JPEG')
    # ANYDEPTH: a 16-bit file stays 16-bit; an 8-bit one decodes exactly as with IMREAD_COLOR alone
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED if channels == 4 else cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise DatasetError(f'{path}: not a readable image')
    if image.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f'{path}: {image.dtype} pixels; 8- and 16-bit images are read')
    if channels == 4:
        found = image.shape[2] if image.ndim == 3 else 1
        if found != 4:
            raise DatasetError(f'{path}: {found} channel{"s" * (found > 1)}, no alpha; a 4-channel side needs '
                               'RGBA files (PNG or TIFF with transparency)')
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_16_bits(image):
    """uint8 -> uint16 on the same scale: 255 -> 65535, v -> 257 v, exactly."""
    return image.astype(np.uint16) * 257


def resize_image(image, width, height):
    """An (H, W, C) image resized to width x height: INTER_AREA when either side
    shrinks (it averages the pixels it drops instead of aliasing), INTER_LINEAR
    otherwise. Training data and single images (translate.py) go through this one rule."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = width < image.shape[1] or height < image.shape[0]
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return resized.reshape(height, width, -1)  # OpenCV drops the axis of a single channel


def decode_pair(files, image_size, pad=0, channels=(3, 3)):
    """A pair's files, (left|right file,) or (A file, B file) -> uint8 (uint16 if either
    is 16-bit) (H + 2 pad, 2 (W + 2 pad), C), the input half left: each half read at its
    count of channels (left, right: see `read_image`), resized to image_size (see
    `parse_image_size`; the native size when 0, which A and B must then share), then
    given a mirrored border of pad pixels. C is the larger count; the other half gets
    zero channels added. Raises DatasetError."""
    if len(files) == 1:
        images = {count: read_image(files[0], count) for count in channels}  # read once when both are equal
        image = images[channels[0]]
        height, width = image.shape[:2]
        if width % 2 or width < 2:
            raise DatasetError(f'{files[0]}: {width}x{height} is not two equal halves side by side (odd width)')
        halves = [image[:, :width // 2], images[channels[1]][:, width // 2:]]
    else:
        image, halves = None, [read_image(path, count) for path, count in zip(files, channels)]
    shape = parse_image_size(image_size)
    for path, side in zip(files[1:], halves[1:]):
        if side.shape[:2] != halves[0].shape[:2] and shape is None:
            raise DatasetError(f'{path}: {side.shape[1]}x{side.shape[0]} differs from {halves[0].shape[1]}x'
                               f'{halves[0].shape[0]} of {files[0]} (set image_size to resize both)')
    shape, resized = shape or halves[0].shape[:2], False
    for i, side in enumerate(halves):
        if side.shape[:2] != shape:
            halves[i], resized = resize_image(side, shape[1], shape[0]), True
    if halves[0].dtype != halves[1].dtype:  # A/ or B/ 16-bit, the other 8-bit: the pair is 16-bit
        halves = [to_16_bits(side) if side.dtype == np.uint8 else side for side in halves]
    if channels[0] != channels[1]:
        halves = [np.pad(side, ((0, 0), (0, 0), (0, max(channels) - side.shape[2]))) for side in halves]
    if pad:
        halves = [cv2.copyMakeBorder(side, pad, pad, pad, pad, cv2.BORDER_REFLECT_101).reshape(
            side.shape[0] + 2 * pad, side.shape[1] + 2 * pad, -1) for side in halves]  # keeps a single channel's axis
    if image is not None and not (pad or resized or channels[0] != channels[1]):
        return image
    return np.concatenate(halves, axis=1)


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

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.cache_path is not None:
            state['_pixels'] = None
        return state

    def _cache_name(self):
        # 'full depth': caches made before 16-bit files were read at 16 bits hold them at 8
        signature = hashlib.sha1(f'{self.image_size}|{self.pad}|{self.file_channels}|full depth'.encode())
        for path in (path for files in self.pairs for path in files):
            try:
                stat = os.stat(path)
                signature.update(f'{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n'.encode())
            except OSError:  # a missing file is reported when decoding
                signature.update(f'{path}|missing\n'.encode())
        name = re.sub(r'[^A-Za-z0-9]+', '_', f'{self.source.resolve().parent.name}_{self.source.stem}')
        borders = f'p{self.pad}' if self.pad else ''
        return f'{name}_{self.image_size}{borders}_{signature.hexdigest()[:16]}'

    def _decode_or_skip(self, files):
        try:
            return decode_pair(files, self.image_size, self.pad, self.file_channels)
        except DatasetError as error:
            if not self.skip_bad_images:
                raise DatasetError(f'{error} (set skip_bad_images to skip such files)') from None
            return error

    def _decoded_in_order(self):
        """Decoded images in file order, decoding in threads (OpenCV releases the
        GIL) with a bounded window in flight, so RAM stays flat when the writer lags."""
        with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
            pending = deque()
            for files in self.pairs:
                pending.append(pool.submit(self._decode_or_skip, files))
                if len(pending) >= 64:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

    def _decoded(self):
        """(position, decoded pair) for each good file. Bad files raise, or are
        skipped with a warning."""
        images = tqdm(self._decoded_in_order(), total=len(self.pairs), desc=f'decoding {self.source}',
                      disable=not self.progress, leave=False)
        for position, image in enumerate(images):
            if isinstance(image, DatasetError):
                warnings.warn(f'skipping {image}')
                self.skipped.append(str(self.pairs[position][0]))
                continue
            yield position, image

    def _check_shape(self, position, image, shape):
        if image.shape != shape:
            raise DatasetError(f'{self.pairs[position][0]}: size {image.shape[1]}x{image.shape[0]} differs from '
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
        if any(image.dtype == np.uint16 for image in images):  # the split is 16-bit if any file is
            images = [to_16_bits(image) if image.dtype == np.uint8 else image for image in images]
        return np.stack(images), np.array(index)

    def _build(self, cache_path):
        """Decode straight into a memory-mapped file, so RAM stays bounded, and
        rename it into place only when complete. The file is uint8 until a 16-bit
        image arrives: then the images so far are copied into a uint16 file (x 257),
        as are all 8-bit images after it."""
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        for stale in cache_path.parent.glob(cache_path.name.rsplit('_', 1)[0] + '_*'):
            # an older cache of the same split; not this one, which another run may be
            # reading, nor a temporary, which another run may be writing
            if not stale.name.startswith(cache_path.stem) and not stale.name.endswith('.tmp'):
                stale.unlink(missing_ok=True)
        temporary = cache_path.with_name(cache_path.name + f'.{os.getpid()}.tmp')
        wide = temporary.with_suffix('.16.tmp')
        array, count, index = None, 0, []
        try:
            for position, image in self._decoded():
                if array is None:
                    array = np.lib.format.open_memmap(temporary, mode='w+', dtype=np.uint8,
                                                      shape=(len(self.pairs),) + image.shape)
                self._check_shape(position, image, array.shape[1:])
                if image.dtype == np.uint16 and array.dtype == np.uint8:  # the split is 16-bit if any file is
                    array = widened(array, count, wide)
                    temporary.unlink()
                    temporary, wide = wide, temporary
                array[count] = to_16_bits(image) if array.dtype != image.dtype else image
                index.append(position)
                count += 1
            if array is None:
                raise DatasetError(f'{self.source}: no readable images')
            array.flush()
            del array
            if count < len(self.pairs):  # skipped files: shrink the file to the images kept
                full = np.load(temporary, mmap_mode='r')
                np.save(temporary.with_suffix('.short.npy'), full[:count])
                del full
                os.replace(temporary.with_suffix('.short.npy'), temporary)
            np.save(cache_path.with_suffix('.index.npy'), np.array(index))
            os.replace(temporary, cache_path)
        finally:
            temporary.unlink(missing_ok=True)
            wide.unlink(missing_ok=True)

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


def widened(array, count, path):
    """A new uint16 memory-mapped file at path holding the first count images of a
    uint8 one, x 257, and room for the rest."""
    wide = np.lib.format.open_memmap(path, mode='w+', dtype=np.uint16, shape=array.shape)
    for i in range(count):  # one image at a time: RAM stays bounded
        wide[i] = to_16_bits(array[i])
    return wide


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
