"""Notebook widgets and charts (the faces over the Python API); each module imports its heavy deps lazily."""
