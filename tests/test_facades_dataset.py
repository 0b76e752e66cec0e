import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import facades_dataset
import pairs
from conftest import REAL_DATA, make_pair, write_ab_pairs, write_pairs
from facades_dataset import JITTER_PAD, FacadesDataset, to_float
from images import decode_pair, read_image
from pairs import DatasetError, list_images, make_split, parse_image_size


def dataset(source, tmp_path, **kwargs):
    kwargs.setdefault('image_size', 32)
    kwargs.setdefault('cache_dir', tmp_path / 'cache')
    return FacadesDataset(source, progress=False, **kwargs)


def item(data, i, generator=None):
    """(input, target) of pair i in [-1, 1]; randomly shifted and mirrored with a generator."""
    return tuple(plane[0] for plane in to_float(data.pair_batch([i], generator)))


def test_split_and_directions(tmp_path):
    pair = make_pair(np.random.default_rng(0), 32)
    cv2.imwrite(str(tmp_path / '1.png'), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))  # lossless
    left = torch.from_numpy(pair[:, :32]).permute(2, 0, 1).float() / 127.5 - 1
    right = torch.from_numpy(pair[:, 32:]).permute(2, 0, 1).float() / 127.5 - 1
    a_to_b = item(dataset(tmp_path, tmp_path), 0)
    b_to_a = item(dataset(tmp_path, tmp_path, direction='BtoA'), 0)
    assert torch.allclose(a_to_b[0], left) and torch.allclose(a_to_b[1], right)
    assert torch.allclose(b_to_a[0], right) and torch.allclose(b_to_a[1], left)
    for tensor in a_to_b:
        assert tensor.dtype == torch.float32 and tensor.shape == (3, 32, 32)
        assert tensor.min() >= -1 and tensor.max() <= 1


def test_colours_stay_rgb(tmp_path):
    """A pure red left half must come out as red in channel 0, not blue."""
    image = np.zeros((16, 32, 3), np.uint8)
    image[:, :16] = (0, 0, 255)  # BGR red, as OpenCV writes it
    cv2.imwrite(str(tmp_path / '1.png'), image)
    input_image, _ = item(dataset(tmp_path, tmp_path, image_size=16), 0)
    assert input_image[0].min() == 1 and input_image[2].max() == -1


def test_resizes_halves_and_keeps_native_size(tmp_path):
    write_pairs(tmp_path / 'split', 2, size=48)
    assert item(dataset(tmp_path / 'split', tmp_path), 0)[0].shape == (3, 32, 32)
    assert item(dataset(tmp_path / 'split', tmp_path, image_size=0), 0)[0].shape == (3, 48, 48)


def test_list_file_and_numeric_order(tmp_path):
    write_pairs(tmp_path / 'train', 11)
    assert [p.stem for p in list_images(tmp_path / 'train')][:3] == ['1', '2', '3']
    (tmp_path / 'train_list.txt').write_text('\n'.join(f'train/{i}.jpg' for i in (10, 2)) + '\n')
    data = dataset(tmp_path / 'train_list.txt', tmp_path)
    assert len(data) == 2 and data.file_of(0).name == '10.jpg'


def test_augmentation_applies_the_same_crop_and_flip_to_both_halves(tmp_path):
    # a target that is a pixelwise function of the input stays so after augmentation
    # only if both received the same crop and flip; PNGs keep it exact
    rng = np.random.default_rng(0)
    lefts = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(8)]
    for i, left in enumerate(lefts, 1):
        cv2.imwrite(str(tmp_path / f'{i}.png'), cv2.cvtColor(np.concatenate([left, 255 - left], axis=1),
                                                            cv2.COLOR_RGB2BGR))
    data = dataset(tmp_path, tmp_path, augment=True)
    pad = JITTER_PAD
    assert data.pixels.shape[1:] == (32 + 2 * pad, 2 * (32 + 2 * pad), 3) and data.image_shape == (32, 32)
    images = data.gather(range(8))
    # stored: each half with mirrored borders (numpy's 'reflect' leaves the edge pixel out, as OpenCV's REFLECT_101)
    stored = images.permute(0, 3, 1, 2)[:, :, :, :32 + 2 * pad]
    for i, left in enumerate(lefts):
        assert np.array_equal(stored[i].permute(1, 2, 0).numpy(), np.pad(left, ((pad, pad), (pad, pad), (0, 0)),
                                                                          mode='reflect'))
    pair = data.cut_pairs(images, torch.Generator().manual_seed(1))
    assert pair.shape == (2, 8, 3, 32, 32) and pair.dtype == torch.uint8
    assert torch.equal(pair[1], 255 - pair[0])
    # a different shift and flip per image: find each among all crops of the stored image
    draws = set()
    for i in range(8):
        for flip in (False, True):
            for y in range(2 * pad + 1):
                for x in range(2 * pad + 1):
                    crop = stored[i, :, y:y + 32, x:x + 32]
                    if torch.equal(crop.flip(-1) if flip else crop, pair[0, i]):
                        draws.add((y, x, flip))
    assert len(draws) > 3 and {flip for _, _, flip in draws} == {False, True}
    # without a generator: the images themselves, and every plane channels-last
    centre = data.cut_pairs(images)
    assert torch.equal(centre[0], torch.from_numpy(np.stack(lefts)).permute(0, 3, 1, 2))
    assert all(plane.is_contiguous(memory_format=torch.channels_last) for plane in centre)
    # the same cut straight into NCHW planes
    generator = torch.Generator().manual_seed(1)
    nchw = data.cut_pairs(images, generator, channels_last=False)
    assert torch.equal(nchw, pair) and all(plane.is_contiguous() for plane in nchw)


def test_patches_are_crops_of_the_same_place_in_both_halves(tmp_path):
    data = dataset(write_pairs(tmp_path / 'split', 4, size=48), tmp_path, augment=True)
    images = data.gather(range(4))
    pair = data.cut_pairs(images, torch.Generator().manual_seed(0), side=16)
    assert pair.shape == (2, 4, 3, 16, 16)
    stored = images.permute(0, 3, 1, 2)
    half = stored.shape[3] // 2
    for i in range(4):
        places = [(y, x, flip) for y in range(half - 15) for x in range(half - 15) for flip in (False, True)
                  if all(torch.equal(side[:, y:y + 16, x:x + 16].flip(-1) if flip else side[:, y:y + 16, x:x + 16],
                                     pair[k, i]) for k, side in enumerate((stored[i, :, :, :half], stored[i, :, :, half:])))]
        assert places, i
    assert data.cut_pairs(images, torch.Generator().manual_seed(0), side=64).shape == (2, 4, 3, *data.image_shape)


def test_augmentation_is_reproducible_from_its_generator(tmp_path):
    data = dataset(write_pairs(tmp_path / 'split', 4), tmp_path, augment=True)
    images = data.gather(range(4))
    first = data.cut_pairs(images, torch.Generator().manual_seed(3))
    again = data.cut_pairs(images, torch.Generator().manual_seed(3))
    other = data.cut_pairs(images, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_augmented_cache_is_separate_and_native_size_keeps_its_shape(tmp_path):
    split = write_pairs(tmp_path / 'split', 2, size=48)
    plain, bordered = dataset(split, tmp_path), dataset(split, tmp_path, augment=True)
    assert plain.cache_path != bordered.cache_path and plain.cache_path.exists()
    native = dataset(split, tmp_path, image_size=0, augment=True)
    assert native.pixels.shape[1] == 48 + 2 * JITTER_PAD and native.image_shape == (48, 48)
    assert item(native, 0)[0].shape == (3, 48, 48)


def test_batches_augment_only_when_asked(tmp_path):
    pair = make_pair(np.random.default_rng(0), 32)
    (tmp_path / 'split').mkdir()
    cv2.imwrite(str(tmp_path / 'split' / '1.png'), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))  # lossless
    left = torch.from_numpy(pair[:, :32]).permute(2, 0, 1).float() / 127.5 - 1
    plain, augmented = dataset(tmp_path / 'split', tmp_path), dataset(tmp_path / 'split', tmp_path, augment=True)
    for data in (plain, augmented):  # without a generator: the file's left half, uncropped and unmirrored
        assert torch.allclose(item(data, 0)[0], left, atol=1e-6)
    rng = torch.Generator().manual_seed(0)
    draws = [item(augmented, 0, rng)[0] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_to_float_range():
    pair = torch.tensor([0, 255], dtype=torch.uint8).repeat(2, 1, 3, 1, 1).view(2, 1, 3, 1, 2)
    input_image, target_image = to_float(pair)
    assert input_image.min() == -1 and target_image.max() == 1


def test_cache_is_reused_and_rebuilt_when_an_image_changes(tmp_path, monkeypatch):
    split = write_pairs(tmp_path / 'split', 3)
    first = dataset(split, tmp_path)
    built = first.cache_path.stat()
    decoded = []
    monkeypatch.setattr(facades_dataset, 'decode_pair', lambda *args: decoded.append(args) or decode_pair(*args))
    assert dataset(split, tmp_path).cache_path == first.cache_path
    reused = first.cache_path.stat()
    assert not decoded and (reused.st_ino, reused.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)  # not rebuilt
    before = first.pair_batch([1]).clone()
    image = np.zeros((32, 64, 3), np.uint8)
    cv2.imwrite(str(split / '2.jpg'), image)
    changed = dataset(split, tmp_path)
    assert changed.cache_path != first.cache_path
    assert not first.cache_path.exists()  # the stale cache is removed
    assert not torch.equal(changed.pair_batch([1]), before)
    assert changed.pair_batch([1]).max() < 10


def test_a_cache_build_removes_stale_caches_but_not_another_runs_temporary(tmp_path):
    """Two runs started together both build the cache: neither may delete the
    file the other is still writing."""
    split = write_pairs(tmp_path / 'split', 3)
    first = dataset(split, tmp_path)
    prefix = first.cache_path.name.rsplit('_', 1)[0]
    in_flight = first.cache_path.with_name(first.cache_path.name + '.999999.tmp')
    in_flight.write_bytes(b'another run, still writing')
    stale = first.cache_path.with_name(f'{prefix}_0123456789abcdef.npy')
    stale.write_bytes(b'an older cache')
    first.cache_path.unlink()
    rebuilt = dataset(split, tmp_path)
    assert rebuilt.cache_path == first.cache_path and rebuilt.cache_path.exists()
    assert in_flight.exists() and not stale.exists()


def test_cache_and_plain_decoding_give_identical_batches(tmp_path):
    split = write_pairs(tmp_path / 'split', 5)
    cached = dataset(split, tmp_path)
    in_ram = dataset(split, tmp_path, cache_dir='')
    assert cached.cache_path is not None and in_ram.cache_path is None
    order = [4, 0, 3]
    assert torch.equal(cached.pair_batch(order), in_ram.pair_batch(order))
    cached, in_ram = dataset(split, tmp_path, augment=True), dataset(split, tmp_path, augment=True, cache_dir='')
    generator = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(cached.pair_batch(order, generator[0]), in_ram.pair_batch(order, generator[1]))


def test_dataset_pickles_without_its_pixels(tmp_path):
    import pickle
    data = dataset(write_pairs(tmp_path / 'split', 2), tmp_path)
    data.pair_batch([0])
    copy = pickle.loads(pickle.dumps(data))
    assert copy._pixels is None and torch.equal(copy.pair_batch([1]), data.pair_batch([1]))


def png_16bit_grey(levels):
    """A 16-bit greyscale PNG of a uint16 array, written by hand (OpenCV would write
    one too, but this keeps the test independent of how OpenCV chooses to encode)."""
    height, width = levels.shape
    rows = b''.join(b'\0' + row.astype('>u2').tobytes() for row in levels)
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    header = struct.pack('>IIBBBBB', width, height, 16, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')


def cmyk_jpeg(rgb):
    """An RGB uint8 array as a CMYK JPEG, converted and written by Pillow."""
    image_module = pytest.importorskip('PIL.Image')
    import io
    buffer = io.BytesIO()
    image = image_module.fromarray(rgb).convert('CMYK')
    assert image.mode == 'CMYK'
    image.save(buffer, 'JPEG', quality=95)
    return buffer.getvalue()


def good_jpeg():
    return cv2.imencode('.jpg', np.full((16, 32, 3), 200, np.uint8))[1].tobytes()


# file content -> None (loads, converted) or the words of its one-line error
BAD_INPUTS = {
    'truncated': (lambda: good_jpeg()[:-40], 'truncated JPEG'),
    'zero_bytes': (lambda: b'', 'empty file'),
    'png_named_jpg': (lambda: cv2.imencode('.png', np.zeros((16, 32, 3), np.uint8))[1].tobytes(), None),
    'one_pixel': (lambda: cv2.imencode('.png', np.zeros((1, 1, 3), np.uint8))[1].tobytes(), 'odd width'),
    'odd_width': (lambda: cv2.imencode('.png', np.zeros((16, 33, 3), np.uint8))[1].tobytes(), 'odd width'),
    'png_16bit': (lambda: png_16bit_grey(np.full((16, 32), 0x8000, np.uint16)), None),
    'grey': (lambda: cv2.imencode('.png', np.zeros((16, 32), np.uint8))[1].tobytes(), None),
    'alpha': (lambda: cv2.imencode('.png', np.zeros((16, 32, 4), np.uint8))[1].tobytes(), None),
    'text': (lambda: b'this is not an image\n', 'not a readable image'),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS) + ['cmyk'])
def test_bad_image_outcome(tmp_path, case):
    make, error = BAD_INPUTS.get(case, (lambda: cmyk_jpeg(np.full((16, 32, 3), (255, 0, 0), np.uint8)), None))
    (tmp_path / '1.jpg').write_bytes(make())
    if error is None:
        input_image, target_image = item(dataset(tmp_path, tmp_path, image_size=16), 0)
        assert input_image.shape == target_image.shape == (3, 16, 16)
    else:
        with pytest.raises(DatasetError, match=error) as info:
            dataset(tmp_path, tmp_path, image_size=16)
        assert '1.jpg' in str(info.value) and '\n' not in str(info.value)


def converted(tmp_path, content, name='1.jpg'):
    path = tmp_path / name
    path.write_bytes(content)
    return read_image(path)


def test_16_bit_png_is_read_at_full_depth(tmp_path):
    levels = np.repeat(np.array([[0x0000, 0x4001, 0x80FF, 0xFFFF]], np.uint16), 8, axis=1).repeat(4, axis=0)
    image = converted(tmp_path, png_16bit_grey(levels), '1.png')
    assert image.dtype == np.uint16 and image.shape == (4, 32, 3)
    # every bit kept: scaling to 8 bits would give 0x4000 and 0x8000 (the low bytes lost)
    assert image[0, ::8, 0].tolist() == [0x0000, 0x4001, 0x80FF, 0xFFFF] and (image == image[:1, :, :1]).all()


def test_greyscale_becomes_equal_red_green_and_blue(tmp_path):
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))
    image = converted(tmp_path, cv2.imencode('.png', grey)[1].tobytes())
    assert image.shape == (16, 32, 3) and all(np.array_equal(image[..., c], grey) for c in range(3))


def test_alpha_is_dropped_and_the_colour_kept(tmp_path):
    bgra = np.zeros((16, 32, 4), np.uint8)
    bgra[..., :3] = (30, 90, 200)  # RGB (200, 90, 30), as OpenCV writes BGR
    bgra[..., 3] = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))  # transparent to opaque
    image = converted(tmp_path, cv2.imencode('.png', bgra)[1].tobytes())
    assert image.shape == (16, 32, 3) and (image == (200, 90, 30)).all()


def test_cmyk_jpeg_keeps_its_colours(tmp_path):
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, :16], rgb[:, 16:] = (200, 30, 60), (20, 120, 220)
    image = converted(tmp_path, cmyk_jpeg(rgb))
    assert image.shape == (16, 32, 3) and np.abs(image.astype(int) - rgb).max() <= 8  # JPEG rounding


def test_png_named_jpg_gives_the_pngs_pixels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (16, 32, 3), np.uint8)
    image = converted(tmp_path, cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes())
    assert np.array_equal(image, rgb)


def test_skip_bad_images_warns_and_counts(tmp_path):
    """Every kind of bad file, between two good ones: a warning each, then skipped."""
    bad = [make for make, error in BAD_INPUTS.values() if error]
    write_pairs(tmp_path, 1)
    for i, make in enumerate(bad, start=2):
        (tmp_path / f'{i}.jpg').write_bytes(make())
    last = len(bad) + 2
    write_pairs(tmp_path, 1, start=last)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        data = dataset(tmp_path, tmp_path, skip_bad_images=True)
    assert len(data) == 2 and len(data.skipped) == len(bad) == len(caught) == 5
    assert [data.file_of(i).name for i in range(2)] == ['1.jpg', f'{last}.jpg']


def test_missing_file_from_list(tmp_path):
    write_pairs(tmp_path / 'train', 1)
    (tmp_path / 'list.txt').write_text('train/1.jpg\ntrain/7.jpg\n')
    with pytest.raises(DatasetError, match='7.jpg: cannot read'):
        dataset(tmp_path / 'list.txt', tmp_path)


def test_empty_or_missing_source(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError, match='no images'):
        dataset(tmp_path / 'empty', tmp_path)
    with pytest.raises(DatasetError, match='no such folder'):
        dataset(tmp_path / 'absent', tmp_path)


def test_mixed_native_sizes_are_refused(tmp_path):
    write_pairs(tmp_path, 1, size=32)
    write_pairs(tmp_path, 1, size=16, start=2)
    with pytest.raises(DatasetError, match='2.jpg: size 32x16 differs'):
        dataset(tmp_path, tmp_path, image_size=0)


def flat(path, colour, width, height):
    """A one-colour image of width x height (RGB colour), in the format path's suffix names."""
    cv2.imwrite(str(path), np.full((height, width, 3), colour[::-1], np.uint8))


def test_a_and_b_are_matched_by_name_whatever_their_format_and_size(tmp_path):
    """Inputs in A/ and targets in B/, paired by stem across formats and sizes, each
    half resized to image_size (here 24x16); a flat colour per file shows which file
    went where, through both directions."""
    files = {'1': (('A/1.jpg', 40, 24), ('B/1.png', 20, 30)), '2': (('A/2.png', 16, 16), ('B/2.bmp', 64, 8)),
             '10': (('A/10.bmp', 30, 50), ('B/10.jpeg', 24, 16))}
    colours = {}
    for stem, sides in files.items():
        for k, (name, width, height) in enumerate(sides):
            (tmp_path / name).parent.mkdir(exist_ok=True)
            colours[stem, k] = (40 * len(colours) + 20, 200 - 30 * len(colours), 90 + 20 * k)
            flat(tmp_path / name, colours[stem, k], width, height)
    for direction in ('AtoB', 'BtoA'):
        data = dataset(tmp_path, tmp_path, image_size='24x16', direction=direction)
        assert [data.file_of(i).name for i in range(len(data))] == ['1.jpg', '2.png', '10.bmp']
        pair = data.pair_batch(range(3))
        assert pair.shape == (2, 3, 3, 16, 24)
        for i, stem in enumerate(files):
            for plane in (0, 1):
                side = plane if direction == 'AtoB' else 1 - plane
                assert (pair[plane, i].int() - torch.tensor(colours[stem, side]).view(3, 1, 1)).abs().max() <= 2, \
                    (direction, stem, plane)


@pytest.mark.parametrize('image_size, augment', [(32, False), (16, True), ('48x16', True), (0, False)])
def test_a_b_and_left_right_give_identical_batches(tmp_path, image_size, augment):
    """The same pairs as left|right PNGs and as A/ and B/ PNGs (lossless): the same
    stored pixels, and the same batches, shifts and mirrors included."""
    write_ab_pairs(tmp_path / 'ab', 5, seed=3)
    (tmp_path / 'lr').mkdir()
    for i in range(1, 6):
        halves = [cv2.imread(str(tmp_path / 'ab' / side / f'{i}.png')) for side in 'AB']
        cv2.imwrite(str(tmp_path / 'lr' / f'{i}.png'), np.concatenate(halves, axis=1))
    ab, lr = (dataset(tmp_path / name, tmp_path, image_size=image_size, augment=augment) for name in ('ab', 'lr'))
    assert ab.cache_path != lr.cache_path and np.array_equal(ab.pixels, lr.pixels)
    generators = [torch.Generator().manual_seed(5) if augment else None for _ in range(2)]
    order = [3, 0, 4, 1]
    assert torch.equal(ab.pair_batch(order, generators[0]), lr.pair_batch(order, generators[1]))
    assert [ab.file_of(i).stem for i in order] == [lr.file_of(i).stem for i in order]


def test_a_and_b_may_differ_in_size_only_when_resized(tmp_path):
    flat(tmp_path / 'A_1.png', (10, 20, 30), 32, 32)
    flat(tmp_path / 'B_1.png', (10, 20, 30), 16, 32)
    with pytest.raises(DatasetError, match=r'B_1.png: 16x32 differs from 32x32 of .*A_1.png \(set image_size'):
        decode_pair((tmp_path / 'A_1.png', tmp_path / 'B_1.png'), 0)
    assert decode_pair((tmp_path / 'A_1.png', tmp_path / 'B_1.png'), '16x8').shape == (8, 32, 3)


def ab_folder(tmp_path, inputs, targets):
    """A/ and B/ holding flat images of the given names (None: no such folder)."""
    for side, names in (('A', inputs), ('B', targets)):
        if names is not None:
            (tmp_path / side).mkdir()
            for name in names:
                flat(tmp_path / side / name, (100, 100, 100), 16, 16)
    return tmp_path


@pytest.mark.parametrize('case, inputs, targets, message', [
    ('only in one', [f'{i}.jpg' for i in range(1, 9)], ['1.png', '2.png', 'x.png'],
     r'^7 files in only one of \S+/A and \S+/B: \S+/A/3.jpg, \S+/A/4.jpg, \S+/A/5.jpg, \S+/A/6.jpg, \S+/A/7.jpg '
     r'and 2 more \(every input needs a target of the same name; set skip_bad_images'),
    ('same name twice', ['1.jpg', '1.png', '2.jpg'], ['1.png', '2.png'],
     r'\S+/A/1.jpg and \S+/A/1.png have the same name'),
    ('same name twice in B', ['1.jpg'], ['1.png', '1.tif'], r'\S+/B/1.png and \S+/B/1.tif have the same name'),
    ('empty A', [], ['1.png'], r'/A: no images found$'),
    ('empty B', ['1.png'], [], r'/B: no images found$'),
    ('A without B', ['1.png'], None, r'/A has no B/ beside it'),
    ('B without A', None, ['1.png'], r'/B has no A/ beside it'),
])
def test_a_b_folders_that_do_not_pair_up_are_one_line_errors(tmp_path, case, inputs, targets, message):
    ab_folder(tmp_path, inputs, targets)
    with pytest.raises(DatasetError, match=message) as info:
        dataset(tmp_path, tmp_path)
    assert '\n' not in str(info.value), case
    if case != 'only in one':  # not made either, whatever the settings
        with pytest.raises(DatasetError, match=message):
            make_split(tmp_path, 0.1, skip_unmatched=True)


def test_skip_bad_images_skips_unmatched_files_with_a_warning(tmp_path):
    ab_folder(tmp_path, ['1.jpg', '2.jpg', '3.jpg'], ['2.png', '3.png', '4.png'])
    with pytest.warns(UserWarning, match=r'skipping 2 files in only one of .*A/1.jpg, .*B/4.png$'):
        data = dataset(tmp_path, tmp_path, skip_bad_images=True)
    assert [data.file_of(i).name for i in range(len(data))] == ['2.jpg', '3.jpg']


def test_a_list_entry_whose_files_are_missing_is_an_error(tmp_path):
    ab_folder(tmp_path, ['1.jpg', '2.jpg'], ['1.png', '2.png', '3.png'])
    (tmp_path / 'list.txt').write_text('A/1.jpg\nA/4.jpg\n')  # neither A/4 nor B/4
    with pytest.raises(DatasetError, match=r'^1 inputs listed in \S+list.txt have no file of their name in B/: '
                                           r'\S+/A/4.jpg \('):
        dataset(tmp_path / 'list.txt', tmp_path)
    (tmp_path / 'list.txt').write_text('A/1.jpg\nA/3.jpg\n')  # B/3 without A/3
    with pytest.raises(DatasetError, match=r'\S+/A/3.jpg: cannot read'):
        dataset(tmp_path / 'list.txt', tmp_path)
    (tmp_path / 'list.txt').write_text('A/2.jpg\n')
    assert [files.name for files in dataset(tmp_path / 'list.txt', tmp_path).pairs[0]] == ['2.jpg', '2.png']


def test_a_made_split_is_seeded_stable_and_read_back(tmp_path):
    write_ab_pairs(tmp_path / 'mine', 25, suffixes=('.jpg', '.png'))
    lists = [tmp_path / 'mine' / f'{split}_list.txt' for split in ('train', 'val')]
    line = make_split(tmp_path / 'mine', 0.1, seed=0)
    assert line.startswith(f'made a validation split of {tmp_path / "mine"}: 23 train, 2 val pairs') and \
        str(lists[0]) in line and str(lists[1]) in line
    train, val = (path.read_text().splitlines() for path in lists)
    assert len(val) == 2 and sorted(train + val) == sorted(f'A/{i}.jpg' for i in range(1, 26))
    written = [path.stat().st_mtime_ns for path in lists]
    assert make_split(tmp_path / 'mine', 0.5, seed=1) is None  # made once: the lists stand
    assert [path.stat().st_mtime_ns for path in lists] == written
    for path in lists:  # made again: the same draw
        path.unlink()
    make_split(tmp_path / 'mine', 0.1, seed=0)
    assert [path.read_text().splitlines() for path in lists] == [train, val]
    for path in lists:
        path.unlink()
    make_split(tmp_path / 'mine', 0.1, seed=1)
    assert lists[1].read_text().splitlines() != val
    # what the loader reads back: the listed pairs, from any working directory
    data = dataset(lists[1], tmp_path)
    assert [data.file_of(i) for i in range(len(data))] == [tmp_path / 'mine' / name
                                                           for name in lists[1].read_text().split()]
    write_ab_pairs(tmp_path / 'mine', 2, start=26, suffixes=('.jpg', '.png'))
    assert make_split(tmp_path / 'mine', 0.1).startswith('note: 2 inputs in ')


@pytest.mark.parametrize('count, fraction, val', [(2, 0.1, 1), (30, 0.0, 1), (30, 0.25, 8), (3, 0.9, 2)])
def test_a_made_split_holds_out_at_least_one_pair_and_trains_on_one(tmp_path, count, fraction, val):
    write_ab_pairs(tmp_path, count, size=16)
    make_split(tmp_path, fraction)
    assert len((tmp_path / 'val_list.txt').read_text().split()) == val
    assert len((tmp_path / 'train_list.txt').read_text().split()) == count - val


def test_a_split_of_one_pair_or_into_a_read_only_folder_is_one_line(tmp_path, monkeypatch):
    write_ab_pairs(tmp_path, 1, size=16)
    with pytest.raises(DatasetError, match=r'1 pair; a validation split needs at least 2'):
        make_split(tmp_path, 0.1)
    write_ab_pairs(tmp_path, 1, size=16, start=2)

    def refuse(path, data):
        raise PermissionError(13, 'Permission denied', str(path))
    monkeypatch.setattr(pairs, 'atomic_write', refuse)
    with pytest.raises(DatasetError, match=r'^cannot write a validation split into \S+ \(Permission denied\); make it '
                                           r'writable, or split the pairs yourself into \S+/train/ and \S+/val/$'):
        make_split(tmp_path, 0.1)


def test_a_train_folder_without_val_is_split_too(tmp_path):
    write_pairs(tmp_path / 'train', 10)
    assert make_split(tmp_path, 0.2, seed=0).startswith(f'made a validation split of {tmp_path / "train"}: 8 train')
    assert all(line.startswith('train/') for line in (tmp_path / 'val_list.txt').read_text().split())
    assert len(dataset(tmp_path / 'val_list.txt', tmp_path)) == 2
    (tmp_path / 'other' / 'val').mkdir(parents=True)  # a split of its own: nothing made
    write_pairs(tmp_path / 'other' / 'train', 2)
    assert make_split(tmp_path / 'other', 0.1) is None and not (tmp_path / 'other' / 'val_list.txt').exists()


@pytest.mark.parametrize('value, shape', [(256, (256, 256)), ('512x256', (256, 512)), ('64X32', (32, 64)),
                                          (' 32 ', (32, 32)), (0, None), ('0', None)])
def test_image_size_forms(value, shape):
    assert parse_image_size(value) == shape


@pytest.mark.parametrize('value', ['64x', 'x32', '0x32', '64x0', '-1', '64*32', '64x32x2', '', 'big'])
def test_bad_image_size_forms(value):
    with pytest.raises(DatasetError, match='expected a side like 256, WIDTHxHEIGHT like 512x256'):
        parse_image_size(value)


def test_non_square_image_size_resizes_each_half(tmp_path):
    write_pairs(tmp_path / 'split', 2, size=32)
    data = dataset(tmp_path / 'split', tmp_path, image_size='64x32', augment=True)
    assert data.image_shape == (32, 64) and item(data, 0)[0].shape == (3, 32, 64)
    pair = data.cut_pairs(data.gather([0, 1]), torch.Generator().manual_seed(0), side=48)
    assert pair.shape == (2, 2, 3, 32, 48)  # a patch fits each side


@pytest.mark.skipif(not (REAL_DATA / 'facades').is_dir(), reason='real facades data not present')
def test_real_facades_halves(tmp_path):
    data = dataset(REAL_DATA / 'facades' / 'val', tmp_path, image_size=256)
    assert len(data) == 100
    photo, labels = (plane[0] for plane in to_float(data.pair_batch([0])))
    assert photo.shape == labels.shape == (3, 256, 256)
    # the label map is made of few flat colours, the photo of many
    assert len(torch.unique(labels.view(3, -1), dim=1).T) < len(torch.unique(photo.view(3, -1), dim=1).T)


def test_the_shared_data_folder_is_one_setting(tmp_path):
    """PIX2PIX_SHARED_DATA moves the real sets' folder for every user of it (the benchmark, the
    demo's examples, the tests); unset, it is shared/datasets beside the repo."""
    import benchmark
    import demo
    from conftest import REAL_DATA, REPO
    assert REAL_DATA == demo.SHARED_DATA == REPO.parent / 'shared' / 'datasets' == Path(benchmark.DEFAULT_DATA[0]).parent
    assert demo.SHARED_DATA is pairs.SHARED_DATA  # the demo's is the one setting's, not a copy (gradio is slow to import)
    code = 'import benchmark, pairs; print(pairs.SHARED_DATA, benchmark.DEFAULT_DATA[0])'
    moved = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, check=True,
                           env=dict(os.environ, PIX2PIX_SHARED_DATA=str(tmp_path))).stdout.split()
    assert moved == [str(tmp_path), str(tmp_path / 'facades')]
