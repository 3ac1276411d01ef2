"""Stable particles to the calorimeter front face through a uniform solenoid field.

Field ``B`` along +z (CMS: 3.8 T). A particle of charge q [e] and transverse momentum
p_T [GeV] moves on a helix of radius ``R = p_T / (0.2998 B |q|)`` [m, T]; with the signed
curvature ``kappa = 0.2998 q B / p_T`` [1/m] and the transverse path length s, its
transverse direction angle is ``psi(s) = phi_0 - kappa s`` (positive charges turn
clockwise seen from +z, F = q v x B) and

    x(s) = x_c - sin(psi) / kappa,   y(s) = y_c + cos(psi) / kappa,   z(s) = z_0 + s p_z / p_T,

with the centre ``(x_c, y_c) = (x_0 + sin(phi_0)/kappa, y_0 - cos(phi_0)/kappa)``. Neutral
particles (and kappa -> 0) move in straight lines.

Surfaces (:class:`Surface`):

* ``cylinder`` (barrel, radius r, |z| < half_length): in the triangle (origin, helix
  centre at distance d, impact point) with helix radius rho = 1/|kappa|, the impact lies at
  the angle +-beta from the centre-to-origin direction, ``sin^2(beta/2) = (r - e)(r + e) /
  (4 d rho)`` with ``e = d - rho = (|v_T|^2 + 2 (x_0 sin phi_0 - y_0 cos phi_0) / kappa) /
  (d + rho)`` (no cancellation at high p_T); the impact is the first of the two points the
  particle reaches, turning by kappa per unit of s. When ``sin^2(beta/2) > 1`` the helix
  never reaches r: a *looper*. From the origin the impact
  azimuth is ``phi_0 - asin(0.2998 B r q / (2 p_T))``, and tracks need
  ``p_T > 0.2998 B r |q| / 2`` (1.01 GeV at 1.777 m, 3.8 T) to reach the barrel.
* ``disc`` (endcap plane z = z_f, r_min < r < r_max, phi range): ``s = (z_f - z_0) p_T / p_z``
  (only p_z > 0: the +z endcap); a particle that turns more than once
  (``|kappa| s > 2 pi``) before the plane is flagged as a looper (it would range out in
  the tracker volume).

Outside the field (inside the calorimeter) particles continue in straight lines along
the direction at impact: the fast simulation does not bend them further.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloreco.errors import ConfigError
from caloreco.geometry.detector import Detector

B_FIELD_T = 3.8  # CMS solenoid central field (CMS Collaboration, JINST 5 (2010) T03021)
GEV_PER_T_M = 0.299792458  # p_T [GeV] = 0.2998 B [T] R [m] |q|  (c = 2.998e8 m/s)
_KAPPA_MIN = 1e-12  # [1/cm] below this a helix is treated as a straight line


@dataclass(frozen=True)
class Surface:
    """Calorimeter front face: a ``cylinder`` (radius, |z| < half_length) or a ``disc``
    (plane z, r_min < r < r_max, phi_min <= phi < phi_max). Lengths in cm."""

    kind: str
    radius: float = 0.0
    half_length: float = np.inf
    z: float = 0.0
    r_min: float = 0.0
    r_max: float = np.inf
    phi_min: float = -np.pi
    phi_max: float = np.pi

    def __post_init__(self) -> None:
        if self.kind not in ("cylinder", "disc"):
            raise ConfigError(f"Surface.kind must be 'cylinder' or 'disc', got '{self.kind}'")
        if self.kind == "cylinder" and not self.radius > 0:
            raise ConfigError(f"a cylinder needs radius > 0, got {self.radius}")
        if self.kind == "disc" and not (self.z > 0 and 0 <= self.r_min < self.r_max):
            raise ConfigError(f"a disc needs z > 0 and 0 <= r_min < r_max, got z={self.z}, "
                              f"r=({self.r_min}, {self.r_max})")


def calorimeter_surface(detector: Detector) -> Surface:
    """Front face of a detector of :mod:`caloreco.geometry`.

    HCAL barrel: the cylinder at the HB inner radius (``HCalBarrelConfig.r_inner``,
    177.7 cm), |z| < r sinh(eta_max). HGCAL: the plane of the first CE-E layer
    (``HGCalConfig.ce_e_z0``, 319.8 cm) between eta_max and eta_min, over its phi range.
    """
    from caloreco.geometry.hcal import HCalBarrel
    from caloreco.geometry.hgcal import HGCalEndcap

    if isinstance(detector, HCalBarrel):
        c = detector.config
        return Surface("cylinder", radius=c.r_inner, half_length=c.r_inner * np.sinh(c.eta_max))
    if isinstance(detector, HGCalEndcap):
        c = detector.config
        z = c.ce_e_z0
        return Surface("disc", z=z, r_min=z / np.sinh(c.eta_max), r_max=z / np.sinh(c.eta_min),
                       phi_min=c.phi_min, phi_max=c.phi_max)
    raise ConfigError(f"no calorimeter surface known for detector '{detector.name}'")


@dataclass
class Propagated:
    """Result of :func:`propagate`. Shapes: P particles.

    Attributes:
        position: (P, 3) impact point [cm] (NaN where not reached).
        direction: (P, 3) unit momentum direction at the impact.
        path_length: (P,) 3D path length from the vertex [cm].
        reached: (P,) the particle hits the surface inside its acceptance.
        looper: (P,) charged particle that curls up before the surface.
    """

    position: np.ndarray
    direction: np.ndarray
    path_length: np.ndarray
    reached: np.ndarray
    looper: np.ndarray


def curvature(pt: np.ndarray, charge: np.ndarray, b_field: float = B_FIELD_T) -> np.ndarray:
    """Signed curvature ``kappa = 0.2998 q B / p_T`` in 1/cm (0 for neutral particles)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        k = GEV_PER_T_M * np.asarray(charge, np.float64) * b_field / np.asarray(pt, np.float64) / 100.0
    return np.where(np.isfinite(k), k, 0.0)


def _helix_point(x0: np.ndarray, y0: np.ndarray, phi0: np.ndarray, kappa: np.ndarray,
                 s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, psi) after transverse path s; straight lines where kappa ~ 0."""
    psi = phi0 - kappa * s
    # x(s) - x0 = (sin(phi0) - sin(psi)) / kappa = s cos(phi0 - h) sin(h) / h with h = kappa s / 2
    # (and likewise for y), finite for kappa -> 0 (straight line)
    half = 0.5 * kappa * s
    safe = np.where(half == 0, 1.0, half)
    sinc = np.where(np.abs(half) < 1e-8, 1.0 - half**2 / 6.0, np.sin(half) / safe)
    dx = s * np.cos(phi0 - half) * sinc
    dy = s * np.sin(phi0 - half) * sinc
    return x0 + dx, y0 + dy, psi


def _cylinder_s(x0: np.ndarray, y0: np.ndarray, phi0: np.ndarray, kappa: np.ndarray,
                radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Transverse path length to the cylinder and the looper flag (see module docstring)."""
    n = len(x0)
    s = np.full(n, np.nan)
    looper = np.zeros(n, bool)
    r2 = radius**2 - (x0**2 + y0**2)
    straight = np.abs(kappa) < _KAPPA_MIN
    # straight line: s = -v.u + sqrt((v.u)^2 + r^2 - |v|^2)
    vu = x0 * np.cos(phi0) + y0 * np.sin(phi0)
    disc = vu**2 + r2
    s_line = -vu + np.sqrt(np.maximum(disc, 0.0))
    s = np.where(straight & (disc >= 0), s_line, s)
    h = ~straight
    if h.any():
        k, p0, xh, yh = kappa[h], phi0[h], x0[h], y0[h]
        rho = 1.0 / np.abs(k)
        xc, yc = xh + np.sin(p0) / k, yh - np.cos(p0) / k
        d = np.hypot(xc, yc)
        # e = d - rho = (d^2 - rho^2) / (d + rho), d^2 - rho^2 = |v|^2 + 2 (x0 sin phi0 - y0 cos phi0) / kappa
        e = (xh**2 + yh**2 + 2.0 * (xh * np.sin(p0) - yh * np.cos(p0)) / k) / (d + rho)
        # triangle (origin, centre, impact): sin^2(beta/2) = (r - e)(r + e) / (4 d rho)
        with np.errstate(divide="ignore", invalid="ignore"):
            sin2 = (radius - e) * (radius + e) / (4.0 * d * rho)
        ok = np.isfinite(sin2) & (sin2 <= 1.0)
        beta = 2.0 * np.arcsin(np.sqrt(np.clip(np.nan_to_num(sin2), 0.0, 1.0)))
        towards_origin = np.arctan2(-yc, -xc)
        start = np.arctan2(np.cos(p0) / k, -np.sin(p0) / k)  # angle of (vertex - centre)
        two_pi = 2.0 * np.pi
        best = np.full(len(k), np.inf)
        for target in (towards_origin + beta, towards_origin - beta):
            # the angle around the centre falls at the rate kappa per unit of s
            turn = np.mod(np.sign(k) * (start - target), two_pi)
            turn = np.where(turn < 1e-12, two_pi, turn)  # starting on the surface: next crossing
            best = np.minimum(best, turn / np.abs(k))
        s[h] = np.where(ok, best, np.nan)
        looper[np.flatnonzero(h)[~ok]] = True
    return s, looper


def propagate(px: np.ndarray, py: np.ndarray, pz: np.ndarray, vertex: np.ndarray, charge: np.ndarray,
              surface: Surface, *, b_field: float = B_FIELD_T) -> Propagated:
    """Propagate particles from their production vertices to ``surface``.

    Args:
        px, py, pz: momenta [GeV], shape (P,).
        vertex: production vertices [cm], shape (P, 3) (inside the surface).
        charge: charges [e], shape (P,).
        surface: the calorimeter front face (:func:`calorimeter_surface`).
        b_field: solenoid field along +z [T], default 3.8 (CMS).

    Returns:
        :class:`Propagated`.
    """
    px, py, pz = (np.asarray(v, np.float64) for v in (px, py, pz))
    vertex = np.asarray(vertex, np.float64).reshape(-1, 3)
    pt = np.hypot(px, py)
    p = np.sqrt(pt**2 + pz**2)
    phi0 = np.arctan2(py, px)
    kappa = curvature(pt, charge, b_field)
    x0, y0, z0 = vertex[:, 0], vertex[:, 1], vertex[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        cot = pz / pt  # dz / ds
        if surface.kind == "cylinder":
            s, looper = _cylinder_s(x0, y0, phi0, kappa, surface.radius)
            s = np.where(pt > 0, s, np.nan)
        else:
            s = np.where(pz > 0, (surface.z - z0) / cot, np.nan)
            s = np.where(s >= 0, s, np.nan)
            looper = np.isfinite(s) & (np.abs(kappa) * s > 2.0 * np.pi)
    x, y, psi = _helix_point(x0, y0, phi0, kappa, np.nan_to_num(s))
    z = z0 + np.nan_to_num(s) * np.where(pt > 0, cot, 0.0)
    if surface.kind == "disc":
        z = np.full_like(z, surface.z)
    reached = np.isfinite(s) & ~looper
    if surface.kind == "cylinder":
        reached &= np.abs(z) < surface.half_length
    else:
        r = np.hypot(x, y)
        phi = np.arctan2(y, x)
        reached &= (r >= surface.r_min) & (r < surface.r_max) & (phi >= surface.phi_min) & (phi < surface.phi_max)
    with np.errstate(divide="ignore", invalid="ignore"):
        direction = np.stack([pt * np.cos(psi), pt * np.sin(psi), pz], axis=1) / p[:, None]
        path = np.where(np.isfinite(s), np.nan_to_num(s) * p / pt, np.nan)
    position = np.stack([x, y, z], axis=1)
    position[~reached] = np.nan
    return Propagated(position=position, direction=direction, path_length=path, reached=reached,
                      looper=looper & (pt > 0))
