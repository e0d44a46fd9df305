"""Derived fields: values rules read that no device sends, computed from the fields it does send.

Every function is pure, vectorised and row by row (a row's value depends on that row's inputs alone: the
engine computes one on the rows of the selection that reads it, or once on every row): float arrays in,
float64 arrays out, NaN in → NaN out.
:data:`DERIVED` names them for the engine, which evaluates one on a dict of reading columns with
:func:`compute`; a column the batch lacks counts as all-NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Columns = Mapping[str, F64]

# --- PSS-78 -----------------------------------------------------------------------------------

_PSS_A: Final = (0.0080, -0.1692, 25.3851, 14.0941, -7.0261, 2.7081)
_PSS_B: Final = (0.0005, -0.0056, -0.0066, -0.0375, 0.0636, -0.0144)
_PSS_K: Final = 0.0162
_RT_C: Final = (0.6766097, 2.00564e-2, 1.104259e-4, -6.9698e-7, 1.0031e-9)
C35_US_CM: Final = 42_914.0
"""C(35, 15, 0): conductivity of standard seawater at 15 °C, 0 dbar, in µS/cm."""


def _poly(coefs: tuple[float, ...], x: F64) -> F64:
    out = np.zeros_like(x)
    for c in reversed(coefs):
        out = out * x + c
    return out


def salinity_from_ec(ec_us_cm: npt.ArrayLike, temp_c: npt.ArrayLike = 25.0) -> F64:
    """Practical salinity (‰ ≈ PSU) from conductivity (µS/cm) measured at ``temp_c`` (°C), 0 dbar.

    PSS-78 (UNESCO 1983), with the Hill et al. (1986) low-salinity extension below S = 2; the
    result is never negative. Sensors report EC25 (already referred to 25 °C), hence the default.
    ``temp_c`` is ITS-90 and is converted to IPTS-68 as TEOS-10 does. Check values: UNESCO 1983
    p. 9 and domain §0. The project's one PSS-78: the simulated sensors report salinity with it.
    """
    ec = np.asarray(ec_us_cm, dtype=np.float64)
    t68 = np.asarray(temp_c, dtype=np.float64) * 1.00024
    rt = np.maximum(ec, 0.0) / (C35_US_CM * _poly(_RT_C, t68))
    x = np.sqrt(rt)
    ft = (t68 - 15.0) / (1.0 + _PSS_K * (t68 - 15.0))
    s = _poly(_PSS_A, x) + ft * _poly(_PSS_B, x)
    # Hill et al. (1986): below S = 2, take off the terms that keep PSS-78 above 0 as C → 0.
    big_x = 400.0 * rt
    sqrt_y = 10.0 * x
    hill = s - _PSS_A[0] / (1.0 + big_x * (1.5 + big_x))
    hill = hill - _PSS_B[0] * ft / (1.0 + sqrt_y * (1.0 + sqrt_y * (1.0 + sqrt_y)))
    return np.asarray(np.maximum(np.where(s < 2.0, hill, s), 0.0), dtype=np.float64)


# --- ammonia ----------------------------------------------------------------------------------


def nh3_fraction(ph: npt.ArrayLike, temp_c: npt.ArrayLike) -> F64:
    """Un-ionised share of total ammonia: 1 / (1 + 10^(pKa − pH)), pKa = 0.09018 + 2729.92/T(K).

    Emerson et al. (1975), freshwater [S 4]; at 30 °C: 0.025 (pH 7.5), 0.074 (8.0), 0.20 (8.5).
    """
    t_k = np.asarray(temp_c, dtype=np.float64) + 273.15
    pka = 0.09018 + 2729.92 / t_k
    return np.asarray(1.0 / (1.0 + 10.0 ** (pka - np.asarray(ph, dtype=np.float64))), dtype=np.float64)


def nh3_mg_l(nh4_mg_l: npt.ArrayLike, ph: npt.ArrayLike, temp_c: npt.ArrayLike) -> F64:
    """Un-ionised ammonia (mg/L as N) = total ammonia nitrogen × :func:`nh3_fraction`.

    Assumes the ``nh4_mg_l`` field is total ammonia nitrogen (TAN, NH₄⁺-N + NH₃-N), as colorimetric
    and most probe readings are reported; a probe measuring NH₄⁺ alone would be under-read by
    1 − fraction (< 10 % below pH 8 at 30 °C).
    """
    return np.asarray(np.asarray(nh4_mg_l, dtype=np.float64) * nh3_fraction(ph, temp_c), dtype=np.float64)


# --- chloride ---------------------------------------------------------------------------------

CHLORIDE_SHARE: Final = 0.55
"""Cl⁻ share of sea salt by mass (domain §0: 0.45 ‰ of diluted seawater ≈ 250 mg/L Cl⁻) [E]."""


def chloride_mg_l_from_salinity(salinity_ppt: npt.ArrayLike) -> F64:
    """Estimated chloride (mg/L) of diluted seawater: 0.55 × 1000 × S (‰) [E, domain §0]."""
    return np.asarray(np.asarray(salinity_ppt, dtype=np.float64) * (CHLORIDE_SHARE * 1000.0), dtype=np.float64)


# --- light traps ------------------------------------------------------------------------------

TRAP_NIGHT_FIELDS: Final = ("bph_night", "wbph_night", "glh_night", "leaffolder_night", "stemborer_night")
"""The ``<species>_night`` totals a light trap sends at 06:00 local."""


def _rows(fields: Columns) -> int:
    return len(next(iter(fields.values()))) if fields else 0


def trap_total_night(fields: Columns) -> F64:
    """All insects of the night: the sum of the ``<species>_night`` columns present.

    A missing species counts as 0 while another species of the same reading is present; the total
    is NaN only where every species is absent (hourly readings carry no night totals).
    """
    present = [np.asarray(fields[f], dtype=np.float64) for f in TRAP_NIGHT_FIELDS if f in fields]
    if not present:
        return np.full(_rows(fields), np.nan)
    stacked = np.vstack(present)
    total = np.nansum(stacked, axis=0)
    total[np.isnan(stacked).all(axis=0)] = np.nan
    return np.asarray(total, dtype=np.float64)


# --- registry ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DerivedField:
    """A field computed from the reading columns of the listed device kinds."""

    name: str
    kinds: tuple[str, ...]
    inputs: tuple[str, ...]
    unit: str
    fn: Callable[[Columns], F64]


def _col(fields: Columns, name: str) -> F64:
    """The column ``name``, or NaN for every row when the batch lacks it."""
    col = fields.get(name)
    return np.full(_rows(fields), np.nan) if col is None else np.asarray(col, dtype=np.float64)


DERIVED: Final[dict[str, DerivedField]] = {
    d.name: d
    for d in (
        DerivedField(
            "salinity_from_ec_ppt",
            ("salinity", "water_quality"),
            ("ec_us_cm",),
            "‰",
            lambda f: salinity_from_ec(_col(f, "ec_us_cm")),
        ),
        DerivedField(
            "nh3_mg_l",
            ("water_quality",),
            ("nh4_mg_l", "ph", "temp_c"),
            "mg/L",
            lambda f: nh3_mg_l(_col(f, "nh4_mg_l"), _col(f, "ph"), _col(f, "temp_c")),
        ),
        DerivedField(
            "cl_mg_l_est",
            ("salinity", "water_quality"),
            ("salinity_ppt",),
            "mg/L",
            lambda f: chloride_mg_l_from_salinity(_col(f, "salinity_ppt")),
        ),
        DerivedField("trap_night_total", ("light_trap",), TRAP_NIGHT_FIELDS, "insects", trap_total_night),
    )
}
"""Derived fields by name; a rule may read one on any device of its ``kinds``."""


def compute(name: str, fields: Columns) -> F64:
    """Evaluate the derived field ``name`` on reading columns (one row per reading)."""
    try:
        derived = DERIVED[name]
    except KeyError:
        raise KeyError(f"unknown derived field {name!r}; known: {', '.join(DERIVED)}") from None
    return derived.fn(fields)
