"""The HGCAL hit encoding's projected positions (the locality cut's metric)."""

from __future__ import annotations

import numpy as np
import pytest

from caloreco.errors import InvalidDataError
from caloreco.models.encoding import FRONT_FACE_Z_CM, HitEncoding


def _hits(x: list[float], y: list[float], z: list[float]) -> dict[str, np.ndarray]:
    n = len(x)
    return {"energy": np.ones(n, np.float32), "x": np.asarray(x, np.float32),
            "y": np.asarray(y, np.float32), "z": np.asarray(z, np.float32),
            "layer": np.ones(n, np.int16), "time": np.zeros(n, np.float32)}


def test_projected_positions_are_front_face_positions_along_the_line_of_flight() -> None:
    enc = HitEncoding()
    # one line of flight at three depths, the same at the other endcap, and a hit 10 cm off
    hits = _hits([40.0, 50.0, 60.0, 40.0, 50.0], [8.0, 10.0, 12.0, 8.0, 10.0],
                 [320.0, 400.0, 480.0, -320.0, 400.0 + 0.0])
    hits["x"][4] += 12.5  # 12.5 cm at z = 400 cm: 10 cm at the front face
    p = enc.projected_positions(hits)
    assert p.shape == (5, 3) and p.dtype == np.float32
    np.testing.assert_allclose(np.abs(p[:, 2]), FRONT_FACE_Z_CM)
    np.testing.assert_allclose(p[1], p[0], atol=1e-4)
    np.testing.assert_allclose(p[2], p[0], atol=1e-4)
    assert np.linalg.norm(p[3] - p[0]) == pytest.approx(2 * FRONT_FACE_Z_CM)  # other endcap
    assert np.linalg.norm(p[4] - p[0]) == pytest.approx(10.0, rel=1e-5)


def test_projected_positions_reject_bad_hits() -> None:
    enc = HitEncoding()
    with pytest.raises(InvalidDataError, match="z = 0"):
        enc.projected_positions(_hits([1.0], [1.0], [0.0]))
    bad = _hits([1.0, 2.0], [1.0, 2.0], [330.0, 330.0])
    bad["x"][1] = np.nan
    with pytest.raises(InvalidDataError, match="'x' is not finite at hit 1"):
        enc.projected_positions(bad)
