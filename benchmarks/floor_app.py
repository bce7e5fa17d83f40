"""The floor: a bare Falcon app under gunicorn that answers every POST with a fixed
JSON body and loads no model. What inferd's web stack costs with nothing to predict.

It runs under inferd's own gunicorn settings and hooks (`benchmarks.servers.start_floor`
passes `-c python:inferd.gunicorn_conf`): the same worker class, the same JSON access
line a request, the same read deadlines. So the floor-vs-inferd gap is what inferd's
application adds (middleware, metrics, decode, predict, encode), not a difference in
server configuration.

    gunicorn -c python:inferd.gunicorn_conf benchmarks.floor_app:app
"""

from __future__ import annotations

import falcon

from inferd.server import inline

ANSWER = b'{"predictions":[0],"model_version":"1"}'


class Fixed:
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.bounded_stream.read()
        resp.data = ANSWER
        resp.content_type = falcon.MEDIA_JSON


app = falcon.App()
app.add_route("/predict", Fixed())
app.req_options.strip_url_path_trailing_slash = True
# Its one route is as quick as inferd's predictions: answered on the main thread alike.
inline.answer_inline_when(lambda head: head.method == "POST")
