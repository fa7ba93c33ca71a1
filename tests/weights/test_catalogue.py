"""`segzoo weights list|get`, the $SEGZOO_HOME cache and `--checkpoint NAME`."""

import dataclasses
import hashlib
import http.server
import os
import threading

import numpy as np
import pytest

from segzoo import cli
from segzoo.weights import catalogue
from tests.weights import synthetic, writers


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGZOO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SEGZOO_OFFLINE", raising=False)
    return tmp_path / "home"


def test_list_shows_every_entry_with_its_facts(capsys):
    assert cli.main(["weights", "list"]) == 0
    text = capsys.readouterr().out
    for name in ("mask_rcnn_r50_fpn_coco", "keypoint_rcnn_r50_fpn_coco", "resnet18_imagenet",
                 "resnet34_imagenet", "resnet50_imagenet", "resnet101_imagenet", "fcn8s_voc"):
        assert name in text
    assert "37.9" in text and "34.6" in text and "54.6" in text and "65.5" in text
    assert "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in text and "bf2d0c1e" in text
    assert "licence" in text
    assert cli.main(["weights"]) == 0  # `segzoo weights` alone lists too


def test_entries_are_complete():
    for item in catalogue.CATALOGUE.values():
        assert item.url.endswith("/" + item.file)
        assert item.metrics and item.licence and item.size
        if item.source == "torchvision":
            assert item.file.split("-")[-1].startswith(item.sha256_prefix)


def test_offline_and_absent_is_one_line_naming_the_file(home, monkeypatch, capsys):
    monkeypatch.setenv("SEGZOO_OFFLINE", "1")
    assert cli.main(["weights", "get", "mask_rcnn_r50_fpn_coco"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in err and str(home / "downloads") in err
    assert "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth" in err
    assert err.endswith("or pass the copy you have as --file PATH")
    # the same through --checkpoint NAME
    assert cli.main(["eval", "--checkpoint", "mask_rcnn_r50_fpn_coco"]) == 2
    assert "bf2d0c1e.pth" in capsys.readouterr().err


def test_unknown_name_and_wrong_file(home, tmp_path, capsys):
    assert cli.main(["weights", "get", "mask_rcnn_r50"]) == 2
    assert "mask_rcnn_r50_fpn_coco" in capsys.readouterr().err  # lists the known names
    wrong = tmp_path / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"
    wrong.write_bytes(b"something else")
    assert cli.main(["weights", "get", "mask_rcnn_r50_fpn_coco", "--file", str(wrong)]) == 2
    assert "does not start with bf2d0c1e" in capsys.readouterr().err
    missing = str(tmp_path / "nowhere.pth")
    assert cli.main(["weights", "get", "mask_rcnn_r50_fpn_coco", "--file", missing]) == 2
    assert f"error: --file {missing} does not exist (expected " in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match=r"^file='.*nowhere\.pth' does not exist"):
        catalogue.fetch("mask_rcnn_r50_fpn_coco", file=missing)
    assert not (home / "downloads" / wrong.name).exists()


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    requests = []

    def do_GET(self):  # noqa: N802
        start = 0
        header = self.headers.get("Range")
        type(self).requests.append(header)
        if header:
            start = int(header.split("=")[1].rstrip("-"))
            self.send_response(206)
        else:
            self.send_response(200)
        body = self.payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def resnet_entry(tmp_path, monkeypatch):
    """A catalogue entry for a synthetic torchvision resnet18 file served on 127.0.0.1."""
    path = writers.write_torch_zip(str(tmp_path / "resnet18-test.pth"), synthetic.resnet_state_dict(18))
    payload = open(path, "rb").read()
    handler = type("Handler", (_RangeHandler,), {"payload": payload, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = catalogue.CATALOGUE["resnet18_imagenet"]
    item = dataclasses.replace(base, name="resnet18_test", file="resnet18-test.pth",
                               url=f"http://127.0.0.1:{server.server_port}/resnet18-test.pth",
                               sha256=hashlib.sha256(payload).hexdigest(), sha256_prefix=None)
    monkeypatch.setitem(catalogue.CATALOGUE, item.name, item)
    yield item, path, payload, handler
    server.shutdown()
    server.server_close()


def test_get_downloads_resumes_verifies_and_converts(home, resnet_entry, capsys):
    item, _, payload, handler = resnet_entry
    downloads = home / "downloads"
    downloads.mkdir(parents=True)
    (downloads / (item.file + ".part")).write_bytes(payload[: len(payload) // 3])  # an interrupted run
    assert cli.main(["weights", "get", item.name]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert handler.requests == [f"bytes={len(payload) // 3}-"]  # resumed, not restarted
    assert (downloads / item.file).read_bytes() == payload
    assert not (downloads / (item.file + ".part")).exists()
    assert out == str(home / "converted" / "resnet18_test.weights.h5") and os.path.isfile(out)
    from segzoo.models.backbones.resnet import resnet_backbone

    backbone = resnet_backbone(18, weights=out, layout="torchvision")
    np.testing.assert_array_equal(backbone.get_layer("conv1_conv").get_weights()[0],
                                  np.transpose(synthetic.resnet_state_dict(18)["conv1.weight"], (2, 3, 1, 0)))
    assert cli.main(["weights", "get", item.name]) == 0  # cached: no second request
    assert len(handler.requests) == 1


def test_get_with_file_and_a_corrupt_download(home, resnet_entry, tmp_path, capsys):
    item, path, payload, handler = resnet_entry
    assert cli.main(["weights", "get", item.name, "--file", path]) == 0
    assert handler.requests == []  # offline copy: no network
    assert (home / "downloads" / item.file).read_bytes() == payload
    os.remove(home / "downloads" / item.file)
    os.remove(catalogue.converted_path(item.name))
    handler.payload = payload[:-1] + b"x"  # the server sends a corrupt file
    assert cli.main(["weights", "get", item.name]) == 2
    assert "SHA-256" in capsys.readouterr().err
    assert not (home / "downloads" / item.file).exists()


def test_imagenet_backbone_weights_for_resnet18_use_the_converted_torchvision_file(
        home, resnet_entry, monkeypatch):
    item, path, _, _ = resnet_entry
    monkeypatch.setitem(catalogue.CATALOGUE, "resnet18_imagenet", dataclasses.replace(item, name="resnet18_imagenet"))
    assert cli.main(["weights", "get", "resnet18_imagenet", "--file", path]) == 0
    from segzoo.models.backbones.resnet import resnet_backbone

    backbone = resnet_backbone(18, weights="imagenet", layout="torchvision")
    np.testing.assert_array_equal(backbone.get_layer("conv1_bn").get_weights()[0],
                                  synthetic.resnet_state_dict(18)["bn1.weight"])
    with pytest.raises(ValueError, match="layout='torchvision'"):
        resnet_backbone(18, weights="imagenet")  # keras layout: the torchvision tensors do not fit


def test_checkpoint_name_resolves_to_the_converted_file(home, monkeypatch, capsys):
    """`--checkpoint NAME` loads the cached conversion (here a tiny U-Net stands in for it)."""
    import segzoo

    monkeypatch.setenv("SEGZOO_OFFLINE", "1")
    target = catalogue.converted_path("fcn8s_voc")
    os.makedirs(os.path.dirname(target))
    segzoo.get_model("unet", num_classes=4, base_filters=4).save(target)
    from segzoo.models.base import load_checkpoint

    assert load_checkpoint("fcn8s_voc").name.startswith("unet")
    assert cli.main(["eval", "--checkpoint", "fcn8s_voc", "--max-images", "1", "--json"]) == 0
    assert "mean_iou" in capsys.readouterr().out
    with pytest.raises(ValueError, match="backbone"):
        load_checkpoint("resnet50_imagenet")
