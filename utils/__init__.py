"""What the lessons of the self-attention course import: data, plots, widgets, checks.

The math the learner is learning lives in the notebooks; this package only
serves them (see STYLE: `utils` serves the lessons and never teaches).
"""
