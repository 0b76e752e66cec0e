"""The models in pretrained/ score on their dataset's val split what pretrained/README.md says.

This guards the network code and the data path as well: a change to either that
moves a score fails here, and then the files (and their table) are remade with
python export.py (see pretrained/README.md). Needs the real val sets; skips without them.
"""
import json
from pathlib import PurePosixPath, PureWindowsPath

import pytest
import torch

from conftest import REAL_DATA, REPO, run_script

PRETRAINED = REPO / 'pretrained'
DATASETS = ('facades', 'cityscapes')
COLUMNS = ('l1', 'pixel_acc', 'class_acc', 'class_iou')
TOLERANCE = {'l1': 2e-4, 'pixel_acc': 2e-3, 'class_acc': 2e-3, 'class_iou': 2e-3}  # CPUs round differently


def table():
    """{file: {column: value}} from the score table of pretrained/README.md."""
    lines = (PRETRAINED / 'README.md').read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith('| file |'))
    names = [cell.strip() for cell in lines[header].strip('|').split('|')]
    rows = {}
    for line in lines[header + 2:]:
        if not line.startswith('|'):
            break
        cells = dict(zip(names, (cell.strip().strip('`') for cell in line.strip('|').split('|'))))
        rows[cells['file']] = {column: float(cells[column]) for column in COLUMNS}
    return rows


def test_the_table_lists_every_file_and_they_are_small():
    files = sorted(path.name for path in PRETRAINED.glob('*.pth'))
    assert files == sorted(table()) == sorted(f'{dataset}_{name}.pth' for dataset in DATASETS
                                              for name in ('labels2photo', 'photo2labels'))
    assert sum((PRETRAINED / name).stat().st_size for name in files) <= 10 * 2**20


def test_shipped_files_hold_no_path_of_the_machine_that_made_them():
    for path in PRETRAINED.glob('*.pth'):
        config = torch.load(path, weights_only=True)['config']
        absolute = {name: value for name, value in config.items()
                    if isinstance(value, str) and (PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute())}
        assert not absolute, (path.name, absolute)
        assert '/' not in config['dataset'] and '\\' not in config['dataset'], (path.name, config['dataset'])


@pytest.mark.slow  # two models over a real val set at 256x256
@pytest.mark.parametrize('dataset', DATASETS)
def test_pretrained_models_score_as_the_table_says(tmp_path, dataset):
    val = REAL_DATA / dataset / 'val'
    if not val.is_dir():
        pytest.skip(f'the real {dataset} val set is not in {REAL_DATA}')
    expected = table()
    labeller = PRETRAINED / f'{dataset}_photo2labels.pth'
    scored = {}
    for name, extra in ((labeller.name, []), (f'{dataset}_labels2photo.pth', ['--fcn_score', labeller])):
        out = tmp_path / name
        run_script('evaluate.py', PRETRAINED / name, '--data_dir', val, '--out', out, '--device', 'cpu',
                   *extra, cwd=tmp_path, timeout=600)
        metrics = json.loads((out / 'metrics.json').read_text())
        labels = metrics['fcn_score'] if 'fcn_score' in metrics else metrics  # labels -> photo: its FCN-score
        scored[name] = {'l1': metrics['l1'], **{key: labels[key] for key in COLUMNS[1:]}}
    for name, scores in scored.items():
        for column, value in scores.items():
            assert abs(value - expected[name][column]) <= TOLERANCE[column], (name, column, value)
