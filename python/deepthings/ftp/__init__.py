"""Fused Tile Partitioning: split the first L layers into an N x M grid of independent tiles.

    plan = FTP(net, grid=(3, 3), fused_layers=16)
    outs = [plan.run_tile(t.tile_id, x) for t in plan.tiles]
    y = plan.stitch(outs)                       # == net.forward(x, end=16), bit for bit
                                                # with the native engine

Bit for bit also where the native engine runs 3x3 convs as Winograd F(2x2,3x3): tiles produce
those layers from even global rows/columns (extra zero padding, the extra row/column is
dropped), so they use the full map's 2x2 blocks (``FTP(..., winograd_align=False)`` turns this
off; the cost report shows what it costs).

Region arithmetic is C++ (src/ftp_core/region.*); data reuse (WST-S) is in ``ftp.reuse``,
the cost model in ``ftp.cost``.
"""

from __future__ import annotations

from .cost import CostReport, format_cost_report
from .plan import FTP, LayerTile, Tile
from .regions import Region
from .reuse import ReusePlan
from .task import Task

__all__ = ["FTP", "Region", "Tile", "LayerTile", "Task", "ReusePlan", "CostReport", "format_cost_report"]
