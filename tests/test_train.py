import ast
import csv
import json
import os
import pickle
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import checkpoint
import files
import visualize
from FCN_network import build_generator
from conftest import REAL_DATA, REPO, run_main, run_script, tiny_run_args, write_ab_pairs, write_pairs, \
    write_tiny_dataset
from facades_dataset import FacadesDataset, to_float


def train(data, out, *extra, check=True, env=None, **settings):
    """python train.py with tiny_run_args' settings, run from out as a user would."""
    out.mkdir(parents=True, exist_ok=True)
    return run_script('train.py', *tiny_run_args(data, out, **settings), *extra, cwd=out, check=check, env=env)


def train_here(data, out, *extra, **settings):
    """The same run through train.py's main in this process (conftest.run_main): for what
    a run computes, where its command line is not what the test is about."""
    out.mkdir(parents=True, exist_ok=True)
    return run_main('train.py', *tiny_run_args(data, out, **settings), *extra, cwd=out)


def weights(path):
    return checkpoint.load(path)['model']


def parameters(state):
    return {name: value for name, value in state.items() if 'running_' not in name and 'num_batches' not in name}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_epoch_run_writes_panels_checkpoints_and_metrics(pairs_dir, tmp_path):
    launched = time.time()
    result = train(pairs_dir, tmp_path)
    wall_minutes = (time.time() - launched) / 60
    assert 'config: dataset=' in result.stdout and 'epoch 2:' in result.stdout
    for split in ('train_results', 'val_results'):
        for epoch in (1, 2):
            panels = sorted((tmp_path / split / f'epoch_{epoch}').glob('*.png'))
            assert [p.stem for p in panels] == ['1', '2']
            image = cv2.imread(str(panels[0]))
            assert image.shape == (32, 96, 3)  # input | target | output
    for name in ('fcn_epoch_1.pth', 'fcn_epoch_2.pth', 'latest.pth'):
        state = checkpoint.load(tmp_path / 'checkpoints' / name)
        assert {'model', 'optimizer', 'scheduler', 'epoch', 'config', 'history'} <= set(state)
    lines = (tmp_path / 'checkpoints' / 'metrics.csv').read_text().splitlines()
    assert lines[0].split(',')[:2] == ['epoch', 'train_l1'] and len(lines) == 3
    assert {'val_l1', 'lr', 'seconds', 'minutes'} <= set(lines[0].split(','))
    # minutes: the wall clock from launch (start-up included), what time_to_quality.py plots
    history = checkpoint.load(tmp_path / 'checkpoints' / 'latest.pth')['history']
    assert sum(row['seconds'] for row in history) / 60 < history[-1]['minutes'] < wall_minutes
    assert history[0]['minutes'] < history[1]['minutes']


def test_save_every_picks_the_epochs(pairs_dir, tmp_path):
    train_here(pairs_dir, tmp_path, num_epochs=3, save_every=2, validate_every=2)
    assert sorted(p.name for p in (tmp_path / 'checkpoints').glob('fcn_epoch_*')) == \
        ['fcn_epoch_2.pth', 'fcn_epoch_3.pth']
    assert sorted(p.name for p in (tmp_path / 'val_results').iterdir() if p.is_dir()) == ['epoch_2', 'epoch_3']
    history = checkpoint.load(tmp_path / 'checkpoints' / 'latest.pth')['history']
    assert ['val_l1' in row for row in history] == [False, True, True]


def test_same_seed_same_weights_with_or_without_prefetch(pairs_dir, tmp_path):
    train_here(pairs_dir, tmp_path / 'a', num_epochs=1, prefetch='on')
    train_here(pairs_dir, tmp_path / 'b', num_epochs=1, prefetch='off')
    train_here(pairs_dir, tmp_path / 'c', num_epochs=1, seed=1)
    first, again, other = (weights(tmp_path / run / 'checkpoints' / 'latest.pth') for run in 'abc')
    assert same_weights(first, again) and not same_weights(first, other)


def test_resume_continues_exactly(pairs_dir, tmp_path):
    # extended from 2 to 4 epochs on resume: the lr schedule and the average's start, fractions
    # of num_epochs, are set so that they do not depend on it
    steady = dict(lr_schedule='constant', ema_start=0.0)
    train_here(pairs_dir, tmp_path / 'straight', num_epochs=4, **steady)
    train_here(pairs_dir, tmp_path / 'split', num_epochs=2, **steady)
    # the first session made to look long (1000 minutes at its last epoch), so that a resumed
    # clock that forgot it fails, however long each session took
    latest = tmp_path / 'split' / 'checkpoints' / 'latest.pth'
    first_session = checkpoint.load(latest)
    for row, minutes in zip(first_session['history'], (500.0, 1000.0)):
        row['minutes'] = minutes
    checkpoint.save(first_session, latest)
    launched = time.time()  # the second session as a user starts it: its clock counts the start-up too
    result = train(pairs_dir, tmp_path / 'split', '--resume', num_epochs=4, **steady)
    second_session = (time.time() - launched) / 60
    assert 'resumed from epoch 2' in result.stdout
    straight = checkpoint.load(tmp_path / 'straight' / 'checkpoints' / 'latest.pth')
    resumed = checkpoint.load(latest)
    assert resumed['epoch'] == 4 and same_weights(straight['model'], resumed['model'])
    assert same_weights(straight['ema'], resumed['ema'])  # the weight average resumes exactly too
    assert [row['train_l1'] for row in straight['history']] == [row['train_l1'] for row in resumed['history']]
    # the clock goes on from the last minutes the first session saved
    minutes, seconds = ([row[key] for row in resumed['history']] for key in ('minutes', 'seconds'))
    assert minutes[:2] == [500.0, 1000.0]
    assert 1000 + seconds[2] / 60 < minutes[2] <= minutes[3] < 1000 + second_session


def test_resume_refuses_a_changed_network(tiny_data, tiny_run, tmp_path):
    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'latest.pth').write_bytes((tiny_run / 'checkpoints' / 'latest.pth').read_bytes())
    result = train(tiny_data, tmp_path, '--resume', num_epochs=3, width=8, check=False)
    assert result.returncode != 0 and 'width=4' in result.stderr and 'Traceback' not in result.stderr


@pytest.mark.slow  # SIGKILL and resume
@pytest.mark.parametrize('fault', ['kill_after_epoch@2', 'kill_in_save@3'])
def test_killed_run_resumes_to_the_same_weights(pairs_dir, tmp_path, fault):
    """SIGKILL right after an epoch's checkpoint, or halfway through writing one:
    --resume loses at most that epoch and ends where an unkilled run ends."""
    settings = dict(num_epochs=4, save_every=2)
    train(pairs_dir, tmp_path / 'straight', **settings)
    killed = train(pairs_dir, tmp_path / 'killed', check=False, env={'PIX2PIX_FAULT': fault}, **settings)
    assert killed.returncode == -9
    latest = checkpoint.load(tmp_path / 'killed' / 'checkpoints' / 'latest.pth')  # never torn
    assert latest['epoch'] == 2
    train(pairs_dir, tmp_path / 'killed', '--resume', **settings)
    straight = checkpoint.load(tmp_path / 'straight' / 'checkpoints' / 'latest.pth')
    resumed = checkpoint.load(tmp_path / 'killed' / 'checkpoints' / 'latest.pth')
    assert same_weights(straight['model'], resumed['model']) and same_weights(straight['ema'], resumed['ema'])
    assert not list((tmp_path / 'killed' / 'checkpoints').glob('.*.tmp'))


@pytest.mark.slow  # Ctrl-C and resume
def test_ctrl_c_prints_a_resume_command_that_works_as_typed(pairs_dir, tmp_path):
    """A real train.py with a relative checkpoint_dir gets SIGINT once its first
    epoch is saved; the command it prints, run from the same folder, continues
    that run. train.py here is a link to the repo's, as if the run were started
    in a checkout."""
    (tmp_path / 'train.py').symlink_to(REPO / 'train.py')
    args = tiny_run_args(pairs_dir, tmp_path, num_epochs=10000, save_every=10000, checkpoint_dir='runs/a')
    latest = tmp_path / 'runs' / 'a' / 'latest.pth'
    # a child of a non-interactive shell may inherit SIGINT ignored; a terminal gives it the default
    child = subprocess.Popen([sys.executable, 'train.py', *args], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED='1'),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not latest.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130 and 'Traceback' not in stderr, stderr  # the shell's status for Ctrl-C
    line = stderr.strip().splitlines()[-1]
    assert 'runs/a/latest.pth' in line and 'continue with: ' in line, line
    command = shlex.split(line.split('continue with: ')[1])
    assert command[:2] == ['python', 'train.py'], line
    epoch = checkpoint.load(latest)['epoch']
    # as typed, plus an end in sight: the run was set to 10000 epochs
    resumed = subprocess.run([sys.executable, *command[1:], f'--num_epochs={epoch + 1}'], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f'resumed from epoch {epoch}' in resumed.stdout and f'epoch {epoch + 1}:' in resumed.stdout
    assert checkpoint.load(latest)['epoch'] == epoch + 1


def test_nan_loss_stops_and_keeps_the_last_checkpoint(pairs_dir, tmp_path):
    result = train(pairs_dir, tmp_path, check=False, env={'PIX2PIX_FAULT': 'nan_loss@2'})
    assert result.returncode == 1 and 'loss became nan in epoch 2' in result.stderr
    assert 'Traceback' not in result.stderr
    assert checkpoint.load(tmp_path / 'checkpoints' / 'latest.pth')['epoch'] == 1


def test_gan_term_alone_trains_the_generator_under_both_losses(pairs_dir, tmp_path):
    """With lambda_l1=0 the generator learns only through the discriminator's verdict:
    it must still change, under the BCE and the least-squares loss, which differ."""
    g_gan = {}
    for gan_loss in ('vanilla', 'lsgan'):
        out = tmp_path / gan_loss
        train_here(pairs_dir, out, gan=True, gan_loss=gan_loss, lambda_l1=0.0, batch_size=8)  # one step per epoch
        first = checkpoint.load(out / 'checkpoints' / 'fcn_epoch_1.pth')
        second = checkpoint.load(out / 'checkpoints' / 'fcn_epoch_2.pth')
        # parameters only: every forward pass moves BatchNorm's running statistics
        assert not same_weights(parameters(first['model']), parameters(second['model'])), gan_loss
        assert not same_weights(parameters(first['discriminator']), parameters(second['discriminator'])), gan_loss
        g_gan[gan_loss] = [row['g_gan'] for row in second['history']]
    # same seed, same data: only the loss function differs
    assert g_gan['vanilla'][0] != pytest.approx(g_gan['lsgan'][0], rel=1e-3)


def test_missing_dataset_names_the_download_command(tmp_path):
    result = run_script('train.py', '--dataset=cityscapes', cwd=tmp_path, check=False)
    assert result.returncode != 0 and 'bash download_facades_dataset.sh cityscapes' in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('model, multiple, nearest', [('fcn', 16, '32x32'), ('unet256', 256, '256x256')])
def test_image_size_the_network_cannot_take_is_reported_before_training(tmp_path, model, multiple, nearest):
    """40x40 halves at their native size (image_size 0): one line naming the multiple
    the network needs, and no epoch starts. (A size image_size gives is checked before
    any data is read: tests/test_settings.py.)"""
    data = tmp_path / 'data'
    write_pairs(data / 'train', 2, size=40)
    write_pairs(data / 'val', 1, size=40)
    result = train(data, tmp_path, model=model, image_size=0, check=False)
    assert result.returncode == 1 and 'epoch 1' not in result.stdout and 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after the decoding progress bar
    assert last == f'error: the images of {data / "train"} are 40x40 per half, but {model} needs sides that are ' \
        f'multiples of {multiple}, such as {nearest}; set image_size to such a size (one side or WIDTHxHEIGHT)'


def test_unwritable_output_folder_is_reported_before_training(pairs_dir, tmp_path):
    """A folder this user cannot write to: one made read-only, or for root, whom
    chmod does not stop (CI runs as root), /proc, where no one can create a file."""
    if os.geteuid() != 0:
        locked = tmp_path / 'locked'
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        folder = locked / 'checkpoints'
    elif Path('/proc/self').is_dir():
        folder = Path('/proc')
    else:
        pytest.skip('running as root on a system without /proc')
    result = train(pairs_dir, tmp_path, checkpoint_dir=folder, check=False)
    assert result.returncode != 0 and f'cannot write to output folder {folder}' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and 'epoch 1' not in result.stdout


def test_output_folder_that_is_a_file_is_reported_before_training(pairs_dir, tmp_path):
    (tmp_path / 'blocked').write_text('a file where a folder should be')
    result = train(pairs_dir, tmp_path, checkpoint_dir=tmp_path / 'blocked' / 'checkpoints', check=False)
    assert result.returncode != 0 and 'cannot write to output folder' in result.stderr
    assert 'epoch 1' not in result.stdout


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
def test_checkpoint_loader_refuses_code(tmp_path):
    class RunsCode:
        def __reduce__(self):
            return (os.system, (f'touch {tmp_path / "pwned"}',))
    path = tmp_path / 'evil.pth'
    torch.save({'format': checkpoint.FORMAT, 'payload': RunsCode()}, path)
    with pytest.raises(checkpoint.CheckpointError, match='refused to load'):
        checkpoint.load(path)
    assert not (tmp_path / 'pwned').exists()
    plain = tmp_path / 'plain.pkl'
    plain.write_bytes(pickle.dumps(RunsCode()))
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(plain)
    assert not (tmp_path / 'pwned').exists()


def test_checkpoint_loader_names_what_it_found(tiny_run, tmp_path):
    torch.save({'state_dict': {}}, tmp_path / 'other.pth')
    with pytest.raises(checkpoint.CheckpointError, match='not a checkpoint of this repo'):
        checkpoint.load(tmp_path / 'other.pth')
    (tmp_path / 'text.pth').write_text('hello')
    with pytest.raises(checkpoint.CheckpointError, match='not a readable PyTorch checkpoint'):
        checkpoint.load(tmp_path / 'text.pth')
    state = checkpoint.load(tiny_run / 'checkpoints' / 'latest.pth')
    state['config'] = dict(state['config'], skips=False)
    checkpoint.save(state, tmp_path / 'mismatch.pth')
    with pytest.raises(checkpoint.CheckpointError,
                       match=r'do not fit the network fcn \(width 4, skips False, upsample transpose\)'):
        checkpoint.load_generator(tmp_path / 'mismatch.pth')


@pytest.mark.skipif(not (REAL_DATA / 'facades').is_dir(), reason='real facades data not present')
def test_real_facades_smoke(tmp_path):
    """One short epoch on 16 real pairs: the whole path from JPEG to panels."""
    data = tmp_path / 'facades'
    for split, count in (('train', 16), ('val', 4)):
        (data / split).mkdir(parents=True)
        for i in range(1, count + 1):
            (data / split / f'{i}.jpg').symlink_to(REAL_DATA / 'facades' / split / f'{i}.jpg')
    result = train_here(data, tmp_path, image_size=256, num_epochs=1, width=8)
    assert 'epoch 1:' in result.stdout
    assert cv2.imread(str(tmp_path / 'val_results' / 'epoch_1' / '1.png')).shape == (256, 768, 3)


def test_weight_average_starts_with_a_copy_then_follows_its_decay(pairs_dir, tmp_path):
    """One step per epoch (batch 8 of 8 images), saved every epoch. With
    ema_start=0.34 (of 3 epochs) the average's first update (epoch 2) copies the weights and
    epoch 3's blends them: ema = d * w2 + (1 - d) * w3, BatchNorm statistics too."""
    decay = 0.75
    train_here(pairs_dir, tmp_path, num_epochs=3, batch_size=8, ema=decay, ema_start=0.34, amp='off')
    w2 = checkpoint.load(tmp_path / 'checkpoints' / 'fcn_epoch_2.pth')
    w3 = checkpoint.load(tmp_path / 'checkpoints' / 'fcn_epoch_3.pth')
    assert w2['ema']['n_averaged'] == 1 and w3['ema']['n_averaged'] == 2
    for name, weight in w2['model'].items():
        assert torch.equal(w2['ema'][f'module.{name}'], weight), name
        if weight.is_floating_point():
            expected = decay * weight + (1 - decay) * w3['model'][name]
            assert torch.allclose(w3['ema'][f'module.{name}'], expected, atol=1e-6), name
    assert not same_weights(w3['model'], {k.removeprefix('module.'): v for k, v in w3['ema'].items()
                                          if k.startswith('module.')})


def test_validation_scores_the_weight_average(pairs_dir, tmp_path):
    """The logged val_l1 is the average's, recomputed here from the checkpoint."""
    train_here(pairs_dir, tmp_path, num_epochs=2, ema=0.5, ema_start=0.0, amp='off', channels_last=False)
    state = checkpoint.load(tmp_path / 'checkpoints' / 'latest.pth')
    data = FacadesDataset(pairs_dir / 'val', image_size=32, cache_dir='')
    input_image, target_image = to_float(data.pair_batch(range(len(data))))

    def val_l1(weights):
        network = build_generator(state['config'])
        network.load_state_dict(weights)
        with torch.no_grad():
            return (network.eval()(input_image) - target_image).abs().mean().item()
    averaged = checkpoint.generator_weights(state)
    assert averaged is not state['model']
    logged = state['history'][-1]['val_l1']
    assert abs(val_l1(averaged) - logged) < 1e-6 and abs(val_l1(state['model']) - logged) > 1e-5


def test_validate_is_the_mean_absolute_error_over_every_pixel(tmp_path):
    """training.validate, in chunks of 2 (batch_size 1) over 5 pairs, the last chunk one pair:
    the mean absolute error over every pixel and channel of the split, as computed here
    image by image in float64 (a mean of the chunks' means would differ). The network is
    validated in eval mode and left in training mode."""
    import train
    import training
    cfg = dict(train.config, width=4, batch_size=1, amp='off')
    data = FacadesDataset(write_pairs(tmp_path / 'val', 5, seed=3), image_size=32, cache_dir='')
    torch.manual_seed(0)
    network = build_generator(cfg).train()
    with torch.no_grad():
        errors = [(network.eval()(input_image).double() - target_image.double()).abs().mean().item()
                  for input_image, target_image in (to_float(data.pair_batch([i])) for i in range(len(data)))]
    network.train()
    chunk_means = [np.mean(errors[start:start + 2]) for start in range(0, len(data), 2)]
    assert abs(np.mean(chunk_means) - np.mean(errors)) > 1e-4  # images are one size: the mean of theirs is the split's
    assert training.validate(network, data, cfg, torch.device('cpu'), None) == pytest.approx(np.mean(errors), rel=1e-6)
    assert network.training


def test_resume_of_a_checkpoint_from_before_the_weight_average(pairs_dir, tmp_path):
    """Checkpoints saved before the weight average and patches existed resume as
    they ran: without them."""
    train_here(pairs_dir, tmp_path, num_epochs=1, ema=0.0)
    path = tmp_path / 'checkpoints' / 'latest.pth'
    state = checkpoint.load(path)
    for key in ('ema', 'ema_start', 'patch_size', 'patch_epochs'):
        state['config'].pop(key)
    checkpoint.save(state, path)
    result = train_here(pairs_dir, tmp_path, '--resume', num_epochs=2)
    assert 'resumed from epoch 1' in result.stdout and ' ema=0.0 ' in result.stdout
    assert ' patch_size=0 ' in result.stdout
    assert 'ema' not in checkpoint.load(path)


def test_patches_train_the_first_part_of_the_run_only():
    import train
    import training
    cfg = dict(train.config, num_epochs=4, patch_size=16, patch_epochs=0.5)
    assert [training.patch_side(cfg, epoch) for epoch in range(1, 5)] == [16, 16, None, None]
    assert training.patch_side(dict(cfg, patch_epochs=0.0), 1) is None
    for whole in (dict(patch_size=0), dict(augment=False), dict(model='unet256')):
        assert training.patch_side(dict(cfg, **whole), 1) is None


def test_help_prints_the_settings_block_and_exits_0():
    import train
    result = run_script('train.py', '--help', cwd=REPO)
    lines = result.stdout.splitlines()
    assert lines[0].startswith('usage: python train.py') and result.stderr == ''
    groups = [line for line in lines if line.startswith('# ')]
    assert groups == ['# data', '# model', '# optimisation', '# output', '# system']
    for name, default in train.config.items():  # each setting once, with its default as written
        line, = [line for line in lines if line.startswith(f'{name} = ')]
        assert ast.literal_eval(line.split('=', 1)[1].split('  #')[0].strip()) == default, line
    assert "gan_start = 0.0              # fraction of the epochs trained on L1 alone" in result.stdout


def test_discriminator_settings_reach_it_and_it_joins_at_gan_start():
    """d_width, d_layers and lr_d build the discriminator and its optimizer; before
    gan_start's share of the epochs a step trains G on L1 alone and leaves D as it is."""
    import train
    import training
    cfg = dict(train.config, width=4, gan=True, d_width=8, d_layers=2, lr_d=1e-4, gan_start=0.5, num_epochs=4, ema=0.0,
               amp='off')
    run = training.build_run(cfg, torch.device('cpu'), 1)
    convolutions = [m for m in run.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convolutions] == [8, 16, 32, 1]
    assert run.optimizer_d.param_groups[0]['lr'] == 1e-4 and run.optimizer.param_groups[0]['lr'] == cfg['lr']
    images = torch.rand(2, 2, 3, 32, 32) * 2 - 1
    before = {k: v.clone() for k, v in run.discriminator.state_dict().items()}
    output = run.model(images[0])  # training mode, as the step runs it
    loss, losses = training.train_step(run, *images, epoch=2)
    assert set(losses) == {'train_l1'} and torch.equal(loss, (output - images[1]).abs().mean())
    assert same_weights(before, run.discriminator.state_dict())
    loss, losses = training.train_step(run, *images, epoch=3)
    assert set(losses) == {'train_l1', 'd_loss', 'g_gan'}
    assert not same_weights(before, run.discriminator.state_dict())
    assert torch.allclose(loss, losses['g_gan'] + cfg['lambda_l1'] * losses['train_l1'])


def test_patches_too_small_for_the_discriminator_are_one_line(pairs_dir, tmp_path):
    result = train(pairs_dir, tmp_path, gan=True, patch_size=16, check=False)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == \
        'error: the discriminator (d_layers=3) needs images and patches of at least 32 px; these are 16 ' \
        '(raise patch_size or image_size, or lower d_layers)'
    train_here(pairs_dir, tmp_path / 'shallow', gan=True, patch_size=16, d_layers=2, num_epochs=1)  # 16 px: 2 layers


def in_process(data, **settings):
    """train.py's own training split, run and loader for the settings, made in this
    process (one rank, the CPU, fp32), for calling training.train_epoch directly."""
    import train
    import training
    cfg = dict(train.config, dataset=str(data), cache_dir='', width=4, batch_size=4, amp='off')
    cfg.update(settings)
    train_set = train.load_split(cfg, 'train', 0, 1)
    device = torch.device('cpu')
    return training.build_run(cfg, device, 1), training.train_loader(train_set, cfg, device), train_set


def test_patch_epochs_feed_the_network_patches_then_whole_images(tmp_path):
    """64-px images, patch_size 32 for the first half of 2 epochs: training.train_epoch
    gives the network 32x32 crops in epoch 1 and the whole 64x64 images in epoch 2."""
    import training
    write_pairs(tmp_path / 'big' / 'train', 4, size=64)
    run, loader, train_set = in_process(tmp_path / 'big', image_size=64, patch_size=32, patch_epochs=0.5,
                                        num_epochs=2)
    seen = []
    run.model.register_forward_pre_hook(lambda module, inputs: seen.append(tuple(inputs[0].shape)))
    shapes = []
    for epoch in (1, 2):
        seen.clear()
        training.train_epoch(run, loader, train_set, epoch, training.patch_side(run.cfg, epoch))
        shapes.append(sorted(set(seen)))
    assert shapes == [[(4, 3, 32, 32)], [(4, 3, 64, 64)]]


def test_the_weight_average_starts_after_its_boundary_epoch(pairs_dir):
    """ema_start 0.5 of 4 epochs: epoch 2 ends exactly on the boundary and is not averaged;
    epoch 3's step is the average's first update. One step per epoch (8 images, batch 8),
    through training.train_epoch."""
    import training
    run, loader, train_set = in_process(pairs_dir, image_size=32, batch_size=8, num_epochs=4, ema=0.5,
                                        ema_start=0.5)
    updates, shown = [], []
    for epoch in range(1, 5):
        training.train_epoch(run, loader, train_set, epoch, training.patch_side(run.cfg, epoch))
        updates.append(int(run.ema.n_averaged))
        shown.append('trained' if run.eval_model() is run.model else 'average')
    assert updates == [0, 0, 1, 2]
    assert shown == ['trained', 'trained', 'average', 'average']


@pytest.mark.parametrize('gan_loss', ['vanilla', 'lsgan'])
def test_the_discriminator_learns_real_from_generated_and_the_generator_to_fool_it(pairs_dir, gan_loss):
    """train_step repeated on one fixed batch, with the GAN term alone (lambda_l1 0): each
    generator step raises the score that the discriminator it stepped against gives its
    output, and after a few steps the discriminator scores the real pairs above the
    generated ones. Scores are the discriminator's mean output (a logit, or the least-squares
    value), in training mode, as the step runs it."""
    import train
    import training
    cfg = dict(train.config, width=4, gan=True, gan_loss=gan_loss, d_width=8, lambda_l1=0.0, num_epochs=1, ema=0.0,
               amp='off')
    run = training.build_run(cfg, torch.device('cpu'), 1)
    data = FacadesDataset(pairs_dir / 'train', image_size=32, cache_dir='')
    input_image, target_image = to_float(data.pair_batch(range(4)))

    @torch.no_grad()
    def score(images):
        return run.discriminator(input_image, images).mean().item()

    @torch.no_grad()
    def generated():  # what a step generates: the same weights on the same batch
        return run.model(input_image)

    for step in range(5):
        before = generated()
        training.train_step(run, input_image, target_image, epoch=1)
        assert score(generated()) > score(before), step
    assert score(target_image) > score(generated()) + 0.5


@pytest.fixture(scope='module')
def averaged_run(tmp_path_factory):
    """4 epochs at lr 3e-3 with a slow weight average from the first step (decay 0.9, so
    that it lags the trained weights visibly), panels at epoch 4; fp32 on the CPU, as the
    test recomputes them."""
    out = tmp_path_factory.mktemp('averaged')
    train_here(write_tiny_dataset(out / 'tiny'), out, num_epochs=4, save_every=4, lr=3e-3, lr_schedule='linear',
               ema=0.9, ema_start=0.0, amp='off', device='cpu')
    return out


def test_lr_factors_of_the_linear_schedule_written_out():
    """Constant for the first num_epochs // 2 epochs, then down by 1 / (the epochs left + 1)
    each epoch, never 0 (the pix2pix schedule). Index: finished epochs, as the scheduler counts."""
    import train
    import training

    def factors(num_epochs, schedule):
        factor = training.lr_factor(dict(train.config, num_epochs=num_epochs, lr_schedule=schedule))
        return [factor(epoch) for epoch in range(num_epochs)]
    assert factors(4, 'linear') == pytest.approx([1, 1, 2 / 3, 1 / 3])
    assert factors(5, 'linear') == pytest.approx([1, 1, 3 / 4, 2 / 4, 1 / 4])
    assert factors(10, 'linear') == pytest.approx([1] * 5 + [5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert factors(3, 'constant') == [1, 1, 1]


def test_metrics_csv_logs_the_lr_each_epoch_trained_at(averaged_run):
    with open(averaged_run / 'checkpoints' / 'metrics.csv') as file:
        logged = [float(row['lr']) for row in csv.DictReader(file)]
    assert logged == pytest.approx([3e-3, 3e-3, 2e-3, 1e-3], rel=1e-5)  # lr 3e-3, linear over 4 epochs


@pytest.mark.parametrize('split', ['train', 'val'])
def test_panels_show_the_weight_average(averaged_run, split):
    """A saved panel's output third is the weight average's output on the panel's own input
    third, recomputed here from the checkpoint's averaged weights; the trained weights draw
    a visibly different picture."""
    state = checkpoint.load(averaged_run / 'checkpoints' / 'fcn_epoch_4.pth')
    panel = cv2.cvtColor(cv2.imread(str(averaged_run / f'{split}_results' / 'epoch_4' / '1.png')), cv2.COLOR_BGR2RGB)
    shown_input, shown_output = panel[:, :32], panel[:, 64:].astype(int)

    def draw(weights):
        network = build_generator(state['config'])
        network.load_state_dict(weights)
        with torch.no_grad():
            output = network.eval()(torch.from_numpy(shown_input).permute(2, 0, 1)[None].float() / 127.5 - 1)[0]
        return ((output.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(int)
    averaged = draw({name[len('module.'):]: weight for name, weight in state['ema'].items()
                     if name.startswith('module.')})
    trained = draw(state['model'])
    assert np.abs(shown_output - averaged).max() <= 1  # rounding, NHWC vs NCHW
    assert np.abs(shown_output - trained).max() > 5


@pytest.mark.slow  # SIGKILL
@pytest.mark.parametrize('name, folder', [('metrics.csv', 'checkpoints'), ('index.html', 'train_results'),
                                          ('1.png', 'train_results/epoch_1')])
def test_a_file_killed_half_written_keeps_its_previous_version(pairs_dir, tmp_path, name, folder):
    """SIGKILL with NAME half written (its first write in the run, at the end of epoch 1):
    NAME still holds the complete version an earlier run left; the half-written temporary
    beside it is hidden (.NAME.PID.tmp, which no reader's pattern matches), and the next
    write of NAME removes it."""
    path = tmp_path / folder / name
    path.parent.mkdir(parents=True)
    previous = visualize.encode_png(np.full((32, 96, 3), 7, np.uint8)) if name.endswith('.png') else \
        b'from an earlier run\n'
    path.write_bytes(previous)
    killed = train(pairs_dir, tmp_path, num_epochs=1, check=False, env={'PIX2PIX_FAULT': f'kill_in_write@{name}'})
    assert killed.returncode == -9, killed.stderr
    assert path.read_bytes() == previous
    temporary, = path.parent.glob(f'.{name}.*.tmp')
    assert temporary.stat().st_size > 0  # half of the new version: killed mid-write
    assert [p.name for p in path.parent.glob(f'*{path.suffix}')] == [name]
    files.atomic_write(path, b'new')
    assert path.read_bytes() == b'new' and not list(path.parent.glob('.*.tmp'))


def test_own_pairs_in_a_and_b_get_a_validation_split_made_once(tmp_path):
    """A/ and B/ alone: the first run holds out a seeded tenth as list files beside
    the data and says so in one line; the resumed run and evaluate.py read the
    same lists, and so does a fresh run."""
    data = write_ab_pairs(tmp_path / 'mine', 20, suffixes=('.jpg', '.png'))
    lists = [data / 'train_list.txt', data / 'val_list.txt']
    first = train_here(data, tmp_path / 'run', num_epochs=1, amp='off')
    made = [line for line in first.stdout.splitlines() if line.startswith('made a validation split')]
    assert len(made) == 1 and ': 18 train, 2 val pairs' in made[0] and f'{lists[0]} and {lists[1]}' in made[0]
    assert 'data: 18 train, 2 val pairs' in first.stdout
    split = [(path.read_text(), path.stat().st_mtime_ns) for path in lists]
    val_stems = [Path(line).stem for line in split[1][0].split()]
    resumed = train_here(data, tmp_path / 'run', '--resume', num_epochs=2)
    assert 'resumed from epoch 1' in resumed.stdout and 'made a' not in resumed.stdout
    assert 'data: 18 train, 2 val pairs' in resumed.stdout
    assert sorted(p.stem for p in (tmp_path / 'run' / 'val_results' / 'epoch_2').glob('*.png')) == sorted(val_stems)
    fresh = train_here(data, tmp_path / 'again', num_epochs=1, seed=1)
    assert 'made a' not in fresh.stdout
    assert [(path.read_text(), path.stat().st_mtime_ns) for path in lists] == split
    run_main('evaluate.py', tmp_path / 'run' / 'checkpoints' / 'latest.pth', '--out', tmp_path / 'scores',
             cwd=tmp_path)
    metrics = json.loads((tmp_path / 'scores' / 'metrics.json').read_text())
    assert metrics['data'] == str(lists[1]) and metrics['images'] == 2
    assert sorted(p.stem for p in (tmp_path / 'scores').glob('*.png')) == sorted(val_stems)
    assert metrics['l1'] == pytest.approx(checkpoint.load(tmp_path / 'run' / 'checkpoints' / 'latest.pth')
                                          ['history'][-1]['val_l1'], rel=1e-5)


def test_unmatched_pairs_stop_the_run_in_one_line_or_are_skipped(tmp_path):
    data = write_ab_pairs(tmp_path / 'mine', 6)
    (data / 'B' / '6.png').unlink()
    (data / 'B' / '5.png').rename(data / 'B' / 'five.png')
    result = train(data, tmp_path / 'run', check=False)
    assert result.returncode == 1 and result.stderr.count('\n') == 1 and result.stderr == \
        f'error: 3 files in only one of {data / "A"} and {data / "B"}: {data / "A" / "5.png"}, ' \
        f'{data / "A" / "6.png"}, {data / "B" / "five.png"} (every input needs a target of the same name; ' \
        'set skip_bad_images to skip them)\n'
    assert not (data / 'val_list.txt').exists() and 'epoch 1' not in result.stdout
    with pytest.warns(UserWarning, match='skipping 3 files in only one of'):
        result = train_here(data, tmp_path / 'run', num_epochs=1, skip_bad_images=True)
    assert 'data: 3 train, 1 val pairs' in result.stdout and 'epoch 1:' in result.stdout


def test_a_non_square_run_keeps_its_shape_in_panels_evaluation_and_predictions(tmp_path):
    """image_size 64x32 (width x height) on a split of one's own into train/{A,B} and
    val/{A,B}, of several sizes: patches, whole images, panels, evaluate.py and
    predict.py all keep 32 rows by 64 columns."""
    data = tmp_path / 'mine'
    write_ab_pairs(data / 'train', 8, size=32, seed=1)
    write_ab_pairs(data / 'train', 4, size=16, seed=2, start=9, suffixes=('.jpg', '.png'))
    write_ab_pairs(data / 'val', 3, size=48, seed=3)
    result = train_here(data, tmp_path, image_size='64x32', patch_size=16, num_epochs=2)  # epoch 1 on 16x16 patches
    assert 'data: 12 train, 3 val pairs' in result.stdout and 'made a' not in result.stdout
    latest = tmp_path / 'checkpoints' / 'latest.pth'
    assert checkpoint.load(latest)['config']['image_size'] == '64x32'
    for split in ('train_results', 'val_results'):
        panels = sorted((tmp_path / split / 'epoch_2').glob('*.png'))
        assert len(panels) == 2 and all(cv2.imread(str(p)).shape == (32, 192, 3) for p in panels)
        assert (tmp_path / split / 'index.html').is_file()
    run_main('evaluate.py', latest, '--data_dir', data / 'val', '--out', tmp_path / 'scores', cwd=tmp_path)
    assert [cv2.imread(str(p)).shape for p in sorted((tmp_path / 'scores').glob('*.png'))] == [(32, 192, 3)] * 3
    # predict.py: an input of the training size goes through unresized, so its output is the network's own
    photo = np.random.default_rng(0).integers(0, 256, (32, 64, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'photo.png'), photo)
    cv2.imwrite(str(tmp_path / 'tall.png'), photo[:, :20])
    for image in ('photo.png', 'tall.png'):
        run_main('predict.py', latest, tmp_path / image, '--out', tmp_path / 'predictions', cwd=tmp_path)
    generator, _ = checkpoint.load_generator(latest)
    with torch.no_grad():
        rgb = torch.from_numpy(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float() / 127.5 - 1
        expected = ((generator(rgb)[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    output = cv2.cvtColor(cv2.imread(str(tmp_path / 'predictions' / 'photo.png')), cv2.COLOR_BGR2RGB)
    assert output.shape == (32, 64, 3) and np.abs(output - expected).max() <= 1
    assert cv2.imread(str(tmp_path / 'predictions' / 'tall.png')).shape == (32, 20, 3)
