"""torchrun on CPU (gloo): two processes, small synthetic data."""
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DistributedSampler

import checkpoint
import train
import training
from conftest import REPO, run_script, tiny_run_args, write_tiny_dataset
from facades_dataset import FacadesDataset, to_float

# torchrun: each test starts two processes, or shares a run that did; run with -m "slow or not slow"
pytestmark = pytest.mark.slow

# 8 distinct training images, batch 2 per process: 2 steps per epoch on each rank.
# A constant learning rate, so that 2 epochs resumed to 3 equal 3 epochs straight.
SETTINGS = dict(batch_size=2, amp='off', augment=False, num_epochs=3, lr_schedule='constant')


def torchrun(data, out, *extra, check=True, env=None, **settings):
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
               str(REPO / 'train.py'), *tiny_run_args(data, out, **settings), *extra]
    result = subprocess.run(command, cwd=out, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', **(env or {})))
    if check and result.returncode != 0:
        raise AssertionError(f'torchrun failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-3000:]}')
    return result


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
    """3 epochs under torchrun, each rank also saving its own final weights."""
    root = tmp_path_factory.mktemp('ddp')
    data = write_tiny_dataset(root / 'tiny')
    (root / 'ranks').mkdir()
    result = torchrun(data, root / 'run', env={'PIX2PIX_RANK_WEIGHTS': str(root / 'ranks')}, **SETTINGS)
    return data, root, result


def parameters(state):
    """The trained weights of a state dict, without BatchNorm's running statistics,
    which on CPU stay each rank's own (SyncBatchNorm is GPU-only)."""
    return {name: value for name, value in state.items()
            if 'running_' not in name and 'num_batches_tracked' not in name}


def test_two_processes_write_one_set_of_outputs(two_process_run):
    data, root, result = two_process_run
    run = root / 'run'
    assert result.stdout.count('epoch 3:') == 1 and result.stdout.count('config:') == 1
    assert sorted(p.name for p in (run / 'checkpoints').iterdir()) == \
        ['fcn_epoch_1.pth', 'fcn_epoch_2.pth', 'fcn_epoch_3.pth', 'latest.pth', 'metrics.csv']
    assert len((run / 'checkpoints' / 'metrics.csv').read_text().splitlines()) == 4
    assert sorted(p.name for p in (run / 'val_results' / 'epoch_3').glob('*.png')) == ['1.png', '2.png']


def test_both_ranks_end_with_the_weights_rank_0_saved(two_process_run):
    """Each process's own weights, as it held them after training, not what train.py says of them."""
    _, root, _ = two_process_run
    saved = parameters(checkpoint.load(root / 'run' / 'checkpoints' / 'latest.pth')['model'])
    for rank in (0, 1):
        weights = parameters(torch.load(root / 'ranks' / f'rank_{rank}.pth', weights_only=True))
        assert weights.keys() == saved.keys()
        for name, value in saved.items():
            assert torch.equal(weights[name], value), (rank, name)


def tiny_settings(data, settings):
    """The settings of tiny_run_args as typed values (no output paths needed here)."""
    return dict(dataset=str(data), image_size=32, width=4, threads=1, **settings)


def reference_weights(data, settings, world_size=2):
    """What data-parallel training must compute, worked out step by step in this
    process: every epoch the shuffled training set is dealt out to the ranks as
    DistributedSampler does (rank r gets order[r::world_size], so the shards are
    disjoint and together the whole set), each rank's batch goes through the
    network with its own BatchNorm statistics (as on CPU), and one optimizer step
    applies the mean of the ranks' gradients."""
    cfg = dict(train.config, **tiny_settings(data, settings))
    run = training.build_run(cfg, torch.device('cpu'), world_size=1)
    images = FacadesDataset(data / 'train', image_size=cfg['image_size'], cache_dir='', progress=False)
    order_of = DistributedSampler(range(len(images)), num_replicas=1, rank=0, shuffle=True, seed=cfg['seed'])
    batch = cfg['batch_size']
    weights = list(run.model.parameters())
    for epoch in range(1, cfg['num_epochs'] + 1):
        order_of.set_epoch(epoch)
        order = list(order_of)
        shards = [order[rank::world_size] for rank in range(world_size)]
        assert sorted(sum(shards, [])) == list(range(len(images)))
        for start in range(0, len(shards[0]), batch):
            gradients = []
            for shard in shards:
                input_image, target_image = to_float(images.pair_batch(shard[start:start + batch]),
                                                     training.memory_format(cfg))
                loss = (run.model(input_image) - target_image).abs().mean()
                gradients.append(torch.autograd.grad(loss, weights))
            for weight, *per_rank in zip(weights, *gradients):
                weight.grad = sum(per_rank) / world_size
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)
        run.scheduler.step()
    return run.model.state_dict()


def test_two_processes_train_on_disjoint_shards_with_averaged_gradients(two_process_run):
    """The weights after 3 epochs equal the reference computed here. They do not
    when the ranks skip the all-reduce (each then follows its own gradient) or
    read the same shard (half the images never train)."""
    data, root, _ = two_process_run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank ran
    try:
        expected = parameters(reference_weights(data, SETTINGS))
    finally:
        torch.set_num_threads(threads)
    trained = parameters(checkpoint.load(root / 'run' / 'checkpoints' / 'latest.pth')['model'])
    for name, value in expected.items():
        assert torch.allclose(trained[name], value, rtol=0, atol=1e-6), \
            (name, (trained[name] - value).abs().max().item())


def test_resume_under_two_processes_ends_with_the_uninterrupted_weights(two_process_run, tmp_path):
    data, root, _ = two_process_run
    torchrun(data, tmp_path, **dict(SETTINGS, num_epochs=2))
    result = torchrun(data, tmp_path, '--resume', **SETTINGS)
    assert 'resumed from epoch 2' in result.stdout and 'epoch 3:' in result.stdout
    resumed = checkpoint.load(tmp_path / 'checkpoints' / 'latest.pth')
    straight = checkpoint.load(root / 'run' / 'checkpoints' / 'latest.pth')
    assert resumed['epoch'] == 3
    for name, value in parameters(straight['model']).items():
        assert torch.equal(resumed['model'][name], value), name
    assert [row['train_l1'] for row in resumed['history']] == [row['train_l1'] for row in straight['history']]


def test_ddp_checkpoint_loads_in_single_process_and_evaluate(two_process_run, tmp_path):
    data, root, _ = two_process_run
    latest = root / 'run' / 'checkpoints' / 'latest.pth'
    assert not any(key.startswith('module.') for key in checkpoint.load(latest)['model'])
    out = tmp_path / 'single'
    (out / 'checkpoints').mkdir(parents=True)
    (out / 'checkpoints' / 'latest.pth').write_bytes(latest.read_bytes())
    result = run_script('train.py', *tiny_run_args(data, out, **dict(SETTINGS, num_epochs=4)), '--resume', cwd=out)
    assert 'resumed from epoch 3' in result.stdout and 'epoch 4:' in result.stdout
    run_script('evaluate.py', latest, '--data_dir', data / 'val', '--out', tmp_path / 'eval', cwd=tmp_path)
    assert (tmp_path / 'eval' / 'metrics.json').is_file()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='SyncBatchNorm needs two CUDA devices')
def test_sync_batchnorm_on_cuda(two_process_run, tmp_path):
    data, _, _ = two_process_run
    result = torchrun(data, tmp_path, **dict(SETTINGS, device='cuda'))
    assert 'weights identical' in result.stdout
