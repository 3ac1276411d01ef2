"""Event displays and validation plots.

- :func:`draw_event`        matplotlib overview figure (3D, longitudinal, per-layer views)
- :func:`write_event_png`   that figure as a PNG, written atomically
- :func:`write_event_html`  interactive, self-contained plotly 3D display (needs plotly)

matplotlib figures are built as ``Figure`` objects (Agg rendering, no pyplot state);
plotly is imported only when an HTML display is written.
"""

from caloreco.display.event_display import (
    CLUSTER_PALETTE,
    COLOUR_BY,
    NOISE_COLOUR,
    draw_event,
    label_colours,
    write_event_html,
    write_event_png,
)

__all__ = [
    "CLUSTER_PALETTE",
    "COLOUR_BY",
    "NOISE_COLOUR",
    "draw_event",
    "label_colours",
    "write_event_html",
    "write_event_png",
]
