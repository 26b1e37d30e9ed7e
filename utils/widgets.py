"""Interactive figures that work with ipywidgets 7.7 (Colab) and 8 (JupyterLab).

`interact(draw, control=widget, ...)` puts the controls above a drawing and calls
`draw(**values)` again whenever a control moves. Without a front end (nbval, a
script) it still draws the first frame and raises nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython import get_ipython
from IPython.display import DisplayHandle, clear_output, display
from IPython.utils.capture import capture_output

# The constructors the lessons use, re-exported so a lesson imports one module.
Checkbox = widgets.Checkbox
Dropdown = widgets.Dropdown
FloatSlider = widgets.FloatSlider
IntSlider = widgets.IntSlider
Text = widgets.Text
ToggleButtons = widgets.ToggleButtons

STYLE = {"description_width": "initial"}


def slider(description: str, low: float, high: float, step: float, value: float, **kwargs) -> widgets.Widget:
    """A labelled float or int slider (int when every number given is an int)."""
    integral = all(isinstance(x, int) for x in (low, high, step, value))
    cls = widgets.IntSlider if integral else widgets.FloatSlider
    options = dict(
        description=description, min=low, max=high, step=step, value=value, style=STYLE, continuous_update=False
    )
    options.update(kwargs)
    return cls(**options)


def dropdown(description: str, options, value=None) -> widgets.Dropdown:
    """A labelled dropdown; `options` is a list of values or of `(label, value)` pairs."""
    dropdown = widgets.Dropdown(description=description, options=options, style=STYLE)
    if value is not None:
        dropdown.value = value
    return dropdown


class Interactive(widgets.VBox):
    """Controls above an output area that `draw(**values)` fills; redraws on every change."""

    def __init__(self, draw: Callable[..., None], controls: dict[str, widgets.Widget], columns: int = 1):
        self.draw = draw
        self.controls = controls
        self.output = widgets.Output()
        self.first_frame: list[DisplayHandle] = []  # the static first picture, cleared on the first redraw
        boxes = list(controls.values())
        if columns > 1:
            rows = [widgets.HBox(boxes[i : i + columns]) for i in range(0, len(boxes), columns)]
        else:
            rows = boxes
        super().__init__(children=[*rows, self.output])
        for control in boxes:
            control.observe(self.redraw, names="value")

    @property
    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def show_first_frame(self) -> None:
        """Draw the current values as ordinary outputs of the cell, each with a display id to clear later."""
        if get_ipython() is None:  # a plain script: nothing to display into
            self.draw(**self.values)
            plt.show()
            return
        with capture_output() as captured:  # every figure (and print) the drawing makes, in order
            self.draw(**self.values)
            plt.show()
        for output in captured.outputs:
            self.first_frame.append(display(output.data, metadata=output.metadata, raw=True, display_id=True))
        if captured.stdout:
            self.first_frame.append(display({"text/plain": captured.stdout}, raw=True, display_id=True))

    def redraw(self, change=None) -> None:
        while self.first_frame:  # the live figure replaces the static one
            self.first_frame.pop().update({"text/plain": ""}, raw=True)
        with self.output:
            clear_output(wait=True)
            self.draw(**self.values)
            plt.show()


def interact(draw: Callable[..., None], columns: int = 1, **controls: widgets.Widget) -> Interactive:
    """Show `controls` and the drawing `draw(**values)`, redrawn whenever a control moves.

    The first drawing is a plain output under the controls (seen in static views too); the first
    change of a control clears it and draws in the widget's own area from then on.
    """
    panel = Interactive(draw, controls, columns=columns)
    display(panel)
    panel.show_first_frame()
    return panel
