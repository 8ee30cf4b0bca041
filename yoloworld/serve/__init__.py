"""`yoloworld serve`: the detector as an HTTP API on Ray Serve (replicas, dynamic batching, one or many machines).

    requests.py    the untrusted parts of a request (upload, form fields) -> an image and `DetectOptions`
    deployment.py  the Ray Serve deployment: the FastAPI routes, one model per replica, batched detection
    launch.py      starting Ray (local or a cluster), Serve's HTTP proxy and the deployment; stopping them

Needs the `serve` extra (`pip install -e ".[serve]"`); nothing here is imported by the rest of the package.
"""
