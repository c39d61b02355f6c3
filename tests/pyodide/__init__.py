"""Runner for the pytest suite inside Pyodide (Node and headless Chromium): see __main__.py."""
