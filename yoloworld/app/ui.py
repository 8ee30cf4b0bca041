"""The page: the official YOLO-World demo's controls (image, classes, max boxes, score and NMS thresholds, export
to ONNX) plus a weights picker, a video tab, negative prompts, calibrated thresholds, an image prompt (a reference
image, a box on it, a class name) and the detections as JSON to download."""

from __future__ import annotations

import gradio as gr

from yoloworld.app.session import AppSession, box_from_clicks
from yoloworld.errors import YOLOWorldError

WEIGHTS_HELP = {False: "the weights this server was started with",
                True: "any file on the server, or a name such as yolo_world_v2_s (--allow-any-weights)"}
CLASSES_HELP = "comma between classes, | between synonyms: person, car|automobile, traffic light. Empty: the classes " \
               "stored with the weights."
NEGATIVES_HELP = "look-alikes never reported: a box one of them scores higher than a class is not that class"


def shown_errors(action):
    """Our one-line errors as a message on the page (gr.Error) instead of a red 'Error' with no reason."""
    def run(*args):
        try:
            return action(*args)
        except YOLOWorldError as exc:  # a user's mistake: the message on the page, no traceback in the server log
            raise gr.Error(str(exc), print_exception=False) from None
    return run


def offered_only(picker: gr.Dropdown, check) -> gr.Dropdown:
    """`picker` answering a value it does not offer (which only a client other than the page can send) with the
    session's one message: Gradio's own check would echo the value and print a traceback in the server log. (An
    instance hook, not a subclass: Gradio writes a .pyi file beside any module that subclasses a component.)"""
    gradio_preprocess = picker.preprocess

    def preprocess(payload):
        check(payload)
        return gradio_preprocess(payload)

    picker.preprocess = shown_errors(preprocess)
    return picker


def build_app(session: AppSession, title: str = "YOLO-World") -> gr.Blocks:
    weights_choices = session.offered
    # uploads and results older than an hour are deleted (hourly, and all of them when the server stops)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"## {title}: open-vocabulary detection\nType the classes to find, then press **Detect**.")
        with gr.Row():
            with gr.Column():
                weights = offered_only(gr.Dropdown(
                    weights_choices, value=weights_choices[0], label="Weights", elem_id="weights",
                    allow_custom_value=session.allow_any, info=WEIGHTS_HELP[session.allow_any]), session.check_weights)
                with gr.Tab("Image"):
                    image = gr.Image(type="numpy", image_mode="RGB", label="Image", elem_id="input-image")
                with gr.Tab("Video"):
                    video = gr.Video(label="Video", elem_id="input-video")
                    track = gr.Checkbox(value=True, label="Track objects (ids and trails, ByteTrack)",
                                        elem_id="track")
                    detect_video = gr.Button("Detect in video", elem_id="detect-video")
                    output_video = gr.Video(label="Detections (video)", elem_id="output-video", interactive=False)
                classes = gr.Textbox(label="Classes", info=CLASSES_HELP, elem_id="classes",
                                     placeholder="person, car|automobile, dog")
                with gr.Group():
                    gr.Markdown("Image prompt (optional): a class given by example, beside the typed classes")
                    reference = gr.Image(type="numpy", image_mode="RGB", label="Reference image",
                                         elem_id="reference-image", height=200)
                    with gr.Row():
                        reference_box = gr.Textbox(label="Box on the reference", elem_id="reference-box",
                                                   placeholder="click two corners, or type x1, y1, x2, y2 (empty: all)")
                        reference_name = gr.Textbox(label="Class name", elem_id="reference-name",
                                                    placeholder="my mug")
                negatives = gr.Textbox(label="Negative prompts", info=NEGATIVES_HELP, elem_id="negatives",
                                       placeholder="wolf, toy dog")
                max_boxes = gr.Slider(1, 300, value=100, step=1, label="Maximum number of boxes")
                calibrated = gr.Checkbox(value=True, label="Calibrated per-class thresholds (weights made by "
                                         "`yoloworld calibrate`) instead of the score threshold", elem_id="calibrated")
                score = gr.Slider(0, 1, value=0.05, step=0.01, label="Score threshold", elem_id="score")
                iou = gr.Slider(0.01, 1, value=0.5, step=0.01, label="NMS threshold")
                with gr.Row():
                    detect = gr.Button("Detect", variant="primary", elem_id="detect")
                    export = gr.Button("Export ONNX", elem_id="export")
            with gr.Column():
                output = gr.Image(label="Detections", elem_id="output-image", interactive=False)
                summary = gr.Textbox(label="Summary", elem_id="summary", interactive=False)
                files = gr.File(label="Downloads: detections JSON, ONNX model", elem_id="downloads",
                                interactive=False)
                records = gr.JSON(label="Detections", elem_id="detections")
        settings = [weights, classes, max_boxes, score, iou, negatives, calibrated, reference, reference_box,
                    reference_name]

        def on_image(picture, *values):
            found = session.detect_image(picture, *values)
            return found.image, found.summary, str(found.json_file), found.records

        def on_video(clip, tracking, *values):
            found = session.detect_video(clip, *values, track=tracking)
            return str(found.video), found.summary, str(found.json_file), found.records

        def on_corner(text, event: gr.SelectData):  # a click on the reference image: one corner of its box
            return box_from_clicks(text, *event.index[:2])

        def on_export(chosen, typed):
            path = session.export_onnx(chosen, typed)
            return str(path), f"exported {path.name}: download it below"

        detect.click(shown_errors(on_image), [image, *settings], [output, summary, files, records],
                     api_name="detect_image")
        detect_video.click(shown_errors(on_video), [video, track, *settings], [output_video, summary, files, records],
                           api_name="detect_video")
        reference.select(on_corner, [reference_box], [reference_box])
        export.click(shown_errors(on_export), [weights, classes], [files, summary], api_name="export_onnx")
    return app


def theme() -> gr.themes.Base:
    """System fonts: the default theme fetches web fonts, and the app must also work with no internet."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "Consolas", "monospace"])
