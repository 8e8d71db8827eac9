"""The report's parameter-gap caption says what the curve shows."""

from ifscope.core.stats import fit_gap_growth, gap_exponent
from ifscope.report.tables import gap_meaning


def fade_of(steps, gap, half=None):
    rate, scale = fit_gap_growth(steps, gap)
    return {"steps": steps, "gap": gap, "gap_rate": rate, "gap_scale": scale,
            "gap_exponent": gap_exponent(steps, gap), "horizon_half": half}


def test_a_rising_gap_that_levels_off_is_called_rising_not_a_negative_growth_rate():
    steps = [1, 3, 10, 30]
    text = gap_meaning(fade_of(steps, [1.7e-9, 3.0e-9, 1.2e-8, 2.4e-8]))  # the demo's curve: r < 0, rising
    assert "grows from 1.7e-09 at T = 1 to 2.4e-08 at T = 30" in text
    assert "levelling off" in text and "growth rate" not in text
    assert "has not halved by T = 30" in text


def test_a_diverging_gap_says_so_with_its_e_folding_time():
    steps = [1, 3, 10, 30, 100]
    text = gap_meaning(fade_of(steps, [1e-6 * (2.718 ** (0.05 * t) - 1) / 0.05 for t in steps], half=30))
    assert "faster than linearly: the runs diverge" in text and "×e every 20 steps" in text
    assert "halves: 30 steps" in text


def test_a_gap_that_jumps_at_the_end_is_not_called_levelling_off_nor_given_a_level_below_its_last_point():
    steps = [1, 3, 10, 30]
    text = gap_meaning(fade_of(steps, [1.54e-7, 1.46e-7, 1.56e-7, 4.29e-7]))  # the SGD demo's curve
    assert "levelling off" not in text and "levels off" not in text
    assert "between the last two horizons as T^0.92" not in text  # 0.92 is about linear: not called out
    assert "grows from 1.5e-07 at T = 1 to 4.3e-07 at T = 30" in text
