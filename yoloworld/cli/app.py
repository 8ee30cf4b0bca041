"""`yoloworld app`: the web app (Gradio) on this machine: http://127.0.0.1:7860 by default.

The page offers only the weights named when the server starts; everything a flag names is checked before the
server starts, so a mistake is one line, not a server that fails later."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import time
from pathlib import Path

from yoloworld.cli.common import add_vision_flag, image_size, non_negative_int, positive_int
from yoloworld.devices import DEVICE_HELP

logger = logging.getLogger(__name__)
AUTH_ENV = "YOLOWORLD_APP_AUTH"


def port_number(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0 to 65535)")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="web app: detect in images and videos, export to ONNX (needs yoloworld[app])",
                       description="A local web page with the official demo's controls. It offers the weights given "
                       "with --weights and the model files found under --weights-dir when it starts (with neither: "
                       "the built-in demo model and the model files of the current folder); the page cannot load "
                       "anything else unless started with --allow-any-weights.")
    p.add_argument("--weights", action="append", default=[], metavar="W",
                   help="weights the page offers (repeatable; each is loaded once at start, the first is the default): "
                   "a checkpoint (.pth/.pt), an .onnx export or a name such as yolo_world_v2_s")
    p.add_argument("--weights-dir", action="append", default=[], metavar="DIR",
                   help="a folder whose model files (.pt/.pth/.onnx, three levels deep, as found at start) the page "
                   "also offers (repeatable; default without --weights: the current folder)")
    p.add_argument("--allow-any-weights", action="store_true",
                   help="let the page load any file path or weights name typed in the browser: any checkpoint on "
                   "this machine can then be loaded and exported, and downloads started (off by default)")
    p.add_argument("--text-model", help="Hugging Face CLIP folder or hub id (tokenizer / text weights), optional when "
                   "the weights hold a text tower")
    add_vision_flag(p, "the image prompts given on the page")
    p.add_argument("--device", default="auto", help=DEVICE_HELP + " (default auto)")
    p.add_argument("--imgsz", type=image_size, help="network input size, a multiple of 32 (default: the model's own, "
                   "else 640)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to your "
                   "network: add --auth)")
    p.add_argument("--port", type=port_number, default=7860, help="port (default 7860; 0: any free port)")
    p.add_argument("--auth", metavar="USER:PASSWORD", help=f"ask for this login on the page (default: ${AUTH_ENV}, "
                   "which keeps the password out of the process list)")
    p.add_argument("--max-upload-mb", type=positive_int, default=200,
                   help="largest image or video the page accepts, in MB (default 200)")
    p.add_argument("--max-video-frames", type=positive_int, default=300,
                   help="frames of an uploaded video to process (default 300)")


def offered_weights(args) -> list[str]:
    """--weights, then the model files under the --weights-dir folders, then the demo model: the page's list."""
    from yoloworld.app.session import find_weights
    from yoloworld.cli.predict import DEMO_MODEL
    from yoloworld.errors import InputError

    folders = args.weights_dir or ([] if args.weights else ["."])
    for folder in folders:
        if not Path(folder).exists():
            raise InputError(f"--weights-dir {folder}: no such folder")
        if not Path(folder).is_dir():
            raise InputError(f"--weights-dir {folder}: is a file, expected a folder of weights")
    first = [str(w) for w in args.weights] or [str(DEMO_MODEL)]
    return list(dict.fromkeys(first + find_weights([Path(d) for d in folders]) + [str(DEMO_MODEL)]))


def login(args) -> tuple[str, str] | None:
    """(user, password) from --auth or $YOLOWORLD_APP_AUTH, else None."""
    from yoloworld.errors import InputError

    text, where = (args.auth, "--auth") if args.auth else (os.environ.get(AUTH_ENV), AUTH_ENV)
    if not text:
        return None
    user, colon, password = text.partition(":")
    if not (user and colon and password):
        raise InputError(f"{where}: expected USER:PASSWORD")
    return user, password


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def run(args) -> int:
    from yoloworld.errors import InputError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a local tool
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own startup requests, logged at INFO
    offered, credentials = offered_weights(args), login(args)
    try:
        import gradio  # noqa: F401
    except ModuleNotFoundError:
        raise InputError("the web app needs Gradio: pip install 'yoloworld[app]'") from None
    from yoloworld.app.session import AppSession
    from yoloworld.app.ui import build_app

    session = AppSession(offered, args.text_model, args.device, args.imgsz, args.max_video_frames,
                         allow_any=args.allow_any_weights, vision_model=args.vision_model)
    try:
        for weights in args.weights or offered[:1]:  # a bad --weights fails here, as one line, before serving
            session.model(weights)
        serve(build_app(session), session, args, credentials)
    finally:
        session.close()
    return 0


def stop(*_) -> None:
    raise KeyboardInterrupt


def serve(app, session, args, credentials) -> None:
    """Launch quietly (no share tip, no banner), say where the page is, and serve until Ctrl-C."""
    from yoloworld.app.ui import theme
    from yoloworld.errors import InputError

    if not is_loopback(args.host) and credentials is None:
        logger.warning(f"warning: serving on {args.host} without a login: anyone who can reach this machine can use "
                       f"the page and its weights; add --auth USER:PASSWORD (or set {AUTH_ENV})")
    try:
        app.launch(server_name=args.host, server_port=args.port or None, theme=theme(), ssr_mode=False,
                   show_error=False, allowed_paths=[str(session.folder)], auth=credentials, quiet=True,
                   max_file_size=f"{args.max_upload_mb}mb", prevent_thread_lock=True)
    except OSError:  # Gradio's message names its environment variable, not our flags
        raise InputError(f"--host {args.host} --port {args.port}: cannot serve there (the port is in use, or the "
                         "address is not this machine's); choose another --port (0: any free port)") from None
    print(f"yoloworld app: {app.local_url} ({len(session.offered)} weights offered; Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, stop)  # a service manager's stop also removes the session's files
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("yoloworld app: stopped")
    finally:
        app.close(verbose=False)
