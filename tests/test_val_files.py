"""``evaluate_files`` and ``yolo val --predictions/--annotations``: results, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.test_metrics import pycocotools_eval, random_problem
from yolo.cli import main
from yolo.errors import InputError
from yolo.val.evaluator import evaluate_files

pytest.importorskip("pycocotools")


@pytest.fixture()
def files(tmp_path):
    gt, results = random_problem(21, n_img=12)
    gt_path, res_path = tmp_path / "instances.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    return gt, results, gt_path, res_path


def test_cli_table_and_json_match_pycocotools(files, capsys):
    gt, results, gt_path, res_path = files
    ref, printed = pycocotools_eval(gt, results)
    assert main(["val", "--predictions", str(res_path), "--annotations", str(gt_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table == [line for line in printed.splitlines() if line.startswith(" Average")]
    assert main(["val", "--predictions", str(res_path), "--annotations", str(gt_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [out[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
                             "ARl")] == pytest.approx(ref.stats.tolist(), abs=1e-6)
    assert set(out["per_class"]) == {str(c["id"]) for c in gt["categories"]}


def test_evaluate_files_returns_stats(files):
    gt, results, gt_path, res_path = files
    assert evaluate_files(res_path, gt_path).stats == pytest.approx(pycocotools_eval(gt, results)[0].stats.tolist(),
                                                                    abs=1e-6)


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("yolo val: error: "), err
    return err


def test_error_paths(files, tmp_path, capsys):
    gt, results, gt_path, res_path = files

    def run(res, ann=gt_path):
        return _error(capsys, ["val", "--predictions", str(res), "--annotations", str(ann)])

    assert "nope.json: predictions file not found" in run(tmp_path / "nope.json")
    assert "missing.json: annotations file not found" in run(res_path, tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1,\n  "bbox": [1, 2, 3, 4],, }]')
    assert f"{bad}:2: invalid JSON" in run(bad)

    def with_results(entries, name):
        path = tmp_path / name
        path.write_text(json.dumps(entries))
        return path

    broken = [dict(r) for r in results[:5]]
    del broken[3]["score"]
    err = run(with_results(broken, "nokey.json"))
    assert "nokey.json: results[3] misses 'score'" in err
    unknown_cat = [dict(r) for r in results[:5]]
    unknown_cat[2]["category_id"] = 999
    assert "results[2]: category_id 999 is not in the annotations" in run(with_results(unknown_cat, "cat.json"))
    unknown_img = [dict(r) for r in results[:5]]
    unknown_img[4]["image_id"] = 123456
    assert "img.json: results[4]: image_id 123456 is not in the annotations" in run(with_results(unknown_img,
                                                                                                 "img.json"))
    text_id = [dict(r) for r in results[:5]]
    text_id[3]["image_id"] = str(text_id[3]["image_id"])  # blamed results[0] and all 5 entries before
    assert f"text.json: results[3]: image_id must be a number, got '{text_id[3]['image_id']}'" in run(
        with_results(text_id, "text.json"))
    assert "--predictions" in _error(capsys, ["val", "--annotations", str(gt_path)])
    for k, box in ((1, [10, 10, -5, 8]), (3, [10, float("nan"), 5, 8])):  # accepted silently before
        odd = [dict(r) for r in results[:5]]
        odd[k]["bbox"] = box
        err = run(with_results(odd, f"odd{k}.json"))
        assert f"odd{k}.json: results[{k}]: bbox [x, y, w, h] must be finite with w, h >= 0" in err, err
    both = ["val", "--predictions", str(res_path), "--annotations", str(gt_path), "--weights", "x.pt", "--data",
            "d.yaml"]
    assert "two modes at once" in _error(capsys, both)  # the files were ignored before


def test_bad_annotations_name_the_file(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1}], "categories": [{"id": 1}],
                               "annotations": [{"id": 1, "image_id": 1, "category_id": 1}]}))
    res = tmp_path / "res.json"
    res.write_text("[]")
    with pytest.raises(InputError, match="ann.json: annotations need bbox"):
        evaluate_files(res, ann)


def test_subprocess_exit_code(files, tmp_path):
    r = subprocess.run([sys.executable, "-m", "yolo", "val", "--predictions", str(tmp_path / "x.json"),
                        "--annotations", str(files[2])], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "x.json" in r.stderr
