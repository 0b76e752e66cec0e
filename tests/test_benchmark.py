import json
import math

from conftest import run_script


def test_quick_benchmark_writes_both_ratios_per_network(pairs_dir, tmp_path):
    out = tmp_path / 'results' / 'benchmark.json'
    result = run_script('benchmark.py', '--quick', '--data', pairs_dir, '--out', out, cwd=tmp_path, timeout=120)
    assert 'speedup' in result.stdout
    results = json.loads(out.read_text())
    for name in ('fcn_baseline', 'default'):
        for key in ('speedup_vs_original', 'fraction_of_compute_bound'):
            value = results[name][key]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, key, value)
    assert results['fcn_baseline']['original']['batch_size'] == 100
    assert results['cache_build_seconds'] >= 0 and results['peak_rss_mb'] > 0
    assert not any((tmp_path / 'datasets' / 'cache').iterdir())  # the benchmark's cache is temporary


def test_missing_data_is_a_one_line_error(tmp_path):
    result = run_script('benchmark.py', '--data', tmp_path / 'nowhere', cwd=tmp_path, check=False, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().startswith('error:') and len(result.stderr.strip().splitlines()) == 1
