import json
import math

import pytest
import torch

from conftest import run_script
from pairs import DatasetError


@pytest.mark.slow  # the benchmark times its epochs
def test_quick_benchmark_writes_both_ratios_per_network(pairs_dir, tmp_path):
    out = tmp_path / 'results' / 'benchmark.json'
    result = run_script('benchmark.py', '--quick', '--amp', 'off', '--data', pairs_dir, '--out', out, cwd=tmp_path,
                        timeout=120)
    results = json.loads(out.read_text())
    for name in ('fcn_baseline', 'default'):
        assert results[name]['precision'] == 'fp32' and results[name]['settings']['amp'] == 'off'
        for key in ('speedup_vs_original', 'fraction_of_compute_bound'):
            value = results[name][key]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, key, value)
        # the speedup is the original epoch over the repo's at the same batch, in the JSON and the table
        original = results[name]['original']
        repo = results[name]['repo'][str(original['batch_size'])]
        speedup = original['epoch_seconds'] / repo['epoch_seconds']
        assert results[name]['speedup_vs_original'] == pytest.approx(speedup, rel=1e-9)
        rows = [line.split() for line in result.stdout.splitlines() if line.startswith(name + ' ')]
        assert [row[-1] for row in rows if row[1] == str(original['batch_size'])] == [f'{speedup:.2f}x']
        repo_batch = results[name]['settings']['batch_size']
        assert results[name]['fraction_of_compute_bound'] == results[name]['repo'][str(repo_batch)]['fraction_of_bound']
    assert results['fcn_baseline']['original']['batch_size'] == 100
    units = [name for name, present in (('AMX', torch.cpu._is_amx_tile_supported()),
                                        ('AVX512-BF16', torch.cpu._is_avx512_bf16_supported())) if present]
    assert results['cpu_bf16_units'] == units
    assert f'CPU bf16 units: {", ".join(units) or "none"}; --amp off' in result.stdout
    assert results['cache_build_seconds'] >= 0 and results['peak_rss_mb'] > 0
    assert not any((tmp_path / 'datasets' / 'cache').iterdir())  # the benchmark's cache is temporary


def test_missing_data_is_a_one_line_error(tmp_path):
    result = run_script('benchmark.py', '--data', tmp_path / 'nowhere', cwd=tmp_path, check=False, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().startswith('error:') and len(result.stderr.strip().splitlines()) == 1


def test_without_data_it_takes_the_first_default_folder_found(tmp_path, monkeypatch):
    """find_data's defaults go through pairs.dataset_root, the one lookup: the shared copy
    first, then the download script's folder, from the current folder or the repo's."""
    import benchmark
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(benchmark, 'REPO', tmp_path / 'repo')
    monkeypatch.setattr(benchmark, 'DEFAULT_DATA', (str(tmp_path / 'shared' / 'facades'), 'datasets/facades'))
    with pytest.raises(DatasetError, match=r"^dataset 'facades' not found \(looked in \S+/shared/facades and "):
        benchmark.find_data(None)
    for folder in ('repo/datasets/facades', 'datasets/facades', 'shared/facades'):  # each wins over the ones before
        (tmp_path / folder).mkdir(parents=True)
        assert benchmark.find_data(None) == tmp_path / folder
    assert benchmark.find_data(str(tmp_path / 'datasets' / 'facades')) == tmp_path / 'datasets' / 'facades'
