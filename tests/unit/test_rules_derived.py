"""Derived fields (rules.derived): PSS-78 + Hill salinity, un-ionised ammonia, chloride, trap totals."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.fields import TELEMETRY_FIELDS, Kind
from rules.derived import (
    DERIVED,
    TRAP_NIGHT_FIELDS,
    chloride_mg_l_from_salinity,
    compute,
    nh3_fraction,
    nh3_mg_l,
    salinity_from_ec,
    trap_total_night,
)

F64 = npt.NDArray[np.float64]

# Domain §0: practical salinity (‰) → EC at 25 °C (mS/cm), from a PSS-78 computation.
CHECK_TABLE = [
    (0.25, 0.52),
    (0.5, 1.02),
    (1.0, 1.97),
    (2.0, 3.80),
    (3.0, 5.56),
    (4.0, 7.28),
    (5.0, 8.96),
    (10.0, 17.0),
    (20.0, 32.1),
    (35.0, 53.1),
]


def ec_from_salinity(salinity: float, temp_c: float = 25.0) -> float:
    """The test's own inverse of salinity_from_ec (µS/cm), by bisection."""
    lo, hi = 0.0, 100_000.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if salinity_from_ec(mid, temp_c) < salinity:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def arr(*values: float) -> F64:
    return np.array(values, dtype=np.float64)


# --- salinity ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("salinity", "ec_ms_cm"), CHECK_TABLE)
def test_salinity_from_ec_reproduces_the_domain_table(salinity: float, ec_ms_cm: float) -> None:
    assert float(salinity_from_ec(ec_ms_cm * 1000.0)) == pytest.approx(salinity, rel=0.015)


@pytest.mark.parametrize(("salinity", "ec_ms_cm"), CHECK_TABLE)
def test_inverse_reproduces_the_domain_table(salinity: float, ec_ms_cm: float) -> None:
    assert ec_from_salinity(salinity) / 1000.0 == pytest.approx(ec_ms_cm, rel=0.01)


@pytest.mark.parametrize("salinity", [0.01, 0.1, 0.45, 1.0, 1.99, 2.0, 2.01, 7.0, 13.2, 35.0, 42.0])
def test_round_trip(salinity: float) -> None:
    assert float(salinity_from_ec(ec_from_salinity(salinity))) == pytest.approx(salinity, rel=1e-6)


def test_standard_seawater_is_35_at_15_degrees() -> None:
    # PSS-78's definition: C(35, 15, 0) = 42.914 mS/cm, at 15 °C on the IPTS-68 scale.
    assert float(salinity_from_ec(42_914.0, 15.0 / 1.00024)) == pytest.approx(35.0, abs=1e-4)


def test_temperature_matters_when_given() -> None:
    # The same conductivity is saltier water when measured colder (warm water conducts better).
    cold, ref, warm = salinity_from_ec(arr(10_000.0, 10_000.0, 10_000.0), arr(20.0, 25.0, 30.0))
    assert cold > ref > warm
    assert float(salinity_from_ec(10_000.0)) == ref


def test_hill_extension_is_continuous_at_2_and_reaches_0() -> None:
    ec2 = ec_from_salinity(2.0)
    below, above = salinity_from_ec(arr(ec2 * (1 - 1e-9), ec2 * (1 + 1e-9)))
    assert abs(above - below) < 2e-4  # the published extension leaves a 1.5e-4 step at 25 °C
    assert salinity_from_ec(arr(0.0, -5.0)).tolist() == [0.0, 0.0]
    # Fresh water (0.1–0.5 mS/cm, domain §1) stays small and positive.
    fresh = salinity_from_ec(arr(100.0, 500.0))
    assert np.all((fresh > 0.03) & (fresh < 0.3))


def test_salinity_is_monotonic_in_ec() -> None:
    s = salinity_from_ec(np.linspace(0.0, 70_000.0, 20_001))
    assert np.all(np.diff(s) > 0)


def test_salinity_propagates_nan_and_keeps_shape() -> None:
    out = salinity_from_ec(arr(np.nan, 1020.0, np.nan))
    assert out.dtype == np.float64
    assert np.isnan(out[[0, 2]]).all()
    assert out[1] == pytest.approx(0.5, rel=0.015)
    assert np.isnan(salinity_from_ec(1000.0, np.nan))
    assert salinity_from_ec(np.empty(0)).shape == (0,)


def rt_35(temp_c: float) -> float:
    """PSS-78's r_t: C(35, t, 0) / C(35, 15, 0), IPTS-68 (UNESCO 1983, eq. 3)."""
    t = temp_c * 1.00024
    return 0.6766097 + 2.00564e-2 * t + 1.104259e-4 * t**2 - 6.9698e-7 * t**3 + 1.0031e-9 * t**4


@pytest.mark.parametrize("temp_c", [0.0, 5.0, 15.0 / 1.00024, 20.0, 25.0, 30.0, 35.0])
def test_standard_seawater_is_35_at_every_temperature(temp_c: float) -> None:
    # UNESCO 1983: at R_t = 1 the a-coefficients sum to 35 and the b-coefficients to 0.
    assert float(salinity_from_ec(42_914.0 * rt_35(temp_c), temp_c)) == pytest.approx(35.0, abs=1e-9)


@pytest.mark.parametrize(
    ("rt", "t68_c", "salinity"),
    [
        # UNESCO 1983 (Fofonoff & Millard, Tech. Pap. Mar. Sci. 44), p. 9: R_t at 0 dbar → S
        (1.0, 15.0, 35.0),
        (1.0568875, 20.0, 37.245628),
        (0.81705885, 5.0, 27.995347),
    ],
)
def test_unesco_1983_check_values(rt: float, t68_c: float, salinity: float) -> None:
    temp_c = t68_c / 1.00024  # the function takes ITS-90
    assert float(salinity_from_ec(42_914.0 * rt * rt_35(temp_c), temp_c)) == pytest.approx(salinity, abs=1e-5)


@given(st.lists(st.floats(0.0, 100_000.0), max_size=50))
def test_salinity_is_pure_and_in_range(values: list[float]) -> None:
    ec = np.array(values, dtype=np.float64)
    before = ec.copy()
    s = salinity_from_ec(ec)
    np.testing.assert_array_equal(ec, before)
    assert s.shape == ec.shape
    assert np.all((s >= 0.0) & (s < 80.0))


# --- ammonia ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("ph", "fraction"), [(7.5, 0.025), (8.0, 0.074), (8.5, 0.20), (9.0, 0.45)])
def test_nh3_fraction_at_30_degrees(ph: float, fraction: float) -> None:
    assert float(nh3_fraction(ph, 30.0)) == pytest.approx(fraction, rel=0.03)


def test_nh3_fraction_rises_with_ph_and_temperature() -> None:
    f = nh3_fraction(arr(7.0, 8.0, 8.0), arr(30.0, 30.0, 20.0))
    assert f[1] > f[0]
    assert f[1] > f[2]
    assert np.all((f > 0) & (f < 1))


def test_nh3_mg_l_is_tan_times_fraction() -> None:
    tan, ph, t = arr(1.0, 0.5, np.nan, 2.0), arr(8.0, 9.0, 8.0, np.nan), arr(30.0, 30.0, 30.0, 30.0)
    out = nh3_mg_l(tan, ph, t)
    assert out[0] == pytest.approx(0.074, rel=0.03)
    assert out[1] == pytest.approx(0.5 * float(nh3_fraction(9.0, 30.0)))
    assert np.isnan(out[2:]).all()


# --- chloride ---------------------------------------------------------------------------------


def test_chloride_estimate() -> None:
    # Domain §0: the 250 mg/L Cl⁻ limit ≈ 0.45 ‰ of diluted seawater.
    cl = chloride_mg_l_from_salinity(arr(0.45, 0.0, 35.0, np.nan))
    assert cl[0] == pytest.approx(250.0, rel=0.02)
    assert cl[1] == 0.0
    assert cl[2] == pytest.approx(19_250.0)
    assert np.isnan(cl[3])


# --- light traps ------------------------------------------------------------------------------


def test_trap_total_sums_the_species_present() -> None:
    fields = {
        "bph_night": arr(100.0, np.nan, np.nan, 0.0),
        "glh_night": arr(5.0, 7.0, np.nan, 0.0),
        "bph_count": arr(1.0, 2.0, 3.0, 4.0),  # hourly counts are not night totals
    }
    out = trap_total_night(fields)
    assert out[:2].tolist() == [105.0, 7.0]
    assert np.isnan(out[2])
    assert out[3] == 0.0


def test_trap_total_without_any_night_field_is_nan() -> None:
    out = trap_total_night({"bph_count": arr(1.0, 2.0)})
    assert out.shape == (2,)
    assert np.isnan(out).all()
    assert trap_total_night({}).shape == (0,)


def test_trap_night_fields_are_the_contracts() -> None:
    night = tuple(f.name for f in TELEMETRY_FIELDS[Kind.LIGHT_TRAP] if f.name.endswith("_night"))
    assert night == TRAP_NIGHT_FIELDS


# --- registry ---------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(DERIVED) == {"salinity_from_ec_ppt", "nh3_mg_l", "cl_mg_l_est", "trap_night_total"}
    for name, d in DERIVED.items():
        assert d.name == name


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_registry_inputs_exist_for_every_kind(name: str) -> None:
    d = DERIVED[name]
    assert d.kinds
    assert d.unit
    for kind in d.kinds:
        fields = {f.name for f in TELEMETRY_FIELDS[Kind(kind)]}
        assert set(d.inputs) <= fields, (name, kind)
        assert name not in fields, f"{name} shadows a real {kind} field"


def test_compute_matches_the_functions() -> None:
    wq = {
        "ec_us_cm": arr(1970.0, np.nan),
        "salinity_ppt": arr(1.0, 0.45),
        "nh4_mg_l": arr(1.0, 1.0),
        "ph": arr(8.0, 9.0),
        "temp_c": arr(30.0, 30.0),
    }
    np.testing.assert_array_equal(compute("salinity_from_ec_ppt", wq), salinity_from_ec(wq["ec_us_cm"]))
    np.testing.assert_array_equal(compute("nh3_mg_l", wq), nh3_mg_l(wq["nh4_mg_l"], wq["ph"], wq["temp_c"]))
    np.testing.assert_array_equal(compute("cl_mg_l_est", wq), chloride_mg_l_from_salinity(wq["salinity_ppt"]))
    trap = {"bph_night": arr(3.0), "leaffolder_night": arr(4.0)}
    assert compute("trap_night_total", trap).tolist() == [7.0]


def test_compute_with_a_missing_input_gives_nan_rows() -> None:
    out = compute("nh3_mg_l", {"nh4_mg_l": arr(1.0, 2.0, 3.0), "ph": arr(8.0, 8.0, 8.0)})
    assert out.shape == (3,)
    assert np.isnan(out).all()


def test_compute_unknown_name() -> None:
    with pytest.raises(KeyError, match="unknown derived field 'nh3'"):
        compute("nh3", {"ph": arr(7.0)})
