"""The coordinate manager: voxel coordinates per tensor stride, kernel maps and point maps.

Every sparse tensor derived from one voxelised input shares one :class:`CoordinateManager`.
It builds what the layers ask for on first use and caches it, so a kernel map at a given
stride and kernel size is built once per forward pass and reused by every layer there.

The manager can also be *frozen*: :meth:`tensors` lists everything that was built as named
tensors, and :meth:`from_tensors` rebuilds a manager that only reads them. This is the
split used for export: map building (sorting, ``searchsorted``, ``unique``) runs as a
pre-processing step, the network graph holds only gathers, matmuls and ``index_add``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.sparse.coords import SortedKeys, check_coords, downsample, pack
from caloreco.sparse.kernel_map import KernelMap, strided_maps, submanifold_map

#: Weight added to the voxel that contains a point before the trilinear weights are
#: normalised, so that a point with no other occupied corner keeps its own voxel.
_OWN_VOXEL_EPS = 1e-6


class CoordinateManager:
    """Coordinates and maps shared by the sparse tensors of one input.

    Args:
        coords: int64 ``[V, 4]`` voxel coordinates ``(batch, i, j, k)`` at stride 1,
            unique rows, as returned by :func:`caloreco.sparse.voxelize.voxelize`.
        points: optional float ``[N, 3]`` point positions in voxel units (a point at
            ``p`` lies in voxel ``floor(p)``) and ``points_batch`` int64 ``[N]``; needed for
            the point-voxel operations.
        point_voxel: optional int64 ``[N]``: the stride-1 voxel row of each point.
    """

    def __init__(self, coords: Tensor | None, points: Tensor | None = None,
                 points_batch: Tensor | None = None, point_voxel: Tensor | None = None) -> None:
        self._frozen: dict[str, Tensor] | None = None
        self._coords: dict[int, Tensor] = {}
        self._keys: dict[int, SortedKeys] = {}
        self._built: dict[str, Tensor] = {}
        self._maps: dict[str, KernelMap] = {}  # map objects (they cache their pair lists)
        self.points = points
        self.points_batch = points_batch
        if coords is not None:
            check_coords(coords)
            self._coords[1] = coords
        if point_voxel is not None:
            self._built["p2v_s1"] = point_voxel

    # ------------------------------------------------------------------ frozen mode
    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> "CoordinateManager":
        """A manager that serves the named tensors of :meth:`tensors` and builds nothing."""
        mgr = cls(None)
        mgr._frozen = dict(tensors)
        return mgr

    def tensors(self) -> dict[str, Tensor]:
        """Every map built so far, by name (insertion order = order of first use)."""
        return dict(self._built if self._frozen is None else self._frozen)

    def _get(self, name: str) -> Tensor | None:
        if self._frozen is not None:
            if name not in self._frozen:
                raise ConfigError(f"frozen coordinate manager has no map '{name}'; it holds "
                                  f"{sorted(self._frozen)}")
            return self._frozen[name]
        return self._built.get(name)

    # ------------------------------------------------------------------ coordinates
    def coords(self, stride: int) -> Tensor:
        """Voxel coordinates at tensor ``stride`` (built by the down-sampling path)."""
        if self._frozen is not None:
            raise ConfigError("a frozen coordinate manager holds no coordinates")
        if stride not in self._coords:
            raise ConfigError(f"no coordinates at stride {stride}: a strided convolution "
                              f"must reach it first (have {sorted(self._coords)})")
        return self._coords[stride]

    def n_voxels(self, stride: int) -> int:
        """Number of voxels at ``stride`` (in frozen mode read off a map's first axis)."""
        if self._frozen is None:
            return int(self.coords(stride).shape[0])
        for name, t in self._frozen.items():
            if name.startswith((f"subm_s{stride}_", f"up_s{stride}_")):
                return t.shape[0]
        raise ConfigError(f"frozen coordinate manager holds no map at stride {stride}")

    def keys(self, stride: int) -> SortedKeys:
        if stride not in self._keys:
            self._keys[stride] = SortedKeys(self.coords(stride))
        return self._keys[stride]

    # ------------------------------------------------------------------ kernel maps
    def _map(self, name: str, volume: int, identity: int | None = None) -> KernelMap | None:
        if name in self._maps:
            return self._maps[name]
        nbr = self._get(name + ".nbr") if self._has(name + ".nbr") else None
        parent = self._get(name + ".parent") if self._has(name + ".parent") else None
        if nbr is None and parent is None:
            return None
        kmap = KernelMap(nbr, parent, volume, identity=identity)
        self._maps[name] = kmap
        return kmap

    def _has(self, name: str) -> bool:
        return name in (self._frozen if self._frozen is not None else self._built)

    def _store(self, name: str, kmap: KernelMap) -> None:
        self._maps[name] = kmap
        if kmap.nbr is not None:
            self._built[name + ".nbr"] = kmap.nbr
        else:
            assert kmap.parent is not None
            self._built[name + ".parent"] = kmap.parent

    def submanifold(self, stride: int, kernel_size: int) -> KernelMap:
        """Map of a submanifold convolution at tensor ``stride``."""
        name = f"subm_s{stride}_k{kernel_size}"
        vol = kernel_size ** 3
        kmap = self._map(name, vol, vol // 2 if kernel_size % 2 else None)
        if kmap is None:
            self._require_building(name)
            kmap = submanifold_map(self.coords(stride), self.keys(stride), stride, kernel_size)
            self._store(name, kmap)
        return kmap

    def down(self, stride: int, kernel_size: int, conv_stride: int) -> KernelMap:
        """Map of a strided convolution from ``stride`` to ``stride * conv_stride``."""
        return self._strided(stride, kernel_size, conv_stride)[0]

    def up(self, stride: int, kernel_size: int, conv_stride: int) -> KernelMap:
        """Map of the transposed convolution from ``stride * conv_stride`` to ``stride``."""
        return self._strided(stride, kernel_size, conv_stride)[1]

    def _strided(self, stride: int, kernel_size: int, conv_stride: int) -> tuple[KernelMap, KernelMap]:
        down_name = f"down_s{stride}_k{kernel_size}_c{conv_stride}"
        up_name = f"up_s{stride}_k{kernel_size}_c{conv_stride}"
        vol = kernel_size ** 3
        down, up = self._map(down_name, vol), self._map(up_name, vol)
        if down is None or up is None:
            self._require_building(down_name)
            coarse_stride = stride * conv_stride
            coarse, down, up = strided_maps(self.coords(stride), self.keys(stride), stride,
                                            kernel_size, conv_stride)
            known = self._coords.get(coarse_stride)
            if known is not None and not torch.equal(known, coarse):
                raise ConfigError(f"two different paths reach stride {coarse_stride}")
            self._coords[coarse_stride] = coarse
            self._store(down_name, down)
            self._store(up_name, up)
        return down, up

    # ------------------------------------------------------------------ events
    def voxel_event(self, stride: int) -> Tensor:
        """int64 ``[V_s]``: the event index of each voxel at ``stride``."""
        name = f"event_s{stride}"
        idx = self._get(name)
        if idx is None:
            self._require_building(name)
            idx = self.coords(stride)[:, 0].contiguous()
            self._built[name] = idx
        return idx

    def point_event(self) -> Tensor:
        """int64 ``[N]``: the event index of each point."""
        idx = self._get("event_points")
        if idx is None:
            self._require_building("event_points")
            idx = self._points()[1]
            self._built["event_points"] = idx
        return idx

    def events(self) -> Tensor:
        """int64 ``[B]``, ``arange(B)``: its length is the number of events in the batch."""
        ev = self._get("events")
        if ev is None:
            self._require_building("events")
            coords = self.coords(1)
            n = int(coords[:, 0].max()) + 1 if coords.shape[0] else 0
            ev = torch.arange(n, device=coords.device)
            self._built["events"] = ev
        return ev

    # ------------------------------------------------------------------ point maps
    def point_voxel(self, stride: int) -> Tensor:
        """int64 ``[N]``: the row of the voxel at ``stride`` that contains each point."""
        name = f"p2v_s{stride}"
        idx = self._get(name)
        if idx is None:
            self._require_building(name)
            pts, pb = self._points()
            q = torch.cat([pb[:, None], torch.floor(pts / stride).long() * stride], 1)
            idx = self.keys(stride).lookup(q)
            if bool((idx == self.coords(stride).shape[0]).any()):
                raise InvalidDataError(f"a point lies outside every voxel at stride {stride}")
            self._built[name] = idx
        return idx

    def interpolation(self, stride: int) -> tuple[Tensor, Tensor]:
        """Trilinear weights of each point over the 8 nearest voxel centres at ``stride``.

        A voxel ``c`` of stride ``s`` has its centre at ``c + s / 2``. With ``u = p / s -
        1/2``, the corners are ``(floor(u) + b) s`` for ``b`` in ``{0, 1}^3`` with weights
        ``prod_d (b_d f_d + (1 - b_d)(1 - f_d))``, ``f = u - floor(u)``. Absent corners get
        weight 0 and the rest are renormalised (the voxel holding the point always exists).

        Returns:
            ``(index, weight)``: int64 ``[N, 8]`` voxel rows (``V`` = absent) and float
            ``[N, 8]`` weights summing to 1.
        """
        iname, wname = f"interp_s{stride}.index", f"interp_s{stride}.weight"
        idx, w = self._get(iname), self._get(wname)
        if idx is None or w is None:
            self._require_building(iname)
            pts, pb = self._points()
            u = pts / stride - 0.5
            lo = torch.floor(u)
            frac = u - lo
            corners = torch.tensor([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)],
                                   dtype=pts.dtype, device=pts.device)  # [8, 3]
            own = self.point_voxel(stride)
            # The lowest corner is the point's own voxel or its lower neighbour along each
            # axis: (own voxel, octant) names it, and points sharing one (most points at
            # coarse strides) share their 8 corners, searched once.
            coords = self.coords(stride)
            down = coords[own, 1:] != lo.long() * stride  # [N, 3]: corner below own voxel
            octant = (down[:, 0].long() * 4 + down[:, 1].long() * 2 + down[:, 2].long())
            key, inverse = torch.unique(own * 8 + octant, return_inverse=True)
            v, o = key // 8, key % 8
            shift = torch.stack([o // 4, (o // 2) % 2, o % 2], 1) * stride
            base = torch.cat([coords[v, :1], coords[v, 1:] - shift], 1)  # [U, 4] lowest corners
            idx = self.keys(stride).lookup_offsets(base, corners.long() * stride)[inverse]
            w = torch.where(corners[None] > 0, frac[:, None, :], 1 - frac[:, None, :]).prod(2)
            w = torch.where(idx < self.coords(stride).shape[0], w, torch.zeros_like(w))
            w = w + _OWN_VOXEL_EPS * (idx == own[:, None]).to(w.dtype)
            w = w / w.sum(1, keepdim=True)
            self._built[iname], self._built[wname] = idx, w
        return idx, w

    def _points(self) -> tuple[Tensor, Tensor]:
        if self.points is None or self.points_batch is None:
            raise ConfigError("this coordinate manager was built without points; pass them "
                              "to use point-voxel operations")
        return self.points, self.points_batch

    def _require_building(self, name: str) -> None:
        if self._frozen is not None:
            raise ConfigError(f"frozen coordinate manager has no map '{name}'; it holds "
                              f"{sorted(self._frozen)}")


__all__ = ["CoordinateManager", "pack", "downsample"]
