# gunicorn -c gunicorn.conf.py inferd.app:app  (the form the systemd unit uses)
from inferd.gunicorn_conf import *  # noqa: F401,F403
from inferd.gunicorn_conf import (  # noqa: F401  (hooks, by name)
    child_exit,
    on_starting,
    post_fork,
    post_worker_init,
    pre_fork,
    pre_request,
    when_ready,
)
