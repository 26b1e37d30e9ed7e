"""The course's static pictures, each made here by code: `python -m utils.figures`
writes them all under `figures/`. Lessons show them with `plots.show_figure(name)`."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from utils import course, data, plots  # noqa: E402


def course_map():
    """The thread of the course: one box per lesson, with the question it answers (README)."""
    lessons = course.LESSONS
    fig, ax = plt.subplots(figsize=(7, 0.48 * len(lessons)), layout="constrained")  # the same spacing however many
    for k, lesson in enumerate(lessons):
        y = len(lessons) - 1 - k
        ax.text(
            0.0,
            y,
            f"{lesson.number:02d}",
            ha="center",
            va="center",
            fontsize=11,
            fontweight="bold",
            color="white",
            bbox=dict(boxstyle="circle", fc="tab:red", ec="none"),
        )
        ax.text(0.35, y + 0.13, lesson.title, ha="left", va="center", fontsize=11, fontweight="bold")
        ax.text(0.35, y - 0.22, lesson.question.replace("`", ""), ha="left", va="center", fontsize=8.5, color="0.3")
        if k:
            ax.annotate("", xy=(0, y + 0.35), xytext=(0, y + 0.65), arrowprops=dict(arrowstyle="->", color="0.5"))
    ax.set_xlim(-0.4, 5.6)
    ax.set_ylim(-0.7, len(lessons) - 0.3)
    ax.axis("off")
    return fig


def weighted_average():
    """ "it" takes in the words it refers to: one row of weights as arcs (lesson 02).

    The weights are lesson 02's oracle's for *it*: scores 1 (itself), 4 (*note*) and 0.5 (*gave*),
    divided by their sum; the lesson asserts the same rounded numbers.
    """
    tokens = data.tokenize(data.SENTENCES["alice"])
    scores = torch.zeros(len(tokens))
    scores[tokens.index("it")] = 1.0
    scores[tokens.index("note")] = 4.0
    scores[tokens.index("gave")] = 0.5
    weights = scores / scores.sum()  # 0.18, 0.73, 0.09
    it, note, gave = (float(weights[tokens.index(word)]) for word in ("it", "note", "gave"))
    title = f'y("it") = {it:.2f}·x("it") + {note:.2f}·x("note") + {gave:.2f}·x("gave")'
    return plots.arcs(tokens, weights, tokens.index("it"), title=title)


FIGURES = {"course_map": course_map, "weighted_average": weighted_average}


def main() -> int:
    for name, make in FIGURES.items():
        fig = make()
        print("wrote", plots.save_figure(fig, name))
        plt.close(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
