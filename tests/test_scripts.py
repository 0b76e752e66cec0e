"""scripts/sweep.py and scripts/gan_probe.py train as train.py does: its settings,
its checks and its epoch, so that what they compare is what training would do."""
import pytest
import torch

import train
import training
from FCN_network import build_generator
from conftest import run_main, run_script, save_generator, script_module, tiny_run_args
from errors import UserError

# the probe's defaults (gan_probe.PROBE) spelt out, so that train.py and the sweep run the same
SETTINGS = dict(direction='BtoA', gan=True, gan_loss='lsgan', d_width=16, d_layers=2, gan_start=0.0, ema=0.0,
                num_epochs=2, patch_size=0, device='cpu', amp='off')


def steps_of(script, *args, cwd, monkeypatch):
    """[(epoch, torch's seed, input, target)] of every training step the script's main takes."""
    steps, step = [], training.train_step

    def recorded(run, input_image, target_image, epoch):
        steps.append((epoch, torch.initial_seed(), input_image.clone(), target_image.clone()))
        return step(run, input_image, target_image, epoch)
    with monkeypatch.context() as patched:
        patched.setattr(training, 'train_step', recorded)
        run_main(script, *args, cwd=cwd)
    return steps


def test_sweep_and_gan_probe_train_on_train_pys_batches_and_seeds(tiny_data, tmp_path, monkeypatch):
    """The same settings give the same batches in the same order, each step with
    train.py's dropout seed (training.epoch_seed), in train.py, the sweep and the probe."""
    def args(out, **more):
        return tiny_run_args(tiny_data, tmp_path / out, **SETTINGS, **more)
    config = dict(train.config, width=4, image_size=32, direction='BtoA')
    start = save_generator(tmp_path / 'start.pth', config, build_generator(config))
    labeller = save_generator(tmp_path / 'labeller.pth', dict(config, direction='AtoB'), build_generator(config))
    trained = steps_of('train.py', *args('train'), cwd=tmp_path, monkeypatch=monkeypatch)
    swept = steps_of('scripts/sweep.py', '--name=tiny', f'--out={tmp_path / "sweep"}', *args('sweep'), cwd=tmp_path,
                     monkeypatch=monkeypatch)
    probed = steps_of('scripts/gan_probe.py', start, f'--labeller={labeller}', f'--out={tmp_path / "probe"}',
                      *args('probe'), cwd=tmp_path, monkeypatch=monkeypatch)
    cfg = dict(train.config, **SETTINGS)
    assert [(epoch, seed) for epoch, seed, *_ in trained] == \
        [(epoch, training.epoch_seed(cfg, epoch, 0)) for epoch in (1, 2) for _ in range(2)]  # 8 pairs, batch 4
    for steps in (swept, probed):
        assert len(steps) == len(trained)
        for (epoch, seed, *images), (epoch_, seed_, *images_) in zip(steps, trained):
            assert (epoch, seed) == (epoch_, seed_) and all(map(torch.equal, images, images_))
    assert (tmp_path / 'sweep' / 'tiny.csv').is_file() and (tmp_path / 'probe' / 'gan_probes.jsonl').is_file()


@pytest.mark.parametrize('script, args', [('scripts/sweep.py', ['--name=tiny', '--num_epochs=-3']),
                                          ('scripts/gan_probe.py', ['start.pth', '--side=16', '--lr=fast'])])
def test_a_bad_setting_stops_a_script_with_train_pys_one_line(tmp_path, script, args):
    """A script reads and checks train.py's settings with train.py's parse_overrides and
    validate: a bad one is the line train.py prints for it, and status 1."""
    expected = run_script('train.py', args[-1], cwd=tmp_path, check=False)
    result = run_script(script, *args, cwd=tmp_path, check=False)
    assert expected.returncode == result.returncode == 1
    assert result.stderr.strip().splitlines() == expected.stderr.strip().splitlines()[-1:]


def test_a_script_takes_its_options_and_leaves_the_rest_to_train_py():
    """The probe's options (the start checkpoint, --side, ...) are its own, every other
    argument is a train.py setting as --name=value: over the probe's defaults, checked as
    train.py checks them. Its old spellings (--epochs 6, name=value) are no settings."""
    probe = script_module('gan_probe')
    args, cfg, overrides = probe.parse_args(['start.pth', '--side=16', '--num_epochs=3', '--d_layers=2'])
    assert (args.start, args.side) == ('start.pth', 16) and overrides == {'num_epochs': 3, 'd_layers': 2}
    assert cfg == {**train.config, **probe.PROBE, 'num_epochs': 3, 'd_layers': 2}
    for old in (['--epochs', '6'], ['d_layers=2']):
        with pytest.raises(UserError, match=f"unknown setting '{old[0]}'"):
            probe.parse_args(['start.pth', *old])
    with pytest.raises(UserError, match=r'--lambda_l1=10.0: acts only with gan=True'):
        probe.parse_args(['start.pth', '--gan=False', '--lambda_l1=10'])
