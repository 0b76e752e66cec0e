"""Synthetic paired images for every test: small, made on the fly, learnable
(the right half is a fixed colour mapping of blocky shapes on the left), and the
ways tests run the scripts: as a user does (run_script, a new process), or their
main in this process (run_main, no start-up), for what a run computes."""
import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import checkpoint
import errors
import evaluate
import export
import predict
import train
from FCN_network import build_generator
from pairs import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = SHARED_DATA


def make_pair(rng, size):
    """RGB uint8 (size, 2*size, 3): random rectangles left, their label colours right."""
    left = np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8)
    right = np.zeros((size, size, 3), np.uint8)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
    for _ in range(4):
        y, x = rng.integers(0, size - 4, 2)
        h, w = rng.integers(4, size // 2, 2)
        label = rng.integers(0, len(palette))
        left[y:y + h, x:x + w] = palette[label] // 2 + rng.integers(0, 60, 3).astype(np.uint8)
        right[y:y + h, x:x + w] = palette[label]
    return np.concatenate([left, right], axis=1)


def write_pairs(folder, count, size=32, seed=0, start=1):
    """count JPEG pairs named start.jpg, start+1.jpg, ... in folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(start, start + count):
        cv2.imwrite(str(folder / f'{i}.jpg'), cv2.cvtColor(make_pair(rng, size), cv2.COLOR_RGB2BGR))
    return folder


def write_ab_pairs(folder, count, size=32, seed=0, start=1, suffixes=('.png', '.png')):
    """count pairs as folder/A/N and folder/B/N (start, start+1, ...): the halves of
    make_pair, input in A, target in B, written with the given suffixes."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for side, suffix in zip('AB', suffixes):
        (folder / side).mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        pair = make_pair(rng, size)
        for half, (side, suffix) in enumerate(zip('AB', suffixes)):
            cv2.imwrite(str(folder / side / f'{i}{suffix}'),
                        cv2.cvtColor(pair[:, half * size:(half + 1) * size], cv2.COLOR_RGB2BGR))
    return folder


def write_tiny_dataset(root):
    """root/train (8 pairs) and root/val (4 pairs) of 32x32 halves."""
    write_pairs(root / 'train', 8, seed=1)
    write_pairs(root / 'val', 4, seed=2)
    return root


@pytest.fixture
def pairs_dir(tmp_path):
    """A tiny dataset folder: train/ (8 pairs) and val/ (4 pairs) of 32x32 halves."""
    return write_tiny_dataset(tmp_path / 'tiny')


def run_script(script, *args, cwd, env=None, check=True, timeout=300):
    """Run a repo script as a user would; returns the CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    result = subprocess.run([sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, env=full_env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f'{script} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}')
    return result


def script_module(name):
    """scripts/NAME.py imported as a module (its `if __name__ == '__main__'` block does not run)."""
    spec = importlib.util.spec_from_file_location(name, REPO / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# each script's main as its `if __name__ == '__main__'` block calls it, less errors.cli
MAINS = {'train.py': lambda: train.main(train.parse_overrides(sys.argv[1:], train.config)),
         'evaluate.py': lambda: evaluate.main(evaluate.parse_args()),
         'predict.py': predict.main, 'export.py': export.main,
         'scripts/sweep.py': lambda: script_module('sweep').main(sys.argv[1:]),
         'scripts/gan_probe.py': lambda: script_module('gan_probe').main(sys.argv[1:])}


def run_main(script, *args, cwd, under_cli=False):
    """A script's main called in this process with the command line run_script would give
    it, from cwd: for tests of what a run computes, not of its command line. A user's
    error raises (UserError) instead of exiting 1; under_cli: main runs under errors.cli,
    as the script's __main__ runs it, and the exit status is returned. What the run
    changes here (torch's threads and random state, train.py's launch clock, argv, cwd)
    is put back after. Returns its exit status, stdout and stderr, as run_script does."""
    stdout, stderr = io.StringIO(), io.StringIO()
    threads, random_state, launched, argv = torch.get_num_threads(), torch.get_rng_state(), train._launched, sys.argv
    sys.argv = [str(REPO / script), *map(str, args)]
    train._launched = time.time()  # the run's wall clock starts now, as a new process's would
    returncode = 0
    try:
        with contextlib.chdir(cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            if under_cli:
                try:
                    errors.cli(MAINS[script])
                except SystemExit as exit:
                    returncode = exit.code
            else:
                MAINS[script]()
    except BaseException:
        print(stdout.getvalue(), stderr.getvalue(), sep='\n')  # shown with the failure
        raise
    finally:
        sys.argv, train._launched = argv, launched
        torch.set_num_threads(threads)
        torch.set_rng_state(random_state)
    return types.SimpleNamespace(returncode=returncode, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def run_cli(script, *args, cwd):
    """run_script(..., check=False) for a script's one-line errors, without a new process's
    imports: main under errors.cli in this process (run_main). What happens before main
    (train.py's settings check above its imports) still needs run_script."""
    return run_main(script, *args, cwd=cwd, under_cli=True)


def tiny_run_args(data, out, **settings):
    """Settings for a fast training run on the tiny set, writing under out."""
    base = dict(dataset=data, image_size=32, width=4, batch_size=4, num_epochs=2, save_every=1, num_samples=2,
                checkpoint_dir=out / 'checkpoints', train_results_dir=out / 'train_results',
                val_results_dir=out / 'val_results', cache_dir=out / 'cache', threads=1)
    base.update(settings)
    return [f'--{k}={v}' for k, v in base.items()]


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """The tiny dataset, written once for the whole test run; tests only read it."""
    return write_tiny_dataset(tmp_path_factory.mktemp('tiny'))


@pytest.fixture(scope='session')
def tiny_run(tiny_data, tmp_path_factory):
    """One run of tiny_run_args' settings (2 epochs, saved after each) on tiny_data, on the
    CPU in fp32 as the tests recompute it, made once for the whole test run: its folder.
    Tests only read it; one that would change a file copies it first."""
    out = tmp_path_factory.mktemp('tiny_run')
    run_main('train.py', *tiny_run_args(tiny_data, out, device='cpu', amp='off'), cwd=out)
    return out


def save_generator(path, config, generator):
    """A checkpoint as train.py writes it, holding the given generator."""
    optimizer = torch.optim.Adam(generator.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    state = {'format': checkpoint.FORMAT, 'version': checkpoint.VERSION, 'epoch': 1, 'config': config,
             'history': [], 'model': generator.state_dict(), 'optimizer': optimizer.state_dict(),
             'scheduler': scheduler.state_dict(), 'scaler': torch.amp.GradScaler('cpu', enabled=False).state_dict()}
    checkpoint.save(state, path)
    return path


def constant_colour_checkpoint(path, colour, **settings):
    """A checkpoint whose generator outputs one RGB colour everywhere, whatever its
    input: its last layer's weights are zero and its bias is the colour before tanh."""
    config = dict(train.config, model='fcn', width=4, skips=True, image_size=32, **settings)
    generator = build_generator(config)
    last = generator.up[-1][0]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.atanh(torch.tensor(colour) / 127.5 - 1))
    return save_generator(path, config, generator)
