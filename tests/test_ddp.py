"""torchrun on CPU (gloo): two processes, small synthetic data."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import checkpoint
from conftest import REPO, run_script, tiny_run_args, write_tiny_dataset

# DistributedSampler gives rank r the images order[r::2]; a 2-process step
# with batch B therefore sees exactly the images of a 1-process step with 2B.
SETTINGS = dict(batch_size=2, amp='off', augment=False, num_epochs=2)


def torchrun(data, out, *extra, check=True, **settings):
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
               str(REPO / 'train.py'), *tiny_run_args(data, out, **settings), *extra]
    result = subprocess.run(command, cwd=out, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1'))
    if check and result.returncode != 0:
        raise AssertionError(f'torchrun failed:\n{result.stdout}\n{result.stderr[-3000:]}')
    return result


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp')
    data = write_tiny_dataset(root / 'tiny')
    result = torchrun(data, root / 'run', **SETTINGS)
    return data, root, result


def test_two_processes_write_one_set_of_outputs(two_process_run):
    data, root, result = two_process_run
    run = root / 'run'
    assert result.stdout.count('epoch 2:') == 1 and result.stdout.count('config:') == 1
    assert sorted(p.name for p in (run / 'checkpoints').iterdir()) == \
        ['fcn_epoch_1.pth', 'fcn_epoch_2.pth', 'latest.pth', 'metrics.csv']
    assert len((run / 'checkpoints' / 'metrics.csv').read_text().splitlines()) == 3
    assert sorted(p.name for p in (run / 'val_results' / 'epoch_2').glob('*.png')) == ['1.png', '2.png']


def test_weights_are_identical_on_both_ranks(two_process_run):
    assert 'weights identical on all 2 processes' in two_process_run[2].stdout


def test_two_processes_match_one_process_with_twice_the_batch(tmp_path):
    """Gradient averaging across ranks equals one process with the global batch.
    PyTorch's SyncBatchNorm is GPU-only, so on CPU each rank normalises with its
    own batch's statistics; with every training image the same, those equal the
    global batch's, and the two runs must agree to float rounding."""
    data = tmp_path / 'same'
    write_tiny_dataset(data)
    for i in range(2, 9):
        shutil.copy(data / 'train' / '1.jpg', data / 'train' / f'{i}.jpg')
    torchrun(data, tmp_path / 'two', **SETTINGS)
    run_script('train.py', *tiny_run_args(data, tmp_path / 'one', **dict(SETTINGS, batch_size=4)), cwd=tmp_path)
    two = checkpoint.load(tmp_path / 'two' / 'checkpoints' / 'latest.pth')
    one = checkpoint.load(tmp_path / 'one' / 'checkpoints' / 'latest.pth')
    for row_one, row_two in zip(one['history'], two['history']):
        assert abs(row_one['train_l1'] - row_two['train_l1']) < 1e-4
    for name, weight in one['model'].items():
        if 'running_' not in name and weight.is_floating_point():  # running statistics stay per rank
            assert torch.allclose(weight, two['model'][name], atol=1e-4), name


def test_ddp_checkpoint_loads_in_single_process_and_evaluate(two_process_run, tmp_path):
    data, root, _ = two_process_run
    latest = root / 'run' / 'checkpoints' / 'latest.pth'
    assert not any(key.startswith('module.') for key in checkpoint.load(latest)['model'])
    out = tmp_path / 'single'
    out.mkdir()
    (out / 'checkpoints').mkdir()
    (out / 'checkpoints' / 'latest.pth').write_bytes(latest.read_bytes())
    result = run_script('train.py', *tiny_run_args(data, out, **dict(SETTINGS, num_epochs=3)), '--resume', cwd=out)
    assert 'resumed from epoch 2' in result.stdout and 'epoch 3:' in result.stdout
    run_script('evaluate.py', latest, '--data_dir', data / 'val', '--out', tmp_path / 'eval', cwd=tmp_path)
    assert (tmp_path / 'eval' / 'metrics.json').is_file()


def test_resume_under_two_processes(two_process_run):
    data, root, _ = two_process_run
    result = torchrun(data, root / 'run', '--resume', **dict(SETTINGS, num_epochs=3))
    assert 'resumed from epoch 2' in result.stdout and 'epoch 3:' in result.stdout
    assert checkpoint.load(root / 'run' / 'checkpoints' / 'latest.pth')['epoch'] == 3


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='SyncBatchNorm needs two CUDA devices')
def test_sync_batchnorm_on_cuda(two_process_run, tmp_path):
    data, _, _ = two_process_run
    result = torchrun(data, tmp_path, **dict(SETTINGS, device='cuda'))
    assert 'weights identical' in result.stdout
