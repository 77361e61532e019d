"""Entry point for gunicorn (``gunicorn wsgi:app``) and ``flask --app wsgi``."""

import gc

from skileez import create_app

app = create_app()

# Everything loaded so far (modules, the app, its templates) lives as long as the process:
# kept out of the garbage collector's full passes, which otherwise walk it again every
# time a large page (a busy coach's calendar feed: thousands of rows) fills the young
# generations, and which doubled such a page's time every other request.
gc.freeze()
