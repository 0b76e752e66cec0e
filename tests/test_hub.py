"""Tests for hubconf.py: torch.hub.load gives each model in pretrained/ ready to use,
drawing the pictures that predict.py draws with the file. The files are remade
from time to time, so the expectations come from the files, never written here."""
import importlib.util

import numpy as np
import pytest
import torch

import checkpoint
from conftest import REPO
from translate import predict

MODELS = {'facades_labels2photo': 'BtoA', 'facades_photo2labels': 'AtoB', 'cityscapes_labels2photo': 'BtoA',
          'cityscapes_photo2labels': 'AtoB'}  # entry: its direction


def test_every_shipped_model_has_an_entry_and_nothing_else_does():
    spec = importlib.util.spec_from_file_location('hubconf', REPO / 'hubconf.py')
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = [name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith('_')]
    assert entries == sorted(MODELS) == sorted(path.stem for path in (REPO / 'pretrained').glob('*.pth'))


@pytest.mark.parametrize('name', MODELS)
def test_hub_load_gives_the_ready_generator(name):
    generator = torch.hub.load(str(REPO), name, source='local')
    assert not any(module.training for module in generator.modules())
    assert {weight.device.type for weight in generator.state_dict().values()} == {'cpu'}
    reference, state = checkpoint.load_generator(REPO / 'pretrained' / f'{name}.pth')
    assert generator.config == state['config'] and generator.config['direction'] == MODELS[name]
    # an odd size, so that the resizing predict does from the settings counts too
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8)
    expected = predict(reference, image, state['config'], torch.device('cpu'))
    assert expected.shape == image.shape and expected.std() > 5  # a picture, not a constant
    assert np.array_equal(predict(generator, image, generator.config, torch.device('cpu')), expected)
