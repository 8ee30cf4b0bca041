"""`yoloworld app`: a local web page (Gradio) over the same `Predictor` the CLI uses.

`session.py` holds what the page does (load weights, detect, export) without importing Gradio, so it is tested
like any module; `ui.py` only lays out the controls and wires them to it.
"""
