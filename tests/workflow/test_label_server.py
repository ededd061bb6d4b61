"""A real MONAI Label server on 127.0.0.1 serving and training the bundle (needs the ``label`` extra).

The app is laid out by ``nerveseg label-app``'s code with the real configs shrunk by overrides (64x96 images, no
workers); the studies are tiny synthetic TIFFs plus one PNG, with two 0/255 TIFF labels and one 0/1 PNG label.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import BUNDLE_ROOT

pytestmark = pytest.mark.slow

pytest.importorskip("monailabel", reason="MONAI Label is not installed: pip install -e '.[label]'")
requests = pytest.importorskip("requests", reason="requests comes with MONAI Label")

from monai.bundle import ConfigParser  # noqa: E402

from nerveseg.bundle.data.synthetic import generate_dataset  # noqa: E402
from nerveseg.scripts.label_app.layout import create_app, start_command  # noqa: E402

SHAPE = (64, 96)
OVERRIDES = {"image_size": list(SHAPE), "num_workers": 0, "batch_size": 2, "cache_rate": 0.0, "panel_cases": 2}
START_TIMEOUT = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``(url, app, studies)`` of a running server; stopped (its whole process group) after the module."""
    work = tmp_path_factory.mktemp("label")
    data = generate_dataset(work / "data", 1, 3, 3, seed=0, image_shape=SHAPE)
    studies = work / "studies"
    app = create_app(work / "app", BUNDLE_ROOT, overrides=OVERRIDES, studies=studies, images=data / "train")
    for path in sorted((data / "test").glob("*.tif")):
        shutil.copyfile(path, studies / path.name)
    image = np.asarray(Image.open(studies / "1_3.tif"))
    Image.fromarray(image).save(studies / "png1.png")
    mask = np.asarray(Image.open(studies / "labels" / "final" / "1_3.tif")) > 0
    Image.fromarray(mask.astype(np.uint8)).save(studies / "labels" / "final" / "png1.png")  # a 0/1 label

    parser = ConfigParser()
    parser.read_config(str(app / "model" / "nerveseg" / "configs" / "inference.json"))
    torch.manual_seed(0)
    checkpoint = app / "model" / "nerveseg" / "models" / "model.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), checkpoint)

    port = _free_port()
    env = {
        **os.environ,
        "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
        "MONAI_LABEL_TRACKING_ENABLED": "false",
        "MONAI_LABEL_SESSION_PATH": str(work / "sessions"),
    }
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed after the server stops
    command = start_command(app, studies, port=port, python=sys.executable)
    process = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"The server exited ({process.returncode}):\n{(work / 'server.log').read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/info/", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"No answer in {START_TIMEOUT} s:\n{(work / 'server.log').read_text()[-4000:]}")
            time.sleep(1)
        yield url, app, studies
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _infer(url: str, image: str) -> requests.Response:
    return requests.post(f"{url}/infer/nerveseg", params={"image": image, "output": "image"}, timeout=300)


def _label_map(response: requests.Response, tmp_path: Path, name: str) -> np.ndarray:
    assert response.status_code == 200, response.text
    path = tmp_path / name
    path.write_bytes(response.content)
    return np.asarray(Image.open(path))


def _datastore_state(url: str, studies: Path) -> tuple[dict, list[str]]:
    listing = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()
    for obj in listing["objects"].values():  # drop what reading may touch (strategy stamps), keep ids and files
        obj["image"]["info"] = {k: v for k, v in obj["image"]["info"].items() if k == "name"}
    files = sorted(str(p.relative_to(studies)) for p in studies.rglob("*") if p.name != ".lock")
    return listing["objects"], files


def test_info_infer_label_train_infer(server, tmp_path):
    url, app, studies = server
    info = requests.get(f"{url}/info/", timeout=30).json()
    assert info["models"]["nerveseg"]["labels"] == {"nerve": 1}
    assert "nerveseg" in info["trainers"]
    assert {"asme_consistency", "random", "first"} <= set(info["strategies"])
    assert "asme_consistency" in info["scoring"]

    for image_id, suffix in (("2", ".tif"), ("png1", ".png")):
        response = _infer(url, image_id)
        label = _label_map(response, tmp_path, f"{image_id}{suffix}")
        assert label.shape == SHAPE and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1}

    with open(studies / "png1.png", "rb") as file:  # a viewer's local image, sent once as a session
        session = requests.put(f"{url}/session/", files={"files": ("local.png", file)}, timeout=60)
    assert session.status_code == 200, session.text
    response = requests.post(
        f"{url}/infer/nerveseg", params={"session_id": session.json()["session_id"], "output": "image"}, timeout=300
    )
    label = _label_map(response, tmp_path, "session.png")
    assert label.shape == SHAPE and label.dtype == np.uint8

    mask = np.zeros(SHAPE, np.uint8)
    mask[20:40, 30:60] = 255
    Image.fromarray(mask).save(tmp_path / "label.png")
    with open(tmp_path / "label.png", "rb") as file:
        saved = requests.put(f"{url}/datastore/label", params={"image": "2"}, files={"label": file}, timeout=60)
    assert saved.status_code == 200, saved.text
    assert (studies / "labels" / "final" / "2.png").is_file()
    listing = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    assert listing["2"]["labels"]["final"]["ext"] == ".png"

    checkpoint = app / "model" / "nerveseg" / "models" / "model.pt"
    before = checkpoint.stat().st_mtime_ns
    trained = requests.post(
        f"{url}/train/nerveseg", params={"run_sync": "true"}, json={"max_epochs": 1, "val_split": 0.4}, timeout=600
    )
    assert trained.status_code == 200, trained.text
    assert checkpoint.stat().st_mtime_ns > before
    train_log = (app / "model" / "nerveseg" / "outputs" / "train.log").read_text()
    assert "Epoch[1]" in train_log

    label = _label_map(_infer(url, "3"), tmp_path, "after.tif")
    assert label.shape == SHAPE and label.dtype == np.uint8 and set(np.unique(label)) <= {0, 1}


def test_bad_requests_answer_4xx_and_leave_the_datastore_unchanged(server, tmp_path):
    url, _, studies = server
    (tmp_path / "notes.png").write_text("not an image")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    before = _datastore_state(url, studies)

    assert _infer(url, "no_such_image").status_code == 404
    assert _infer(url, "../../etc/passwd").status_code == 400
    assert _infer(url, "/etc/passwd").status_code == 400
    assert requests.post(f"{url}/infer/no_such_model", params={"image": "2"}, timeout=60).status_code == 404
    with open(tmp_path / "notes.png", "rb") as file:
        answer = requests.post(f"{url}/infer/nerveseg", params={"output": "image"}, files={"file": file}, timeout=60)
    assert answer.status_code == 415

    def put(kind: str, params: dict, path: Path) -> int:
        field = "file" if kind == "image" else "label"
        with open(path, "rb") as file:
            return requests.put(f"{url}/datastore/{kind}", params=params, files={field: file}, timeout=60).status_code

    assert put("image", {"image": "../../evil"}, tmp_path / "small.png") == 400
    assert put("image", {"image": "notes"}, tmp_path / "notes.png") == 415
    assert put("image", {"image": "2"}, tmp_path / "small.png") == 409
    assert put("label", {"image": "no_such_image"}, tmp_path / "small.png") == 404
    assert put("label", {"image": "../../etc/passwd"}, tmp_path / "small.png") == 400
    assert put("label", {"image": "3", "tag": "../../x"}, tmp_path / "small.png") == 400
    assert put("label", {"image": "3"}, tmp_path / "notes.png") == 415
    assert put("label", {"image": "3"}, tmp_path / "small.png") == 422
    assert requests.post(f"{url}/activelearning/no_such_strategy", timeout=60).status_code == 404

    assert _datastore_state(url, studies) == before
    assert not (studies.parent / "evil.png").exists() and not (studies.parent.parent / "evil.png").exists()


def test_asme_consistency_scoring_and_strategies(server):
    url, _, _ = server
    scored = requests.post(f"{url}/scoring/asme_consistency", params={"run_sync": "true"}, timeout=600)
    assert scored.status_code == 200, scored.text
    result = scored.json()
    assert result["scored"] >= 1 and not result["failed"]
    listing = requests.get(f"{url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    unlabelled = {k for k, v in listing.items() if not v["labels"].get("final")}
    scores = {k: listing[k]["image"]["info"]["asme_consistency"] for k in unlabelled}
    assert all(0.0 <= s <= 1.0 for s in scores.values())

    first = requests.post(f"{url}/activelearning/asme_consistency", json={"client_id": "a"}, timeout=60).json()
    assert first["id"] in unlabelled
    assert first["asme_consistency"] == pytest.approx(min(scores.values()))
    if len(unlabelled) > 1:  # a second annotator asking now gets another image
        second = requests.post(f"{url}/activelearning/asme_consistency", json={"client_id": "b"}, timeout=60).json()
        assert second["id"] in unlabelled - {first["id"]}
    for strategy in ("random", "first"):
        sample = requests.post(f"{url}/activelearning/{strategy}", timeout=60).json()
        assert sample["id"] in unlabelled


def test_twenty_concurrent_infer_requests(server, tmp_path):
    url, _, _ = server
    ids = ["1", "2", "3", "png1", "1_1"]

    def one(index: int) -> tuple[int, float, bytes]:
        start = time.perf_counter()
        response = _infer(url, ids[index % len(ids)])
        return response.status_code, time.perf_counter() - start, response.content

    sequential = [one(index)[1] for index in range(5)]  # the cost of one request on its own, for the report
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    assert [code for code, _, _ in results] == [200] * 20
    for index, (_, _, content) in enumerate(results):
        (tmp_path / f"{index}.tif").write_bytes(content)
        assert np.asarray(Image.open(tmp_path / f"{index}.tif")).shape == SHAPE
    latencies = [seconds for _, seconds, _ in results]
    summary = {
        "requests": 20,
        "median_s": statistics.median(latencies),
        "max_s": max(latencies),
        "one_at_a_time_median_s": statistics.median(sequential),
        "image": list(SHAPE),
    }
    print(f"\n20 concurrent /infer on 127.0.0.1: {json.dumps(summary)}")
    report = os.environ.get("NERVESEG_LOAD_REPORT")
    if report:
        Path(report).write_text(json.dumps(summary, indent=2))
