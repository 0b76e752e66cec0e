"""Saving without ever leaving a half-written file, and loading without
trusting the file.

Every file goes to a temporary name in the same folder and is renamed into
place, so a crash at any moment leaves the previous version intact. Checkpoints
hold only tensors and plain Python types, so they load with
`torch.load(weights_only=True)`, which refuses pickled code.
"""
import os
import pickle
import signal
from pathlib import Path

import torch

from FCN_network import build_generator

FORMAT = 'pix2pix-checkpoint'
VERSION = 1


class CheckpointError(Exception):
    """A file that is not a usable checkpoint of this repo."""


def temporary_for(path):
    """A temporary name beside path; also removes those a killed process left."""
    for stale in path.parent.glob(f'.{path.name}.*.tmp'):
        stale.unlink(missing_ok=True)
    return path.with_name(f'.{path.name}.{os.getpid()}.tmp')


def atomic_write(path, data):
    """Write bytes or text to path via a temporary file and a rename."""
    path = Path(path)
    temporary = temporary_for(path)
    try:
        with open(temporary, 'wb') as file:
            file.write(data.encode() if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save(state, path):
    """torch.save, atomically. PIX2PIX_FAULT=kill_in_save@EPOCH is a test hook
    that SIGKILLs the process with the temporary file half written."""
    path = Path(path)
    temporary = temporary_for(path)
    try:
        torch.save(state, temporary)
        if os.environ.get('PIX2PIX_FAULT') == f'kill_in_save@{state.get("epoch")}':
            os.truncate(temporary, os.path.getsize(temporary) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
        with open(temporary, 'rb') as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load(path):
    """The checkpoint dict at path, or CheckpointError with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else 'unsafe content'
        raise CheckpointError(f'{path}: refused to load: it holds more than tensors and plain data '
                              f'(possibly code), which a checkpoint of this repo never does ({first_line})') from None
    except Exception as error:  # a damaged or foreign file fails in many ways deep inside torch.load
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint (truncated or another format: '
                              f'{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__})') from None
    if not isinstance(state, dict) or state.get('format') != FORMAT:
        what = f'a {type(state).__name__}' if not isinstance(state, dict) else f'a dict with keys {sorted(state)[:6]}'
        raise CheckpointError(f'{path}: not a checkpoint of this repo (found {what}; '
                              f'expected one saved by train.py)')
    if state.get('version') != VERSION:
        raise CheckpointError(f'{path}: checkpoint version {state.get("version")}, this code reads {VERSION}')
    return state


def describe(config):
    text = config['model']
    if config['model'] == 'fcn':
        text += ' with skips' if config['skips'] else ' without skips'
    return f"{text}, width {config['width']}"


def load_weights(module, weights, path, config):
    """load_state_dict with a one-line error when the checkpoint is for another network."""
    try:
        module.load_state_dict(weights)
    except RuntimeError:
        raise CheckpointError(f'{path}: holds weights that do not fit the network '
                              f'{describe(config)}') from None


def has_average(state):
    """Whether the run kept a weight average (EMA) and it has started."""
    return state.get('ema') is not None and state['ema']['n_averaged'] > 0


def generator_weights(state):
    """The generator weights a checkpoint is used with: its weight average when
    `has_average`, else the trained weights. This is what train.py validated, so
    evaluate.py reproduces the logged val_l1."""
    if has_average(state):
        return {name.removeprefix('module.'): weight for name, weight in state['ema'].items()
                if name.startswith('module.')}
    return state['model']


def load_generator(path, device='cpu'):
    """(generator in eval mode, checkpoint) from a checkpoint alone: the network's
    settings travel inside it."""
    state = load(path)
    generator = build_generator(state['config'])
    load_weights(generator, generator_weights(state), path, state['config'])
    return generator.to(device).eval(), state
