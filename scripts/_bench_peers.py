"""``bench.py --peers``: our network beside the other CPU engines on the same weights, and the whole command.

Forward table: batch 1, one letterboxed image per call (the same tensor for every engine, cycling over the
images), forward + decode, timed round-robin (median after one warm-up round). Engines: ours
(``TorchBackend``: fp32, and bf16 where the CPU has AVX512_BF16/AMX), OpenCV DNN (``readNetFromDarknet``,
fp32), onnxruntime and OpenVINO on our own ONNX export (``yolo.export``, fp32 graph; OpenVINO's bf16 is its
``INFERENCE_PRECISION_HINT``, where its CPU plugin reports BF16). A cell is ``n/a`` where that precision has
no hardware (or no kernels: onnxruntime has no bf16 convolutions on CPU), ``not installed`` for an optional
package that is missing, or the error.

Whole command: ``python -m yolo detect --save-txt --nosave`` against ``_opencv_detect.py`` (letterbox +
forward + NMS + txt, cv2 and numpy only), same images (640x480 crops of a photograph), weights and
thresholds, each timed as a whole process (start-up included), interleaved, median of the repeats; wall time
and the process's CPU time (user + system: on a machine other jobs load, the wall time mostly measures how
much of the CPU each process was given).
Not part of the ``yolo`` package; ``bench.py`` imports it from this folder.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import torch

from _bench_common import _photo, calibrated_weights, round_robin

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("ours fp32", "ours bf16", "opencv fp32", "onnxruntime fp32", "onnxruntime bf16", "openvino fp32",
           "openvino bf16")
WHOLE_TARGET = {"fp32": 0.75, "bf16": 0.5}  # issue 18: our process time / the OpenCV script's


def photo_images(folder: Path, n: int, size: tuple[int, int] = (480, 640)) -> list[Path]:
    """``n`` JPEGs of ``size`` (h, w) cut from a real photograph at different offsets."""
    folder.mkdir(parents=True, exist_ok=True)
    photo, paths = _photo(), []
    for i in range(n):
        crop = photo[(i * 7) % 90:, (i * 11) % 120:]
        paths.append(folder / f"img{i:03d}.jpg")
        cv2.imwrite(str(paths[-1]), cv2.resize(crop, size[::-1]))
    return paths


def bf16_wanted(mode: str) -> tuple[bool, str]:
    """``--peer-bf16`` auto/on/off -> (run the bf16 cells, why not when not)."""
    from yolo.utils.device import cpu_has_fast_bf16

    if mode == "off":
        return False, "n/a (--peer-bf16 off)"
    if mode == "on" or cpu_has_fast_bf16():
        return True, ""
    return False, "n/a (no AVX512_BF16/AMX)"


def _ours(weights: Path, cfg: str, half: bool):
    from yolo.model.checkpoint import load_model
    from yolo.runtime.backends import TorchBackend

    backend = TorchBackend(load_model(weights, cfg=cfg), "cpu", half=half)
    return backend


def _opencv(weights: Path, cfg: str):
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    names = net.getUnconnectedOutLayersNames()

    def forward(x: torch.Tensor):
        net.setInput(x.numpy())
        return net.forward(names)

    return forward


def _onnxruntime(onnx: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})


def _openvino(onnx: Path, precision: str):
    import openvino as ov

    core = ov.Core()
    if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        raise LookupError("n/a (OpenVINO's CPU plugin reports no BF16)")
    compiled = core.compile_model(core.read_model(str(onnx)), "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x.numpy()})


OPTIONAL = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


def _build(engine: str, weights: Path, cfg: str, onnx: Path | None, bf16: tuple[bool, str]):
    """-> (forward callable, None) or (None, the cell's text)."""
    name, precision = engine.split()
    if precision == "bf16" and not bf16[0]:
        return None, bf16[1]
    if engine == "onnxruntime bf16":
        return None, "n/a (no bf16 convolutions on CPU)"
    if name in OPTIONAL:
        try:
            __import__(OPTIONAL[name])
        except ImportError:
            return None, f"not installed (pip install {OPTIONAL[name]})"
        if onnx is None:
            return None, "no ONNX export (pip install onnx onnxscript)"
    try:
        if name == "ours":
            return _ours(weights, cfg, precision == "bf16"), None
        if name == "opencv":
            return _opencv(weights, cfg), None
        return (_onnxruntime(onnx) if name == "onnxruntime" else _openvino(onnx, precision)), None
    except LookupError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - reported in the cell
        return None, f"error: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def _export_onnx(weights: Path, cfg: str, size: int, out: Path) -> Path | None:
    try:
        from yolo.export import export_model

        export_model(str(weights), "onnx", out, img_size=size, cfg=cfg, force=True)
        return out
    except ImportError:
        return None


def forward_table(cfg: str, model: str, size: int, weights: Path, images: list[Path], tmp: Path, repeats: int,
                  bf16_mode: str) -> dict:
    """One row of the peer table: {engine: ms or None}, {engine: note} for ``model`` at ``size``."""
    from yolo.runtime.preprocess import preprocess

    bf16 = bf16_wanted(bf16_mode)
    onnx = _export_onnx(weights, cfg, size, tmp / f"{model}-{size}.onnx")
    inputs = [preprocess([cv2.imread(str(p))], (size, size))[0].contiguous() for p in images]  # [1, 3, S, S]
    runners, notes = {}, {}
    for engine in ENGINES:
        forward, note = _build(engine, weights, cfg, onnx, bf16)
        if forward is None:
            notes[engine] = note
            print(f"  peers: {model} {size} {engine}: {note}", flush=True)
            continue
        runners[engine] = _timer(forward, inputs)
    for engine, run in list(runners.items()):
        try:
            run(0)  # warm-up
        except Exception as e:  # noqa: BLE001 - reported in the cell
            notes[engine] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
            del runners[engine]
    times = round_robin(runners, repeats)
    ms = {engine: statistics.median(t) * 1000 for engine, t in times.items()}
    return {"model": model, "size": size, "forward_ms": ms, "notes": notes}


def _timer(forward, inputs: list[torch.Tensor]):
    def run(round_index: int) -> float:
        x = inputs[round_index % len(inputs)]
        t0 = time.perf_counter()
        forward(x)
        return time.perf_counter() - t0

    return run


def format_forward(rows: list[dict]) -> str:
    """The peer table: ms per image (batch 1, forward + decode), fastest of each precision marked with *."""
    head = f"{'model':<12} {'size':>4} " + " ".join(f"{e:>17}" for e in ENGINES)
    lines = [head]
    for r in rows:
        ms = r["forward_ms"]
        best = {p: min((v for e, v in ms.items() if e.endswith(p)), default=None) for p in ("fp32", "bf16")}
        cells = []
        for e in ENGINES:
            if e in ms:
                cells.append(f"{ms[e]:>16.1f}" + ("*" if ms[e] == best[e.split()[1]] else " "))
            else:
                cells.append(f"{_short(r['notes'].get(e, '-')):>17}")
        lines.append(f"{r['model']:<12} {r['size']:>4} " + " ".join(cells))
    lines.append("ms per image, batch 1, forward + decode; * fastest of that precision; notes: " + "; ".join(
        sorted({f"{e}: {n}" for r in rows for e, n in r["notes"].items()})))
    return "\n".join(lines)


def _short(note: str) -> str:
    return "n/a" if note.startswith("n/a") else ("not installed" if note.startswith("not installed") else
                                                 note[:17])


def whole_command(cfg: str, model: str, size: int, weights: Path, tmp: Path, n_images: int, repeats: int,
                  conf: float, iou: float, half: bool) -> dict:
    """Our ``yolo detect`` process against the OpenCV-DNN script on the same folder, interleaved."""
    folder, precision = tmp / "whole", "bf16" if half else "fp32"
    if not folder.is_dir():
        photo_images(folder, n_images)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    common = ["--img-size", str(size), "--conf", str(conf), "--iou", str(iou)]
    ours = [sys.executable, "-m", "yolo", "detect", "--weights", str(weights), "--cfg", cfg, "--source", str(folder),
            "--save-txt", "--nosave", "--no-progress", *common] + (["--half"] if half else [])
    theirs = [sys.executable, str(ROOT / "scripts" / "_opencv_detect.py"), "--cfg", cfg, "--weights", str(weights),
              "--source", str(folder), *common]
    times: dict[str, list[float]] = {"ours": [], "opencv": []}
    cpu: dict[str, list[float]] = {"ours": [], "opencv": []}
    for r in range(repeats + 1):  # round 0 warms the file cache
        for side, cmd in (("ours", ours), ("opencv", theirs)) if r % 2 else (("opencv", theirs), ("ours", ours)):
            out = tmp / f"whole-{model}-{size}-{precision}-{side}-{r}"
            c0, t0 = _children_cpu(), time.perf_counter()
            done = subprocess.run([*cmd, "--out", str(out)], env=env, cwd=tmp, capture_output=True, text=True)
            seconds, cpu_seconds = time.perf_counter() - t0, _children_cpu() - c0
            if done.returncode != 0:
                raise RuntimeError(f"{side}: exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
            if r:
                times[side].append(seconds)
                cpu[side].append(cpu_seconds)
    counts = {side: sum(len(p.read_text().splitlines()) for p in
                        (tmp / f"whole-{model}-{size}-{precision}-{side}-{repeats}" / "labels").glob("*.txt"))
              for side in times}
    ours_s, cv_s = (statistics.median(times[s]) for s in ("ours", "opencv"))
    ours_cpu, cv_cpu = (statistics.median(cpu[s]) for s in ("ours", "opencv"))
    return {"model": model, "size": size, "images": n_images, "precision": precision, "ours_s": ours_s,
            "opencv_s": cv_s, "ratio": ours_s / cv_s, "ours_cpu_s": ours_cpu, "opencv_cpu_s": cv_cpu,
            "cpu_ratio": ours_cpu / cv_cpu, "target": WHOLE_TARGET[precision], "detections": counts,
            "repeats": repeats}


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def format_whole(rows: list[dict]) -> str:
    lines = []
    for w in rows:
        if "error" in w:
            lines.append(f"whole command {w['model']} {w['size']} {w['precision']}: {w['error']}")
            continue
        lines.append(f"whole command {w['model']} {w['size']} {w['precision']}, {w['images']} images 640x480, "
                     f"--save-txt: yolo detect {w['ours_s']:.2f} s, OpenCV-DNN script {w['opencv_s']:.2f} s, "
                     f"ratio {w['ratio']:.3f} (target <= {w['target']}); CPU time {w['ours_cpu_s']:.1f} s vs "
                     f"{w['opencv_cpu_s']:.1f} s (ratio {w['cpu_ratio']:.3f}: steadier than wall time on a loaded "
                     f"machine); detections {w['detections']['ours']} vs "
                     f"{w['detections']['opencv']}; median of {w['repeats']}, interleaved")
    return "\n".join(lines)


def run_peers(args, cfg_path, model_names: list[str], sizes: list[int], tmp: Path) -> dict:
    """Both parts for every model and size: {"forward": [rows], "whole_command": [rows]}."""
    images = photo_images(tmp / "peer-images", max(args.peer_images, 1))
    result: dict = {"forward": [], "whole_command": []}
    bf16 = bf16_wanted(args.peer_bf16)
    for model in model_names:
        cfg = cfg_path(model)
        weights = tmp / f"{Path(cfg).stem}-peers.weights"
        calibrated_weights(cfg, weights, images, sizes[0])
        for size in sizes:
            result["forward"].append(forward_table(cfg, model, size, weights, images, tmp, args.repeats,
                                                   args.peer_bf16))
            print(format_forward(result["forward"][-1:]), flush=True)
            for half in (False, True) if bf16[0] else (False,):
                try:
                    row = whole_command(cfg, model, size, weights, tmp, args.peer_images, args.peer_repeats,
                                        args.conf, args.iou, half)
                except Exception as e:  # noqa: BLE001 - reported, the other rows are kept
                    row = {"model": model, "size": size, "precision": "bf16" if half else "fp32",
                           "error": f"{type(e).__name__}: {e}"}
                result["whole_command"].append(row)
                print(format_whole([row]), flush=True)
            if not bf16[0]:
                print(f"whole command {model} {size} bf16: {bf16[1]}", flush=True)
    return result
