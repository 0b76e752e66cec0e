"""Saving without ever leaving a half-written file, and loading without
trusting the file.

A checkpoint is written as every file is (files.py): to a temporary name, then
renamed into place, so a crash leaves the previous version intact. Checkpoints
hold only tensors and plain Python types, so they load with
`torch.load(weights_only=True)`, which refuses pickled code.
"""
import os
import pickle
from pathlib import Path

import torch

import hooks
from errors import UserError
from files import temporary_for
from FCN_network import GENERATORS, build_generator

FORMAT = 'pix2pix-checkpoint'
VERSION = 1
# what every checkpoint saved before these settings existed was trained with: transposed
# convolutions, RGB to RGB, 8-bit targets (output_bits: what predict.py writes)
OLD_DEFAULTS = {'upsample': 'transpose', 'input_channels': 3, 'output_channels': 3, 'output_bits': 8}


class CheckpointError(UserError):
    """A file that is not a usable checkpoint of this repo."""


def save(state, path):
    """torch.save, atomically."""
    path = Path(path)
    temporary = temporary_for(path)
    try:
        torch.save(state, temporary)
        hooks.kill_half_written(f'kill_in_save@{state.get("epoch")}', temporary)
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
    if isinstance(state.get('config'), dict):
        for name, value in OLD_DEFAULTS.items():
            state['config'].setdefault(name, value)
    return state


def describe(config):
    """'fcn (width 16, skips True)': the network and the settings it is built from."""
    settings = ', '.join(f'{name} {config[name]}' for name in GENERATORS[config['model']].settings)
    return f"{config['model']} ({settings})"


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


def inference_config(config):
    """The settings that using a generator needs: the network, its channels in and out,
    the bit depth of its targets, its direction and image size, and the dataset by name
    (its palette, and datasets/NAME for evaluate.py), so a shipped file holds no path of
    the machine it was trained on."""
    config = {**OLD_DEFAULTS, **config}
    kept = ('model', *GENERATORS[config['model']].settings, 'input_channels', 'output_channels', 'output_bits',
            'direction', 'image_size')
    return {**{name: config[name] for name in kept}, 'dataset': Path(str(config['dataset'])).name}


def generator_only(state):
    """A checkpoint reduced to what using the network needs: its `inference_config`,
    history and the generator weights `generator_weights` picks (the average where
    there is one). evaluate.py, predict.py and demo.py load it like any checkpoint;
    training cannot resume from it."""
    return {'format': FORMAT, 'version': VERSION, 'epoch': state['epoch'], 'config': inference_config(state['config']),
            'history': state['history'], 'model': generator_weights(state)}
