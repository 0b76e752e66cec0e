"""The test suite's ways into the scripts, kept in one place. Unset, each costs
one string comparison per epoch or per file written, never per step.

    PIX2PIX_FAULT=kill_after_epoch@N    SIGKILL once epoch N is saved
    PIX2PIX_FAULT=kill_in_save@N        SIGKILL with epoch N's checkpoint half written
    PIX2PIX_FAULT=kill_in_write@NAME    SIGKILL with a file NAME (metrics.csv, index.html, ...) half written
    PIX2PIX_FAULT=nan_loss@N            epoch N's losses are NaN (its weights are)
    PIX2PIX_RANK_WEIGHTS=FOLDER         each torchrun process saves its final generator
                                        weights to FOLDER/rank_R.pth
"""
import os
import signal
from pathlib import Path

FAULT = os.environ.get('PIX2PIX_FAULT', '')


def kill_if(point):
    """SIGKILL this process (no cleanup, as a power cut) when point is the set fault."""
    if FAULT == point:
        os.kill(os.getpid(), signal.SIGKILL)


def kill_half_written(point, temporary):
    """At a file's write: truncate its temporary to half, then kill_if(point)."""
    if FAULT == point:
        os.truncate(temporary, os.path.getsize(temporary) // 2)
        kill_if(point)


def poison_if(point, model):
    """Fill the model's weights with NaN when point is the set fault, so that
    every loss computed from them is NaN."""
    if FAULT == point:
        import torch
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float('nan'))


def save_rank_weights(model, rank):
    folder = os.environ.get('PIX2PIX_RANK_WEIGHTS')
    if folder:
        import torch
        torch.save(model.state_dict(), Path(folder) / f'rank_{rank}.pth')
