"""A split's pairs decoded once, into an array file that is memory-mapped afterwards.

Every pair is decoded a single time into a uint8 array file (a cache): loader
processes share its pages without copying, the OS keeps it in RAM when it fits
and streams it when it does not (edges2shoes is ~25 GB decoded), and the next
run starts without decoding. The file's name holds a hash of the decoding
settings and of every source file's name, size and modification time, so a
changed file or setting gets a new cache (`cache_file`) and the old one is
removed when it is built. A split with any 16-bit file is stored as uint16 (its
8-bit files x 257), any other as uint8. Beside the array, an index file holds
the position in the split's pairs of each image kept (skipped files leave gaps).
`decode_all` does the same work into RAM, for a split read once.
"""
import hashlib
import os
import re
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from images import to_16_bits
from pairs import DatasetError

INDEX_SUFFIX = '.index.npy'  # the index file's, beside the array file's .npy


def cache_file(cache_dir, source, pairs, image_size, pad, channels):
    """The array file of a split decoded with these settings (pad: the border of each
    half; channels: of the left and right halves)."""
    # 'full depth': caches made before 16-bit files were read at 16 bits hold them at 8
    signature = hashlib.sha1(f'{image_size}|{pad}|{tuple(channels)}|full depth'.encode())
    for path in (path for files in pairs for path in files):
        try:
            stat = os.stat(path)
            signature.update(f'{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n'.encode())
        except OSError:  # a missing file is reported when decoding
            signature.update(f'{path}|missing\n'.encode())
    source = Path(source)
    name = re.sub(r'[^A-Za-z0-9]+', '_', f'{source.resolve().parent.name}_{source.stem}')
    borders = f'p{pad}' if pad else ''
    return Path(cache_dir) / f'{name}_{image_size}{borders}_{signature.hexdigest()[:16]}.npy'


def read_index(path):
    """The positions in the split's pairs of the images a cache file holds, in order."""
    return np.load(path.with_suffix(INDEX_SUFFIX))


def decode_or_error(decode, files, skip_bad_images):
    """decode(files), or with skip_bad_images its DatasetError, returned to be reported in order."""
    try:
        return decode(files)
    except DatasetError as error:
        if not skip_bad_images:
            raise DatasetError(f'{error} (set skip_bad_images to skip such files)') from None
        return error


def decoded_in_order(pairs, decode, skip_bad_images):
    """decode(files) of each pair in order, or its DatasetError; decoded in threads (OpenCV
    releases the GIL) with a bounded window in flight, so RAM stays flat when the writer lags."""
    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        pending = deque()
        for files in pairs:
            pending.append(pool.submit(decode_or_error, decode, files, skip_bad_images))
            if len(pending) >= 64:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def decoded(source, pairs, decode, skipped, skip_bad_images=False, progress=True):
    """(position, decoded pair) for each good pair. A bad file raises, or with
    skip_bad_images is warned about, and its pair's first file added to skipped."""
    images = tqdm(decoded_in_order(pairs, decode, skip_bad_images), total=len(pairs), desc=f'decoding {source}',
                  disable=not progress, leave=False)
    for position, image in enumerate(images):
        if isinstance(image, DatasetError):
            warnings.warn(f'skipping {image}')
            skipped.append(str(pairs[position][0]))
            continue
        yield position, image


def check_shape(pairs, position, image, shape):
    if image.shape != shape:
        raise DatasetError(f'{pairs[position][0]}: size {image.shape[1]}x{image.shape[0]} differs from '
                           f'{shape[1]}x{shape[0]} of the first image (set image_size to resize all)')


def decode_all(source, pairs, decode, skip_bad_images=False, progress=True):
    """The split in RAM: (pixels (N, H, 2W, C), index, skipped files), as a cache file would hold it."""
    images, index, skipped = [], [], []
    for position, image in decoded(source, pairs, decode, skipped, skip_bad_images, progress):
        if images:
            check_shape(pairs, position, image, images[0].shape)
        images.append(image)
        index.append(position)
    if not images:
        raise DatasetError(f'{source}: no readable images')
    if any(image.dtype == np.uint16 for image in images):  # the split is 16-bit if any file is
        images = [to_16_bits(image) if image.dtype == np.uint8 else image for image in images]
    return np.stack(images), np.array(index), skipped


def build_cache(path, source, pairs, decode, skip_bad_images=False, progress=True):
    """Decode straight into a memory-mapped file, so RAM stays bounded, and
    rename it into place at path only when complete, its index beside it. The file
    is uint8 until a 16-bit image arrives: then the images so far are copied into a
    uint16 file (x 257), as are all 8-bit images after it. Returns the skipped files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(path.name.rsplit('_', 1)[0] + '_*'):
        # an older cache of the same split; not this one, which another run may be
        # reading, nor a temporary, which another run may be writing
        if not stale.name.startswith(path.stem) and not stale.name.endswith('.tmp'):
            stale.unlink(missing_ok=True)
    temporary = path.with_name(path.name + f'.{os.getpid()}.tmp')
    wide = temporary.with_suffix('.16.tmp')
    array, count, index, skipped = None, 0, [], []
    try:
        for position, image in decoded(source, pairs, decode, skipped, skip_bad_images, progress):
            if array is None:
                array = np.lib.format.open_memmap(temporary, mode='w+', dtype=np.uint8,
                                                  shape=(len(pairs),) + image.shape)
            check_shape(pairs, position, image, array.shape[1:])
            if image.dtype == np.uint16 and array.dtype == np.uint8:  # the split is 16-bit if any file is
                array = widened(array, count, wide)
                temporary.unlink()
                temporary, wide = wide, temporary
            array[count] = to_16_bits(image) if array.dtype != image.dtype else image
            index.append(position)
            count += 1
        if array is None:
            raise DatasetError(f'{source}: no readable images')
        array.flush()
        del array
        if count < len(pairs):  # skipped files: shrink the file to the images kept
            full = np.load(temporary, mmap_mode='r')
            np.save(temporary.with_suffix('.short.npy'), full[:count])
            del full
            os.replace(temporary.with_suffix('.short.npy'), temporary)
        np.save(path.with_suffix(INDEX_SUFFIX), np.array(index))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
        wide.unlink(missing_ok=True)
    return skipped


def widened(array, count, path):
    """A new uint16 memory-mapped file at path holding the first count images of a
    uint8 one, x 257, and room for the rest."""
    wide = np.lib.format.open_memmap(path, mode='w+', dtype=np.uint16, shape=array.shape)
    for i in range(count):  # one image at a time: RAM stays bounded
        wide[i] = to_16_bits(array[i])
    return wide
