"""Tests for predict.py: a checkpoint from a tiny training run applied to
unpaired images of odd sizes, bad files among them."""
import re

import cv2
import numpy as np
import pytest
import torch

import checkpoint
from conftest import constant_colour_checkpoint, run_cli, run_main, tiny_run_args

SIZES = {'wide': (30, 40), 'square': (64, 64), 'tall': (50, 17)}  # name: (height, width)


@pytest.fixture(scope='module')
def checkpoint_path(tiny_run):
    """A network trained on 32x32 squares (the session's tiny run): predict resizes every input to that."""
    return tiny_run / 'checkpoints' / 'latest.pth'


@pytest.fixture(scope='module')
def native_checkpoint(tiny_data, tmp_path_factory):
    """Trained with image_size 0 (one epoch on the tiny set): predict rounds each side to a
    multiple of 16 instead."""
    out = tmp_path_factory.mktemp('run')
    run_main('train.py', *tiny_run_args(tiny_data, out, num_epochs=1, image_size=0), cwd=out)
    return out / 'checkpoints' / 'latest.pth'


def predict(*args, cwd):
    """predict.py's main in this process; the tests of its errors run it as a user does."""
    return run_main('predict.py', *args, cwd=cwd)


@pytest.fixture
def photos(tmp_path):
    """A folder of random images of the SIZES, as PNG and JPEG."""
    folder = tmp_path / 'photos'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (name, shape) in enumerate(SIZES.items()):
        cv2.imwrite(str(folder / f'{name}.{"png" if i % 2 else "jpg"}'), rng.integers(0, 256, (*shape, 3), np.uint8))
    return folder


def stderr_lines(result, text):
    """Lines of stderr that mention text; the progress bar redraws with \\r."""
    return [line for line in re.split(r'[\r\n]', result.stderr) if text in line]


@pytest.mark.parametrize('trained', ['checkpoint_path', 'native_checkpoint'])
def test_outputs_keep_the_input_sizes(trained, photos, tmp_path, request):
    result = predict(request.getfixturevalue(trained), photos, '--out', tmp_path / 'out', cwd=tmp_path)
    for name, shape in SIZES.items():
        output = cv2.imread(str(tmp_path / 'out' / f'{name}.png'))
        assert output.shape == (*shape, 3), name
    assert 'wrote 3 of 3' in result.stdout


def read_rgb_png(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_output_is_the_networks_output(checkpoint_path, tmp_path):
    """An input of the training size needs no resizing: the output file holds what
    the network computes on it, here called directly. The network answers the
    colours in the other channel order differently, so a swap would show."""
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'photo.png'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    predict(checkpoint_path, tmp_path / 'photo.png', '--out', tmp_path / 'out', cwd=tmp_path)
    generator, _ = checkpoint.load_generator(checkpoint_path)

    def network(rgb):
        with torch.no_grad():
            output = generator(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1)[0]
        return ((output.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    expected = network(image)
    assert np.abs(network(image[..., ::-1]) - expected).mean() > 2  # the network sees the channel order
    output = read_rgb_png(tmp_path / 'out' / 'photo.png')
    assert np.abs(output - expected).max() <= 1  # float rounding at most


def test_a_known_colour_comes_back_at_every_input_size(photos, tmp_path):
    """A generator that draws one colour whatever it is given: every output pixel,
    at each input's own size, is that colour, in RGB order."""
    colour = (230, 120, 20)
    constant = constant_colour_checkpoint(tmp_path / 'constant.pth', colour)
    predict(constant, photos, '--out', tmp_path / 'out', cwd=tmp_path)
    for name, shape in SIZES.items():
        output = read_rgb_png(tmp_path / 'out' / f'{name}.png')
        assert output.shape == (*shape, 3) and (output == colour).all(), name


def test_panels_show_the_input_beside_the_output(checkpoint_path, photos, tmp_path):
    predict(checkpoint_path, photos, '--panels', cwd=tmp_path)  # default out: predictions/
    for name, (height, width) in SIZES.items():
        panel = cv2.imread(str(tmp_path / 'predictions' / f'{name}.png'))
        assert panel.shape == (height, 2 * width, 3), name
    square = cv2.imread(str(photos / 'square.png'))  # PNG: lossless, so the input half is exact
    assert np.array_equal(cv2.imread(str(tmp_path / 'predictions' / 'square.png'))[:, :64], square)


def test_a_single_file_and_shared_names(checkpoint_path, photos, tmp_path):
    predict(checkpoint_path, photos / 'tall.jpg', '--out', tmp_path / 'one', cwd=tmp_path)
    assert [path.name for path in (tmp_path / 'one').iterdir()] == ['tall.png']
    cv2.imwrite(str(photos / 'wide.png'), np.zeros((8, 8, 3), np.uint8))  # beside wide.jpg
    predict(checkpoint_path, photos, '--out', tmp_path / 'all', cwd=tmp_path)
    names = sorted(path.name for path in (tmp_path / 'all').iterdir())
    assert names == ['square.png', 'tall.png', 'wide.jpg.png', 'wide.png.png']


def test_bad_files_are_reported_and_skipped(checkpoint_path, photos, tmp_path):
    (photos / 'notes.jpg').write_text('not an image')
    (photos / 'empty.png').write_bytes(b'')
    jpeg = cv2.imencode('.jpg', np.full((40, 40, 3), 128, np.uint8))[1].tobytes()
    (photos / 'cut.jpg').write_bytes(jpeg[:len(jpeg) // 2])
    result = predict(checkpoint_path, photos, '--out', tmp_path / 'out', cwd=tmp_path)
    for name in ('notes.jpg', 'empty.png', 'cut.jpg'):
        assert len(stderr_lines(result, name)) == 1, result.stderr
    assert sorted(path.name for path in (tmp_path / 'out').iterdir()) == ['square.png', 'tall.png', 'wide.png']
    assert 'Traceback' not in result.stderr


def test_nothing_readable_is_an_error(checkpoint_path, tmp_path):
    (tmp_path / 'bad.jpg').write_text('not an image')
    result = run_cli('predict.py', checkpoint_path, tmp_path / 'bad.jpg', cwd=tmp_path)
    assert result.returncode != 0
    assert len(stderr_lines(result, 'bad.jpg')) == 1
    assert result.stderr.strip().splitlines()[-1].startswith('error: ')


@pytest.mark.parametrize('bad', ['missing.pth', 'empty.pth'])
def test_a_bad_checkpoint_is_one_line(photos, tmp_path, bad):
    (tmp_path / 'empty.pth').write_bytes(b'')
    result = run_cli('predict.py', tmp_path / bad, photos, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith('error: ') and len(result.stderr.strip().splitlines()) == 1
    assert bad in result.stderr


def test_mirror_and_device_flags(checkpoint_path, tmp_path):
    """--mirror writes the mean of the output and the mirrored output of the mirrored
    input (recomputed here); --device takes train.py's values."""
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'in.png'), image)
    for flag in ('', '--mirror'):
        predict(checkpoint_path, tmp_path / 'in.png', '--out', tmp_path / f'out{flag}', '--device', 'cpu',
                *([flag] if flag else []), cwd=tmp_path)
    generator, _ = checkpoint.load_generator(checkpoint_path)
    batch = torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        single = generator(batch)
        mirrored = (single + generator(batch.flip(3)).flip(3)) / 2
    for flag, output in (('', single), ('--mirror', mirrored)):
        expected = ((output[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.uint8)
        written = cv2.cvtColor(cv2.imread(str(tmp_path / f'out{flag}' / 'in.png')), cv2.COLOR_BGR2RGB)
        assert np.abs(written.astype(int) - expected).max() <= 1, flag
    if not torch.cuda.is_available():
        result = run_cli('predict.py', checkpoint_path, tmp_path / 'in.png', '--device', 'cuda', cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.strip() == 'error: --device=cuda: CUDA is not available ' \
            'on this machine'


@pytest.mark.parametrize('direction, side', [('AtoB', 'A'), ('BtoA', 'B')])
def test_a_folder_of_a_and_b_gives_the_inputs_of_the_direction(tmp_path, direction, side):
    """A dataset folder of one's own: the inputs are A/ for an AtoB network, B/ for
    BtoA (the shapes of the outputs show which folder was read)."""
    shapes = {'A': {'1': (20, 30), '2': (24, 16)}, 'B': {'1': (40, 10), '2': (8, 8)}}
    for folder, images in shapes.items():
        (tmp_path / 'mine' / folder).mkdir(parents=True)
        for name, shape in images.items():
            cv2.imwrite(str(tmp_path / 'mine' / folder / f'{name}.{"png" if folder == "A" else "jpg"}'),
                        np.zeros((*shape, 3), np.uint8))
    constant = constant_colour_checkpoint(tmp_path / 'constant.pth', (10, 200, 30), direction=direction)
    result = predict(constant, tmp_path / 'mine', '--out', tmp_path / 'out', cwd=tmp_path)
    assert 'wrote 2 of 2' in result.stdout
    for name, shape in shapes[side].items():
        assert cv2.imread(str(tmp_path / 'out' / f'{name}.png')).shape == (*shape, 3)
