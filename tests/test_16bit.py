"""16-bit images (#28): 16-bit PNG and TIFF files are read at full depth, stored
exactly (uint16 caches), scaled to [-1, 1] from 0..65535, and a network trained on
16-bit targets writes 16-bit PNGs. 8-bit data keeps its uint8 path and cache size.
The expected values are the files' own levels, computed here."""
import math
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import checkpoint
import FCN_network
import metrics
import predict
import train
from conftest import run_script, tiny_run_args
from facades_dataset import FacadesDataset, to_float, to_uint16
from images import read_image
from pairs import DatasetError


def gradient(height=48, width=64, seed=0):
    """uint16 RGB (height, width, 3): every level's low byte differs from its neighbours'
    (no multiple of 257 pattern), and the three channels differ, so a swap would show."""
    levels = (np.arange(height * width, dtype=np.int64) * 21 + seed).reshape(height, width) % 65536
    return np.stack([levels, 65535 - levels, (levels * 7) % 65536], -1).astype(np.uint16)


def write(path, rgb):
    """An RGB (or grey, 2-D) array to a PNG or TIFF at its own depth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    return path


def floats(levels, bits):
    """What [-1, 1] a level of a bits-deep file must become, in float64."""
    return levels.astype(np.float64) / (2 ** bits - 1) * 2 - 1


@pytest.mark.parametrize('suffix', ['.png', '.tif'])
def test_16_bit_files_are_read_at_full_depth(tmp_path, suffix):
    pixels = gradient()
    path = write(tmp_path / f'1{suffix}', pixels)
    if suffix == '.png':
        assert path.read_bytes()[24] == 16  # the IHDR bit depth: a 16-bit file indeed
    image = read_image(path)
    assert image.dtype == np.uint16 and np.array_equal(image, pixels)
    grey = read_image(path, 1)[..., 0].astype(np.float64)  # 16-bit luma, not 8-bit
    assert np.abs(grey - pixels @ [0.299, 0.587, 0.114]).max() <= 2  # OpenCV rounds in fixed point


def pairs_16_bit(root, count=3):
    """root/A, root/B: 16-bit gradients, the targets' channels reversed."""
    inputs = [gradient(32, 32, seed=i) for i in range(count)]
    for i, pixels in enumerate(inputs, 1):
        write(root / 'A' / f'{i}.png', pixels)
        write(root / 'B' / f'{i}.tif', pixels[..., ::-1].copy())
    return inputs


@pytest.mark.parametrize('cache, augment', [(True, False), (False, False), (True, True)])
def test_a_16_bit_split_is_stored_and_scaled_exactly(tmp_path, cache, augment):
    inputs = pairs_16_bit(tmp_path / 'data')
    data = FacadesDataset(tmp_path / 'data', image_size=32, progress=False, augment=augment,
                          cache_dir=tmp_path / 'cache' if cache else '')
    assert data.pixels.dtype == np.uint16 and data.bits == 16
    input_image, target_image = to_float(data.pair_batch(range(3)))
    for i, pixels in enumerate(inputs):
        assert np.abs(input_image[i].permute(1, 2, 0).numpy() - floats(pixels, 16)).max() < 1e-6
        assert np.abs(target_image[i].permute(1, 2, 0).numpy() - floats(pixels[..., ::-1], 16)).max() < 1e-6
    assert np.array_equal(to_uint16(input_image), np.stack(inputs))  # and back, every level
    if augment:  # shifted and mirrored crops hold the files' levels only
        crops = to_uint16(to_float(data.pair_batch(range(3), torch.Generator().manual_seed(0)))[0])
        assert set(np.unique(crops)) <= set(np.unique(np.stack(inputs)))


@pytest.mark.parametrize('cache', [True, False])
def test_a_split_with_any_16_bit_file_is_16_bit_and_its_8_bit_files_keep_their_values(tmp_path, cache):
    """The rule for mixed files: the split is 16-bit if any file is, its 8-bit levels x 257.
    Pair 1 is 8-bit, pair 2 16-bit (so a cache that began as uint8 is widened), pair 3
    8-bit again, and pair 4 mixes an 8-bit input with a 16-bit target."""
    rng = np.random.default_rng(0)
    eight = [rng.integers(0, 256, (16, 16, 3), np.uint8) for _ in range(4)]
    sixteen = gradient(16, 16)
    files = {1: (eight[0], eight[1]), 2: (sixteen, sixteen[..., ::-1].copy()), 3: (eight[2], eight[3]),
             4: (eight[0], sixteen)}
    for i, (a, b) in files.items():
        write(tmp_path / 'mixed' / 'A' / f'{i}.png', a)
        write(tmp_path / 'mixed' / 'B' / f'{i}.png', b)
    cache_dir = tmp_path / 'cache' if cache else ''
    data = FacadesDataset(tmp_path / 'mixed', image_size=16, cache_dir=cache_dir, progress=False)
    assert data.pixels.dtype == np.uint16 and data.bits == 16
    for i, (a, b) in files.items():
        stored = np.asarray(data.pixels[i - 1])
        for half, pixels in enumerate((a, b)):
            expected = pixels.astype(np.uint16) * 257 if pixels.dtype == np.uint8 else pixels
            assert np.array_equal(stored[:, half * 16:(half + 1) * 16], expected), (i, half)
    # an 8-bit pair gives the floats it gives in an 8-bit split
    for i in (1, 3):
        write(tmp_path / 'eight' / 'A' / f'{i}.png', files[i][0])
        write(tmp_path / 'eight' / 'B' / f'{i}.png', files[i][1])
    alone = FacadesDataset(tmp_path / 'eight', image_size=16, cache_dir=cache_dir, progress=False)
    for mixed, own in zip(to_float(data.pair_batch([0, 2])), to_float(alone.pair_batch([0, 1]))):
        assert (mixed - own).abs().max() < 1e-6
    assert not list((tmp_path / 'cache').glob('*.tmp')) if cache else True  # no temporary left behind


def test_8_bit_data_costs_nothing_more(tmp_path):
    """An 8-bit split keeps its uint8 cache, of exactly the bytes of its pixels."""
    rng = np.random.default_rng(0)
    for i in range(1, 4):
        write(tmp_path / 'data' / 'A' / f'{i}.png', rng.integers(0, 256, (16, 16, 3), np.uint8))
        write(tmp_path / 'data' / 'B' / f'{i}.jpg', rng.integers(0, 256, (16, 16, 3), np.uint8))
    data = FacadesDataset(tmp_path / 'data', image_size=16, cache_dir=tmp_path / 'cache', progress=False)
    assert data.pixels.dtype == np.uint8 and data.bits == 8 and data.pair_batch([0]).dtype == torch.uint8
    np.save(tmp_path / 'same_shape.npy', np.zeros((3, 16, 32, 3), np.uint8))
    assert data.cache_path.stat().st_size == (tmp_path / 'same_shape.npy').stat().st_size


def identity_checkpoint(path, monkeypatch, **settings):
    """A hand-built checkpoint of a generator that is the identity (registered here, so
    it runs in this process): what predict.py writes is then what it read."""
    monkeypatch.setitem(FCN_network.GENERATORS, 'identity', FCN_network.Generator(lambda config: nn.Identity(),
                                                                                  (), 16, False))
    config = dict(train.config, model='identity', image_size=0, **settings)
    checkpoint.save({'format': checkpoint.FORMAT, 'version': checkpoint.VERSION, 'epoch': 1, 'config': config,
                     'history': [], 'model': {}}, path)
    return path


def predict_in_process(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', ['predict.py', *map(str, args)])
    predict.main()


@pytest.mark.parametrize('suffix', ['.png', '.tif'])
def test_a_16_bit_gradient_round_trips_through_the_data_path_and_predict(tmp_path, monkeypatch, suffix):
    pixels = gradient()
    path = write(tmp_path / 'in' / f'gradient{suffix}', pixels)
    data = FacadesDataset(tmp_path / 'in', image_size=0, cache_dir='', progress=False)  # a left|right file
    left, right = to_float(data.pair_batch([0]))
    assert np.array_equal(np.concatenate([to_uint16(left), to_uint16(right)], 2)[0], pixels)
    identity = identity_checkpoint(tmp_path / 'identity.pth', monkeypatch, output_bits=16)
    predict_in_process(monkeypatch, identity, path, '--out', tmp_path / 'out')
    written = cv2.imread(str(tmp_path / 'out' / 'gradient.png'), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16  # 16 bits written, and every level back: not multiples of 257
    assert np.abs(cv2.cvtColor(written, cv2.COLOR_BGR2RGB).astype(int) - pixels).max() <= 2
    eight_bit = identity_checkpoint(tmp_path / 'eight.pth', monkeypatch, output_bits=8)
    predict_in_process(monkeypatch, eight_bit, path, '--out', tmp_path / 'out8', '--panels')
    assert cv2.imread(str(tmp_path / 'out8' / 'gradient.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint8


def test_a_run_on_16_bit_targets_writes_16_bit_predictions(tmp_path):
    pairs_16_bit(tmp_path / 'deep' / 'train', 4)
    pairs_16_bit(tmp_path / 'deep' / 'val', 2)
    result = run_script('train.py', *tiny_run_args(tmp_path / 'deep', tmp_path, num_epochs=1), cwd=tmp_path)
    assert ', 16-bit)' in result.stdout
    latest = tmp_path / 'checkpoints' / 'latest.pth'
    assert checkpoint.load(latest)['config']['output_bits'] == 16
    run_script('predict.py', latest, tmp_path / 'deep' / 'val' / 'A' / '1.png', '--out', tmp_path / 'out', cwd=tmp_path)
    assert cv2.imread(str(tmp_path / 'out' / '1.png'), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    run_script('export.py', latest, tmp_path / 'small.pth', cwd=tmp_path)
    assert checkpoint.load(tmp_path / 'small.pth')['config']['output_bits'] == 16


def test_psnr_of_16_bit_pictures_is_on_their_scale():
    target = gradient(16, 16)
    output = target.copy()
    output[0, 0, 0] += 100  # one level in 65535 off: an 8-bit copy would not see it
    mse = 100 ** 2 / target.size
    assert math.isclose(metrics.psnr(output, target), 10 * math.log10(65535 ** 2 / mse), rel_tol=1e-9)


def test_a_signed_or_float_tiff_is_one_line_naming_the_file(tmp_path):
    cv2.imwrite(str(tmp_path / 'signed.tif'), (np.arange(64, dtype=np.int16) - 32).reshape(8, 8))
    cv2.imwrite(str(tmp_path / 'float.tif'), np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8))
    for name, channels, words in (('signed.tif', 3, 'int16 pixels'), ('float.tif', 4, 'float32 pixels'),
                                  ('float.tif', 3, 'not a readable image')):
        with pytest.raises(DatasetError, match=words) as info:
            read_image(tmp_path / name, channels)
        assert str(tmp_path / name) in str(info.value) and '\n' not in str(info.value)
