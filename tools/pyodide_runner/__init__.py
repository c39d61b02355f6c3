"""Run pytest inside Pyodide, under Node or in headless Chromium: see __main__.py."""
