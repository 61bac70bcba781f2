"""Notebook widgets (anywidget): each ships its ES module and CSS as static files beside its Python module."""
