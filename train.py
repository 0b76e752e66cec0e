"""Train a paired image-to-image network (Pix2Pix) on a folder of left|right images,
or on inputs in A/ and targets of the same names in B/.

    python train.py                                   # the settings below
    python train.py --dataset=cityscapes --num_epochs=100
    python train.py --resume                          # continue checkpoints/latest.pth
    torchrun --nproc_per_node=4 train.py --model=unet256 --gan=True
    python train.py --help                            # the settings below

Every setting is a plain assignment in the block below: edit it, or override it
on the command line as --name=value.
"""
import ast
import gc
import hashlib
import math
import os
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType

from errors import UserError, cli
from pairs import DatasetError, make_split, parse_image_size, split_source  # no torch: validate runs before it

_launched = time.time()  # the metrics' wall clock starts here, before torch's import, as the user's does

# ----------------------------------------------------------------------------- settings
# data
dataset = 'facades'          # a name under datasets/, or a folder holding train/ and val/ (each left|right
                             # images or A/ and B/), or A/ and B/ alone: inputs and targets matched by file name
val_fraction = 0.1           # without a val split: the share of pairs held out once (at least 1), as list files
direction = 'AtoB'           # AtoB: left -> right half (photo -> label map); BtoA: the reverse
image_size = 256             # each half is resized to this square when decoded, or to WIDTHxHEIGHT ('512x256');
                             # 0 keeps the file's size
augment = True               # shift training pairs by up to 16 px (mirrored borders) and mirror them
patch_size = 128             # fcn with augment: the first patch_epochs train on random crops of this side,
patch_epochs = 0.5           # about 4x cheaper at 128, then whole images; patch_size 0: whole images throughout
skip_bad_images = False      # warn about and skip unreadable images instead of stopping
input_channels = 3           # channels the network reads: 1 (grey; colour files are converted), 3 (RGB), 4 (RGBA)
output_channels = 3          # channels it writes, the targets read likewise (4: the files need alpha)
cache_dir = 'datasets/cache'  # decoded pixels, memory-mapped across runs; '' decodes into RAM each run
# model
model = 'fcn'                # 'fcn' (4 down + 4 up blocks) or 'unet256' (the Pix2Pix generator)
width = 16                   # channels of the first block (the assignment's FCN: 8)
skips = True                 # fcn only: join each down block to its mirrored up block
upsample = 'transpose'       # the up blocks: 'transpose' (4x4 stride-2 transposed convolutions, the assignment's),
                             # 'transpose_blur' (then a fixed blur that cancels their lattice), 'nearest' or
                             # 'bilinear' (resize, then 3x3 conv), 'subpixel' (3x3 conv, pixel shuffle)
gan = False                  # add the PatchGAN discriminator and its loss
gan_loss = 'vanilla'         # 'vanilla' (BCE) or 'lsgan' (least squares)
lambda_l1 = 100.0            # weight of L1 against the GAN loss (the paper's 100)
d_width = 64                 # channels of the discriminator's first layer (the paper's 64)
d_layers = 3                 # its stride-2 layers: 3 scores 70x70 patches (the paper's), 2: 34x34, 1: 16x16
d_norm = 'batch'             # its normalisation: 'batch' (the paper's BatchNorm) or 'spectral' (spectral norm on
                             # every convolution, no BatchNorm: D cannot win outright, Miyato et al. 2018)
gan_start = 0.0              # fraction of the epochs trained on L1 alone before the discriminator joins
# optimisation
num_epochs = 240             # facades: the README gives its time on a 2-core CPU
batch_size = 8               # per process: under torchrun the global batch is batch_size x processes
lr = 2e-3                    # for L1 alone; the paper's 2e-4 is safer with the GAN on
lr_d = 0.0                   # the discriminator's lr; 0: the same as lr
beta1 = 0.5
beta2 = 0.999
lr_schedule = 'linear'       # 'linear': constant, then linearly to 0 over the last half (pix2pix);
                             # 'step': x lr_gamma every lr_step epochs (the assignment); 'constant'
lr_step = 200
lr_gamma = 0.2
ema = 0.999                  # per-step decay of the weight average (EMA) that is validated, saved and used; 0: none
ema_start = 0.5              # fraction of the epochs trained before the averaging starts (it starts as a copy)
scale_lr = False             # under torchrun: multiply lr by the number of processes
# output
validate_every = 1           # epochs between validation passes
save_every = 50              # epochs between numbered checkpoints and result images (and the last epoch)
num_samples = 5              # fixed train and val images saved as input | target | output panels
checkpoint_dir = 'checkpoints'
train_results_dir = 'train_results'
val_results_dir = 'val_results'
resume = ''                  # 'latest' (bare --resume) or a checkpoint path: continue that run exactly
tensorboard = False          # also log to checkpoint_dir/tensorboard
# system
seed = 0
device = 'auto'              # 'auto' (CUDA, else Apple's MPS, else the CPU), 'cpu', 'cuda', 'cuda:1', 'mps'
threads = 0                  # CPU threads per process; 0: the cores, shared among local processes
num_workers = -1             # loader processes; -1: none on CPU (the cache makes loading cheap), 2 on CUDA
prefetch = 'auto'            # cut the next batch in a thread while this one trains: 'on', 'off', 'auto' (on
                             # with CUDA; on a CPU the thread only takes cores from the step)
amp = 'auto'                 # 'auto': bf16 on CUDA and on CPUs with bf16 units, else off (fp32); 'bf16', 'fp16', 'off'
channels_last = True         # NHWC memory format, faster convolutions on CPU and tensor cores
compile = False              # torch.compile the networks (pays off only for long GPU runs)
sync_bn = True               # under torchrun on CUDA: SyncBatchNorm, so statistics cover the global batch
backend = 'auto'             # torchrun process group: 'auto' (nccl on CUDA, gloo on CPU), 'gloo', 'nccl'
# -----------------------------------------------------------------------------
config = {name: value for name, value in globals().items()
          if not (name.startswith('_') or callable(value) or isinstance(value, ModuleType))}
# What each setting takes. `validate` checks every setting against these tables once the block and the
# --name=value overrides are merged, before torch is imported or any data is read: a new setting is its
# line in the block and its name in one type table (and in a range or choice table if it has one).
BOOLS = {'augment', 'skip_bad_images', 'skips', 'gan', 'scale_lr', 'tensorboard', 'channels_last', 'compile',
         'sync_bn'}
INTS = {'patch_size', 'width', 'd_width', 'd_layers', 'num_epochs', 'batch_size', 'lr_step', 'validate_every',
        'save_every', 'num_samples', 'seed', 'threads', 'num_workers', 'input_channels', 'output_channels'}
FLOATS = {'val_fraction', 'patch_epochs', 'lambda_l1', 'gan_start', 'lr', 'lr_d', 'beta1', 'beta2', 'lr_gamma',
          'ema', 'ema_start'}  # an int is taken too (lr = 1)
STRINGS = {'dataset', 'cache_dir', 'checkpoint_dir', 'train_results_dir', 'val_results_dir', 'resume', 'device'}
# image_size: a side or 'WIDTHxHEIGHT' (image_size_value); each setting in CHOICES: one of its strings
# each generator's side multiple and whether it trains on patches: FCN_network.GENERATORS, which needs torch
# (tests/test_settings.py holds the two together)
MODELS = {'fcn': (16, True), 'unet256': (256, False)}
CHOICES = {'model': tuple(MODELS), 'direction': ('AtoB', 'BtoA'), 'gan_loss': ('vanilla', 'lsgan'),
           'upsample': ('transpose', 'transpose_blur', 'nearest', 'bilinear', 'subpixel'),   # FCN_network.UPSAMPLES (needs torch)
           'd_norm': ('batch', 'spectral'),
           'lr_schedule': ('linear', 'step', 'constant'), 'amp': ('auto', 'bf16', 'fp16', 'off'),
           'backend': ('auto', 'gloo', 'nccl'), 'prefetch': ('auto', 'on', 'off'),
           'input_channels': (1, 3, 4), 'output_channels': (1, 3, 4)}
POSITIVE = {'width', 'd_width', 'd_layers', 'num_epochs', 'batch_size', 'lr', 'lr_step', 'lr_gamma',
            'validate_every', 'save_every'}
FRACTIONS = {'ema', 'ema_start', 'patch_epochs', 'gan_start', 'val_fraction', 'beta1', 'beta2'}  # in [0, 1)
AT_LEAST = {'patch_size': 0, 'lambda_l1': 0, 'lr_d': 0, 'num_samples': 0, 'seed': 0, 'threads': 0,
            'num_workers': -1}
# settings that act only when another one has a given value: given as --name=value (and different from the
# block) while it has not, they are an error rather than silently ignored. In the block they may wait there
# for the day the other is switched on.
ONLY_WITH = {'gan_loss': ('gan', True), 'lambda_l1': ('gan', True), 'd_width': ('gan', True),
             'd_layers': ('gan', True), 'd_norm': ('gan', True), 'lr_d': ('gan', True), 'gan_start': ('gan', True),
             'skips': ('model', 'fcn'), 'lr_step': ('lr_schedule', 'step'), 'lr_gamma': ('lr_schedule', 'step')}
TYPES = {**dict.fromkeys(BOOLS, bool), **dict.fromkeys(INTS, int), **dict.fromkeys(FLOATS, float),
         **dict.fromkeys(STRINGS | set(CHOICES) - INTS, str), 'image_size': 'image_size'}
EXPECTED = {bool: 'bool: True or False', int: 'int (a whole number)', float: 'float (a number)',
            str: 'str (text in quotes)',
            'image_size': "one side like 256, WIDTHxHEIGHT like 512x256, or 0 for the files' own size"}
# settings that may differ when a run is resumed; the others must match the checkpoint
RESUMABLE = {'num_epochs', 'resume', 'device', 'threads', 'num_workers', 'prefetch', 'validate_every', 'save_every',
             'tensorboard', 'compile', 'skip_bad_images', 'cache_dir', 'backend', 'checkpoint_dir',
             'train_results_dir', 'val_results_dir'}
# settings newer than some checkpoints, with the values that reproduce the runs saved before them
# (the network's own, upsample and channels, come from checkpoint.load)
OLD_CHECKPOINT_DEFAULTS = {'ema': 0.0, 'ema_start': 0.0, 'patch_size': 0, 'patch_epochs': 0.0, 'd_norm': 'batch'}


def settings_help():
    """The settings block of this file as it stands, grouped and commented: what --help prints."""
    block = Path(__file__).read_text(encoding='utf-8').split('# ' + '-' * 77)[1]
    return ('usage: python train.py [--name=value ...]  (or torchrun [...] train.py [--name=value ...])\n'
            'every setting, with its default and what it does:\n' + block.split('\n', 1)[1].rstrip() + '\n')


def parse_overrides(argv, settings):
    """['--name=value', ...] -> {name: value}, each text read as its setting's type (TYPES);
    whether the value is a valid one is `validate`'s to say."""
    overrides = {}
    for argument in argv:
        name, has_value, text = argument[2:].partition('=') if argument.startswith('--') else ('', '', '')
        if name == 'resume' and not has_value:
            has_value, text = True, 'latest'
        if name not in settings or not has_value:
            raise UserError(f'unknown setting {argument!r}; use --name=value with a name from: {", ".join(settings)}')
        kind = TYPES.get(name, str)  # a name the block has and TYPES lacks: validate says so
        try:
            overrides[name] = typed(kind, text)
        except (ValueError, SyntaxError, KeyError, DatasetError):
            raise UserError(f'--{name}={text}: expected {EXPECTED[kind]}') from None
    return overrides


def script_settings(parser, argv, defaults):
    """For a script that trains as train.py does (scripts/sweep.py, scripts/gan_probe.py):
    its own options, read by its argparse parser, and the run's settings, from the
    --name=value it leaves (parse_overrides) over the block and the script's defaults,
    checked by validate. Returns (options, settings, {name: value given})."""
    options, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest, config)
    settings = {**config, **defaults, **overrides}
    validate(settings, overrides)
    return options, settings, overrides


def typed(kind, text):
    """A --name=value's text as a value of its setting's kind (a TYPES value)."""
    if kind == 'image_size':
        return image_size_value(text)
    if kind is bool:
        return {'true': True, 'false': False, '1': True, '0': False}[text.lower()]
    if kind in (int, float):
        value = ast.literal_eval(text)
        if not is_a(kind, value):
            raise ValueError(text)
        return kind(value)
    return text


def is_a(kind, value):
    """Whether a value is of the kind (a TYPES value): True is no int here, and 3 is a float."""
    if kind == 'image_size':
        try:
            parse_image_size(value)
        except DatasetError:
            return False
        return isinstance(value, (int, str))
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def validate(settings, overrides=()):
    """Every check on a run's settings (the block merged with the --name=value overrides),
    however each was set: that it is a setting, its type, its choices or range, then the
    rules between settings that can be known before any data is read. Raises UserError
    naming the setting, where it was set and what is valid."""
    def where(name):
        value = settings[name]
        if name not in overrides:
            return f'{name} = {value!r} in the settings block'
        return f'--{name}={value!r}' if isinstance(value, str) and value != value.strip() else f'--{name}={value}'

    for name, value in settings.items():
        if name not in TYPES:
            known = ', '.join(key for key in settings if key in TYPES)
            raise UserError(f'{where(name)}: not a setting (a typo?); the settings are: {known}')
        if not is_a(TYPES[name], value):
            raise UserError(f'{where(name)}: expected {EXPECTED[TYPES[name]]}')
        if name in CHOICES and value not in CHOICES[name]:
            raise UserError(f'{where(name)}: expected one of {", ".join(map(str, CHOICES[name]))}')
        if name in POSITIVE and not value > 0:  # NaN too
            raise UserError(f'{where(name)}: must be greater than 0')
        if name in FRACTIONS and not 0 <= value < 1:
            raise UserError(f'{where(name)}: must be at least 0 and below 1')
        if name in AT_LEAST and not value >= AT_LEAST[name]:
            raise UserError(f'{where(name)}: must be at least {AT_LEAST[name]}')
    for name in TYPES:
        if name not in settings:
            raise UserError(f'{name} is missing from the settings block')
    if settings['resume']:  # the run takes its checkpoint's settings, checked when it started
        return
    for name, (other, needed) in ONLY_WITH.items():
        if name in overrides and overrides[name] != config.get(name) and settings[other] != needed:
            raise UserError(f'{where(name)}: acts only with {other}={needed}, and {other} is {settings[other]!r} '
                            f'(set --{other}={needed}, or leave {name} out)')
    model, (multiple, _) = settings['model'], MODELS[settings['model']]
    shape = parse_image_size(settings['image_size'])
    if shape and (shape[0] % multiple or shape[1] % multiple):
        height, width = (max(multiple, round(side / multiple) * multiple) for side in shape)
        raise UserError(f'{where("image_size")}: {model} needs sides that are multiples of {multiple}, '
                        f'such as {width}x{height}')
    side = first_patch_side(settings)
    if side and side % multiple:
        raise UserError(f'{where("patch_size")}: {model} needs a multiple of {multiple} (or 0 for whole images)')
    if shape:  # else only the files know their size: load_split checks this once they are read
        check_discriminator_fits(settings, shape)


def first_patch_side(cfg):
    """training.patch_side(cfg, 1) without torch: the side of the first epoch's crops, or None."""
    trains_on_patches = cfg['augment'] and MODELS[cfg['model']][1] and cfg['patch_size'] and \
        1 <= cfg['patch_epochs'] * cfg['num_epochs']
    return cfg['patch_size'] if trains_on_patches else None


def check_discriminator_fits(cfg, shape):
    """A GAN's images (height, width) and first patches must be at least as large as its
    discriminator's receptive steps; else a shape error deep inside it."""
    smallest, needed = min(first_patch_side(cfg) or math.inf, *shape), 2 ** (cfg['d_layers'] + 2)
    if cfg['gan'] and smallest < needed:
        raise UserError(f"the discriminator (d_layers={cfg['d_layers']}) needs images and patches of at least "
                        f'{needed} px; these are {smallest} (raise patch_size or image_size, or lower d_layers)')


def image_size_value(text):
    """'256' -> 256, '512x256' -> '512x256' (width x height), '256x256' -> 256: a square
    stays an int, as older checkpoints hold it, so resuming one compares equal."""
    height, width = parse_image_size(text) or (0, 0)
    return width if width == height else f'{width}x{height}'


# the settings are parsed and checked before the heavy imports, so a bad value fails at once
if __name__ == '__main__':
    if {'-h', '--help'} & set(sys.argv[1:]):
        sys.exit(print(settings_help(), end=''))
    _overrides = cli(parse_overrides, sys.argv[1:], config)
    cli(validate, dict(config, **_overrides), _overrides)

import torch
import torch.distributed as dist
# before any process group exists: DDP would import it later, and its functions would then
# bind the live group as a default argument, keeping it alive past destroy_process_group
import torch.distributed.nn  # noqa: F401
from tqdm import tqdm

import checkpoint
import hooks
import training
import visualize
from FCN_network import check_sides, pick_device
from errors import INTERRUPTED_STATUS  # here, not above the block: config takes every value named there
from facades_dataset import FacadesDataset, to_float
from files import atomic_write


def main(overrides):
    """The training story: processes, settings, data, networks (resumed or
    fresh), then each epoch trains, validates and saves."""
    rank, world_size, device = setup_processes(dict(config, **overrides))
    cfg, resumed = resume_settings(dict(config, **overrides), overrides)
    is_main = rank == 0
    if is_main:
        print('config: ' + ' '.join(f'{k}={v}' for k, v in cfg.items()), flush=True)
        check_output_folders(cfg)
    try:
        if is_main:  # before the other processes read the lists, at load_split's barrier
            made = make_split(cfg['dataset'], cfg['val_fraction'], cfg['seed'], cfg['skip_bad_images'])
            if made:
                print(made, flush=True)
        train_set = load_split(cfg, 'train', rank, world_size)
        val_set = load_split(cfg, 'val', rank, world_size)
        cfg['output_bits'] = train_set.bits  # not a setting, found in the data: predict.py writes 16-bit PNGs for 16
        if is_main:
            print(f'data: {len(train_set)} train, {len(val_set)} val pairs from {cfg["dataset"]} ({cfg["direction"]}'
                  f'{", 16-bit" if train_set.bits == 16 else ""})')
            if world_size > 1 and cfg['sync_bn'] and device.type != 'cuda':  # PyTorch's SyncBatchNorm is GPU-only
                print('note: sync_bn needs CUDA; on CPU each process normalises with its own batch statistics')
        loader = training.train_loader(train_set, cfg, device, rank, world_size)
        run = training.build_run(cfg, device, world_size, resumed)
        if resumed and is_main:
            print(f'resumed from epoch {run.epoch}')
        writer = open_tensorboard(Path(cfg['checkpoint_dir'])) if cfg['tensorboard'] and is_main else None

        for epoch in range(run.epoch + 1, cfg['num_epochs'] + 1):
            started, lr = time.time(), run.optimizer.param_groups[0]['lr']
            losses = training.train_epoch(run, loader, train_set, epoch, training.patch_side(cfg, epoch), rank,
                                          world_size)
            if is_main:
                end_epoch(run, losses, lr, started, train_set, val_set, writer)
            if world_size > 1:
                dist.barrier()

        if world_size > 1:
            end_processes(run, rank, world_size)
    except KeyboardInterrupt:  # the status of a process ended by Ctrl-C, as errors.cli gives it
        if is_main:
            print(interrupted(cfg, world_size), file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)


def end_epoch(run, losses, lr, started, train_set, val_set, writer):
    """Rank 0 after each epoch: validate (when due), log, save, print."""
    cfg, epoch = run.cfg, run.epoch
    final = epoch == cfg['num_epochs']
    row = {'epoch': epoch, **losses}
    if epoch % cfg['validate_every'] == 0 or final or epoch % cfg['save_every'] == 0:
        row['val_l1'] = training.validate(run.eval_model(), val_set, cfg, run.device, run.amp_dtype)
    now = time.time()
    row.update(lr=lr, seconds=round(now - started, 2), minutes=round(run.minutes_before + (now - _launched) / 60, 3))
    run.history.append(row)
    save_epoch(run, final, train_set, val_set, writer)
    tqdm.write(f'epoch {epoch}: ' + '  '.join(f'{k} {format_value(v)}' for k, v in row.items() if k != 'epoch'))
    hooks.kill_if(f'kill_after_epoch@{epoch}')


def setup_processes(cfg):
    """(rank, world_size, device); joins the process group under torchrun."""
    rank, world_size = int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    # one device per local process; Apple's MPS only for a single one (DDP does not run on it)
    device = pick_device(cfg['device'], int(os.environ.get('LOCAL_RANK', 0)), allow_mps=world_size == 1)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed image sizes: the fastest kernels, picked once
    local_processes = int(os.environ.get('LOCAL_WORLD_SIZE', 1))
    torch.set_num_threads(cfg['threads'] or max(1, (os.cpu_count() or 1) // local_processes))
    if world_size > 1:
        backend = cfg['backend']
        if backend == 'auto':
            backend = 'nccl' if device.type == 'cuda' else 'gloo'
        dist.init_process_group(backend, device_id=device if backend == 'nccl' else None)
    return rank, world_size, device


def resume_settings(cfg, overrides):
    """(settings, checkpoint or None): a resumed run takes its saved settings,
    with only RESUMABLE ones overridable."""
    if not cfg['resume']:
        return cfg, None
    path = Path(cfg['checkpoint_dir']) / 'latest.pth' if cfg['resume'] == 'latest' else Path(cfg['resume'])
    resumed = checkpoint.load(path)
    resumed['path'] = str(path)
    saved = resumed['config']
    changed = [k for k in overrides if k not in RESUMABLE and overrides[k] != saved.get(k, overrides[k])]
    if changed:
        raise UserError(f'{path} was trained with ' + ', '.join(f'{k}={saved[k]!r}' for k in changed) +
                        '; a resumed run must keep them (start a new run in another checkpoint_dir instead)')
    return {**config, **OLD_CHECKPOINT_DEFAULTS, **{k: v for k, v in saved.items() if k in config}, **overrides}, resumed


def check_output_folders(cfg):
    for folder in (cfg['checkpoint_dir'], cfg['train_results_dir'], cfg['val_results_dir']):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            atomic_write(Path(folder) / '.write_test', b'')
            (Path(folder) / '.write_test').unlink()
        except OSError as error:
            raise UserError(f'cannot write to output folder {folder}: {error.strerror or error}') from None


def load_split(cfg, split, rank, world_size):
    """The rank-0 process decodes and caches; the others then map its cache."""
    def make():
        return FacadesDataset(split_source(cfg['dataset'], split), cfg['direction'],
                              augment=cfg['augment'] and split == 'train', image_size=cfg['image_size'],
                              cache_dir=cfg['cache_dir'], skip_bad_images=cfg['skip_bad_images'],
                              progress=rank == 0, channels=(cfg['input_channels'], cfg['output_channels']))
    data = make() if rank == 0 else None
    if world_size > 1:
        dist.barrier()
    data = data or make()
    if data.skipped and rank == 0:
        print(f'skipped {len(data.skipped)} unreadable {split} images (skip_bad_images is on)')
    # validate checked these before any data was read where image_size gave the size; with image_size 0
    # only the files know it
    check_sides(data.image_shape, cfg['model'], data.source, 'set image_size to such a size (one side or WIDTHxHEIGHT)')
    if split == 'train':
        check_discriminator_fits(cfg, data.image_shape)
    return data


def save_epoch(run, final, train_set, val_set, writer):
    """Everything a run writes at the end of an epoch: latest checkpoint, metrics
    CSV, the loss curve at validated epochs, at save epochs a numbered checkpoint,
    the sample panels and the galleries, and the TensorBoard log when it is on."""
    cfg, epoch, state = run.cfg, run.epoch, run.state()
    checkpoint_dir = Path(cfg['checkpoint_dir'])
    write_metrics_csv(checkpoint_dir / 'metrics.csv', run.history)
    if 'val_l1' in run.history[-1]:
        visualize.plot_losses(Path(cfg['train_results_dir']) / 'loss.png', run.history)
    panels = {}
    if epoch % cfg['save_every'] == 0 or final:
        checkpoint.save(state, checkpoint_dir / f"{cfg['model']}_epoch_{epoch}.pth")
        for split, data in (('train', train_set), ('val', val_set)):
            folder = Path(cfg[f'{split}_results_dir'])
            panels[split] = save_samples(run, data, folder / f'epoch_{epoch}')
            visualize.write_gallery(folder, run.history, split)
    checkpoint.save(state, checkpoint_dir / 'latest.pth')
    if writer:
        visualize.log_tensorboard(writer, run.history[-1], panels)


@torch.no_grad()
def save_samples(run, data, folder):
    """Input | target | output panels of the first num_samples pairs as folder/NAME.png
    (for an augmented training set, without its borders); returns {name: RGB uint8 panel}."""
    indices = list(range(min(run.cfg['num_samples'], len(data))))
    if not indices:
        return {}
    input_image, target_image = to_float(data.pair_batch(indices).to(run.device), training.memory_format(run.cfg),
                                         data.channels)
    generator = run.eval_model().eval()
    with training.autocast(run.device, run.amp_dtype):
        output = generator(input_image)
    generator.train()
    names = [Path(data.file_of(i)).stem for i in indices]
    panels = visualize.make_panels(input_image, target_image, output)
    visualize.write_pngs(folder, names, panels)
    return dict(zip(names, panels))


def write_metrics_csv(path, history):
    columns = list(dict.fromkeys(key for row in history for key in row))
    lines = [','.join(columns)] + [','.join(format_value(row.get(key, '')) for key in columns) for row in history]
    atomic_write(path, '\n'.join(lines) + '\n')


def format_value(value):
    return f'{value:.6g}' if isinstance(value, float) else str(value)


def open_tensorboard(checkpoint_dir):
    """A SummaryWriter logging to checkpoint_dir/tensorboard, or None (and one
    line saying why) when the package is missing: training goes on without it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print('tensorboard is not installed (pip install tensorboard); logging to it is off')
        return None
    return SummaryWriter(str(checkpoint_dir / 'tensorboard'))


def end_processes(run, rank, world_size):
    """Under torchrun, after the last epoch: check that the ranks agree, then leave
    the process group."""
    hooks.save_rank_weights(run.model, rank)
    check_ranks_agree(run.model, world_size, rank == 0)
    # DDP holds the process group: drop it first, so that destroying the group ends its
    # gloo threads now, not during interpreter shutdown (where one releasing a finished
    # collective's tensors needs the GIL and aborts the process: 'terminate called ...')
    run.model_wrapped = run.discriminator_wrapped = None
    gc.collect()
    dist.destroy_process_group()


def check_ranks_agree(model, world_size, is_main):
    """DDP keeps every rank's weights identical; say so, or stop if not."""
    # parameters only: BatchNorm running statistics are each rank's own between broadcasts
    digest = hashlib.sha1(b''.join(p.detach().float().cpu().numpy().tobytes() for p in model.parameters()))
    digests = [None] * world_size
    dist.all_gather_object(digests, digest.hexdigest())
    if len(set(digests)) != 1:
        raise UserError(f'the {world_size} processes ended with different weights: {digests}')
    if is_main:
        print(f'weights identical on all {world_size} processes ({digests[0][:12]})')


def interrupted(cfg, world_size):
    """What Ctrl-C prints: where the run's last finished epoch is, and the
    command that continues it, as typed."""
    latest = Path(cfg['checkpoint_dir']) / 'latest.pth'
    if not latest.is_file():
        return '\ninterrupted before the first epoch finished; nothing was saved'
    command = 'python train.py' if world_size == 1 else f'torchrun --standalone --nproc_per_node={world_size} train.py'
    command += ' --resume'
    if Path(cfg['checkpoint_dir']) != Path(config['checkpoint_dir']):
        command += ' ' + shlex.quote(f'--checkpoint_dir={cfg["checkpoint_dir"]}')
    return f'\ninterrupted; the last finished epoch is in {latest}; continue with: {command}'


if __name__ == '__main__':
    cli(main, _overrides)  # Ctrl-C before the run's settings are known: 'interrupted', status 130
