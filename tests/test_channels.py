"""Channels (#28): input_channels and output_channels of 1 (grey), 3 (RGB) or 4 (RGBA),
through the data path, the networks, training, panels, evaluate.py, predict.py and
ONNX. The expected values are computed here from the files' own pixels."""
import importlib.util
import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import checkpoint
import train
import visualize
from conftest import make_pair, run_script, save_generator, tiny_run_args
from facades_dataset import FacadesDataset, to_float
from images import read_image
from pairs import DatasetError
from FCN_network import build_discriminator, build_generator


def luma(rgb):
    """ITU-R 601 grey of RGB uint8, rounded: what a 1-channel side reads from a colour file."""
    return np.round(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)


def write_rgb(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def colour_pairs(root, count=4, size=32):
    """root/A and root/B holding the same colour PNGs: a colorizer's data when A is read grey."""
    rng = np.random.default_rng(0)
    photos = [make_pair(rng, size)[:, :size] for _ in range(count)]  # the left halves: random colours
    for side in 'AB':
        (root / side).mkdir(parents=True, exist_ok=True)
        for i, photo in enumerate(photos, 1):
            write_rgb(root / side / f'{i}.png', photo)
    return photos


def test_a_colour_file_read_for_one_channel_is_its_luma(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (8, 16, 3), np.uint8)
    grey = read_image(write_rgb(tmp_path / 'colour.png', rgb), 1)
    assert grey.shape == (8, 16, 1) and grey.dtype == np.uint8
    assert np.abs(grey[..., 0].astype(int) - luma(rgb)).max() <= 1  # OpenCV rounds in fixed point
    levels = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (8, 1))  # a grey file stays itself
    cv2.imwrite(str(tmp_path / 'grey.png'), levels)
    assert np.array_equal(read_image(tmp_path / 'grey.png', 1)[..., 0], levels)


def test_four_channels_need_alpha_and_keep_it(tmp_path):
    bgra = np.zeros((8, 16, 4), np.uint8)
    bgra[...] = (30, 90, 200, 0)  # RGB (200, 90, 30), as OpenCV writes BGR
    bgra[..., 3] = np.arange(0, 256, 16, dtype=np.uint8)  # alpha varies along x
    cv2.imwrite(str(tmp_path / 'rgba.png'), bgra)
    rgba = read_image(tmp_path / 'rgba.png', 4)
    assert rgba.shape == (8, 16, 4) and (rgba[..., :3] == (200, 90, 30)).all()
    assert np.array_equal(rgba[..., 3], bgra[..., 3])
    assert read_image(tmp_path / 'rgba.png', 1)[0, 0, 0] == luma(np.array([200, 90, 30], np.uint8))
    for name, pixels in (('rgb.png', np.zeros((8, 16, 3), np.uint8)), ('grey.png', np.zeros((8, 16), np.uint8)),
                         ('photo.jpg', np.zeros((8, 16, 3), np.uint8))):
        cv2.imwrite(str(tmp_path / name), pixels)
        with pytest.raises(DatasetError, match='no alpha') as info:
            read_image(tmp_path / name, 4)
        assert str(tmp_path / name) in str(info.value) and '\n' not in str(info.value)


@pytest.mark.parametrize('direction', ['AtoB', 'BtoA'])
@pytest.mark.parametrize('augment', [False, True])
@pytest.mark.parametrize('cache', [True, False])
def test_a_grey_input_is_the_luma_of_its_colour_target(tmp_path, direction, augment, cache):
    """A/ and B/ hold the same colour photos, the input read grey: after any crop and
    mirroring the input must be the luma of the target, pixel for pixel."""
    photos = colour_pairs(tmp_path / 'data')
    data = FacadesDataset(tmp_path / 'data', direction, augment=augment, image_size=32, progress=False,
                          cache_dir=tmp_path / 'cache' if cache else '', channels=(1, 3))
    assert data.pixels.shape[-1] == 3 and data.bits == 8  # the grey side stored with two zero channels added
    generator = torch.Generator().manual_seed(0) if augment else None
    input_image, target_image = to_float(data.pair_batch(range(4), generator), channels=data.channels)
    assert input_image.shape == (4, 1, 32, 32) and target_image.shape == (4, 3, 32, 32)
    grey = ((input_image[:, 0] + 1) * 127.5).round().numpy().astype(int)
    colour = ((target_image + 1) * 127.5).round().permute(0, 2, 3, 1).numpy().astype(np.uint8)
    assert all(np.abs(grey[i] - luma(colour[i])).max() <= 1 for i in range(4))
    if not augment:  # the centre crops: the photos themselves, in order
        assert all(np.array_equal(colour[i], photos[i]) for i in range(4))


def test_each_channel_setting_has_a_cache_of_its_own(tmp_path):
    """The same files read at other channel counts are other pixels: a run must not map the
    cache of an earlier run that read them otherwise."""
    colour_pairs(tmp_path / 'data', count=2)
    rgb = FacadesDataset(tmp_path / 'data', image_size=32, cache_dir=tmp_path / 'cache', progress=False)
    assert rgb.pixels[:, :, :32, 1:].any()
    grey = FacadesDataset(tmp_path / 'data', image_size=32, cache_dir=tmp_path / 'cache', progress=False,
                          channels=(1, 3))
    assert grey.cache_path != rgb.cache_path and (grey.pixels[:, :, :32, 1:] == 0).all()  # two zero channels added


def test_a_one_channel_target_and_a_four_channel_input(tmp_path):
    """RGBA inputs in A/, grey targets in B/: each side as its files hold it."""
    rng = np.random.default_rng(2)
    rgba = [rng.integers(0, 256, (16, 16, 4), np.uint8) for _ in range(2)]
    for side in 'AB':
        (tmp_path / side).mkdir()
    for i, pixels in enumerate(rgba, 1):
        cv2.imwrite(str(tmp_path / 'A' / f'{i}.png'), cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA))
        cv2.imwrite(str(tmp_path / 'B' / f'{i}.png'), pixels[..., 0])
    data = FacadesDataset(tmp_path, image_size=16, cache_dir=tmp_path / 'cache', progress=False, channels=(4, 1))
    input_image, target_image = to_float(data.pair_batch([0, 1]), channels=data.channels)
    assert input_image.shape == (2, 4, 16, 16) and target_image.shape == (2, 1, 16, 16)
    for i, pixels in enumerate(rgba):
        expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 127.5 - 1
        assert (input_image[i] - expected).abs().max() < 1e-6 and (target_image[i, 0] - expected[0]).abs().max() < 1e-6


def test_a_file_without_alpha_for_a_four_channel_side_names_the_file(tmp_path):
    colour_pairs(tmp_path / 'data', count=2)
    with pytest.raises(DatasetError, match='no alpha') as info:
        FacadesDataset(tmp_path / 'data', image_size=32, cache_dir='', progress=False, channels=(3, 4))
    assert str(tmp_path / 'data' / 'B' / '1.png') in str(info.value) and '\n' not in str(info.value)


@pytest.mark.parametrize('model, side', [('fcn', 32), ('unet256', 256)])
@pytest.mark.parametrize('channels', [(1, 3), (3, 1), (4, 1), (1, 1)])
def test_generators_and_the_discriminator_take_the_channels(model, side, channels):
    config = dict(train.config, model=model, width=2, input_channels=channels[0], output_channels=channels[1],
                  d_width=4, d_layers=2)
    generator = build_generator(config).eval()
    images = torch.rand(1, channels[0], side, side) * 2 - 1
    with torch.no_grad():
        output = generator(images)
        scores = build_discriminator(config)(images, output)
    assert output.shape == (1, channels[1], side, side) and scores.shape[:2] == (1, 1)


def test_old_checkpoints_load_as_rgb_to_rgb(tmp_path):
    config = dict(train.config, model='fcn', width=4, image_size=32)
    for name in ('input_channels', 'output_channels'):
        del config[name]
    path = save_generator(tmp_path / 'old.pth', config, build_generator(config))
    generator, state = checkpoint.load_generator(path)
    assert (state['config']['input_channels'], state['config']['output_channels'], state['config']['output_bits']) \
        == (3, 3, 8)
    assert generator.down[0][0].in_channels == 3 and generator.up[-1][0].out_channels == 3


def test_panels_show_grey_as_grey_and_rgba_as_its_rgb():
    grey = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    rgba = torch.rand(1, 4, 4, 4) * 2 - 1
    (panel,) = visualize.make_panels(grey, rgba)
    assert panel.shape == (4, 8, 3)
    expected_grey = ((grey[0, 0] + 1) * 127.5).round().numpy()
    assert all(np.array_equal(panel[:, :4, c], expected_grey) for c in range(3))
    assert np.array_equal(panel[:, 4:], ((rgba[0, :3] + 1) * 127.5).round().permute(1, 2, 0).numpy())


@pytest.mark.parametrize('channels', [1, 3, 4])
def test_pngs_keep_their_channels(channels):
    pixels = np.random.default_rng(channels).integers(0, 256, (4, 6, channels), np.uint8)
    decoded = cv2.imdecode(np.frombuffer(visualize.encode_png(pixels), np.uint8), cv2.IMREAD_UNCHANGED)
    expected = pixels[..., 0] if channels == 1 else pixels[..., [2, 1, 0, 3][:channels]]  # OpenCV is BGR(A)
    assert np.array_equal(decoded, expected)


def test_bad_channel_settings_are_one_line(tmp_path):
    result = run_script('train.py', '--input_channels=2', cwd=tmp_path, check=False)
    assert result.returncode == 1 and result.stderr.strip() == 'error: --input_channels=2: expected one of 1, 3, 4'


@pytest.fixture(scope='module')
def grey_run(tmp_path_factory):
    """A grey -> grey GAN run on colour files (both sides converted) and its checkpoint."""
    out = tmp_path_factory.mktemp('grey')
    for split, count in (('train', 4), ('val', 2)):
        colour_pairs(out / 'facades_grey' / split, count)
    run_script('train.py', *tiny_run_args(out / 'facades_grey', out, input_channels=1, output_channels=1, gan=True,
                                          d_width=4, d_layers=1, amp='off'), cwd=out)
    return out


def test_a_grey_run_trains_saves_its_channels_and_shows_grey_panels(grey_run):
    state = checkpoint.load(grey_run / 'checkpoints' / 'latest.pth')
    assert (state['config']['input_channels'], state['config']['output_channels'], state['config']['output_bits']) \
        == (1, 1, 8)
    assert state['discriminator']['net.0.weight'].shape[1] == 2  # input and output, one channel each
    panels = sorted((grey_run / 'val_results' / 'epoch_2').glob('*.png'))
    assert len(panels) == 2 and (grey_run / 'val_results' / 'index.html').is_file()
    for path in panels:
        panel = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert panel.shape == (32, 96, 3) and (panel == panel[..., :1]).all()  # grey columns: B = G = R


def test_predict_writes_one_channel_pngs_of_the_grey_of_colour_inputs(grey_run, tmp_path):
    """A colour photo given to a grey network is read as its luma: the output equals that
    of the grey file, and it is written as a 1-channel PNG."""
    photo = np.random.default_rng(5).integers(0, 256, (32, 32, 3), np.uint8)
    (tmp_path / 'in').mkdir()
    write_rgb(tmp_path / 'in' / 'colour.png', photo)
    cv2.imwrite(str(tmp_path / 'in' / 'grey.png'), read_image(tmp_path / 'in' / 'colour.png', 1))
    run_script('predict.py', grey_run / 'checkpoints' / 'latest.pth', tmp_path / 'in', '--out', tmp_path / 'out',
               cwd=tmp_path)
    outputs = {name: cv2.imread(str(tmp_path / 'out' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
               for name in ('colour', 'grey')}
    assert outputs['colour'].shape == (32, 32) and outputs['colour'].dtype == np.uint8
    assert np.array_equal(outputs['colour'], outputs['grey'])
    generator, _ = checkpoint.load_generator(grey_run / 'checkpoints' / 'latest.pth')
    with torch.no_grad():
        expected = generator(torch.from_numpy(luma(photo)).float()[None, None] / 127.5 - 1)[0, 0]
    assert np.abs(outputs['colour'] - ((expected.clamp(-1, 1) + 1) * 127.5).round().numpy()).max() <= 1


def test_evaluate_says_the_label_scores_do_not_apply(grey_run, tmp_path):
    """The dataset's name says facades, so a 3-channel AtoB run would get pixel_acc; a grey
    network gets a note instead, and --fcn_score one line."""
    result = run_script('evaluate.py', grey_run / 'checkpoints' / 'latest.pth', '--out', tmp_path / 'eval',
                        cwd=grey_run)
    scores = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
    assert 'pixel_acc' not in scores and scores['psnr'] > 0 and scores['palette'] == 'facades'
    assert scores['notes'] == ['the label scores (pixel_acc, class_acc, class_iou) need RGB label maps; this '
                               'network writes 1-channel images, so they do not apply']
    assert 'note: the label scores' in result.stdout
    panel = cv2.imread(str(next((tmp_path / 'eval').glob('*.png'))), cv2.IMREAD_UNCHANGED)
    assert panel.shape == (32, 96, 3)


@pytest.mark.parametrize('run, labeller, words', [
    ((1, 3), (3, 3), 'reads 1-channel inputs'),                 # grey label maps: nothing to score against
    ((3, 1), (3, 3), 'maps 3 to 3 channels'),                   # grey photos, a labeller of colour ones
    ((3, 3), (3, 1), 'maps 3 to 1 channels')])                  # a labeller that writes grey
def test_the_fcn_score_needs_channels_that_fit(tmp_path, run, labeller, words):
    import evaluate
    from errors import UserError
    configs = [dict(train.config, model='fcn', width=4, image_size=32, direction=direction, input_channels=reads,
                    output_channels=writes) for direction, (reads, writes) in (('BtoA', run), ('AtoB', labeller))]
    path = save_generator(tmp_path / 'labeller.pth', configs[1], build_generator(configs[1]))
    with pytest.raises(UserError, match=words) as info:
        evaluate.load_segmenter(path, configs[0], evaluate.metrics.FACADES, 'cpu')
    assert '\n' not in str(info.value)


def test_onnx_of_a_grey_to_colour_network(tmp_path):
    """Exported with a 1-channel input, it gives PyTorch's output; predict.py with the .onnx
    writes what it writes with the .pth."""
    if any(importlib.util.find_spec(name) is None for name in ('onnx', 'onnxruntime')):
        pytest.skip('onnx and onnxruntime not installed (pip install -r requirements-onnx.txt)')
    import onnx_generator
    torch.manual_seed(0)
    config = dict(train.config, model='fcn', width=4, image_size=32, dataset='tiny', input_channels=1,
                  output_channels=3)
    generator = build_generator(config)
    for layer in generator.modules():  # spread outputs: the paper's init leaves them near 0
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')
    pth = save_generator(tmp_path / 'model.pth', config, generator.eval())
    run_script('export.py', pth, tmp_path / 'model.onnx', cwd=tmp_path)
    runtime = onnx_generator.OnnxGenerator(tmp_path / 'model.onnx')
    assert (runtime.config['input_channels'], runtime.config['output_channels']) == (1, 3)
    images = torch.rand(2, 1, 48, 32) * 2 - 1
    with torch.no_grad():
        expected = generator(images)
    assert expected.std() > 0.1 and (runtime(images) - expected).abs().max() <= 1e-4
    (tmp_path / 'in').mkdir()
    write_rgb(tmp_path / 'in' / 'photo.png', np.random.default_rng(6).integers(0, 256, (40, 24, 3), np.uint8))
    for model in ('model.pth', 'model.onnx'):
        run_script('predict.py', tmp_path / model, tmp_path / 'in', '--out', tmp_path / f'out_{model}',
                   cwd=tmp_path)
    from_pth, from_onnx = (cv2.imread(str(tmp_path / f'out_{model}' / 'photo.png'), cv2.IMREAD_UNCHANGED).astype(int)
                           for model in ('model.pth', 'model.onnx'))
    assert from_pth.shape == (40, 24, 3) and np.abs(from_onnx - from_pth).max() <= 1
