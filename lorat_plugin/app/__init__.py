"""``lorat app``: a local web page to track your own videos (draw boxes, watch them tracked, correct, export) and to
browse evaluation folders frame by frame with every tracker's boxes. See docs/app.md.

An application like the CLI: it uses the engine (tracking), the evaluation records (results) and the data readers.
The HTTP side is Starlette served by uvicorn (the ``app`` extra); the page is one static HTML file, a script and a
style sheet, with no build step and nothing downloaded. ``serve.AppServer`` starts it; nothing heavy is imported
here, so the CLI's parser can name the default port.
"""

DEFAULT_PORT = 8765  # `lorat app` and `lorat track --select` alike: one SSH tunnel serves both
