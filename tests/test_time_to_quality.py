import importlib.util

import cv2
import pytest

from conftest import REPO, run_script

spec = importlib.util.spec_from_file_location('time_to_quality', REPO / 'scripts' / 'time_to_quality.py')
time_to_quality = importlib.util.module_from_spec(spec)
spec.loader.exec_module(time_to_quality)

WITH_MINUTES = """epoch,train_l1,val_l1,lr,seconds,minutes
1,0.5,0.45,0.002,30.0,0.75
2,0.4,,0.002,30.0,1.25
3,0.3,0.38,0.002,30.0,1.75
"""
WITHOUT_MINUTES = """epoch,train_l1,val_l1,lr,seconds
1,0.5,0.45,0.001,30.0
2,0.4,0.41,0.001,90.0
"""


def test_curve_reads_the_wall_clock_and_skips_epochs_without_validation(tmp_path):
    path = tmp_path / 'metrics.csv'
    path.write_text(WITH_MINUTES)
    assert time_to_quality.read_curve(path) == ([(0.75, 0.45), (1.75, 0.38)], False)


def test_curve_of_an_older_metrics_file_sums_the_epoch_seconds(tmp_path):
    path = tmp_path / 'metrics.csv'
    path.write_text(WITHOUT_MINUTES)
    assert time_to_quality.read_curve(path) == ([(0.5, 0.45), (2.0, 0.41)], True)


def test_script_draws_the_picture_and_refuses_bad_input_in_one_line(tmp_path):
    (tmp_path / 'a.csv').write_text(WITH_MINUTES)
    (tmp_path / 'b.csv').write_text('epoch,train_l1\n1,0.5\n')
    out = tmp_path / 'curves.png'
    run_script('scripts/time_to_quality.py', f'run a={tmp_path / "a.csv"}', '--out', out, cwd=tmp_path)
    assert cv2.imread(str(out)).shape == (500, 800, 3)
    for bad in (f'run b={tmp_path / "b.csv"}', f'{tmp_path / "a.csv"}', 'run=missing.csv'):
        result = run_script('scripts/time_to_quality.py', bad, '--out', out, cwd=tmp_path, check=False)
        assert result.returncode == 1 and result.stderr.startswith('error: ') and 'Traceback' not in result.stderr
