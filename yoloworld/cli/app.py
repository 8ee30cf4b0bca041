"""`yoloworld app`: the web app (Gradio) on this machine: http://127.0.0.1:7860 by default."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from yoloworld.cli.common import add_model_flags, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="web app: detect in images and videos, export to ONNX (needs yoloworld[app])",
                       description="A local web page with the official demo's controls. Without --weights it "
                       "starts on the built-in demo model (synthetic shapes); pick other weights on the page.")
    add_model_flags(p, weights_required=False, classes=False)
    p.add_argument("--weights-dir", action="append", default=[], metavar="DIR",
                   help="folder whose .pt/.pth/.onnx files the weights picker lists (repeatable; default: the "
                   "current folder)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to your network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0: any free port)")
    p.add_argument("--max-video-frames", type=positive_int, default=300,
                   help="frames of an uploaded video to process (default 300)")


def run(args) -> int:
    from yoloworld.errors import InputError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup requests, logged at INFO
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        raise InputError("the web app needs Gradio: pip install 'yoloworld[app]'") from None
    from yoloworld.app.session import AppSession, find_weights
    from yoloworld.app.ui import build_app, theme
    from yoloworld.cli.predict import DEMO_MODEL

    first = [str(args.weights)] if args.weights else [str(DEMO_MODEL)]
    choices = list(dict.fromkeys(first + find_weights([Path(d) for d in args.weights_dir or ["."]]) + [str(DEMO_MODEL)]))
    session = AppSession(choices, args.text_model, args.device, args.imgsz, args.max_video_frames)
    session.model(choices[0])  # a bad --weights fails here, as one line, before the server starts
    app = build_app(session, choices)
    try:
        app.launch(server_name=args.host, server_port=args.port or None, theme=theme(), ssr_mode=False,
                   show_error=True, allowed_paths=[str(session.folder)])
    finally:
        session.close()
    return 0
