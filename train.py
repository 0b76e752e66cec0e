"""Train a paired image-to-image network (Pix2Pix) on a folder of left|right images.

    python train.py                                   # the settings below
    python train.py --dataset=cityscapes --num_epochs=100
    python train.py --resume                          # continue checkpoints/latest.pth
    torchrun --nproc_per_node=4 train.py --model=unet256 --gan=True

Every setting is a plain assignment in the block below: edit it, or override it
on the command line as --name=value.
"""
import ast
import gc
import hashlib
import math
import os
import shlex
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

_launched = time.time()  # the metrics' wall clock starts here, before torch's import, as the user's does

# ----------------------------------------------------------------------------- settings
# data
dataset = 'facades'          # a name under datasets/, or a folder holding train/ and val/
direction = 'AtoB'           # AtoB: left -> right half (photo -> label map); BtoA: the reverse
image_size = 256             # each half is resized to this square when decoded; 0 keeps the file's size
augment = True               # shift training pairs by up to 16 px (mirrored borders) and mirror them
patch_size = 128             # fcn with augment: the first patch_epochs train on random crops of this side,
patch_epochs = 0.5           # about 4x cheaper at 128, then whole images; patch_size 0: whole images throughout
skip_bad_images = False      # warn about and skip unreadable images instead of stopping
cache_dir = 'datasets/cache'  # decoded pixels, memory-mapped across runs; '' decodes into RAM each run
# model
model = 'fcn'                # 'fcn' (4 down + 4 up blocks) or 'unet256' (the Pix2Pix generator)
width = 16                   # channels of the first block (the assignment's FCN: 8)
skips = True                 # fcn only: join each down block to its mirrored up block
gan = False                  # add the 70x70 PatchGAN discriminator and its loss
gan_loss = 'vanilla'         # 'vanilla' (BCE) or 'lsgan' (least squares)
lambda_l1 = 100.0            # weight of L1 against the GAN loss (the paper's 100)
# optimisation
num_epochs = 240             # facades: about 11 minutes on a 2-core CPU in fp32, less with bf16 (see README)
batch_size = 8               # per process: under torchrun the global batch is batch_size x processes
lr = 2e-3                    # for L1 alone; the paper's 2e-4 is safer with the GAN on
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
          if not name.startswith('_') and isinstance(value, (bool, int, float, str))}
CHOICES = {'direction': ('AtoB', 'BtoA'), 'model': ('fcn', 'unet256'), 'gan_loss': ('vanilla', 'lsgan'),
           'lr_schedule': ('linear', 'step', 'constant'), 'amp': ('auto', 'bf16', 'fp16', 'off'),
           'backend': ('auto', 'gloo', 'nccl'), 'prefetch': ('auto', 'on', 'off')}
POSITIVE = {'width', 'num_epochs', 'batch_size', 'lr', 'lr_step', 'validate_every', 'save_every'}
FRACTIONS = {'ema', 'ema_start', 'patch_epochs'}  # in [0, 1)
# settings that may differ when a run is resumed; the others must match the checkpoint
RESUMABLE = {'num_epochs', 'resume', 'device', 'threads', 'num_workers', 'prefetch', 'validate_every', 'save_every',
             'tensorboard', 'compile', 'skip_bad_images', 'cache_dir', 'backend', 'checkpoint_dir',
             'train_results_dir', 'val_results_dir'}
# settings newer than some checkpoints, with the values that reproduce the runs saved before them
ADDED = {'ema': 0.0, 'ema_start': 0.0, 'patch_size': 0, 'patch_epochs': 0.0}


class UserError(Exception):
    """Something the user can fix; printed as one line, no traceback."""


def parse_overrides(argv, defaults):
    """['--name=value', ...] -> {name: value}, each typed like its default."""
    valid = ', '.join(defaults)
    overrides = {}
    for argument in argv:
        name, has_value, text = argument[2:].partition('=') if argument.startswith('--') else ('', '', '')
        if name == 'resume' and not has_value:
            has_value, text = True, 'latest'
        if name not in defaults or not has_value:
            raise UserError(f'unknown setting {argument!r}; use --name=value with a name from: {valid}')
        default = defaults[name]
        try:
            if isinstance(default, bool):
                value = {'true': True, 'false': False, '1': True, '0': False}[text.lower()]
            elif isinstance(default, (int, float)):
                value = ast.literal_eval(text)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                        (isinstance(default, int) and not isinstance(value, int)):
                    raise ValueError
                value = type(default)(value)
            else:
                value = text
        except (ValueError, SyntaxError, KeyError):
            raise UserError(f'--{name}={text}: expected {type(default).__name__} like the default {default!r}') from None
        if name in CHOICES and value not in CHOICES[name]:
            raise UserError(f'--{name}={text}: expected one of {", ".join(CHOICES[name])}')
        if name in POSITIVE and value <= 0:
            raise UserError(f'--{name}={text}: must be greater than 0')
        if name in FRACTIONS and not 0 <= value < 1:
            raise UserError(f'--{name}={text}: must be at least 0 and below 1')
        overrides[name] = value
    return overrides


# the settings are parsed before the heavy imports, so a typo fails at once
if __name__ == '__main__':
    try:
        _overrides = parse_overrides(sys.argv[1:], config)
    except UserError as _error:
        sys.exit(f'error: {_error}')

import numpy as np
import torch
import torch.distributed as dist
# before any process group exists: DDP would import it later, and its functions would then
# bind the live group as a default argument, keeping it alive past destroy_process_group
import torch.distributed.nn  # noqa: F401
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import checkpoint
import visualize
from FCN_network import (SIDE_MULTIPLE, DeviceError, PatchDiscriminator, SizeError, build_generator, check_sides,
                         pick_device)
from facades_dataset import DatasetError, FacadesDataset, split_source, to_float


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
        train_set = load_split(cfg, 'train', rank, world_size)
        val_set = load_split(cfg, 'val', rank, world_size)
        if is_main:
            print(f'data: {len(train_set)} train, {len(val_set)} val pairs from {cfg["dataset"]} ({cfg["direction"]})')
            if world_size > 1 and cfg['sync_bn'] and device.type != 'cuda':  # PyTorch's SyncBatchNorm is GPU-only
                print('note: sync_bn needs CUDA; on CPU each process normalises with its own batch statistics')
        sampler = DistributedSampler(range(len(train_set)), num_replicas=world_size, rank=rank, shuffle=True,
                                     seed=cfg['seed'])
        loader = train_loader(train_set, cfg, device, sampler)
        run = build_run(cfg, device, world_size, resumed)
        if resumed and is_main:
            print(f'resumed from epoch {run.epoch}')
        writer = open_tensorboard(Path(cfg['checkpoint_dir'])) if cfg['tensorboard'] and is_main else None

        for epoch in range(run.epoch + 1, cfg['num_epochs'] + 1):
            started, lr = time.time(), run.optimizer.param_groups[0]['lr']
            sampler.set_epoch(epoch)
            losses = train_epoch(run, loader, train_set, epoch, rank, world_size)
            if is_main:
                end_epoch(run, losses, lr, started, train_set, val_set, writer)
            if world_size > 1:
                dist.barrier()

        if world_size > 1:
            end_processes(run, rank, world_size)
    except KeyboardInterrupt:
        sys.exit(interrupted(cfg, world_size) if is_main else 130)


@dataclass
class Run:
    """A run's state in one place. The fields named in SAVED are what a
    checkpoint holds, under those names: saving and resuming walk over them.
    The others say how this process trains them."""
    cfg: dict
    device: torch.device
    amp_dtype: torch.dtype | None         # autocast's dtype; None: fp32
    model: nn.Module                      # the generator, unwrapped: what is saved and validated
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler          # fp16 only; a no-op otherwise
    discriminator: nn.Module | None = None
    optimizer_d: torch.optim.Optimizer | None = None
    scheduler_d: torch.optim.lr_scheduler.LRScheduler | None = None
    ema: AveragedModel | None = None      # the generator's weight average
    model_step: nn.Module | None = None          # the networks as the training step calls them:
    discriminator_step: nn.Module | None = None  # wrapped by DDP and torch.compile when those are on
    epoch: int = 0                        # the last finished epoch
    history: list = field(default_factory=list)  # a metrics row per epoch
    minutes_before: float = 0.0           # wall minutes of the sessions before a resume

    SAVED = ('model', 'optimizer', 'scheduler', 'scaler', 'discriminator', 'optimizer_d', 'scheduler_d', 'ema')

    def parts(self):
        return {name: getattr(self, name) for name in self.SAVED if getattr(self, name) is not None}

    def state(self):
        """The checkpoint: tensors and plain types only, so it loads with weights_only=True."""
        return {'format': checkpoint.FORMAT, 'version': checkpoint.VERSION, 'epoch': self.epoch,
                'config': self.cfg, 'history': self.history,
                **{name: part.state_dict() for name, part in self.parts().items()}}

    def restore(self, saved):
        for name, part in self.parts().items():
            if isinstance(part, nn.Module):
                checkpoint.load_weights(part, saved[name], saved['path'], self.cfg)
            else:
                part.load_state_dict(saved[name])
        self.epoch, self.history = saved['epoch'], saved['history']
        self.minutes_before = self.history[-1].get('minutes', 0.0) if self.history else 0.0

    def averaged_model(self):
        """The generator to validate and show: the weight average once it has
        started, else the trained weights themselves."""
        return self.ema.module if self.ema is not None and self.ema.n_averaged > 0 else self.model


def build_run(cfg, device, world_size, resumed=None):
    """Networks with the same initial weights on every rank and every run (or
    the resumed ones), their optimizers and schedulers, and the scaler."""
    torch.manual_seed(cfg['seed'])
    networks = [build_generator(cfg).to(device)] + ([PatchDiscriminator().to(device)] if cfg['gan'] else [])
    if world_size > 1 and cfg['sync_bn'] and device.type == 'cuda':
        networks = [nn.SyncBatchNorm.convert_sync_batchnorm(net) for net in networks]
    if cfg['channels_last']:
        networks = [net.to(memory_format=torch.channels_last) for net in networks]
    lr = cfg['lr'] * (world_size if cfg['scale_lr'] else 1)

    def optimizer_and_schedule(network):
        optimizer = torch.optim.Adam(network.parameters(), lr, betas=(cfg['beta1'], cfg['beta2']))
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))
    amp_dtype = resolve_amp(cfg['amp'], device)
    run = Run(cfg, device, amp_dtype, networks[0], *optimizer_and_schedule(networks[0]),
              torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16))
    if cfg['gan']:
        run.discriminator = networks[1]
        run.optimizer_d, run.scheduler_d = optimizer_and_schedule(networks[1])
    if cfg['ema']:  # BatchNorm statistics are averaged too, so they fit the averaged weights
        run.ema = AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(cfg['ema']), use_buffers=True)
    if resumed:
        run.restore(resumed)
    run.model_step, run.discriminator_step = (wrap_for_training(net, cfg, world_size) if net else None
                                              for net in (run.model, run.discriminator))
    return run


def wrap_for_training(network, cfg, world_size):
    if world_size > 1:
        network = DistributedDataParallel(network)
    return torch.compile(network) if cfg['compile'] else network


def train_epoch(run, loader, train_set, epoch, rank, world_size):
    """One pass over this rank's shard, then the schedulers' step; returns the
    epoch's mean losses over all ranks."""
    cfg, device = run.cfg, run.device
    torch.manual_seed(epoch_seed(cfg, epoch, rank))  # dropout
    augment_rng = torch.Generator().manual_seed(epoch_seed(cfg, epoch, rank))
    criterion = gan_criterion(cfg['gan_loss'])
    sums = {name: torch.zeros((), device=device) for name in
            (('train_l1', 'd_loss', 'g_gan') if cfg['gan'] else ('train_l1',))}
    steps = 0
    batches = model_batches(loader, train_set, cfg, device, augment_rng, patch_side(cfg, epoch))
    bar = tqdm(batches, total=len(loader),
               desc=f'epoch {epoch}/{cfg["num_epochs"]}', disable=rank != 0, leave=False, dynamic_ncols=True)
    for input_image, target_image in bar:
        with autocast(device, run.amp_dtype):
            output = run.model_step(input_image)
        l1 = (output.float() - target_image).abs().mean()
        loss = l1
        if cfg['gan']:
            loss_d, g_gan = gan_losses(run, criterion, input_image, target_image, output)
            loss = g_gan + cfg['lambda_l1'] * l1
            sums['d_loss'] += loss_d
            sums['g_gan'] += g_gan.detach()
        if fault(f'nan_loss@{epoch}'):
            loss = loss * float('nan')
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        if run.ema is not None and epoch > cfg['ema_start'] * cfg['num_epochs']:
            run.ema.update_parameters(run.model)
        sums['train_l1'] += l1.detach()
        steps += 1
        if steps % 10 == 1 or steps == len(loader):
            check_finite(loss.item(), epoch, cfg)
            bar.set_postfix(l1=f'{sums["train_l1"].item() / steps:.4f}')
    check_finite(loss.item(), epoch, cfg)
    for scheduler in (run.scheduler, run.scheduler_d):
        if scheduler:
            scheduler.step()
    run.epoch = epoch
    if world_size > 1:  # every rank's mean, for the log
        for value in sums.values():
            dist.all_reduce(value)
    return {name: value.item() / steps / world_size for name, value in sums.items()}


def end_epoch(run, losses, lr, started, train_set, val_set, writer):
    """Rank 0 after each epoch: validate (when due), log, save, print."""
    cfg, epoch = run.cfg, run.epoch
    final = epoch == cfg['num_epochs']
    row = {'epoch': epoch, **losses}
    if epoch % cfg['validate_every'] == 0 or final or epoch % cfg['save_every'] == 0:
        row['val_l1'] = validate(run.averaged_model(), val_set, cfg, run.device, run.amp_dtype)
    now = time.time()
    row.update(lr=lr, seconds=round(now - started, 2), minutes=round(run.minutes_before + (now - _launched) / 60, 3))
    run.history.append(row)
    save_epoch(run, final, train_set, val_set, writer)
    tqdm.write(f'epoch {epoch}: ' + '  '.join(f'{k} {format_value(v)}' for k, v in row.items() if k != 'epoch'))
    fault(f'kill_after_epoch@{epoch}')


def setup_processes(config):
    """(rank, world_size, device); joins the process group under torchrun."""
    rank, world_size = int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    # one device per local process; Apple's MPS only for a single one (DDP does not run on it)
    device = pick_device(config['device'], int(os.environ.get('LOCAL_RANK', 0)), allow_mps=world_size == 1)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed image sizes: the fastest kernels, picked once
    local_processes = int(os.environ.get('LOCAL_WORLD_SIZE', 1))
    torch.set_num_threads(config['threads'] or max(1, (os.cpu_count() or 1) // local_processes))
    if world_size > 1:
        backend = config['backend']
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
    return {**config, **ADDED, **{k: v for k, v in saved.items() if k in config}, **overrides}, resumed


def check_output_folders(cfg):
    for folder in (cfg['checkpoint_dir'], cfg['train_results_dir'], cfg['val_results_dir']):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            checkpoint.atomic_write(Path(folder) / '.write_test', b'')
            (Path(folder) / '.write_test').unlink()
        except OSError as error:
            raise UserError(f'cannot write to output folder {folder}: {error.strerror or error}') from None


def load_split(config, split, rank, world_size):
    """The rank-0 process decodes and caches; the others then map its cache."""
    def make():
        return FacadesDataset(split_source(config['dataset'], split), config['direction'],
                              augment=config['augment'] and split == 'train', image_size=config['image_size'],
                              cache_dir=config['cache_dir'], skip_bad_images=config['skip_bad_images'],
                              progress=rank == 0)
    data = make() if rank == 0 else None
    if world_size > 1:
        dist.barrier()
    data = data or make()
    if data.skipped and rank == 0:
        print(f'skipped {len(data.skipped)} unreadable {split} images (skip_bad_images is on)')
    check_sides(data.image_shape, config['model'], data.source, 'set image_size to one (e.g. 256)')
    first_side = patch_side(config, 1)
    if split == 'train' and first_side and first_side % SIDE_MULTIPLE['fcn']:
        raise UserError(f"--patch_size={config['patch_size']}: fcn needs a multiple of {SIDE_MULTIPLE['fcn']} "
                        '(or 0 for whole images)')
    return data


def train_loader(train_set, cfg, device, sampler):
    """Batches of stored uint8 images in the sampler's order; the pixels come
    from the memory-mapped cache, so loader processes only pay for the gather."""
    workers = cfg['num_workers'] if cfg['num_workers'] >= 0 else (2 if device.type == 'cuda' else 0)
    return DataLoader(range(len(train_set)), batch_size=cfg['batch_size'], sampler=sampler,
                      collate_fn=train_set.gather, num_workers=workers, persistent_workers=workers > 0)


def patch_side(cfg, epoch):
    """The side of the random crops this epoch trains on, or None for whole images."""
    if cfg['augment'] and cfg['model'] == 'fcn' and cfg['patch_size'] and \
            epoch <= cfg['patch_epochs'] * cfg['num_epochs']:
        return cfg['patch_size']
    return None


def model_batches(loader, train_set, cfg, device, augment_rng, side=None):
    """(input, target) batches ready for the network, random crops of the given
    side if any (training pairs are cropped by `cut_pairs` anyway, so a patch
    costs nothing extra). With prefetch, the next one
    is loaded and cut in a thread while the current one trains (PyTorch and
    OpenCV release the GIL): on CUDA that hides the data path, but on a CPU the
    step already keeps every core busy and the thread gained nothing measurable."""
    def ready(images):
        pair = train_set.cut_pairs(images, augment_rng if cfg['augment'] else None, side=side,
                                   pin_memory=device.type == 'cuda', channels_last=cfg['channels_last'])
        return to_float(pair.to(device, non_blocking=True), memory_format(cfg))
    if cfg['prefetch'] == 'off' or (cfg['prefetch'] == 'auto' and device.type != 'cuda'):
        yield from map(ready, loader)
        return
    batches = iter(loader)
    def next_ready():
        batch = next(batches, None)
        return None if batch is None else ready(batch)
    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(next_ready)
        while (current := upcoming.result()) is not None:
            upcoming = pool.submit(next_ready)  # one thread, in order: the same batches as without
            yield current


def memory_format(config):
    return torch.channels_last if config['channels_last'] else torch.contiguous_format


def epoch_seed(config, epoch, rank):
    """All randomness of an epoch (shuffle aside) derives from (seed, epoch, rank),
    so a resumed run repeats exactly what the uninterrupted run would do, on
    every rank, with no random state carried between epochs."""
    return int(np.random.SeedSequence([config['seed'], epoch, rank]).generate_state(1)[0])


def lr_factor(config):
    """The learning-rate multiplier per epoch (0-based) of the chosen schedule."""
    if config['lr_schedule'] == 'linear':
        decay_start = config['num_epochs'] // 2
        return lambda epoch: 1.0 - max(0, epoch + 1 - decay_start) / (config['num_epochs'] - decay_start + 1)
    if config['lr_schedule'] == 'step':
        return lambda epoch: config['lr_gamma'] ** ((epoch + 1) // config['lr_step'])
    return lambda epoch: 1.0


def resolve_amp(setting, device):
    """The autocast dtype, or None for full fp32."""
    if setting == 'off':
        return None
    if setting == 'auto':
        if device.type == 'cuda':
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if device.type == 'cpu' and cpu_bf16_units() else None  # MPS: fp32
    return {'bf16': torch.bfloat16, 'fp16': torch.float16}[setting]


def cpu_bf16_units():
    """The CPU's units that make bf16 fast (empty on most laptops: fp32 is faster there)."""
    return [name for name, present in (('AMX', torch.cpu._is_amx_tile_supported()),
                                       ('AVX512-BF16', torch.cpu._is_avx512_bf16_supported())) if present]


def autocast(device, amp_dtype):
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)


def gan_criterion(kind):
    def criterion(prediction, is_real):
        target = torch.full_like(prediction, float(is_real))
        if kind == 'lsgan':
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)
    return criterion


def gan_losses(run, criterion, input_image, target_image, output):
    """One discriminator step on real pairs vs this step's outputs (one backward
    each, which DDP handles), then the generator's adversarial loss, judged by the
    unwrapped D so that DDP sees no second forward. Returns (D loss, G's GAN loss)."""
    loss_d = 0.0
    for images, is_real in ((output.detach(), False), (target_image, True)):
        with autocast(run.device, run.amp_dtype):
            part = 0.5 * criterion(run.discriminator_step(input_image, images).float(), is_real)
        run.scaler.scale(part).backward()
        loss_d += part.detach()
    run.scaler.step(run.optimizer_d)
    run.optimizer_d.zero_grad(set_to_none=True)
    run.discriminator.requires_grad_(False)
    with autocast(run.device, run.amp_dtype):
        g_gan = criterion(run.discriminator(input_image, output).float(), True)
    run.discriminator.requires_grad_(True)
    return loss_d, g_gan


def check_finite(value, epoch, cfg):
    if not math.isfinite(value):
        raise UserError(f'the loss became {value} in epoch {epoch}; training stopped, and '
                        f'{Path(cfg["checkpoint_dir"]) / "latest.pth"} still holds the last good epoch '
                        '(try a lower lr)')


@torch.no_grad()
def validate(generator, data, config, device, amp_dtype):
    """Mean absolute error over every pixel and channel of the split, on [-1, 1]."""
    generator.eval()
    total, count = 0.0, 0
    chunk = min(2 * config['batch_size'], 32)  # bigger batches only run slower on a CPU (cache misses)
    for start in range(0, len(data), chunk):
        batch = data.pair_batch(range(start, min(start + chunk, len(data))))
        input_image, target_image = to_float(batch.to(device), memory_format(config))
        with autocast(device, amp_dtype):
            output = generator(input_image)
        total += (output.float() - target_image).abs().sum().item()
        count += target_image.numel()
    generator.train()
    return total / count


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
    input_image, target_image = to_float(data.pair_batch(indices).to(run.device), memory_format(run.cfg))
    generator = run.averaged_model().eval()
    with autocast(run.device, run.amp_dtype):
        output = generator(input_image)
    generator.train()
    names = [Path(data.file_of(i)).stem for i in indices]
    panels = visualize.make_panels(input_image, target_image, output)
    visualize.write_pngs(folder, names, panels)
    return dict(zip(names, panels))


def write_metrics_csv(path, history):
    columns = list(dict.fromkeys(key for row in history for key in row))
    lines = [','.join(columns)] + [','.join(format_value(row.get(key, '')) for key in columns) for row in history]
    checkpoint.atomic_write(path, '\n'.join(lines) + '\n')


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
    save_rank_weights(run.model, rank)
    check_ranks_agree(run.model, world_size, rank == 0)
    # DDP holds the process group: drop it first, so that destroying the group ends its
    # gloo threads now, not during interpreter shutdown (where one releasing a finished
    # collective's tensors needs the GIL and aborts the process: 'terminate called ...')
    run.model_step = run.discriminator_step = None
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


# ----------------------------------------------------------------------------- test hooks
def fault(point):
    """The test suite's fault injection, the only one in the loop: with
    PIX2PIX_FAULT=POINT set, 'kill_after_epoch@N' SIGKILLs the process at that
    point and 'nan_loss@N' makes this return True there. (checkpoint.save
    holds the third, kill_in_save@N, halfway through writing a file.)"""
    if os.environ.get('PIX2PIX_FAULT') != point:
        return False
    if point.startswith('kill'):
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def save_rank_weights(model, rank):
    """With PIX2PIX_RANK_WEIGHTS=FOLDER set, each process writes its own generator's
    weights to FOLDER/rank_R.pth after the last epoch, for the tests to compare."""
    folder = os.environ.get('PIX2PIX_RANK_WEIGHTS')
    if folder:
        torch.save(model.state_dict(), Path(folder) / f'rank_{rank}.pth')


if __name__ == '__main__':
    try:
        main(_overrides)
    except (UserError, SizeError, DeviceError, DatasetError, checkpoint.CheckpointError) as _error:
        sys.exit(f'error: {_error}')
    except KeyboardInterrupt:  # before the run's settings were known
        sys.exit('\ninterrupted before training started; nothing was saved')
