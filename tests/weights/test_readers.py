"""The torch and Caffe readers on files written by torch 2.14 / protobuf (tests/fixtures/weights)."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from segzoo.weights import caffe_proto, torch_pickle

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "weights")


def fixture(name):
    return os.path.join(FIXTURES, name)


@pytest.mark.parametrize("name", ["resnet18_tiny_zip.pth", "resnet18_tiny_legacy.pth"])
def test_both_torch_formats_give_torchs_tensors(name):
    expected = np.load(fixture("resnet18_tiny_expected.npz"))
    state = torch_pickle.load_state_dict(fixture(name))
    assert list(state) == list(expected.files)  # key order kept
    for key in expected.files:
        assert state[key].shape == expected[key].shape, key
        assert state[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(state[key], expected[key], err_msg=key)
    # the hard cases: 0-d int64, non-contiguous, a view at an offset, bfloat16 widened exactly
    assert state["bn1.num_batches_tracked"].shape == () and state["bn1.num_batches_tracked"].dtype == np.int64
    np.testing.assert_array_equal(state["extra.transposed"], np.arange(6.0).reshape(2, 3).T)
    np.testing.assert_array_equal(state["extra.view"], [5, 6, 7, 8])
    np.testing.assert_array_equal(state["extra.bfloat16"], np.array([1.5, -3.25, 99727710973246947328.0], np.float32))
    assert state["extra.half"].dtype == np.float16


@pytest.mark.parametrize("name,count", [("maskrcnn_keys_legacy.pth", 307), ("keypointrcnn_keys_zip.pth", 313)])
def test_detector_files_keep_the_released_old_names(name, count):
    state = torch_pickle.load_state_dict(fixture(name))
    assert len(state) == count
    assert [float(v[0]) for v in state.values()] == list(range(count))  # views of one storage
    assert "backbone.fpn.inner_blocks.0.weight" in state and "rpn.head.conv.weight" in state
    assert "backbone.fpn.inner_blocks.0.0.weight" not in state
    if name.startswith("mask"):
        assert "roi_heads.mask_head.mask_fcn4.bias" in state


@pytest.mark.parametrize("name", ["malicious_zip.pth", "malicious_legacy.pth"])
def test_a_pickle_calling_os_system_is_refused_before_running(name):
    marker = "/tmp/segzoo_malicious_pickle_ran"
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(torch_pickle.UnsafePickleError, match=r"posix\.system|os\.system"):
        torch_pickle.load_state_dict(fixture(name))
    assert not os.path.exists(marker)


def _zip_with(tmp_path, payload):
    path = tmp_path / "x.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/data.pkl", payload)
        archive.writestr("x/version", b"3\n")
    return path


class _Eval:
    def __reduce__(self):
        return eval, ("1 + 1",)


def test_any_other_global_is_refused(tmp_path):
    with pytest.raises(torch_pickle.UnsafePickleError, match=r"__builtin__\.eval"):
        torch_pickle.load_state_dict(_zip_with(tmp_path, pickle.dumps({"w": _Eval()}, protocol=2)))
    # a pickled class instance (a whole model) is refused too
    with pytest.raises(torch_pickle.UnsafePickleError, match="collections.Counter"):
        import collections

        torch_pickle.load_state_dict(_zip_with(tmp_path, pickle.dumps(collections.Counter("ab"))))


def test_plain_data_without_globals_loads(tmp_path):
    assert torch_pickle.load_state_dict(_zip_with(tmp_path, pickle.dumps({"epoch": 3}))) == {"epoch": 3}


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        torch_pickle.load_state_dict(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="junk.pth"):
        torch_pickle.load_state_dict(junk)
    data = open(fixture("resnet18_tiny_legacy.pth"), "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated"):
        torch_pickle.load_state_dict(cut)
    other = tmp_path / "other.pth"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="no data.pkl"):
        torch_pickle.load_state_dict(other)


def test_header_pickles_may_not_reference_globals(tmp_path):
    stream = io.BytesIO()
    pickle.dump(_Eval(), stream, protocol=2)
    path = tmp_path / "h.pth"
    path.write_bytes(stream.getvalue())
    with pytest.raises(torch_pickle.UnsafePickleError):
        torch_pickle.load_state_dict(path)


@pytest.mark.parametrize("name,field", [("tiny_layer.caffemodel", "layer"),
                                        ("tiny_layers_v1.caffemodel", "layers")])
def test_caffe_reader_both_layer_fields(name, field):
    expected = np.load(fixture("tiny_caffe_expected.npz"))
    net, layers = caffe_proto.read_caffemodel(fixture(name))
    assert net == ("tiny-fcn" if field == "layer" else "tiny-fcn-v1")
    with_blobs = [layer for layer in layers if layer.blobs]
    assert [layer.name for layer in with_blobs] == ["conv1_1", "fc6", "upscore2", "fc_ip"]
    assert [layer.type for layer in with_blobs] == ["Convolution", "Convolution", "Deconvolution",
                                                    "InnerProduct"]
    assert all(layer.field == field and layer.bottom == ["data"] for layer in with_blobs)
    assert with_blobs[0].top == ["conv1_1"]
    for layer in with_blobs:
        for i, blob in enumerate(layer.blobs):
            want = expected[f"{field}/{layer.name}/{i}"]
            assert blob.shape == want.shape and blob.dtype == np.float32
            np.testing.assert_array_equal(blob, want)
    if field == "layer":  # layers without blobs are listed too
        assert [layer.type for layer in layers[:2]] == ["Input", "ReLU"]


def test_caffe_reader_refuses_other_files(tmp_path):
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\xff\xff\xff")
    with pytest.raises(ValueError, match="junk.caffemodel"):
        caffe_proto.read_caffemodel(junk)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"\x0a\x03net")  # a NetParameter with a name and no layer
    with pytest.raises(ValueError, match="no Caffe layers"):
        caffe_proto.read_caffemodel(empty)
    with pytest.raises(FileNotFoundError):
        caffe_proto.read_caffemodel(tmp_path / "missing.caffemodel")
