"""Resampling onto the absolute grid: accurate, and a prefix gives a prefix of the output."""

from __future__ import annotations

import numpy as np
import pytest

from streams.signal.resample import first_grid_index, resample_linear


def _sine(fs_hz: float, n: int, t0_ns: int, f_hz: float = 1.3) -> np.ndarray:
    t_s = (t0_ns / 1e9 - 1_700_000_000) + np.arange(n) / fs_hz
    return (80.0 + 20.0 * np.sin(2 * np.pi * f_hz * t_s)).astype(np.float64)


@pytest.mark.parametrize("fs_in,fs_out", [(500.0, 125.0), (500.0, 100.0), (125.0, 100.0), (100.0, 125.0)])
def test_accuracy_against_a_known_sine(fs_in, fs_out):
    t0 = 1_700_000_000_003_141_592
    x = _sine(fs_in, int(fs_in * 20), t0)
    y, t0_out = resample_linear(x, fs_in, fs_out, t0)
    assert t0_out >= t0 and (t0_out - t0) < 1e9 / fs_out
    assert t0_out % int(round(1e9 / fs_out)) == 0            # on the absolute grid
    t_out_s = (t0_out / 1e9 - 1_700_000_000) + np.arange(y.size) / fs_out
    truth = 80.0 + 20.0 * np.sin(2 * np.pi * 1.3 * t_out_s)
    # linear interpolation error of a 20 mmHg, 1.3 Hz sine: <= A (2 pi f)^2 / (8 fs^2)
    bound = 20.0 * (2 * np.pi * 1.3) ** 2 / (8 * fs_in ** 2) + 1e-4
    assert np.max(np.abs(y - truth)) < bound
    # the output spans the input: last output time is within one output period of the end
    t_last_in = t0 + (x.size - 1) * 1e9 / fs_in
    assert 0 <= t_last_in - (t0_out + (y.size - 1) * 1e9 / fs_out) < 1e9 / fs_out


@pytest.mark.parametrize("fs_in,fs_out", [(500.0, 125.0), (500.0, 100.0), (125.0, 100.0)])
def test_prefix_gives_a_prefix_of_the_output(fs_in, fs_out):
    t0 = 1_700_000_000_000_777_777
    x = _sine(fs_in, 4000, t0) + np.random.default_rng(0).normal(0, 1, 4000)
    x[1500:1530] = np.nan
    y, t0_out = resample_linear(x, fs_in, fs_out, t0)
    for m in list(range(1, 40)) + list(range(40, 4000, 97)) + [4000]:
        yp, tp = resample_linear(x[:m], fs_in, fs_out, t0)
        assert tp == t0_out
        np.testing.assert_array_equal(yp, y[:yp.size])
        # and it covers the prefix: the next output time is past the prefix's last sample
        t_next_out = t0_out + yp.size * 1e9 / fs_out
        assert t_next_out > t0 + (m - 1) * 1e9 / fs_in - 1e-3


def test_nan_stays_local_and_grid_points_on_samples_are_exact():
    x = np.arange(20, dtype=np.float64)
    x[7] = np.nan
    y, t0_out = resample_linear(x, 100.0, 50.0, 0)
    assert t0_out == 0
    # outputs at input samples 0, 2, 4, ... are exact copies, 6 and 8 neighbour the NaN but sit on samples
    np.testing.assert_array_equal(y, x[::2].astype(np.float32))
    y, _ = resample_linear(x, 100.0, 40.0, 0)     # 2.5 samples per output: 0, 2.5, 5, 7.5, ...
    assert np.isnan(y[3]) and y[2] == 5.0 and y[1] == 2.5


def test_first_grid_index_and_errors():
    assert first_grid_index(0, 125.0) == 0
    assert first_grid_index(1, 125.0) == 1
    assert first_grid_index(8_000_000, 125.0) == 1
    with pytest.raises(ValueError, match="fs_out"):
        resample_linear(np.zeros(3), 100.0, 0.0, 0)
    y, _ = resample_linear(np.zeros(0), 100.0, 50.0, 0)
    assert y.size == 0
