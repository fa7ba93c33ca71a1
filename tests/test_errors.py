"""`segzoo.errors`: library messages name Python arguments; the CLI shows the flags."""

import pickle

import pytest

from segzoo.cli import build_parser, command_flags
from segzoo.errors import ArgumentError, MissingFileError, arg, argument_errors


def test_python_wording_and_flag_rendering():
    error = ArgumentError(f"{arg('quantize', 'int8')} needs {arg('calibration_data', 'NAME[:split]')} "
                          f"(and {arg('serving_layout', True)}, {arg('image_size', [256, 320])}, "
                          f"{arg('out', 'my dir')}, {arg('data_service', '')}, {arg('model_arg')})")
    assert isinstance(error, ValueError)
    assert str(error) == ("quantize='int8' needs calibration_data='NAME[:split]' (and "
                          "serving_layout=True, image_size=[256, 320], out='my dir', "
                          "data_service='', model_arg)")
    assert error.arguments == ("quantize", "calibration_data", "serving_layout", "image_size",
                               "out", "data_service", "model_arg")
    flags = {"quantize": "--quantize", "calibration_data": "--calibration-data",
             "serving_layout": "--serving-layout", "image_size": "--image-size", "out": "--out",
             "data_service": "--data-service"}
    # `True` is the bare switch, lists are comma-joined, shell-special text quoted; an
    # argument without a flag (model_arg here) keeps its Python name.
    assert error.render(flags) == ("--quantize int8 needs --calibration-data NAME[:split] (and "
                                   "--serving-layout, --image-size 256,320, --out 'my dir', "
                                   "--data-service '', model_arg)")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is ArgumentError and again.render(flags) == error.render(flags)


def test_missing_file_error_is_a_file_not_found_error():
    error = MissingFileError(f"{arg('weights', '/x/r18.pth')} does not exist")
    assert isinstance(error, FileNotFoundError) and str(error) == "weights='/x/r18.pth' does not exist"
    assert error.render({"weights": "--weights"}) == "--weights /x/r18.pth does not exist"


def test_control_characters_of_values_cannot_break_the_marks():
    error = ArgumentError(f"{arg('tta', 'a' + chr(0x1d) + 'b')} is odd")
    assert "\x1d" not in str(error) and error.render({"tta": "--tta"}) == "--tta ab is odd"
    with pytest.raises(ValueError, match="Python identifier"):
        arg("--tta")


def test_argument_errors_are_found_through_chained_errors():
    inner = ArgumentError(f"{arg('tile_size')} must be positive")
    try:
        try:
            raise inner
        except ArgumentError as error:
            raise ValueError(f"predicting: {error}") from error
    except ValueError as outer:
        assert argument_errors(outer) == [inner]


def test_command_flags_come_from_the_parser_dests():
    parser = build_parser()
    export = command_flags(parser, "export")
    assert export["calibration_data"] == "--calibration-data" and export["quantize"] == "--quantize"
    assert export["serving_layout"] == "--serving-layout" and "tile_size" not in export
    assert command_flags(parser, "convert")["source"] == "--from"
    assert command_flags(parser, "predict")["tile_size"] == "--tile"
    assert command_flags(parser, "weights")["file"] == "--file"  # `weights get --file`
    assert command_flags(parser, "train")["data_service"] == "--data-service"
