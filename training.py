"""How a run trains: its state (networks, optimizers, schedules, weight average),
the batches it trains on, one optimisation step, one epoch, and how a generator
is scored on a split.

Each of these is written once, and every script that trains or scores calls it,
so what they time and compare is what training does:
- `build_run`, `train_loader` and `train_epoch` (which calls `train_step` for
  every batch): train.py, scripts/sweep.py and scripts/gan_probe.py;
  benchmark.py times `train_step` on `model_batches`, and scripts/speed_shapes.py
  and scripts/scaling.py time `model_batches` alone.
- `score` (val L1 and a labeller's confusion, the FCN-score's): `validate`
  (train.py, benchmark.py, scripts/sweep.py) and scripts/gan_probe.py;
  evaluate.py runs its pass (`generated_batches`) with its own metrics beside
  these (`metrics.abs_error`, `labeller_confusion`).
"""
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

import checkpoint
import hooks
import metrics
from errors import UserError
from FCN_network import GENERATORS, build_discriminator, build_generator
from facades_dataset import to_float, to_uint8


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
    model_wrapped: nn.Module | None = None          # the networks as the step calls them: wrapped
    discriminator_wrapped: nn.Module | None = None  # by DDP and torch.compile when those are on
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

    def eval_model(self):
        """The generator that is validated, shown and used: the weight average
        once it has started, else the trained weights themselves."""
        return self.ema.module if self.ema is not None and self.ema.n_averaged > 0 else self.model


def build_run(cfg, device, world_size, resumed=None):
    """Networks with the same initial weights on every rank and every run (or
    the resumed ones), their optimizers and schedulers, and the scaler."""
    torch.manual_seed(cfg['seed'])
    networks = [build_generator(cfg).to(device)] + ([build_discriminator(cfg).to(device)] if cfg['gan'] else [])
    if world_size > 1 and cfg['sync_bn'] and device.type == 'cuda':
        networks = [nn.SyncBatchNorm.convert_sync_batchnorm(net) for net in networks]
    if cfg['channels_last']:
        networks = [net.to(memory_format=torch.channels_last) for net in networks]
    lr = cfg['lr'] * (world_size if cfg['scale_lr'] else 1)

    def optimizer_and_schedule(network, lr):
        optimizer = torch.optim.Adam(network.parameters(), lr, betas=(cfg['beta1'], cfg['beta2']))
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg))
    amp_dtype = resolve_amp(cfg['amp'], device)
    run = Run(cfg, device, amp_dtype, networks[0], *optimizer_and_schedule(networks[0], lr),
              torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16))
    if cfg['gan']:
        run.discriminator = networks[1]
        lr_d = cfg['lr_d'] * (world_size if cfg['scale_lr'] else 1) if cfg['lr_d'] else lr
        run.optimizer_d, run.scheduler_d = optimizer_and_schedule(networks[1], lr_d)
    if cfg['ema']:  # BatchNorm statistics are averaged too, so they fit the averaged weights
        run.ema = AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(cfg['ema']), use_buffers=True)
    if resumed:
        run.restore(resumed)
    run.model_wrapped, run.discriminator_wrapped = (wrap_for_training(net, cfg, world_size) if net else None
                                                    for net in (run.model, run.discriminator))
    return run


def wrap_for_training(network, cfg, world_size):
    if world_size > 1:
        network = DistributedDataParallel(network)
    return torch.compile(network) if cfg['compile'] else network


def train_loader(train_set, cfg, device, rank=0, world_size=1):
    """Batches of stored uint8 images of this rank's shard, shuffled anew each
    epoch (`train_epoch` sets it) from the seed; the pixels come from the
    memory-mapped cache, so loader processes only pay for the gather."""
    sampler = DistributedSampler(range(len(train_set)), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=cfg['seed'])
    workers = cfg['num_workers'] if cfg['num_workers'] >= 0 else (2 if device.type == 'cuda' else 0)
    return DataLoader(range(len(train_set)), batch_size=cfg['batch_size'], sampler=sampler,
                      collate_fn=train_set.gather, num_workers=workers, persistent_workers=workers > 0)


def patch_side(cfg, epoch):
    """The side of the random crops this epoch trains on, or None for whole images."""
    if cfg['augment'] and GENERATORS[cfg['model']].patches and cfg['patch_size'] and \
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
        return to_float(pair.to(device, non_blocking=True), memory_format(cfg), train_set.channels)
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


def memory_format(cfg):
    return torch.channels_last if cfg['channels_last'] else torch.contiguous_format


def epoch_seed(cfg, epoch, rank):
    """All randomness of an epoch (shuffle aside) derives from (seed, epoch, rank),
    so a resumed run repeats exactly what the uninterrupted run would do, on
    every rank, with no random state carried between epochs."""
    return int(np.random.SeedSequence([cfg['seed'], epoch, rank]).generate_state(1)[0])


def lr_factor(cfg):
    """The learning-rate multiplier per epoch (0-based) of the chosen schedule."""
    if cfg['lr_schedule'] == 'linear':
        decay_start = cfg['num_epochs'] // 2
        return lambda epoch: 1.0 - max(0, epoch + 1 - decay_start) / (cfg['num_epochs'] - decay_start + 1)
    if cfg['lr_schedule'] == 'step':
        return lambda epoch: cfg['lr_gamma'] ** ((epoch + 1) // cfg['lr_step'])
    if cfg['lr_schedule'] == 'constant':
        return lambda epoch: 1.0
    raise ValueError(f"unknown lr_schedule {cfg['lr_schedule']!r}")  # train.validate names the choices


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


def train_step(run, input_image, target_image, epoch):
    """One optimisation step of the run on a batch: the discriminator's (once
    the GAN is on), then the generator's on L1 (plus lambda_l1-weighted GAN
    loss), then the weight average's update (once it has started). Returns
    (the generator's loss, {name: this step's value} for the log)."""
    cfg = run.cfg
    with autocast(run.device, run.amp_dtype):
        output = run.model_wrapped(input_image)
    l1 = (output.float() - target_image).abs().mean()
    loss, losses = l1, {'train_l1': l1.detach()}
    if run.discriminator is not None and epoch > cfg['gan_start'] * cfg['num_epochs']:
        loss_d, g_gan = gan_losses(run, gan_criterion(cfg['gan_loss']), input_image, target_image, output)
        loss = g_gan + cfg['lambda_l1'] * l1
        losses.update(d_loss=loss_d, g_gan=g_gan.detach())
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None and epoch > cfg['ema_start'] * cfg['num_epochs']:
        run.ema.update_parameters(run.model)
    return loss, losses


def gan_losses(run, criterion, input_image, target_image, output):
    """One discriminator step on real pairs vs this step's outputs (one backward
    each, which DDP handles), then the generator's adversarial loss, judged by the
    unwrapped D so that DDP sees no second forward. Returns (D loss, G's GAN loss)."""
    loss_d = 0.0
    for images, is_real in ((output.detach(), False), (target_image, True)):
        with autocast(run.device, run.amp_dtype):
            part = 0.5 * criterion(run.discriminator_wrapped(input_image, images).float(), is_real)
        run.scaler.scale(part).backward()
        loss_d += part.detach()
    run.scaler.step(run.optimizer_d)
    run.optimizer_d.zero_grad(set_to_none=True)
    run.discriminator.requires_grad_(False)
    with autocast(run.device, run.amp_dtype):
        g_gan = criterion(run.discriminator(input_image, output).float(), True)
    run.discriminator.requires_grad_(True)
    return loss_d, g_gan


def train_epoch(run, loader, train_set, epoch, side, rank=0, world_size=1, after_step=None):
    """One pass over this rank's shard (crops of the given side, or None for whole
    images: `patch_side`), then the schedulers' step; returns the epoch's mean
    losses over all ranks. after_step(), if given, runs after every step."""
    cfg = run.cfg
    loader.sampler.set_epoch(epoch)
    torch.manual_seed(epoch_seed(cfg, epoch, rank))  # dropout
    augment_rng = torch.Generator().manual_seed(epoch_seed(cfg, epoch, rank))
    hooks.poison_if(f'nan_loss@{epoch}', run.model)
    sums, steps = {}, 0
    batches = model_batches(loader, train_set, cfg, run.device, augment_rng, side)
    bar = tqdm(batches, total=len(loader),
               desc=f'epoch {epoch}/{cfg["num_epochs"]}', disable=rank != 0, leave=False, dynamic_ncols=True)
    for input_image, target_image in bar:
        loss, losses = train_step(run, input_image, target_image, epoch)
        if after_step:
            after_step()
        for name, value in losses.items():
            sums[name] = sums.get(name, 0) + value
        steps += 1
        if steps % 10 == 1 or steps == len(loader):  # a sync with the device: not every step
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


def check_finite(value, epoch, cfg):
    if not math.isfinite(value):
        raise UserError(f'the loss became {value} in epoch {epoch}; training stopped, and '
                        f'{Path(cfg["checkpoint_dir"]) / "latest.pth"} still holds the last good epoch '
                        '(try a lower lr)')


@torch.no_grad()
def validate(generator, data, cfg, device, amp_dtype):
    """Mean absolute error over every pixel and channel of the split, on [-1, 1],
    in the run's precision and memory format."""
    chunk = min(2 * cfg['batch_size'], 32)  # bigger batches only run slower on a CPU (cache misses)
    return score(generator, data, chunk, device, amp_dtype, memory_format(cfg))['l1']


@torch.no_grad()
def score(generator, data, chunk, device, amp_dtype=None, memory_format=torch.preserve_format, labeller=None,
          palette=None):
    """The generator's scores on a split: {'l1': mean absolute error over every
    pixel and channel, on [-1, 1]}, and with a labeller (a photo -> label map
    generator) and the label colours, 'confusion': its confusion on the outputs
    against the input label maps (`metrics.label_scores` of it is the FCN-score)."""
    total, pixels, confusion = 0.0, 0, 0
    for _, input_image, target_image, output in generated_batches(generator, data, chunk, device, amp_dtype,
                                                                  memory_format):
        total += metrics.abs_error(output, target_image)
        pixels += target_image.numel()
        if labeller is not None:
            confusion = confusion + labeller_confusion(labeller, output, to_uint8(input_image), palette)
    return {'l1': total / pixels, **({'confusion': confusion} if labeller is not None else {})}


@torch.no_grad()
def generated_batches(generator, data, chunk, device, amp_dtype=None, memory_format=torch.preserve_format):
    """(indices, input, target, output) for the split's pairs uncut, `chunk` at a
    time, the generator in eval mode (and back in its mode once the split is done).
    The caller's own work on a batch runs outside this no_grad: give it its own."""
    was_training = generator.training
    generator.eval()
    for start in range(0, len(data), chunk):
        indices = range(start, min(start + chunk, len(data)))
        input_image, target_image = to_float(data.pair_batch(indices).to(device), memory_format, data.channels)
        with autocast(device, amp_dtype):
            output = generator(input_image)
        yield indices, input_image, target_image, output
    generator.train(was_training)


def labeller_confusion(labeller, photos, label_maps, palette):
    """The labeller's label maps of the photos against the given uint8 ones
    (`metrics.label_confusion`): the FCN-score's, summed over batches."""
    return metrics.label_confusion(to_uint8(labeller(photos)), label_maps, palette)
