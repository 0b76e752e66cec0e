"""torch.hub entry points: the models in pretrained/ by name, each a generator in
eval mode on the CPU, with its run's settings as `.config` (a dict).

    generator = torch.hub.load('OWNER/REPO', 'facades_labels2photo')
    photos = generator(label_maps)  # float (N, 3, H, W) RGB in [-1, 1] in and out, H x W its image_size

torch.hub fetches the repository, pretrained/ included, so nothing else is
downloaded. How each model was made and what it scores: pretrained/README.md.
"""
import pathlib

import checkpoint

dependencies = ['torch']  # what hubconf's own imports need (checkpoint.py, FCN_network.py)

PRETRAINED = pathlib.Path(__file__).resolve().parent / 'pretrained'


def _load(name):
    generator, state = checkpoint.load_generator(PRETRAINED / f'{name}.pth')  # eval mode, on the CPU
    generator.config = state['config']
    return generator


def facades_labels2photo():
    """Facades label map -> photo (BtoA): the cGAN recipe."""
    return _load('facades_labels2photo')


def facades_photo2labels():
    """Facades photo -> label map (AtoB): the default run."""
    return _load('facades_photo2labels')


def cityscapes_labels2photo():
    """Cityscapes label map -> photo (BtoA): the cGAN recipe, 60 epochs."""
    return _load('cityscapes_labels2photo')


def cityscapes_photo2labels():
    """Cityscapes photo -> label map (AtoB): the default cityscapes run, the FCN-score's labeller."""
    return _load('cityscapes_photo2labels')
