"""Helpers for the self-attention course: data, plots, widgets, checks, building.

The math the learner is learning lives in the notebooks; this package only
serves them (see STYLE: `utils` serves the lessons and never teaches).
"""
