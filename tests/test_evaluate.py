import json
import math

import cv2
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

import checkpoint
import metrics
import train
import training
from FCN_network import build_generator
from conftest import constant_colour_checkpoint, run_cli, run_main, run_script, save_generator, tiny_run_args, write_pairs
from facades_dataset import FacadesDataset, to_float, to_uint8

LABEL_KEYS = {'pixel_acc', 'class_acc', 'class_iou'}


@pytest.fixture(scope='module')
def runs(tiny_data, tiny_run, tmp_path_factory):
    """The tiny dataset and a checkpoint of each kind of run, trained once: 'skips' is the
    session's tiny_run, the others are trained for the module."""
    root = tmp_path_factory.mktemp('evaluate')
    checkpoints = {'skips': tiny_run / 'checkpoints' / 'latest.pth'}
    for name, settings in {'no_skips_btoa': {'skips': False, 'direction': 'BtoA'}, 'gan': {'gan': True}}.items():
        out = root / name
        out.mkdir()
        # trained on the CPU (fast at this size) in fp32, as evaluate.py scores; evaluate.py
        # itself takes CUDA when present
        run_main('train.py', *tiny_run_args(tiny_data, out, device='cpu', amp='off', **settings), cwd=out)
        checkpoints[name] = out / 'checkpoints' / 'latest.pth'
    return tiny_data, checkpoints


def evaluate(*args, cwd):
    """evaluate.py's main in this process; the tests of its errors run it as a user does."""
    return run_main('evaluate.py', *args, cwd=cwd)


def read_metrics(folder):
    return json.loads((folder / 'metrics.json').read_text())


def panel_shapes(folder):
    return sorted((path.stem, cv2.imread(str(path)).shape) for path in folder.glob('*.png'))


def test_scores_a_folder_and_writes_a_panel_per_image(runs, tmp_path):
    data, checkpoints = runs
    before = sorted(data.rglob('*'))
    result = evaluate(checkpoints['skips'], '--data_dir', data / 'val', cwd=tmp_path)
    out = tmp_path / 'eval_results' / 'latest_val'  # the default: checkpoint stem and folder name
    assert panel_shapes(out) == [(str(i), (32, 96, 3)) for i in range(1, 5)]  # input | target | output
    metrics = read_metrics(out)
    assert {'l1', 'psnr', 'ssim'} <= set(metrics) and not LABEL_KEYS & set(metrics)  # 'tiny' has no palette
    assert metrics['images'] == 4 and metrics['epoch'] == 2 and metrics['direction'] == 'AtoB'
    assert 0 < metrics['l1'] < 2 and 0 < metrics['psnr'] < 100 and -1 <= metrics['ssim'] <= 1
    assert 'l1' in result.stdout and 'ssim' in result.stdout
    assert sorted(data.rglob('*')) == before  # nothing written into the dataset


def test_the_split_comes_from_the_checkpoint(runs, tmp_path):
    data, checkpoints = runs
    evaluate(checkpoints['skips'], '--out', tmp_path / 'scores', cwd=tmp_path)
    metrics = read_metrics(tmp_path / 'scores')
    assert metrics['data'] == str(data / 'val') and metrics['images'] == 4
    result = run_cli('evaluate.py', checkpoints['skips'], '--split', 'test', cwd=tmp_path)
    assert failed_in_one_line(result) and 'test' in result.stderr.splitlines()[-1]


def test_label_map_scores_for_photo_to_label_runs(runs, tmp_path):
    data, checkpoints = runs
    evaluate(checkpoints['skips'], '--data_dir', data / 'val', '--palette', 'facades', '--out', tmp_path, cwd=tmp_path)
    metrics = read_metrics(tmp_path)
    assert metrics['palette'] == 'facades'
    assert all(0 <= metrics[key] <= 1 for key in LABEL_KEYS)


@pytest.mark.parametrize('name', ['no_skips_btoa', 'gan'])
def test_every_kind_of_run_loads_without_flags(runs, tmp_path, name):
    data, checkpoints = runs
    evaluate(checkpoints[name], '--data_dir', data / 'val', '--out', tmp_path, cwd=tmp_path)
    assert len(panel_shapes(tmp_path)) == 4 and 'l1' in read_metrics(tmp_path)


def test_unet256_checkpoint_loads_without_flags(tmp_path):
    """An untrained tiny-width UNet256, which needs 256x256 halves (training one would be slow)."""
    data = write_pairs(tmp_path / 'big' / 'val', 2, size=256)
    config = dict(train.config, model='unet256', width=2, image_size=256, dataset=str(data.parent))
    save_generator(tmp_path / 'unet256.pth', config, build_generator(config))
    evaluate(tmp_path / 'unet256.pth', cwd=tmp_path)
    out = tmp_path / 'eval_results' / 'unet256_val'
    assert panel_shapes(out) == [('1', (256, 768, 3)), ('2', (256, 768, 3))]
    assert read_metrics(out)['images'] == 2


@pytest.mark.parametrize('name', ['skips', 'no_skips_btoa'])
def test_l1_is_the_val_l1_that_training_logged(runs, tmp_path, name):
    """The same weights on the same images: evaluate.py's l1 is train.py's last val_l1."""
    data, checkpoints = runs
    evaluate(checkpoints[name], '--data_dir', data / 'val', '--out', tmp_path, cwd=tmp_path)
    logged = checkpoint.load(checkpoints[name])['history'][-1]['val_l1']
    assert read_metrics(tmp_path)['l1'] == pytest.approx(logged, rel=1e-5, abs=1e-7)


def ssim_by_definition(output, target):
    """SSIM of two RGB uint8 images as Wang et al. 2004 define it: an 11x11 Gaussian
    window (sigma 1.5), K1 0.01, K2 0.03, L 255, at every position where the window
    fits, averaged over positions, then over channels."""
    offsets = np.arange(11) - 5
    weights = np.outer(*2 * [np.exp(-offsets ** 2 / (2 * 1.5 ** 2))])
    weights /= weights.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for channel in range(3):
        x, y = (sliding_window_view(image[..., channel].astype(np.float64), (11, 11)) for image in (output, target))
        def mean(t):
            return (t * weights).sum((-1, -2))
        mx, my = mean(x), mean(y)
        vx, vy, cxy = mean(x * x) - mx ** 2, mean(y * y) - my ** 2, mean(x * y) - mx * my
        values.append((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean())
    return float(np.mean(values))


def psnr_by_definition(output, target):
    mse = np.mean((output.astype(np.float64) - target) ** 2)
    return 10 * math.log10(255 ** 2 / mse)


def test_psnr_and_ssim_match_computations_from_their_definitions(runs, tmp_path):
    """The run's network applied here to each val image, read with OpenCV: evaluate.py's
    psnr and ssim are the means of these, computed from their formulas."""
    data, checkpoints = runs
    evaluate(checkpoints['skips'], '--data_dir', data / 'val', '--out', tmp_path, cwd=tmp_path)
    generator, _ = checkpoint.load_generator(checkpoints['skips'])
    psnrs, ssims = [], []
    for path in sorted((data / 'val').glob('*.jpg')):
        pair = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        photo, target = pair[:, :32], pair[:, 32:]
        with torch.no_grad():
            output = generator(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 127.5 - 1)[0]
        output = ((output.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        psnrs.append(psnr_by_definition(output, target))
        ssims.append(ssim_by_definition(output, target))
    metrics = read_metrics(tmp_path)
    assert metrics['psnr'] == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert metrics['ssim'] == pytest.approx(np.mean(ssims), abs=1e-4)


def textured_pairs(folder, count=2):
    """PNG pairs (lossless): a dark texture on the left, a bright one on the right."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, count + 1):
        left = cv2.GaussianBlur(rng.integers(0, 100, (32, 32, 3), dtype=np.uint8), (5, 5), 1)
        right = cv2.GaussianBlur(rng.integers(150, 256, (32, 32, 3), dtype=np.uint8), (5, 5), 1)
        cv2.imwrite(str(folder / f'{i}.png'), cv2.cvtColor(np.concatenate([left, right], 1), cv2.COLOR_RGB2BGR))
    return folder


COLOUR = (230, 170, 250)  # what the hand-made generator outputs, RGB: near the bright right halves


@pytest.mark.parametrize('direction, side', [('AtoB', 'right'), ('BtoA', 'left')])
def test_scores_are_against_the_half_the_direction_names(tmp_path, direction, side):
    """An output known in advance, scored against the right halves for AtoB and the
    left ones for BtoA; the halves differ, so the other half would give other numbers."""
    data = textured_pairs(tmp_path / 'pairs')
    generator = constant_colour_checkpoint(tmp_path / 'constant.pth', COLOUR, direction=direction)
    evaluate(generator, '--data_dir', data, '--out', tmp_path / 'scores', cwd=tmp_path)
    output = np.broadcast_to(np.array(COLOUR, np.uint8), (32, 32, 3))
    pairs = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB) for path in sorted(data.glob('*.png'))]
    expected = {}
    for half, targets in (('left', [pair[:, :32] for pair in pairs]), ('right', [pair[:, 32:] for pair in pairs])):
        expected[half] = {'l1': np.mean([np.abs((output / 127.5 - 1) - (t / 127.5 - 1)).mean() for t in targets]),
                          'psnr': np.mean([psnr_by_definition(output, t) for t in targets]),
                          'ssim': np.mean([ssim_by_definition(output, t) for t in targets])}
    other = 'left' if side == 'right' else 'right'
    assert abs(expected[side]['l1'] - expected[other]['l1']) > 0.1  # swapping the halves would show
    metrics = read_metrics(tmp_path / 'scores')
    assert metrics['l1'] == pytest.approx(expected[side]['l1'], abs=1e-5)
    assert metrics['psnr'] == pytest.approx(expected[side]['psnr'], abs=1e-3)
    assert metrics['ssim'] == pytest.approx(expected[side]['ssim'], abs=1e-4)


def test_fcn_score_of_a_label_to_photo_run(runs, tmp_path):
    data, checkpoints = runs
    evaluate(checkpoints['no_skips_btoa'], '--data_dir', data / 'val', '--fcn_score', checkpoints['skips'],
             '--palette', 'facades', '--out', tmp_path, cwd=tmp_path)
    metrics = read_metrics(tmp_path)
    for key in ('fcn_score', 'fcn_score_real'):
        assert set(metrics[key]) == LABEL_KEYS and all(0 <= value <= 1 for value in metrics[key].values())
    assert not LABEL_KEYS & set(metrics)  # the outputs are photos, not label maps


# Label maps drawn in two facades colours exactly (metrics.FACADES: background is class 0,
# pillar class 10), beside "photos" of one red colour, whose nearest facades colour is deco's
BACKGROUND, PILLAR, PHOTO = (0, 0, 222), (254, 0, 0), (255, 160, 0)
PILLAR_COLUMNS = (8, 16, 24, 4)  # per pair, of 32: the last pair's share differs from the split's


def label_pairs(folder):
    """PNG pairs (lossless): a uniform PHOTO on the left, on the right a label map whose
    first PILLAR_COLUMNS columns are pillar and the rest background."""
    folder.mkdir(parents=True)
    for i, columns in enumerate(PILLAR_COLUMNS, 1):
        labels = np.full((32, 32, 3), BACKGROUND, np.uint8)
        labels[:, :columns] = PILLAR
        pair = np.concatenate([np.full((32, 32, 3), PHOTO, np.uint8), labels], 1)
        cv2.imwrite(str(folder / f'{i}.png'), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
    return folder


def label_shares(folder):
    """[(background's share, pillar's share) of each label map], read back from the files."""
    maps = [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[:, 32:] for path in sorted(folder.glob('*.png'))]
    return [tuple(float((labels == colour).all(-1).mean()) for colour in (BACKGROUND, PILLAR)) for labels in maps]


@pytest.mark.parametrize('batch_size', [1, 16])
def test_label_scores_count_every_image_at_any_batch_size(tmp_path, batch_size):
    """A photo -> label map generator that draws background everywhere, over label maps
    with different shares of pillar: pixel_acc is background's share of the whole split,
    class_acc the mean of background's 1 and pillar's 0, class_iou the mean of background's
    share (its hits over the union of both) and pillar's 0. At batch size 1 the last
    batch alone is the last image, whose share differs."""
    data = label_pairs(tmp_path / 'pairs')
    generator = constant_colour_checkpoint(tmp_path / 'background.pth', (1, 1, 222), direction='AtoB')
    evaluate(generator, '--data_dir', data, '--palette', 'facades', '--batch_size', batch_size, '--out', tmp_path,
             cwd=tmp_path)
    shares = label_shares(data)
    background = np.mean([share for share, _ in shares])
    assert abs(shares[-1][0] - background) > 0.1 and sum(shares[-1]) == 1
    assert {key: read_metrics(tmp_path)[key] for key in LABEL_KEYS} == \
        pytest.approx({'pixel_acc': background, 'class_acc': 0.5, 'class_iou': background / 2}, abs=1e-9)


def red_labeller(path):
    """A photo -> label map checkpoint made by hand: pillar (255, 0, 0) wherever its input
    is red (red channel at 255), background (0, 0, 255) where it has little red (below
    128). Its first block sums the red channel over each 4x4 window (ReLU: positive, at
    least 9, for red, 0 below 128); the last layer reads only that, through the skip, and
    saturates its tanh either way, borders included. Returns (path, the network)."""
    config = dict(train.config, model='fcn', width=4, skips=True, image_size=32, direction='AtoB')
    network = build_generator(config).eval()  # BatchNorm: running mean 0, var 1, scale 1, shift 0
    first, last = network.down[0][0], network.up[-1][0]
    with torch.no_grad():
        first.weight.zero_()
        first.weight[0, 0] = 1.0  # feature 0 of the first block <- the red channel
        last.weight.zero_()
        last.weight[config['width'], 0] = 5.0  # the skip's feature 0 -> red up ...
        last.weight[config['width'], 2] = -5.0  # ... and blue down
        last.bias.copy_(torch.tensor([-20.0, -20.0, 20.0]))
    return save_generator(path, config, network), network


def test_fcn_score_is_known_for_a_known_generator_and_labeller(tmp_path):
    """A label map -> photo generator that paints one colour with little red, and a labeller
    that calls red pillar and the rest background: the generated photos are labelled
    background everywhere and the real (red) photos pillar everywhere, each scored against
    the input label maps. So fcn_score is background's share of the label maps, and
    fcn_score_real pillar's; scored against the photos instead, every pixel would be
    deco and wrong. Four images in batches of 3 and 1."""
    data = label_pairs(tmp_path / 'pairs')
    generator = constant_colour_checkpoint(tmp_path / 'painter.pth', (10, 160, 40), direction='BtoA')
    labeller, network = red_labeller(tmp_path / 'labeller.pth')
    with torch.no_grad():  # the labeller does what is said of it, on both kinds of photo
        for colour, label in ((PHOTO, (255, 0, 0)), ((10, 160, 40), (0, 0, 255))):
            photo = torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 32, 32) / 127.5 - 1
            assert (to_uint8(network(photo)) == label).all(), colour
    evaluate(generator, '--data_dir', data, '--fcn_score', labeller, '--palette', 'facades', '--batch_size', 3,
             '--out', tmp_path, cwd=tmp_path)
    background, pillar = np.mean(label_shares(data), axis=0)
    assert abs(background - pillar) > 0.1
    metrics = read_metrics(tmp_path)
    assert metrics['fcn_score'] == pytest.approx({'pixel_acc': background, 'class_acc': 0.5,
                                                  'class_iou': background / 2}, abs=1e-9)
    assert metrics['fcn_score_real'] == pytest.approx({'pixel_acc': pillar, 'class_acc': 0.5,
                                                       'class_iou': pillar / 2}, abs=1e-9)


def test_training_score_is_the_fcn_score_and_l1_that_evaluate_writes(tmp_path):
    """training.score, the pass train.py validates with and scripts/gan_probe.py scores
    with, on the known generator and labeller above, in chunks of 3 and 1: its labeller's
    confusion is the known FCN-score (the generated photos labelled background, scored
    against the input label maps), and its L1 the painter's known distance to the photos,
    evaluate.py's l1."""
    data = label_pairs(tmp_path / 'pairs')
    painter = constant_colour_checkpoint(tmp_path / 'painter.pth', (10, 160, 40), direction='BtoA')
    labeller, network = red_labeller(tmp_path / 'labeller.pth')
    evaluate(painter, '--data_dir', data, '--fcn_score', labeller, '--palette', 'facades', '--out', tmp_path,
             cwd=tmp_path)
    generator, _ = checkpoint.load_generator(painter)
    scores = training.score(generator, FacadesDataset(data, 'BtoA', image_size=32, cache_dir=''), 3,
                            torch.device('cpu'), labeller=network, palette=metrics.FACADES)
    background, _ = np.mean(label_shares(data), axis=0)
    assert metrics.label_scores(scores['confusion']) == pytest.approx(
        {'pixel_acc': background, 'class_acc': 0.5, 'class_iou': background / 2}, abs=1e-9)
    distance = np.abs(np.subtract(PHOTO, (10, 160, 40))).mean() / 127.5
    assert scores['l1'] == pytest.approx(distance, abs=1e-5)
    assert scores['l1'] == pytest.approx(read_metrics(tmp_path)['l1'], rel=1e-6)


@pytest.mark.slow  # SIGKILL
def test_metrics_json_killed_half_written_keeps_its_previous_version(tmp_path):
    """SIGKILL with metrics.json half written: the complete version an earlier evaluation
    left is what it holds, and the half-written temporary beside it is hidden."""
    data = write_pairs(tmp_path / 'pairs', 2)
    generator = constant_colour_checkpoint(tmp_path / 'constant.pth', COLOUR)
    previous = b'{"from": "an earlier evaluation"}\n'
    (tmp_path / 'scores').mkdir()
    (tmp_path / 'scores' / 'metrics.json').write_bytes(previous)
    result = run_script('evaluate.py', generator, '--data_dir', data, '--out', tmp_path / 'scores', cwd=tmp_path,
                        check=False, env={'PIX2PIX_FAULT': 'kill_in_write@metrics.json'})
    assert result.returncode == -9, result.stderr
    assert (tmp_path / 'scores' / 'metrics.json').read_bytes() == previous
    temporary, = (tmp_path / 'scores').glob('.metrics.json.*.tmp')
    assert temporary.stat().st_size > 0  # half of the new version: killed mid-write


def failed_in_one_line(result):
    """Exit status 1 and a last stderr line 'error: ...' (progress bars may precede it), no traceback."""
    return result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith('error:') \
        and 'Traceback' not in result.stderr


@pytest.mark.parametrize('problem', ['missing checkpoint', 'not a checkpoint', 'missing data',
                                     'fcn_score on AtoB', 'fcn_score with a BtoA scorer'])
def test_problems_fail_in_one_line(runs, tmp_path, problem):
    data, checkpoints = runs
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    val = ['--data_dir', data / 'val']
    args = {'missing checkpoint': [tmp_path / 'nope.pth', *val],
            'not a checkpoint': [tmp_path / 'junk.pth', *val],
            'missing data': [checkpoints['skips'], '--data_dir', tmp_path / 'nowhere'],
            'fcn_score on AtoB': [checkpoints['skips'], *val, '--fcn_score', checkpoints['gan'],
                                  '--palette', 'facades'],
            'fcn_score with a BtoA scorer': [checkpoints['no_skips_btoa'], *val, '--fcn_score',
                                             checkpoints['no_skips_btoa'], '--palette', 'facades']}[problem]
    assert failed_in_one_line(run_cli('evaluate.py', *args, cwd=tmp_path))
    assert not (tmp_path / 'eval_results').exists()


def test_mirror_is_reported_beside_the_single_pass(runs, tmp_path):
    """Both numbers recomputed here from the checkpoint's generator: the plain
    keys stay the single pass, mirror_* is the mean with the mirrored pass."""
    data, checkpoints = runs
    evaluate(checkpoints['skips'], '--data_dir', data / 'val', '--mirror', '--palette', 'facades',
             '--device', 'cpu', '--out', tmp_path, cwd=tmp_path)
    metrics = read_metrics(tmp_path)
    generator, _ = checkpoint.load_generator(checkpoints['skips'])
    dataset = FacadesDataset(data / 'val', image_size=32, cache_dir='')
    input_image, target_image = to_float(dataset.pair_batch(range(len(dataset))))
    with torch.no_grad():
        single = generator(input_image)
        mirrored = (single + generator(input_image.flip(3)).flip(3)) / 2
    assert metrics['l1'] == pytest.approx((single - target_image).abs().mean().item(), abs=1e-6)
    assert metrics['mirror_l1'] == pytest.approx((mirrored - target_image).abs().mean().item(), abs=1e-6)
    assert abs(metrics['mirror_l1'] - metrics['l1']) > 1e-5
    assert {f'mirror_{key}' for key in LABEL_KEYS | {'psnr', 'ssim'}} <= set(metrics)


@pytest.mark.skipif(torch.cuda.is_available(), reason='CUDA is present here')
def test_a_device_this_machine_lacks_is_one_line(runs, tmp_path):
    data, checkpoints = runs
    result = run_cli('evaluate.py', checkpoints['skips'], '--data_dir', data / 'val', '--device', 'cuda',
                     cwd=tmp_path)
    assert failed_in_one_line(result) and 'CUDA is not available' in result.stderr


def test_export_keeps_the_weight_average_alone_and_scores_the_same(runs, tmp_path):
    data, checkpoints = runs
    full = checkpoint.load(checkpoints['skips'])
    run_main('export.py', checkpoints['skips'], tmp_path / 'small.pth', cwd=tmp_path)
    small = torch.load(tmp_path / 'small.pth', weights_only=True)
    assert sorted(small) == ['config', 'epoch', 'format', 'history', 'model', 'version']
    average = {name[len('module.'):]: value for name, value in full['ema'].items() if name.startswith('module.')}
    assert small['model'].keys() == average.keys() and checkpoint.has_average(full)
    assert all(torch.equal(small['model'][name], average[name]) for name in average)
    assert not all(torch.equal(full['model'][name], average[name]) for name in average)  # the average, not the weights
    # what inference needs, and the dataset by name: no path of the training machine
    assert small['config'] == {'model': 'fcn', 'width': 4, 'skips': True, 'upsample': 'transpose', 'input_channels': 3,
                               'output_channels': 3, 'output_bits': 8, 'direction': 'AtoB', 'image_size': 32,
                               'dataset': data.name}  # its folder's name, not its path
    scores = {}
    for name, path in (('full', checkpoints['skips']), ('small', tmp_path / 'small.pth')):
        evaluate(path, '--data_dir', data / 'val', '--out', tmp_path / name, cwd=tmp_path)
        scores[name] = {key: read_metrics(tmp_path / name)[key] for key in ('l1', 'psnr', 'ssim')}
    assert scores['small'] == scores['full']


def test_grid_and_fine_detail_are_those_of_the_output_panels(tmp_path):
    """An untrained transposed-convolution FCN (a lattice at init) on 64-px pairs: evaluate.py's
    grid, grid_target and hf_log_ratio equal metrics' functions applied to the output
    and target thirds of the panels it wrote (PNG, lossless), over every image."""
    data = write_pairs(tmp_path / 'val', 3, size=64)
    config = dict(train.config, model='fcn', width=4, image_size=64, dataset=str(tmp_path))
    torch.manual_seed(0)
    path = save_generator(tmp_path / 'random.pth', config, build_generator(config))
    evaluate(path, '--data_dir', data, '--out', tmp_path / 'out', '--batch_size', 2, cwd=tmp_path)
    panels = [cv2.cvtColor(cv2.imread(str(tmp_path / 'out' / f'{i}.png')), cv2.COLOR_BGR2RGB) for i in (1, 2, 3)]
    outputs, targets = np.stack([p[:, 128:] for p in panels]), np.stack([p[:, 64:128] for p in panels])
    scores = read_metrics(tmp_path / 'out')
    output_spectra, target_spectra = metrics.power_spectra(outputs), metrics.power_spectra(targets)
    assert scores['grid'] == pytest.approx(math.exp(metrics.grid_logs(output_spectra).mean()), rel=1e-9)
    assert scores['grid_target'] == pytest.approx(math.exp(metrics.grid_logs(target_spectra).mean()), rel=1e-9)
    assert scores['hf_log_ratio'] == pytest.approx(
        metrics.high_frequency_log_ratio(metrics.radial_power(output_spectra), metrics.radial_power(target_spectra)),
        abs=1e-9)
    assert scores['grid'] != pytest.approx(scores['grid_target'], rel=0.05)
