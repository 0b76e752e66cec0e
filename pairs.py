"""Which files make a dataset's pairs, found without reading a pixel.

A pair is one file holding the input and the target side by side (left half |
right half), or two files: the input in a folder A/ and the target of the same
name (stem) in a folder B/ beside it. A dataset is a folder (or a name under
datasets/) holding a split as a folder or a list file (train/ or
train_list.txt, ...); one that has A/ and B/ or train/ alone gets a validation
split made once, as two list files (`make_split`).

No torch and no OpenCV here: train.py reads the image_size setting with
`parse_image_size` before its heavy imports.
"""
import os
import re
import warnings
from pathlib import Path

import numpy as np

from errors import UserError
from files import atomic_write

# the real pix2pix sets beside the repo on this project's machines (read-only), for the benchmark,
# the demo's examples and the tests that need real data; elsewhere, point PIX2PIX_SHARED_DATA at a copy
SHARED_DATA = Path(os.environ.get('PIX2PIX_SHARED_DATA') or Path(__file__).resolve().parent.parent / 'shared' / 'datasets')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


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


def dataset_root(dataset, candidates=None):
    """The folder of a dataset setting: a folder, or a name under datasets/. candidates:
    the folders to try instead, in order (a script's own defaults); the first found wins."""
    candidates = list(dict.fromkeys(candidates or (Path(dataset), Path('datasets') / dataset)))
    root = next((Path(path) for path in candidates if Path(path).is_dir()), None)
    if root is None:
        raise DatasetError(f"dataset {dataset!r} not found (looked in {' and '.join(map(str, candidates))}); "
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
