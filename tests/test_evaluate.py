import json

import cv2
import pytest
import torch

import checkpoint
import train
from FCN_network import build_generator
from conftest import run_script, tiny_run_args, write_pairs, write_tiny_dataset
from facades_dataset import FacadesDataset, to_float

LABEL_KEYS = {'pixel_acc', 'class_acc', 'class_iou'}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """The tiny dataset and a checkpoint of each kind of run, trained once for the module."""
    root = tmp_path_factory.mktemp('evaluate')
    data = write_tiny_dataset(root / 'tiny')
    checkpoints = {}
    for name, settings in {'skips': {}, 'no_skips_btoa': {'skips': False, 'direction': 'BtoA'},
                           'gan': {'gan': True}}.items():
        out = root / name
        out.mkdir()
        # trained on the CPU (fast at this size); evaluate.py itself takes CUDA when present
        run_script('train.py', *tiny_run_args(data, out, device='cpu', **settings), cwd=out)
        checkpoints[name] = out / 'checkpoints' / 'latest.pth'
    return data, checkpoints


def evaluate(*args, cwd, check=True):
    return run_script('evaluate.py', *args, cwd=cwd, check=check)


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
    result = evaluate(checkpoints['skips'], '--split', 'test', cwd=tmp_path, check=False)
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
    """A checkpoint dict as train.py writes it, with an untrained tiny-width
    UNet256, which needs 256x256 halves (training one would be slow)."""
    data = write_pairs(tmp_path / 'big' / 'val', 2, size=256)
    config = dict(train.config, model='unet256', width=2, image_size=256, dataset=str(data.parent))
    generator = build_generator(config)
    optimizer = torch.optim.Adam(generator.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    state = {'format': checkpoint.FORMAT, 'version': checkpoint.VERSION, 'epoch': 1, 'config': config,
             'history': [], 'model': generator.state_dict(), 'optimizer': optimizer.state_dict(),
             'scheduler': scheduler.state_dict(), 'scaler': torch.amp.GradScaler('cpu', enabled=False).state_dict()}
    checkpoint.save(state, tmp_path / 'unet256.pth')
    evaluate(tmp_path / 'unet256.pth', cwd=tmp_path)
    out = tmp_path / 'eval_results' / 'unet256_val'
    assert panel_shapes(out) == [('1', (256, 768, 3)), ('2', (256, 768, 3))]
    assert read_metrics(out)['images'] == 2


def test_fcn_score_of_a_label_to_photo_run(runs, tmp_path):
    data, checkpoints = runs
    evaluate(checkpoints['no_skips_btoa'], '--data_dir', data / 'val', '--fcn_score', checkpoints['skips'],
             '--palette', 'facades', '--out', tmp_path, cwd=tmp_path)
    metrics = read_metrics(tmp_path)
    for key in ('fcn_score', 'fcn_score_real'):
        assert set(metrics[key]) == LABEL_KEYS and all(0 <= value <= 1 for value in metrics[key].values())
    assert not LABEL_KEYS & set(metrics)  # the outputs are photos, not label maps


def failed_in_one_line(result):
    """Exit status 2 and a last stderr line 'error: ...' (progress bars may precede it), no traceback."""
    return result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith('error:') \
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
    assert failed_in_one_line(evaluate(*args, cwd=tmp_path, check=False))
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
    result = evaluate(checkpoints['skips'], '--data_dir', data / 'val', '--device', 'cuda', cwd=tmp_path, check=False)
    assert failed_in_one_line(result) and 'CUDA is not available' in result.stderr
