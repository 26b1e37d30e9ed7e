"""The helpers the lessons stand on: data, plots, widgets, figures, course facts."""

import ipywidgets
import matplotlib.pyplot as plt
import pytest
import torch

from utils import course, data, plots, widgets
from utils.instructor import figures


def test_sentences_embed_deterministically_with_one_row_per_word():
    tokens, X = data.embed(data.SENTENCES["alice"])
    assert tokens == ["alice", "wrote", "a", "note", "and", "gave", "it", "to", "bob"]
    assert X.shape == (9, len(data.FEATURES)) and X.dtype == torch.float32
    assert torch.equal(X, data.embed(data.SENTENCES["alice"])[1])
    assert len(torch.unique(X, dim=0)) == len(tokens)


def test_word_vectors_mean_what_their_features_say():
    note, alice = data.word_vector("note"), data.word_vector("alice")
    assert note.argmax() == data.FEATURES.index("thing")
    assert alice.argmax() == data.FEATURES.index("person")
    assert data.word_vector("zyzzyva").shape == note.shape  # unknown words still get a vector


def test_tokenize_keeps_contractions_and_rejects_empty():
    assert data.tokenize("The animal didn't cross.") == ["the", "animal", "didn't", "cross"]
    with pytest.raises(ValueError, match="no words"):
        data.embed("  ...  ")


@pytest.mark.parametrize("shape, axes", [((3, 4), 1), ((2, 3, 4), 2), ((2, 3, 5, 4), 6)])
def test_heatmaps_draw_one_map_or_a_grid(shape, axes):
    fig = plots.heatmaps(torch.rand(shape), [f"q{i}" for i in range(shape[-2])], [f"k{j}" for j in range(shape[-1])])
    maps = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(maps) == axes
    assert [t.get_text() for t in maps[0].get_yticklabels()] == [f"q{i}" for i in range(shape[-2])]
    plt.close(fig)


def test_heatmaps_reject_labels_of_the_wrong_length():
    with pytest.raises(ValueError, match="3 row labels for 2 rows"):
        plots.heatmaps(torch.rand(2, 2), ["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="got shape"):
        plots.heatmaps(torch.rand(5))


def test_interact_redraws_when_a_control_moves_without_a_front_end():
    drawn = []

    def draw(size: int, name: str) -> None:
        drawn.append((size, name))

    panel = widgets.interact(
        draw, size=widgets.slider("size", 1, 5, 1, 2), name=widgets.dropdown("name", ["a", "b"], "b")
    )
    assert isinstance(panel, ipywidgets.VBox) and drawn == [(2, "b")]
    panel.controls["size"].value = 4
    panel.controls["name"].value = "a"
    assert drawn[-2:] == [(4, "b"), (4, "a")]


def test_interact_shows_its_first_picture_as_a_plain_output_that_the_first_redraw_clears():
    """In a kernel: the first frame is an ordinary image output (seen on GitHub, nbviewer, an HTML export);
    moving a control clears it by its display id, and the widget's own area draws from then on."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            f"import sys; sys.path.insert(0, {str(course.ROOT)!r})\n"
            "import matplotlib.pyplot as plt\n"
            "from utils import widgets\n"
            "def draw(size):\n"
            "    plt.subplots()[1].plot(range(size))\n"
            "panel = widgets.interact(draw, size=widgets.slider('size', 1, 5, 1, 2))"
        ),
        nbformat.v4.new_code_cell("panel.controls['size'].value = 3"),
    ]
    client = NotebookClient(notebook, timeout=60, kernel_name="python3")
    with client.setup_kernel():
        client.execute_cell(notebook.cells[0], 0)
        first = notebook.cells[0].outputs
        assert [sorted(o.get("data", {})) for o in first] == [
            ["application/vnd.jupyter.widget-view+json", "text/plain"],
            ["image/png", "text/plain"],
        ], first
        client.execute_cell(notebook.cells[1], 1)
    static = notebook.cells[0].outputs[1]
    assert "image/png" not in static["data"] and static["data"]["text/plain"] == ""


def test_slider_is_an_int_slider_for_ints_and_a_float_slider_otherwise():
    assert isinstance(widgets.slider("n", 1, 9, 1, 3), ipywidgets.IntSlider)
    assert isinstance(widgets.slider("h", 0.1, 1.0, 0.1, 0.5), ipywidgets.FloatSlider)


def test_every_figure_is_made_by_code(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "FIGURES", tmp_path)
    assert figures.main() == 0
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(figures.FIGURES)


def test_every_figure_a_lesson_or_the_readme_shows_exists():
    import re

    texts = [(course.ROOT / "README.md").read_text()] + [p.read_text() for p in course.SOLUTIONS.glob("*.ipynb")]
    names = {
        m
        for text in texts
        for m in re.findall(r'show_figure\(\\?"(\w+)\\?"\)|figures/(\w+)\.png', text)
        for m in m
        if m
    }
    assert names, "no figure is shown anywhere"
    for name in names:
        assert name in figures.FIGURES and (course.FIGURES / f"{name}.png").exists(), name


def test_colab_urls_point_at_the_learner_copies():
    lesson = course.LESSONS[0]
    assert (
        course.colab_url(lesson, "me/fork")
        == "https://colab.research.google.com/github/me/fork/blob/main/notebooks/01_averaging.ipynb"
    )


def test_start_seeds_and_picks_a_device(capsys):
    device = course.start(seed=3)
    first = torch.rand(2)
    course.start(seed=3, quiet=True)
    assert torch.equal(torch.rand(2), first)
    assert device.type in ("cpu", "cuda") and "torch" in capsys.readouterr().out
