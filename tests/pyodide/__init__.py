"""Runner for the pytest suite inside Pyodide (Node and headless Chromium): see __main__.py."""

if __name__ == "pyodide":  # tests/ on sys.path (pytest's rootdir insertion) must not fake Pyodide
    raise ImportError("tests/pyodide is llamart's test runner, not the Pyodide package")
