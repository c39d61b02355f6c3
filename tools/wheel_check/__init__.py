"""Checks of the Pyodide wheel as its users install it: Node, a page, PyScript (__main__.py)."""
