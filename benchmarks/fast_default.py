"""The fast default path, each figure against its baseline measured in the same run (issue: fast by default).

YOLO-World S (random weights, official architecture, head logits scaled to a dense output: thousands of candidates)
at 640, 80 classes + the padding prompt, on `--threads` CPU threads:

  end to end     one photo-sized image (810x1080): letterbox + network + selection (conf 0.25), batch 1. The
                 default `predict` (vocabulary folded), `predict` with fold=False (the text-conditioned network),
                 the ONNX Runtime runner (baked-vocabulary export), each against the fp32 floor: the network's
                 FLOPs over the GFLOP/s of a 2048^3 fp32 matmul measured in the same rounds
  selection      `postprocess.select` vs torchvision's `batched_nms` on the same candidates: the network's output
                 above, and random scores with thousands of candidates over 80 classes
  fold           build time and extra memory of the folded copy (80 classes, and the 1203 LVIS names)
  folder         images/s over a folder of JPEG photos of mixed sizes: `predict` (reading and letterboxing in a
                 worker thread) vs the same steps in series, and vs the network alone at the same batch size
  cold vocab     `set_classes` with the 1203 LVIS names (from the installed Ultralytics' lvis.yaml, else generated)
                 on a CLIP ViT-B/32-shaped text tower (random weights, same FLOPs), empty cache: batched by token
                 length vs the former order (batches of 256 padded to their longest), warm (memory, disk)

Rounds alternate the variants, so load changes on a shared machine hit them alike; ratios are per round, medians.

    python benchmarks/fast_default.py --threads 2 --repeats 5 --folder-images 40
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_latency import MATMUL_N, count_flops  # noqa: E402
from latency import no_grad, timed_rounds  # noqa: E402

from yoloworld.api import YOLOWorld  # noqa: E402
from yoloworld.config import ModelConfig  # noqa: E402
from yoloworld.models.detector import build_detector  # noqa: E402
from yoloworld.models.reparam import fold_vocabulary  # noqa: E402
from yoloworld.models.text import TextEmbeddingCache, TextEncoder, clip_text_config  # noqa: E402
from yoloworld.pipeline import prepare_batch  # noqa: E402
from yoloworld.postprocess import merge_synonyms, select  # noqa: E402
from yoloworld.predictor import Settings  # noqa: E402
from yoloworld.transforms import boxes_to_original, letterbox_batch  # noqa: E402
from yoloworld.vocabulary import Vocabulary  # noqa: E402

PHOTO = (810, 1080)
PHOTO_SIZES = [(810, 1080), (1080, 810), (720, 1280), (480, 640), (1200, 1600), (600, 800)]
CONF = 0.25


def photo(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """A photo-like image: smooth colour fields plus grain (decodes like a photo, unlike flat synthetic art)."""
    small = rng.integers(0, 256, (hw[0] // 40 + 2, hw[1] // 40 + 2, 3), dtype=np.uint8)
    image = cv2.resize(small, (hw[1], hw[0]), interpolation=cv2.INTER_CUBIC)
    return cv2.add(image, rng.integers(0, 24, image.shape, dtype=np.uint8))


def models(args) -> tuple[YOLOWorld, YOLOWorld, YOLOWorld]:
    """The same fused S detector behind a folding (default) and a non-folding `YOLOWorld` (as the CLI loads it),
    and the unfused detector (what `yoloworld export` exports)."""
    torch.manual_seed(0)
    detector = build_detector(ModelConfig.preset("s"), with_text=False).eval()
    for head in detector.bbox_head.head_module.cls_contrasts:  # random weights give logits of std ~0.06:
        head.logit_scale.data.fill_(math.log(18.0))  # spread them to std ~1 and shift them so that a few
        head.bias.data.fill_(-3.7)  # thousand (prior, class) pairs pass conf 0.25, as in a crowded scene
    vocabulary = Vocabulary([[f"class {i}"] for i in range(args.classes)], padded=True)
    text = F.normalize(torch.randn(len(vocabulary.texts), detector.config.embed_dims), dim=-1)
    apis = []
    for fold, model in ((True, copy.deepcopy(detector).fuse()), (False, None), (False, detector)):
        api = YOLOWorld(model or apis[0].model, "cpu", args.imgsz, fold=fold)
        api._use_vocabulary(vocabulary, text)  # random embeddings: no text tower in this benchmark
        apis.append(api)
    return tuple(apis)


def onnx_runner(api: YOLOWorld, folder: Path, imgsz: int):
    from yoloworld.export.onnx_export import export_onnx, plan_export
    from yoloworld.export.onnx_runtime import OnnxYOLOWorld

    path = export_onnx(plan_export(api), folder / "s.onnx", imgsz)[0]
    return OnnxYOLOWorld(path)


def end_to_end(args, folded, plain, unfused, folder: Path) -> None:
    image = photo(np.random.default_rng(0), PHOTO)
    runner = onnx_runner(unfused, folder, args.imgsz)
    inputs = torch.from_numpy(letterbox_batch([image], args.imgsz)[0]).contiguous(memory_format=torch.channels_last)
    network_flops = count_flops(lambda: folded.folded_model()(inputs))
    a, b = torch.rand(MATMUL_N, MATMUL_N), torch.rand(MATMUL_N, MATMUL_N)
    calls = {"matmul": lambda: torch.mm(a, b),
             "predict (default: folded)": lambda: folded.predict(image, conf=CONF),
             "predict fold=False": lambda: plain.predict(image, conf=CONF),
             "ONNX Runtime runner": lambda: runner.predict(image, conf=CONF),
             "network only, folded": no_grad(lambda: folded.folded_model()(inputs)),
             "network only, text-conditioned": no_grad(lambda: plain.model(inputs, plain.text_embeds[None]))}
    samples = timed_rounds(calls, args.repeats)
    floors = [network_flops / (2.0 * MATMUL_N ** 3 / ms) for ms in samples["matmul"]]  # ms at the matmul's rate
    gflops = statistics.median(2.0 * MATMUL_N ** 3 / ms / 1e6 for ms in samples["matmul"])
    count = len(folded.predict(image, conf=CONF, max_det=100000)[0])
    print(f"\n## End to end, {PHOTO[1]}x{PHOTO[0]} photo -> {args.imgsz}x{args.imgsz}, batch 1, conf {CONF} "
          f"({count} detections after NMS)")
    print(f"fp32 matmul {gflops:.0f} GFLOP/s; network {network_flops / 1e9:.1f} GFLOPs -> fp32 floor "
          f"{statistics.median(floors):.0f} ms")
    print("| path | ms (median) | x fp32 floor | x default |\n|---|---|---|---|")
    for name in list(calls)[1:]:
        to_floor = statistics.median(v / f for v, f in zip(samples[name], floors))
        to_default = statistics.median(v / d for v, d in zip(samples[name], samples["predict (default: folded)"]))
        print(f"| {name} | {statistics.median(samples[name]):.0f} | {to_floor:.2f} | {to_default:.2f} |")


def batched_nms_select(scores, boxes, info, conf, iou, max_det, groups):
    """The former selection: every candidate, torchvision's batched_nms (one NMS per class above 1000 boxes)."""
    from torchvision.ops import batched_nms

    scores = merge_synonyms(scores, groups)
    keep = scores > conf
    prior, label = keep.nonzero(as_tuple=True)
    boxes = boxes_to_original(boxes[prior], info, clip=False)
    return batched_nms(boxes, scores[keep], label, iou)[:max_det]


def random_dense(classes: int, priors: int = 8400) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores with ~5000 (prior, class) pairs above 0.25 spread over every class, boxes crowded on a 640 input."""
    generator = torch.Generator().manual_seed(0)
    scores = (torch.randn(priors, classes + 1, generator=generator) * 1.5 - 4.75).sigmoid()
    centres = torch.rand(priors, 2, generator=generator) * 640
    sizes = torch.rand(priors, 2, generator=generator) * 150 + 4
    return scores, torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)


def selection(args, api: YOLOWorld) -> None:
    image = photo(np.random.default_rng(0), PHOTO)
    inputs, infos = letterbox_batch([image], args.imgsz)
    network = tuple(x[0] for x in api.forward(inputs, [api.text_embeds]))
    groups = api.vocabulary.groups()
    print(f"\n## Selection (conf {CONF}, iou 0.7, max_det 300)")
    print("| output | candidates | classes | select ms | batched_nms ms |\n|---|---|---|---|---|")
    for name, (scores, boxes) in (("S network, random weights", network),
                                  ("random scores, crowded boxes", random_dense(args.classes))):
        merged = merge_synonyms(scores, groups)
        calls = {"select": lambda: select(scores, boxes, infos[0], CONF, 0.7, 300, 30000, groups),
                 "batched_nms": lambda: batched_nms_select(scores, boxes, infos[0], CONF, 0.7, 300, groups)}
        samples = timed_rounds(calls, args.repeats * 2)
        classes = int((merged > CONF).any(dim=0).sum())
        print(f"| {name} | {int((merged > CONF).sum())} | {classes} | {statistics.median(samples['select']):.1f} | "
              f"{statistics.median(samples['batched_nms']):.1f} |")


def fold_cost(args, api: YOLOWorld) -> None:
    print("\n## Folding the vocabulary (S, fused): build time, extra memory")
    shared = {t.data_ptr() for t in api.model.state_dict().values()}
    for count in (len(api.text_embeds), 1204):
        text = F.normalize(torch.randn(count, api.embed_dims), dim=-1)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            folded = fold_vocabulary(api.model, text)
            times.append((time.perf_counter() - start) * 1000)
        extra = sum(t.numel() * t.element_size() for t in folded.state_dict().values() if t.data_ptr() not in shared)
        print(f"- {count} texts: {statistics.median(times):.0f} ms, {extra / 2 ** 20:.2f} MiB beyond the model")


def folder_throughput(args, api: YOLOWorld, folder: Path) -> None:
    rng = np.random.default_rng(1)
    paths = []
    for i in range(args.folder_images):
        paths.append(folder / f"photo_{i:03d}.jpg")
        cv2.imwrite(str(paths[-1]), photo(rng, PHOTO_SIZES[i % len(PHOTO_SIZES)]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    batch, settings = args.batch, Settings(CONF)
    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    network_input = letterbox_batch([photo(rng, PHOTO)] * batch, args.imgsz)[0]

    def in_series():
        for chunk in chunks:
            api.results_of(prepare_batch(chunk, api.imgsz, False), settings)

    calls = {"predict on the folder (overlapped)": lambda: api.predict(paths, conf=CONF, batch_size=batch),
             "the same steps in series": in_series,
             "network only": lambda: [api.forward(network_input, [api.text_embeds] * batch) for _ in chunks]}
    samples = timed_rounds(calls, args.folder_rounds, warmup=1)
    print(f"\n## Folder: {len(paths)} JPEG photos of {len(PHOTO_SIZES)} sizes, batch {batch}, conf {CONF}")
    print("| path | images/s | x network only |\n|---|---|---|")
    for name, values in samples.items():
        to_network = statistics.median(n / v for v, n in zip(values, samples["network only"]))
        print(f"| {name} | {len(paths) / statistics.median(values) * 1000:.2f} | {to_network:.2f} |")


def lvis_names() -> tuple[list[str], str]:
    try:
        import ultralytics
        import yaml

        table = Path(ultralytics.__file__).parent / "cfg" / "datasets" / "lvis.yaml"
        names = yaml.safe_load(table.read_text())["names"]
        return [name.split("/")[0].replace("_", " ") for name in names.values()], "LVIS (Ultralytics' lvis.yaml)"
    except (ImportError, OSError, KeyError):
        return [f"object category number {i}" for i in range(1203)], "generated (Ultralytics not installed)"


def cold_vocabulary(args, folder: Path) -> None:
    names, source = lvis_names()
    torch.manual_seed(0)
    encoder = TextEncoder.from_config(clip_text_config(512)).eval()
    encoder.fingerprint()  # hashed once per tower (first set_classes only); not what batching changes

    def former_order():
        with torch.no_grad():
            return torch.cat([encoder(names[i:i + 256]) for i in range(0, len(names), 256)])

    runs = {"by token length (now)": lambda i: TextEmbeddingCache(encoder, folder / f"cold{i}").encode(names),
            "former order, batches of 256": lambda i: former_order()}
    samples = {name: [] for name in runs}
    for i in range(args.vocab_rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run(i)
            samples[name].append(time.perf_counter() - start)
    cache = TextEmbeddingCache(encoder, folder / "cold0")
    start = time.perf_counter()
    cache.encode(names)
    disk = time.perf_counter() - start
    start = time.perf_counter()
    cache.encode(names)
    memory = time.perf_counter() - start
    tokens = int(encoder.tokenize(names)["attention_mask"].sum())
    per_token = 2 * sum(p.numel() for n, p in encoder.named_parameters() if "embedding" not in n)
    a = torch.rand(MATMUL_N, MATMUL_N)
    start = time.perf_counter()
    torch.mm(a, a)
    rate = 2.0 * MATMUL_N ** 3 / (time.perf_counter() - start)
    print(f"\n## Cold vocabulary: {len(names)} names, {source}; ViT-B/32 text tower, {tokens} tokens unpadded: "
          f"fp32 floor {tokens * per_token / rate:.1f} s at {rate / 1e9:.0f} GFLOP/s")
    for name, values in samples.items():
        print(f"- cold, {name}: {statistics.median(values):.1f} s")
    print(f"- warm from disk (a new process): {disk:.2f} s; warm from memory: {memory * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4, help="folder batch size")
    parser.add_argument("--folder-images", type=int, default=40)
    parser.add_argument("--folder-rounds", type=int, default=2)
    parser.add_argument("--vocab-rounds", type=int, default=2)
    parser.add_argument("--skip", nargs="*", default=[], choices=("e2e", "select", "fold", "folder", "vocab"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folded, plain, unfused = models(args)
    print(f"YOLO-World S, {args.threads} threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        if "e2e" not in args.skip:
            end_to_end(args, folded, plain, unfused, Path(tmp))
        if "select" not in args.skip:
            selection(args, folded)
        if "fold" not in args.skip:
            fold_cost(args, folded)
        if "folder" not in args.skip:
            folder_throughput(args, folded, Path(tmp))
        if "vocab" not in args.skip:
            cold_vocabulary(args, Path(tmp))


if __name__ == "__main__":
    main()
