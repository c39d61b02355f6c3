"""The in-browser demo: the page (index.html, app.js, worker.js, demo_session.py, style.css)
and its local server (server.py), run from a checkout as ``python -m web_demo``."""
