"""Bad cfg input gets a CfgError naming the file and the line; fuzzing never escapes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import DARKNET_CFGS, YOLO_FASTEST
from hypothesis import given, settings
from hypothesis import strategies as st

from deepthings.darknet import load_darknet, network_from_cfg_text
from deepthings.errors import CfgError, DeepthingsError

NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"
CONV = "[convolutional]\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"


def _load(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    return path


def _line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def _expect(tmp_path: Path, text: str, line_needle: str, *words: str) -> str:
    path = _load(tmp_path, text)
    with pytest.raises(CfgError) as info:
        load_darknet(path)
    msg = str(info.value)
    assert f"{path}:{_line_of(text, line_needle)}:" in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_unknown_layer_type_names_type_and_line(tmp_path: Path) -> None:
    text = NET + CONV + "\n[frobnicate]\nsize=3\n"
    _expect(tmp_path, text, "[frobnicate]", "unknown layer type [frobnicate]", "layer 1")


def test_missing_key_route_layers(tmp_path: Path) -> None:
    text = NET + CONV + "[route]\ngroups=1\n"
    _expect(tmp_path, text, "[route]", "missing required key 'layers'")


def test_missing_net_width(tmp_path: Path) -> None:
    text = "[net]\nheight=32\n" + CONV
    _expect(tmp_path, text, "[net]", "missing required key 'width'")


def test_bad_integer_value(tmp_path: Path) -> None:
    text = NET + CONV.replace("filters=8", "filters=eight")
    _expect(tmp_path, text, "filters=eight", "'filters' must be an integer", "eight")


def test_bad_float_value(tmp_path: Path) -> None:
    text = NET + "[dropout]\nprobability=lots\n"
    _expect(tmp_path, text, "probability=", "'probability' must be a number")


def test_unknown_activation(tmp_path: Path) -> None:
    text = NET + CONV.replace("leaky", "sparkly")
    _expect(tmp_path, text, "activation=sparkly", "unknown activation 'sparkly'")


@pytest.mark.parametrize("ref", ["-5", "3", "1"])
def test_route_to_missing_layer(tmp_path: Path, ref: str) -> None:
    text = NET + CONV + "[route]\nlayers=" + ref + "\n"
    _expect(tmp_path, text, "layers=", "'layers' refers to layer", "does not exist")


def test_route_of_different_map_sizes(tmp_path: Path) -> None:
    text = NET + CONV + "[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n"
    _expect(tmp_path, text, "layers=-1,-2", "different map sizes")


def test_shortcut_of_mismatched_shapes(tmp_path: Path) -> None:
    # 32x32 vs 11x11 (stride 3 conv): not an integer factor apart -> Darknet would assert.
    text = NET + CONV + "[convolutional]\nfilters=8\nsize=3\nstride=3\npad=1\n[shortcut]\nfrom=-2\n"
    msg = _expect(tmp_path, text, "from=-2", "shapes differ", "(8, 32, 32)", "(8, 11, 11)")
    assert "layer 1" in msg and "layer 0" in msg


def test_shortcut_with_integer_factor_is_darknet_sampling(tmp_path: Path) -> None:
    """Darknet's shortcut accepts maps an integer factor apart (resnet18 needs it)."""
    text = NET + CONV + "[convolutional]\nfilters=16\nsize=3\nstride=2\npad=1\n[shortcut]\nfrom=-2\n"
    net = load_darknet(_load(tmp_path, text))
    assert net.layers[2].out_shape == (16, 16, 16)
    assert net.layers[2].spatial.kind == "global"


def test_groups_must_divide_channels(tmp_path: Path) -> None:
    text = NET + CONV.replace("filters=8", "filters=8\ngroups=2")
    _expect(tmp_path, text, "groups=2", "layer 0 [convolutional] groups=2 must divide")


def test_head_channel_mismatch(tmp_path: Path) -> None:
    text = NET + CONV + "[yolo]\nmask=0,1\nnum=3\nclasses=2\nanchors=1,1,2,2,3,3\n"
    _expect(tmp_path, text, "[yolo]", "expected 2 anchors x 7 = 14")


def test_output_map_too_small(tmp_path: Path) -> None:
    text = "[net]\nwidth=2\nheight=2\n[convolutional]\nfilters=1\nsize=5\nstride=1\n"
    _expect(tmp_path, text, "[convolutional]", "is empty")


def test_first_section_must_be_net(tmp_path: Path) -> None:
    _expect(tmp_path, CONV + NET, "[convolutional]", "must be [net]")


def test_option_before_section(tmp_path: Path) -> None:
    _expect(tmp_path, "width=3\n" + NET + CONV, "width=3", "before the first [section]")


def test_malformed_header_and_line(tmp_path: Path) -> None:
    _expect(tmp_path, NET + "[convolutional\n", "[convolutional", "malformed section header")
    _expect(tmp_path, NET + CONV + "just words\n", "just words", "expected 'key=value'")


def test_crop_larger_than_input(tmp_path: Path) -> None:
    text = NET + "[crop]\ncrop_height=40\ncrop_width=20\n"
    _expect(tmp_path, text, "[crop]", "larger than the 32x32 input")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(CfgError, match="cfg file not found"):
        load_darknet(tmp_path / "nope.cfg")
    with pytest.raises(CfgError, match="is a directory"):
        load_darknet(tmp_path)
    binary = tmp_path / "bin.cfg"
    binary.write_bytes(b"[net]\n\xff\xfe\x00")
    with pytest.raises(CfgError, match=re.escape(str(binary)) + ".*not a text cfg"):
        load_darknet(binary)


def test_text_errors_name_the_given_name() -> None:
    with pytest.raises(CfgError, match=r"^model\.cfg:2: "):
        network_from_cfg_text(NET.replace("width=32", "width=x") + CONV, name="model.cfg")


def test_comments_blank_lines_and_spaces_are_ignored() -> None:
    text = "# header\n[net]\n width = 16 \n;c\nheight=16\n\n[convolutional]\nfilters = 4\nsize=1\n"
    net = network_from_cfg_text(text)
    assert net.layers[0].out_shape == (4, 16, 16)
    assert net.layers[0].activation == "logistic"  # Darknet's default for conv


# ----- fuzzing ------------------------------------------------------------------------
REAL_TEXTS = [p.read_text() for p in [DARKNET_CFGS / "yolov3-tiny.cfg", DARKNET_CFGS / "yolov2-tiny.cfg",
                                      YOLO_FASTEST / "yolo-fastest-1.1.cfg"]]
TOKENS = ["[net]", "[convolutional]", "[maxpool]", "[route]", "[shortcut]", "[upsample]",
          "[yolo]", "[region]", "[reorg]", "[avgpool]", "[connected]", "[softmax]", "[crop]",
          "[dropout]", "[cost]", "[", "]", "=", ",", "\n", "#", "width=", "height=", "channels=",
          "filters=", "size=", "stride=", "pad=", "padding=", "groups=", "layers=", "from=",
          "mask=", "anchors=", "classes=", "num=", "output=", "activation=", "leaky", "-1",
          "-4", "0", "1", "2", "3", "7", "64", "-", "x", "1e9", "nan", "99999999999"]


def _try(text: str) -> None:
    try:
        net = network_from_cfg_text(text, random_seed=None, name="fuzz.cfg")
    except DeepthingsError:
        return
    # Whatever parses must have consistent, positive shapes.
    for layer in net.layers:
        assert min(layer.out_shape) >= 1


@settings(max_examples=60)
@given(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_fuzz_token_soup(text: str) -> None:
    """Random cfg-like text: only deepthings errors ever escape the parser."""
    _try(text)


@settings(max_examples=40)
@given(
    st.sampled_from(range(len(REAL_TEXTS))),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40), st.sampled_from(TOKENS + ["", "9"])),
             min_size=1, max_size=6),
)
def test_fuzz_mutated_real_cfgs(which: int, edits: list[tuple[int, int, str]]) -> None:
    """Real cfgs with random deletions/insertions: only deepthings errors escape."""
    text = REAL_TEXTS[which]
    for pos, length, insert in edits:
        pos %= len(text) + 1
        text = text[:pos] + insert + text[pos + length :]
    # Big input sizes would only make the test slow; shapes are what is being checked.
    text = re.sub(r"(width|height)\s*=\s*\d+", r"\1=64", text)
    _try(text)


@settings(max_examples=30)
@given(st.text(max_size=200))
def test_fuzz_arbitrary_unicode(text: str) -> None:
    """Arbitrary text: only deepthings errors escape."""
    _try(text)


@pytest.mark.parametrize("flag", ["binary", "xnor", "antialiasing", "flipped"])
def test_math_changing_conv_flags_are_refused(tmp_path: Path, flag: str) -> None:
    text = NET + CONV.replace("size=3", f"size=3\n{flag}=1")
    _expect(tmp_path, text, f"{flag}=1", f"{flag}=1 is not supported", "layer 0")
