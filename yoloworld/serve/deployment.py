"""The Ray Serve deployment behind `yoloworld serve`: FastAPI routes over one model per replica.

Requests wait in Serve's batch queue (`max_batch_size`, `batch_wait_s`); each batch is split by `DetectOptions`
(vocabulary and thresholds) and each part is one `Predictor.predict` call, so the answers are `predict`'s. The model
runs in a worker thread: the replica keeps accepting requests (the next batch fills) and answering /health meanwhile.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from itertools import groupby

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from starlette.exceptions import HTTPException

from yoloworld.cluster import ModelSpec
from yoloworld.errors import InputError
from yoloworld.serve.requests import DetectOptions, RequestError, decode_image, detect_options

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 2**20
    max_batch_size: int = 8
    batch_wait_s: float = 0.01
    api_key: str | None = None


api = FastAPI(title="yoloworld", description="Open-vocabulary detection (YOLO-World) on Ray Serve.")
DETECT_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "an image file (JPEG, PNG, BMP, WebP, TIFF)"},
        "classes": {"type": "string", "description": "\"person,car|automobile\" (default: the server's classes)"},
        "conf": {"type": "number", "description": "score threshold in [0, 1] (default: calibrated per class, else 0.05)"},
        "iou": {"type": "number", "description": "NMS IoU threshold in (0, 1] (default 0.7)"},
        "max_det": {"type": "integer", "description": "detections kept (default 300)"}}}}}}}


@api.exception_handler(RequestError)
async def _request_error(_, exc: RequestError):
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


@api.exception_handler(HTTPException)
async def _http_error(_, exc: HTTPException):  # unknown paths and methods: JSON like every other error
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


@serve.deployment
@serve.ingress(api)
class Detector:
    """One replica: its model, loaded once (`ModelSpec.load`), answers the batches of its queue."""

    def __init__(self, spec: ModelSpec, limits: Limits):
        self.model = spec.load()
        self.model.warn_demo = False  # a server's clients never see its log
        self.limits = limits
        self.detect_batch.set_max_batch_size(limits.max_batch_size)
        self.detect_batch.set_batch_wait_timeout_s(limits.batch_wait_s)

    @api.get("/health")
    async def health(self) -> dict:
        """200 once this replica's model is loaded."""
        return {"status": "ok", "classes": self.model.class_names, "imgsz": self.model.imgsz}

    @api.post("/v1/detect", openapi_extra=DETECT_FORM)
    async def detect(self, request: Request) -> JSONResponse:
        """Detections in the uploaded image: `predict --json`'s record without `file`."""
        self._check_key(request)
        image, options = await self._read_form(request)
        status, payload, batch_size = await self.detect_batch((image, options))
        return JSONResponse(payload, status_code=status, headers={"X-Batch-Size": str(batch_size)})

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # set from Limits in __init__
    async def detect_batch(self, jobs: list[tuple]) -> list[tuple[int, dict, int]]:
        return await asyncio.to_thread(self._run, jobs)

    def _run(self, jobs: list[tuple]) -> list[tuple[int, dict, int]]:
        """(status, JSON, images in its forward pass) per job: one `predict` call per set of equal options."""
        answers: list = [None] * len(jobs)
        order = sorted(range(len(jobs)), key=lambda i: repr(jobs[i][1]))
        for _, group in groupby(order, key=lambda i: repr(jobs[i][1])):
            group = list(group)
            for index, answer in zip(group, self._predict([jobs[i][0] for i in group], jobs[group[0]][1])):
                answers[index] = (*answer, len(group))
        return answers

    def _predict(self, images: list, options: DetectOptions) -> list[tuple[int, dict]]:
        classes = options.class_lists()
        try:
            results = self.model.predict(images, options.conf, options.iou, options.max_det, batch_size=len(images),
                                         per_image_classes=None if classes is None else [classes] * len(images))
        except InputError as exc:  # e.g. classes that an exported model with a fixed vocabulary cannot take
            return [(422, {"error": f"classes: {exc}"})] * len(images)
        return [(200, {key: value for key, value in result.to_dict().items() if key != "file"})
                for result in results]

    def _check_key(self, request: Request) -> None:
        expected = self.limits.api_key
        if expected is None:
            return
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise RequestError("API key missing or wrong: send the header X-API-Key: KEY", 401)

    async def _read_form(self, request: Request):
        """The image and the options of a multipart form, the body read up to the upload limit (a larger body is
        refused as soon as it passes the limit, never held whole)."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise RequestError("image: send multipart/form-data with the image in a file field named 'image'", 415)
        body = await self._bounded_body(request)

        async def replay():
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
        except HTTPException as exc:  # a malformed multipart body
            raise RequestError(f"image: malformed multipart form ({exc.detail})") from None
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise RequestError("image: missing; send the image in a file field named 'image'")
        fields = {key: value for key, value in form.multi_items() if key != "image"}
        if any(not isinstance(value, str) for value in fields.values()):
            raise RequestError("image: only one file (field 'image') is accepted")
        return decode_image(await upload.read()), detect_options(fields)

    async def _bounded_body(self, request: Request) -> bytes:
        limit = self.limits.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(f"image: the upload ({int(declared)} bytes) is over the limit of {limit} bytes", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(f"image: the upload is over the limit of {limit} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)
