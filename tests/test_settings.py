"""Every setting gets the same checks however it was set: edited in the block at the
top of train.py (as the repo is meant to be used) or given as --name=value. A bad
value is one line naming the setting and what is valid, status 1, before any data
is read."""
import os
import re
import shlex
import subprocess
import sys

import pytest

import train
import training
from FCN_network import GENERATORS, UPSAMPLES
from conftest import REPO, run_script
from errors import UserError


def run_edited_copy(tmp_path, old, new, *args, script=None):
    """A copy of train.py with one line of its settings block edited, run from an
    empty folder (no datasets/ there) with the repo's modules importable."""
    text = (REPO / 'train.py').read_text(encoding='utf-8')
    assert text.count(f'\n{old}') == 1, old
    copy = tmp_path / 'train.py'
    copy.write_text(text.replace(f'\n{old}', f'\n{new}'), encoding='utf-8')
    (tmp_path / 'run').mkdir()
    command = [sys.executable, str(copy), *args] if script is None else [sys.executable, '-c', script, str(copy)]
    return subprocess.run(command, cwd=tmp_path / 'run', capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED='1'))


@pytest.mark.parametrize('old, new, message', [
    ("direction = 'AtoB'", "direction = 'BtoA '",
     "direction = 'BtoA ' in the settings block: expected one of AtoB, BtoA"),
    ('num_epochs = 240', 'num_epochs = -3', 'num_epochs = -3 in the settings block: must be greater than 0'),
    ("lr_schedule = 'linear'", "lr_schedule = 'cosine'",
     "lr_schedule = 'cosine' in the settings block: expected one of linear, step, constant"),
    ('num_epochs = 240', "num_epochs = '3'", "num_epochs = '3' in the settings block: expected int (a whole number)"),
    ('lr = 2e-3', "lr = 'fast'", "lr = 'fast' in the settings block: expected float (a number)"),
    ('gan = False', 'gan = 1', 'gan = 1 in the settings block: expected bool: True or False'),
    ("upsample = 'transpose'", "upsample = 'Nearest'",
     "upsample = 'Nearest' in the settings block: expected one of transpose, transpose_blur, nearest, bilinear, subpixel"),
    ('patch_size = 128', 'patch_size = 24',
     'patch_size = 24 in the settings block: fcn needs a multiple of 16 (or 0 for whole images)'),
    ("image_size = 256", "image_size = '512x250'",
     "image_size = '512x250' in the settings block: fcn needs sides that are multiples of 16, such as 512x256"),
    ('val_fraction = 0.1', 'val_fraction = 1.0', 'val_fraction = 1.0 in the settings block: must be at least 0 '
     'and below 1'),
])
def test_a_bad_value_edited_into_the_block_is_one_line(tmp_path, old, new, message):
    """The block as edited, with no override: status 1, one line, and nothing run (an
    unchecked value would get past this to the missing dataset, or train)."""
    result = run_edited_copy(tmp_path, old, new)
    assert (result.returncode, result.stderr, result.stdout) == (1, f'error: {message}\n', '')


def test_a_misspelt_name_in_the_block_is_one_line(tmp_path):
    result = run_edited_copy(tmp_path, 'num_epochs = 240', 'num_epoch = 3')
    assert result.returncode == 1 and result.stdout == ''
    line, = result.stderr.splitlines()
    assert line.startswith('error: num_epoch = 3 in the settings block: not a setting (a typo?); the settings are: '
                           'dataset, val_fraction, direction,')


def test_the_block_is_checked_before_torch_is_imported(tmp_path):
    """A bad value stops train.py before its heavy imports, let alone any data."""
    script = ('import runpy, sys\n'
              'path = sys.argv[1]; sys.argv = [path]\n'
              'try:\n'
              '    runpy.run_path(path, run_name="__main__")\n'
              'finally:\n'
              '    print("torch imported:", "torch" in sys.modules)\n')
    result = run_edited_copy(tmp_path, 'num_epochs = 240', 'num_epochs = -3', script=script)
    assert result.returncode == 1 and result.stdout == 'torch imported: False\n', result
    assert result.stderr == 'error: num_epochs = -3 in the settings block: must be greater than 0\n'


def test_an_override_fixes_a_bad_block_value(tmp_path):
    """What is checked is the merged value: the command line's wins (the run then goes
    on to the dataset, which this empty folder lacks)."""
    result = run_edited_copy(tmp_path, 'num_epochs = 240', 'num_epochs = -3', '--num_epochs=2')
    assert result.returncode == 1 and "dataset 'facades' not found" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize('argument, message', [
    ('--num_epoch=3', 'unknown setting'),
    ('--num_epochs=three', 'expected int'),
    ('--num_epochs=2.5', 'expected int'),
    ('--lr=fast', 'expected float'),
    ('--gan=maybe', 'expected bool'),
    ('--direction=AtoC', 'expected one of AtoB, BtoA'),
    ('--direction=BtoA ', "--direction='BtoA ': expected one of AtoB, BtoA"),
    ('--model=resnet', 'expected one of fcn, unet256'),
    ('--batch_size=0', 'must be greater than 0'),
    ('--num_epochs=-3', '--num_epochs=-3: must be greater than 0'),
    ('--lr_schedule=cosine', '--lr_schedule=cosine: expected one of linear, step, constant'),
    ('--image_size=64x', "expected one side like 256, WIDTHxHEIGHT like 512x256, or 0 for the files' own size"),
    ('--image_size=0x32', 'expected one side like 256, WIDTHxHEIGHT'),
    ('--image_size=-8', 'expected one side like 256, WIDTHxHEIGHT'),
    ('--val_fraction=1.5', 'must be at least 0 and below 1'),
    ('--patch_size=24', '--patch_size=24: fcn needs a multiple of 16 (or 0 for whole images)'),
    ('num_epochs=3', 'unknown setting'),
])
def test_bad_settings_are_one_line_errors(tmp_path, argument, message):
    result = run_script('train.py', argument, cwd=tmp_path, check=False)
    assert result.returncode == 1 and message in result.stderr and result.stdout == ''
    assert len(result.stderr.strip().splitlines()) == 1
    if 'unknown' in message:
        assert 'batch_size' in result.stderr  # lists the valid names


def check(*arguments, **block):
    """validate() on the block (train.config, with these values edited in) merged with
    the parsed arguments; None if valid, else the message."""
    overrides = train.parse_overrides(list(arguments), train.config)
    try:
        train.validate(dict(train.config, **block, **overrides), overrides)
    except UserError as error:
        return str(error)


def test_the_shipped_block_is_valid_and_every_setting_has_a_type():
    assert check() is None
    assert set(train.TYPES) == set(train.config)


@pytest.mark.parametrize('arguments, message', [
    # ranges
    (['--num_workers=-2'], '--num_workers=-2: must be at least -1'),
    (['--seed=-1'], '--seed=-1: must be at least 0'),
    (['--beta1=1'], '--beta1=1.0: must be at least 0 and below 1'),
    (['--lr_gamma=0'], '--lr_gamma=0.0: must be greater than 0'),
    (['--d_layers=0', '--gan=True'], '--d_layers=0: must be greater than 0'),
    # settings that act only with another
    (['--lambda_l1=10'], '--lambda_l1=10.0: acts only with gan=True, and gan is False (set --gan=True, or leave '
                         'lambda_l1 out)'),
    (['--gan_loss=lsgan'], '--gan_loss=lsgan: acts only with gan=True, and gan is False (set --gan=True, or leave '
                           'gan_loss out)'),
    (['--lr_step=100'], "--lr_step=100: acts only with lr_schedule=step, and lr_schedule is 'linear' (set "
                        '--lr_schedule=step, or leave lr_step out)'),
    (['--model=unet256', '--skips=False'], "--skips=False: acts only with model=fcn, and model is 'unet256' (set "
                                           '--model=fcn, or leave skips out)'),
    # image and patch sides against the network and the discriminator
    (['--image_size=48x40'], '--image_size=48x40: fcn needs sides that are multiples of 16, such as 48x32'),
    (['--model=unet256', '--image_size=32'],
     '--image_size=32: unet256 needs sides that are multiples of 256, such as 256x256'),
    (['--gan=True', '--image_size=32', '--patch_size=16'],
     'the discriminator (d_layers=3) needs images and patches of at least 32 px; these are 16 (raise patch_size '
     'or image_size, or lower d_layers)'),
    (['--gan=True', '--image_size=16'],
     'the discriminator (d_layers=3) needs images and patches of at least 32 px; these are 16 (raise patch_size '
     'or image_size, or lower d_layers)'),
])
def test_overrides_that_validate_refuses(arguments, message):
    assert check(*arguments) == message


@pytest.mark.parametrize('arguments', [
    ['--gan=True', '--lambda_l1=10', '--gan_loss=lsgan', '--d_width=16', '--d_layers=2', '--lr_d=2e-4',
     '--gan_start=0.3', '--direction=BtoA', '--patch_epochs=0.98', '--num_epochs=250'],  # the README's recipe
    ['--model=unet256', '--batch_size=8', '--ema=0.995', '--num_epochs=110'],  # its U-Net recipe
    ['--lambda_l1=100.0'],  # the block's own value: no change, nothing ignored
    ['--lr_schedule=step', '--lr_step=100', '--lr_gamma=0.5'],
    ['--patch_size=24', '--augment=False'],  # no patches without augmentation
    ['--patch_size=24', '--patch_epochs=0.0'],  # nor with no epoch on them
    ['--model=unet256', '--image_size=512x256'],  # unet256 trains on whole images: patch_size does not matter
    ['--image_size=0', '--gan=True', '--patch_size=16'],  # the files' size: load_split checks it once read
    ['--gan=True', '--image_size=32', '--patch_size=16', '--d_layers=2'],
    ['--resume', '--lambda_l1=10'],  # a resumed run takes its checkpoint's settings
    ['--image_size=256x256', '--lr=1'],
])
def test_overrides_that_validate_takes(arguments):
    assert check(*arguments) is None


@pytest.mark.parametrize('block, message', [
    ({'lr': float('nan')}, 'lr = nan in the settings block: must be greater than 0'),
    ({'image_size': True}, "image_size = True in the settings block: expected one side like 256, WIDTHxHEIGHT like "
                           "512x256, or 0 for the files' own size"),
    ({'image_size': 256.0}, 'image_size = 256.0 in the settings block: expected one side like 256'),
    ({'num_epochs': 3.0}, 'num_epochs = 3.0 in the settings block: expected int (a whole number)'),
    ({'width': True}, 'width = True in the settings block: expected int (a whole number)'),
    ({'dataset': None}, 'dataset = None in the settings block: expected str (text in quotes)'),
    ({'gan_loss': 'lsgan'}, None),  # waiting in the block for gan=True: not an error there
])
def test_block_values_in_process(block, message):
    result = check(**block)
    assert result is None if message is None else result.startswith(message), result


def test_a_setting_missing_from_the_block_is_named():
    settings = dict(train.config)
    del settings['seed']
    with pytest.raises(UserError, match='^seed is missing from the settings block$'):
        train.validate(settings)


def test_overrides_are_typed():
    assert train.parse_overrides(['--lr=1e-3', '--num_epochs=7', '--gan=true', '--dataset=x', '--resume'],
                                 train.config) == \
        {'lr': 1e-3, 'num_epochs': 7, 'gan': True, 'dataset': 'x', 'resume': 'latest'}
    assert train.parse_overrides(['--lr=1'], train.config)['lr'] == 1.0


def test_image_size_takes_one_side_or_width_x_height():
    """Squares stay ints, as older checkpoints hold them, so resuming one compares equal."""
    for text, value in (('512x256', '512x256'), ('64X32', '64x32'), ('256x256', 256), ('48', 48), ('0', 0),
                        ('0x0', 0)):
        assert train.parse_overrides([f'--image_size={text}'], train.config) == {'image_size': value}, text


def test_what_validate_knows_before_torch_matches_the_networks():
    """train.py checks models, upsampling and patch sides before importing torch, from
    its own tables; they must say what FCN_network and training say."""
    assert train.MODELS == {name: (g.side_multiple, g.patches) for name, g in GENERATORS.items()}
    assert train.CHOICES['upsample'] == UPSAMPLES
    for model in GENERATORS:
        for augment in (False, True):
            for patch_size, patch_epochs, num_epochs in ((0, 0.5, 4), (32, 0.5, 4), (32, 0.0, 4), (32, 0.4, 2),
                                                         (32, 0.5, 2)):
                cfg = dict(train.config, model=model, augment=augment, patch_size=patch_size,
                           patch_epochs=patch_epochs, num_epochs=num_epochs)
                assert train.first_patch_side(cfg) == training.patch_side(cfg, 1), cfg


def test_lr_factor_refuses_a_schedule_it_does_not_know():
    """Scripts that build a run without validate still cannot train at a silent constant lr."""
    with pytest.raises(ValueError, match="unknown lr_schedule 'cosine'"):
        training.lr_factor(dict(train.config, lr_schedule='cosine'))


def documented_train_commands():
    """The train.py command lines of the README and docs/ (a code block's, its
    continuation lines joined, or one in backticks), as lists of --name=value."""
    commands = []
    for page in [REPO / 'README.md', REPO / 'pretrained' / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]:
        text = page.read_text(encoding='utf-8').replace('\\\n', ' ')
        for command in re.findall(r'train\.py((?:[ \t]+--\w+(?:=[^\s`|]*)?)+)', text):
            commands.append((page.name, [word for word in shlex.split(command) if word != '--help']))
    return commands


def test_every_documented_command_passes_validate():
    """A user types them as they stand: none may hit a rule of validate's (a GAN setting
    without --gan=True, say)."""
    commands = documented_train_commands()
    assert len(commands) > 15 and any('--lambda_l1=10' in arguments for _, arguments in commands)
    refused = [(page, arguments, message) for page, arguments in commands
               if (message := check(*arguments)) is not None]
    assert not refused
