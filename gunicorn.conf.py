# gunicorn -c gunicorn.conf.py inferd.app:app  (the form the systemd unit uses)
from inferd.gunicorn_conf import *  # noqa: F401,F403
from inferd.gunicorn_conf import child_exit, on_starting, when_ready  # noqa: F401  (hooks)
