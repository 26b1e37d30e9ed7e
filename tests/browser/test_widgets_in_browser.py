"""Every lesson, as a learner meets it: JupyterLab in Chromium, Run All, widgets that move.

For each lesson whose solution notebook exists, the test opens it in JupyterLab in a
headless Chromium, clears the stored outputs, runs all cells and waits for the kernel to
go idle; then it asserts that no cell raised, that every widget is rendered (no "Loading
widget..." left), and that moving a control (a dropdown choice, a slider step, a checkbox)
redraws the figure. A screenshot per lesson goes to test-artifacts/browser/. Nothing is
saved back to solutions/: the tab is closed without saving, a request that would write a
file fails the test, and the notebook's bytes are compared before and after.

Run them alone with `python -m pytest -m browser tests/browser`; leave them out with
`-m "not browser"`. BROWSER_LESSON_TIMEOUT (seconds, default 120) bounds each lesson.
"""

from __future__ import annotations

import contextlib
import os
import re
import time

import pytest

from utils import course

pytestmark = pytest.mark.browser

PRESENT = [lesson for lesson in course.LESSONS if (course.SOLUTIONS / lesson.filename).exists()]
LESSON_TIMEOUT_S = float(os.environ.get("BROWSER_LESSON_TIMEOUT", 120))
MOVE_TIMEOUT_S = 30  # how long one control may take to redraw its figure
RENDER_TIMEOUT_S = 30  # how long widget views may take to appear once Run All is done
# A cell that shows an interactive figure: `widgets.interact(...)` called at top level.
CALLS_INTERACT = re.compile(r"^(?:\w+\s*=\s*)?(?:widgets\.)?interact\(", re.MULTILINE)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Deadline:
    """The time left to one lesson, handed out to each bounded wait in milliseconds."""

    def __init__(self, seconds: float):
        self.start = time.monotonic()
        self.end = self.start + seconds
        self.marks: list[str] = []

    def mark(self, what: str) -> None:
        self.marks.append(f"{what} {time.monotonic() - self.start:.1f}s")

    def ms(self, at_most: float | None = None) -> float:
        left = max(self.end - time.monotonic(), 0.001)
        return 1000 * (left if at_most is None else min(left, at_most))


# JupyterLab's app, exposed by --LabApp.expose_app_in_browser, drives everything a menu would.
LAB_READY = """() => {
    if (!window.jupyterapp) return false;
    if (window.__courseRestored === undefined) {
        window.__courseRestored = false;
        window.jupyterapp.restored.then(() => { window.__courseRestored = true; });
    }
    return window.__courseRestored;
}"""

# File > Open: the notebook opens in a tab of its own and starts its kernel (as a double click would).
OPEN = """path => {
    window.__courseNotebook = undefined;
    window.__courseOpenError = undefined;
    window.jupyterapp.commands.execute("docmanager:open", {path, factory: "Notebook"})
        .then(widget => { window.__courseNotebook = widget; }, error => { window.__courseOpenError = String(error); });
}"""

# The notebook the test opened.
NOTEBOOK = "window.__courseNotebook"

OPENED = """() => {
    if (window.__courseOpenError) return true;
    const widget = window.__courseNotebook;
    return widget?.context?.isReady === true && widget.sessionContext?.session?.kernel?.status === "idle";
}"""

# Close the tab without saving: the changes are dropped, so no "Save your work?" dialog.
CLOSE = """() => {
    for (const widget of Array.from(window.jupyterapp.shell.widgets("main"))) {
        if (widget.context) {
            widget.context.model.dirty = false;
            widget.dispose();
        }
    }
}"""

# Clear the stored outputs, then Run All; the command's promise settles later (false if a cell raised).
RUN_ALL = f"""async () => {{
    const app = window.jupyterapp, notebook = {NOTEBOOK};
    await notebook.sessionContext.ready;
    await app.commands.execute("notebook:clear-all-cell-outputs");
    window.__courseRunAll = undefined;
    app.commands.execute("notebook:run-all-cells").then(
        ok => {{ window.__courseRunAll = {{ok: ok !== false}}; }},
        error => {{ window.__courseRunAll = {{ok: false, error: String(error)}}; }},
    );
}}"""

CODE_CELLS = (
    f"{NOTEBOOK}.content.widgets.filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim())"
)

# Run All has settled, the kernel is idle, and no prompt still reads [*].
SETTLED = f"""() => {{
    const notebook = {NOTEBOOK};
    if (window.__courseRunAll === undefined) return false;
    if (notebook.sessionContext.session?.kernel?.status !== "idle") return false;
    return !{CODE_CELLS}.some(c => c.node.querySelector(".jp-InputPrompt")?.textContent.includes("*"));
}}"""

IDLE = f"() => {NOTEBOOK}.sessionContext.session?.kernel?.status === 'idle'"

# One record per code cell: what ran, what it output, what its widgets look like in the page.
CELLS = f"""() => {CODE_CELLS}.map(cell => {{
    const index = {NOTEBOOK}.content.widgets.indexOf(cell);
    const outputs = cell.model.outputs.toJSON();
    const views = Array.from(cell.node.querySelectorAll(
        ":scope .jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output"
    ));
    return {{
        index,
        source: cell.model.sharedModel.getSource(),
        execution_count: cell.model.executionCount,
        errors: outputs.filter(o => o.output_type === "error").map(o => `${{o.ename}}: ${{o.evalue}}`),
        widget_outputs: outputs.filter(o => o.data && o.data["{WIDGET_MIME}"]).length,
        rendered_widgets: views.filter(node => node.querySelector(":scope > .jupyter-widgets")
            && !/Loading widget|Error displaying widget/.test(node.textContent)).length,
    }};
}})"""

# Every widget output has its view in the page (views render asynchronously, after the cell ends).
RENDERED = f"""() => ({CELLS})().every(c => c.rendered_widgets >= c.widget_outputs)"""

# Tracebacks printed inside widgets' own output areas: a callback that raised when a control moved.
WIDGET_TRACEBACKS = f"""() => Array.from({NOTEBOOK}.node.querySelectorAll(
    '.widget-output .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
)).map(node => node.textContent).filter(text => text.includes("Traceback (most recent call last)"))"""

# What a panel draws: its output widgets' images and text.
DRAWN = """panel => Array.from(panel.querySelectorAll(".widget-output")).map(output =>
    Array.from(output.querySelectorAll("img")).map(img => img.src).join("|") + "#" + output.innerText
).join("\\n")"""

CHANGED = f"""([panel, before]) => {{
    const now = ({DRAWN})(panel);
    return now !== before && panel.querySelector(".widget-output img, .widget-output .jp-OutputArea-output") !== null;
}}"""


try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the fixtures skip every test, saying why

    class PlaywrightTimeout(Exception):
        pass


def lesson_id(lesson: course.Lesson) -> str:
    return lesson.stem


class Workbench:
    """One JupyterLab tab in Chromium, kept from lesson to lesson (JupyterLab starts once, not eleven
    times); each lesson opens its notebook in it and closes it after. A failure throws the tab away,
    so the next lesson starts from a fresh one."""

    def __init__(self, context, lab):
        self.context, self.lab, self.page = context, lab, None
        self.writes: list[str] = []  # every request by which the page would change a file

    def watch(self, request) -> None:
        url = request.url.split("?")[0]
        # Saving is a PUT; a checkpoint (POST .../checkpoints) goes to the server's temporary folder.
        if "/api/contents" in url and request.method != "GET" and not url.endswith("/checkpoints"):
            self.writes.append(f"{request.method} {url}")

    def open(self, lesson: course.Lesson, deadline: Deadline):
        if self.page is None:
            page = self.context.new_page()
            page.set_default_timeout(30_000)
            page.on("request", self.watch)
            self.page = page
            # A workspace of the tests' own, reset: nothing of an earlier session comes back.
            page.goto(
                f"{self.lab.url}/lab/workspaces/browser-tests?reset&token={self.lab.token}", timeout=deadline.ms(60)
            )
            page.wait_for_function(LAB_READY, timeout=deadline.ms(60), polling=100)
            deadline.mark("lab up")
        page = self.page
        page.evaluate(OPEN, f"solutions/{lesson.filename}")
        page.wait_for_function(OPENED, timeout=deadline.ms(60), polling=100)
        error = page.evaluate("() => window.__courseOpenError")
        assert not error, f"{lesson.stem}: JupyterLab could not open the notebook: {error}"
        return page

    def close_notebook(self) -> None:
        if self.page is not None:
            self.page.evaluate(CLOSE)

    def discard(self) -> None:
        if self.page is not None:
            page, self.page = self.page, None
            page.close()  # no beforeunload prompt is run: nothing is saved


@pytest.fixture(scope="module")
def workbench(lab, browser_context):
    bench = Workbench(browser_context, lab)
    try:
        yield bench
    finally:
        bench.discard()


# Where Run All stands, for the message when it does not finish in time.
PROGRESS = f"""() => ({{
    kernel: {NOTEBOOK}.sessionContext.session?.kernel?.status,
    run_all: window.__courseRunAll,
    running: {CODE_CELLS}.filter(c => c.node.querySelector(".jp-InputPrompt")?.textContent.includes("*"))
        .map(c => {NOTEBOOK}.content.widgets.indexOf(c)),
}})"""


def run_all(page, lesson, deadline: Deadline) -> dict:
    page.evaluate(RUN_ALL)
    try:
        page.wait_for_function(SETTLED, timeout=deadline.ms(), polling=500)
    except PlaywrightTimeout:
        pytest.fail(f"{lesson.stem}: Run All did not finish within {LESSON_TIMEOUT_S:.0f} s: {page.evaluate(PROGRESS)}")
    return page.evaluate("() => window.__courseRunAll")


def controls_of(panel):
    """The controls a learner can move, in the panel's order: dropdowns, sliders, checkboxes, toggle buttons."""
    return panel.query_selector_all(
        ".widget-dropdown select:not(:disabled), .widget-slider:not(.mod-disabled) .noUi-handle,"
        " .widget-checkbox input[type=checkbox]:not(:disabled), .widget-toggle-buttons button:not(.mod-active):not(:disabled)"
    )


def move(page, control) -> str:
    """Move one control as a learner would; returns what was done, for the failure message."""
    control.scroll_into_view_if_needed()
    tag = control.evaluate("e => e.tagName.toLowerCase()")
    if tag == "select":
        options = control.evaluate("e => Array.from(e.options).map(o => o.value)")
        current = control.evaluate("e => e.value")
        choice = next(value for value in options if value != current)
        control.select_option(choice)
        return f"dropdown {current!r} -> {choice!r}"
    if tag == "input":
        control.click()
        return "checkbox toggled"
    if tag == "button":
        control.click()
        return f"toggle button {control.inner_text()!r}"
    # A slider handle: focus it and step it with the keyboard.
    now, top = control.get_attribute("aria-valuenow"), control.get_attribute("aria-valuemax")
    control.focus()
    key = "ArrowLeft" if now is not None and top is not None and float(now) >= float(top) else "ArrowRight"
    control.press(key)
    return f"slider at {now}: {key}"


def panels_of(notebook):
    """Every widget output whose drawing a control can change (the panels `utils.widgets.interact` builds)."""
    return [
        panel
        for panel in notebook.query_selector_all(
            ".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output > .jupyter-widgets"
        )
        if panel.query_selector(".widget-output") and controls_of(panel)
    ]


def moving_redraws(page, notebook, deadline: Deadline) -> list[str]:
    """Move controls, first panel first, until one redraws its figure; returns what was tried."""
    tried = []
    for panel in panels_of(notebook):
        for control in controls_of(panel):
            before = panel.evaluate(DRAWN)
            done = move(page, control)
            try:
                page.wait_for_function(CHANGED, arg=[panel, before], timeout=deadline.ms(MOVE_TIMEOUT_S), polling=250)
            except PlaywrightTimeout:  # try the next control while time is left
                tried.append(f"{done}: nothing redrawn within {MOVE_TIMEOUT_S} s")
                if deadline.ms() < 1000:
                    return tried
                continue
            page.wait_for_function(IDLE, timeout=deadline.ms(), polling=250)
            panel.evaluate("e => e.scrollIntoView({block: 'start'})")  # the controls and the figure, for the screenshot
            return [*tried, f"{done}: redrawn"]
    return tried


@pytest.mark.parametrize("lesson", PRESENT, ids=lesson_id)
def test_lesson_runs_and_its_widgets_move_in_a_browser(lesson, lab, workbench, browser_artifacts):
    solution = course.SOLUTIONS / lesson.filename
    before = solution.read_bytes()
    deadline = Deadline(LESSON_TIMEOUT_S)
    screenshot = browser_artifacts / f"{lesson.stem}.png"
    failed = browser_artifacts / f"{lesson.stem}-failed.png"
    screenshot.unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    passed = False
    workbench.writes.clear()
    try:
        page = workbench.open(lesson, deadline)
        deadline.mark("opened")
        result = run_all(page, lesson, deadline)
        deadline.mark("ran all")
        notebook = page.evaluate_handle(f"() => {NOTEBOOK}.node")
        with contextlib.suppress(PlaywrightTimeout):  # if they never render, the assertions below say where
            page.wait_for_function(RENDERED, timeout=deadline.ms(RENDER_TIMEOUT_S), polling=250)
        cells = page.evaluate(CELLS)

        errors = [f"cell {c['index']}: {e}" for c in cells for e in c["errors"]]
        assert not errors, f"{lesson.stem}: cells raised in JupyterLab:\n" + "\n".join(errors)
        assert result["ok"], f"{lesson.stem}: Run All did not finish: {result}"
        not_run = [c["index"] for c in cells if c["execution_count"] is None]
        assert not not_run, f"{lesson.stem}: cells {not_run} never ran"

        unrendered = [c["index"] for c in cells if c["rendered_widgets"] < c["widget_outputs"]]
        assert not unrendered, f"{lesson.stem}: widgets not rendered (still loading, or an error) in cells {unrendered}"
        silent = [c["index"] for c in cells if CALLS_INTERACT.search(c["source"]) and c["widget_outputs"] == 0]
        assert not silent, f"{lesson.stem}: cells {silent} call interact() but show no widget"
        assert sum(c["widget_outputs"] for c in cells) > 0, f"{lesson.stem}: the lesson builds no widget"
        text = notebook.inner_text()
        assert "Loading widget" not in text and "Error displaying widget" not in text
        tracebacks = page.evaluate(WIDGET_TRACEBACKS)
        assert not tracebacks, f"{lesson.stem}: a widget's first drawing raised:\n" + "\n".join(tracebacks)

        tried = moving_redraws(page, notebook, deadline)
        deadline.mark("moved")
        assert tried and tried[-1].endswith(": redrawn"), f"{lesson.stem}: no control redrew its figure:\n" + "\n".join(
            tried or ["(no movable control found)"]
        )
        tracebacks = page.evaluate(WIDGET_TRACEBACKS)
        assert not tracebacks, f"{lesson.stem}: a widget raised when its control moved:\n" + "\n".join(tracebacks)
        page.screenshot(path=str(screenshot))
        print(f"{lesson.stem}: {'; '.join(tried)}")
        workbench.close_notebook()
        passed = True
    finally:
        print(f"{lesson.stem}: {', '.join(deadline.marks)}")
        if not passed:
            if workbench.page is not None:
                with contextlib.suppress(Exception):
                    workbench.page.screenshot(path=str(failed), timeout=10_000)
            workbench.discard()
        lab.shut_down_kernels()  # the next lesson starts a fresh kernel; memory is given back
    assert not workbench.writes, f"{lesson.stem}: the page wrote to the server: {workbench.writes}"
    assert solution.read_bytes() == before, f"{solution} changed on disk while the browser test ran"
