"""Tests for the ONNX export (export.py, onnx_generator.py) and predict.py with an
.onnx file: ONNX Runtime must give the pictures PyTorch gives, at any size.

Needs onnx and onnxruntime (requirements-onnx.txt); those tests skip without them,
except under CI=true, where .ci/run installs them. The one-line error when they
are missing is tested everywhere."""
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

import train
from conftest import run_cli, run_script, save_generator
from FCN_network import build_generator

SIZES = {'fcn': [(32, 48), (64, 16)], 'unet256': [(256, 256), (256, 512)]}  # (height, width): 3 images, then 2
INSTALL = 'pip install -r requirements-onnx.txt'


@pytest.fixture
def onnx_generator():
    """The module, once onnx and onnxruntime are there."""
    missing = [name for name in ('onnx', 'onnxruntime') if importlib.util.find_spec(name) is None]
    if missing:
        if os.environ.get('CI') == 'true':  # .ci/run installs them: missing there is a broken CI
            pytest.fail(f'{", ".join(missing)} not installed, and CI must run the ONNX tests')
        pytest.skip(f'{", ".join(missing)} not installed ({INSTALL})')
    import onnx_generator
    return onnx_generator


def tiny_generator(model='fcn', upsample='transpose', seed=0, **settings):
    """(generator in eval mode, config): random, with outputs spread over [-1, 1]. The
    paper's N(0, 0.02) init would leave them near 0, where a wrong export looks right,
    so He init; and BatchNorm statistics from two random batches, then moved, so
    that its running statistics (eval mode) are far from any batch's own."""
    torch.manual_seed(seed)
    config = dict(train.config, model=model, width=4 if model == 'fcn' else 2, skips=True, upsample=upsample,
                  image_size=32 if model == 'fcn' else 256, dataset='/data/tiny', **settings)
    generator = build_generator(config)
    norms = [layer for layer in generator.modules() if isinstance(layer, nn.BatchNorm2d)]
    for layer in generator.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')
    for layer in norms:
        layer.momentum = None  # the plain mean of the batches below
    side = SIZES[model][0][0]
    with torch.no_grad():
        generator.train()
        for _ in range(2):
            generator(torch.rand(2, 3, side, side) * 2 - 1)
        for layer in norms:
            layer.running_mean.add_(0.5 * layer.running_var.sqrt() * torch.randn_like(layer.running_mean))
            layer.running_var.mul_(torch.empty_like(layer.running_var).uniform_(0.5, 2))
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.normal_(0, 0.2)
    return generator.eval(), config


def pytorch(generator, images):
    with torch.no_grad():
        return generator(images)


@pytest.mark.parametrize('model, upsample', [('fcn', 'transpose'), ('fcn', 'nearest'), ('fcn', 'bilinear'),
                                             ('fcn', 'subpixel'), ('fcn', 'transpose_blur'), ('unet256', 'transpose_blur'),
                                             ('unet256', 'transpose'), ('unet256', 'subpixel')])
def test_onnx_runtime_gives_pytorchs_output_at_two_sizes(onnx_generator, tmp_path, model, upsample):
    generator, config = tiny_generator(model, upsample)
    onnx_generator.export(generator, config, 7, tmp_path / 'model.onnx')
    runtime = onnx_generator.OnnxGenerator(tmp_path / 'model.onnx')
    assert runtime.config == onnx_generator.settings_of(config) and runtime.epoch == 7
    assert runtime.config['upsample'] == upsample and runtime.config['dataset'] == 'tiny'
    for batch, (height, width) in zip((3, 2), SIZES[model]):  # five images, neither size the traced one
        images = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(height + width)) * 2 - 1
        expected = pytorch(generator, images)
        assert expected.std() > 0.1 and (expected.abs() < 0.99).float().mean() > 0.5  # a picture, not a constant
        output = runtime(images)
        assert output.shape == expected.shape
        assert (output - expected).abs().max() <= 1e-4, (batch, height, width)


def test_export_py_writes_the_weight_average(onnx_generator, tmp_path):
    """A checkpoint whose average differs from its trained weights: the .onnx holds
    the average, as the .pth export and evaluate.py use it."""
    trained, config = tiny_generator(seed=1)
    average, _ = tiny_generator(seed=2)
    path = save_generator(tmp_path / 'run.pth', config, trained)
    state = torch.load(path, weights_only=True)
    state['ema'] = {'n_averaged': torch.tensor(5), **{f'module.{name}': value
                                                      for name, value in average.state_dict().items()}}
    torch.save(state, path)
    result = run_script('export.py', path, tmp_path / 'out' / 'model.onnx', cwd=tmp_path)
    assert 'the weight average' in result.stdout
    runtime = onnx_generator.OnnxGenerator(tmp_path / 'out' / 'model.onnx')
    images = torch.rand(2, 3, 48, 32) * 2 - 1
    assert (runtime(images) - pytorch(average, images)).abs().max() <= 1e-4
    assert (runtime(images) - pytorch(trained, images)).abs().max() > 0.1
    assert runtime.config == {'model': 'fcn', 'width': 4, 'skips': True, 'upsample': 'transpose', 'input_channels': 3,
                              'output_channels': 3, 'output_bits': 8, 'direction': train.config['direction'],
                              'image_size': 32, 'dataset': 'tiny'}


def test_predict_with_the_onnx_file_writes_the_pths_pictures(onnx_generator, tmp_path):
    """The same images through predict.py with the .pth and with its .onnx: each
    pixel within one level (float rounding), at the inputs' own odd sizes."""
    generator, config = tiny_generator()
    pth = save_generator(tmp_path / 'model.pth', config, generator)
    run_script('export.py', pth, tmp_path / 'model.onnx', cwd=tmp_path)
    rng = np.random.default_rng(3)
    shapes = {'odd.png': (50, 37, 3), 'square.png': (32, 32, 3)}
    (tmp_path / 'photos').mkdir()
    for name, shape in shapes.items():
        cv2.imwrite(str(tmp_path / 'photos' / name), rng.integers(0, 256, shape, np.uint8))
    for model in ('model.pth', 'model.onnx'):
        result = run_script('predict.py', tmp_path / model, tmp_path / 'photos', '--out', tmp_path / f'out_{model}',
                            cwd=tmp_path)
        assert 'wrote 2 of 2' in result.stdout
    for name, shape in shapes.items():
        from_pth = cv2.imread(str(tmp_path / 'out_model.pth' / name)).astype(int)
        from_onnx = cv2.imread(str(tmp_path / 'out_model.onnx' / name)).astype(int)
        assert from_pth.shape == shape and from_pth.std() > 20  # a picture, not a constant
        assert np.abs(from_onnx - from_pth).max() <= 1, name


@pytest.mark.parametrize('script', ['predict.py', 'export.py'])
def test_without_the_onnx_packages_one_line_says_what_to_install(tmp_path, script):
    """onnx and onnxruntime made unimportable (a package that raises ImportError
    ahead of them on the path): one line, no traceback."""
    for name in ('onnx', 'onnxruntime'):
        (tmp_path / 'blocked' / name).mkdir(parents=True)
        (tmp_path / 'blocked' / name / '__init__.py').write_text('raise ImportError("blocked by the test")\n')
    generator, config = tiny_generator()
    pth = save_generator(tmp_path / 'model.pth', config, generator)
    cv2.imwrite(str(tmp_path / 'photo.png'), np.zeros((32, 32, 3), np.uint8))
    (tmp_path / 'model.onnx').write_bytes(b'')
    args = [tmp_path / 'model.onnx', tmp_path / 'photo.png'] if script == 'predict.py' else [pth, tmp_path / 'x.onnx']
    result = run_script(script, *args, cwd=tmp_path, check=False, env={'PYTHONPATH': str(tmp_path / 'blocked')})
    assert result.returncode == 1
    assert result.stderr.startswith('error: ') and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.strip().endswith(INSTALL)


@pytest.mark.parametrize('bad', ['missing', 'empty', 'foreign'])
def test_a_bad_onnx_file_is_one_line(onnx_generator, tmp_path, bad):
    """Missing, not ONNX, or ONNX without a run's settings (not written by export.py)."""
    path = tmp_path / 'model.onnx'
    if bad == 'empty':
        path.write_bytes(b'')
    if bad == 'foreign':
        torch.onnx.export(nn.Conv2d(3, 3, 1), (torch.zeros(1, 3, 8, 8),), path, dynamo=False, input_names=['input'])
    cv2.imwrite(str(tmp_path / 'photo.png'), np.zeros((32, 32, 3), np.uint8))
    result = run_cli('predict.py', path, tmp_path / 'photo.png', cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith('error: ') and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(path) in result.stderr
    expected = {'missing': 'no such ONNX file', 'empty': 'not a readable ONNX file',
                'foreign': 'python export.py CHECKPOINT model.onnx'}[bad]
    assert expected in result.stderr


def test_the_settings_are_plain_json(onnx_generator, tmp_path):
    """Any ONNX tool can read them: the metadata entry 'pix2pix' is JSON."""
    import onnx
    generator, config = tiny_generator()
    onnx_generator.export(generator, config, 3, tmp_path / 'model.onnx')
    props = {prop.key: prop.value for prop in onnx.load(str(tmp_path / 'model.onnx')).metadata_props}
    assert json.loads(props['pix2pix']) == {'epoch': 3, 'config': onnx_generator.settings_of(config)}
