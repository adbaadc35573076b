"""Writes the fuzz targets' seed corpora (committed, ~40 KB) from the impasto-weights test fixtures.

Run from any folder with Python 3 (standard library only):

    python3 fuzz/seeds/make_seeds.py

  unpickle/             the data.pkl of each zip fixture, the state-dict pickle of the legacy one, and
                        a list appended to itself (a reference cycle the unpickler once leaked)
  pth/                  the .pth fixtures as they are, and a legacy checkpoint whose tensor repeats
                        one element 2^30 times through a zero stride (once a 4 GiB allocation)
  safetensors_weights/  one selector byte (bit 0: VGG-16/VGG-19; bits 1-2: the deepest layer, see
                        fuzz_targets/safetensors_weights.rs) then a safetensors file: a valid VGG
                        conv1_1, the same with an f16 bias, and the test fixture with tiny shapes
"""

import io
import json
import os
import pickletools
import struct
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "crates", "impasto-weights", "tests", "data")


def out(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def legacy_pickles(data):
    """The successive pickles at the start of a legacy checkpoint (magic, protocol, sys info, state dict, keys)."""
    f = io.BytesIO(data)
    pickles = []
    for _ in range(5):
        start = f.tell()
        for _ in pickletools.genops(f):
            pass
        pickles.append(data[start : f.tell()])
    return pickles


def safetensors(tensors, metadata):
    """A safetensors file: tensors is a list of (name, dtype, shape, raw bytes)."""
    header, blobs, offset = {}, [], 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def legacy_zero_stride_bomb():
    """A legacy checkpoint {"b": FloatStorage of 1 element viewed as shape (2^30,), stride (0,)}."""
    text = lambda t: b"X" + struct.pack("<I", len(t)) + t.encode()
    pid = b"(" + text("storage") + b"ctorch\nFloatStorage\n" + text("0") + text("cpu") + b"K\x01tQ"
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"K\x00(J" + struct.pack("<i", 1 << 30)
    tensor += b"t(K\x00t\x89tR"
    magic = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    head = magic + b"\x80\x02M\xe9\x03.\x80\x02}."
    state_dict = b"\x80\x02}" + text("b") + tensor + b"s."
    keys = b"\x80\x02(" + text("0") + b"l."
    return head + state_dict + keys + struct.pack("<Q", 1) + struct.pack("<f", 1.0)


def main():
    for name in sorted(os.listdir(DATA)):
        path = os.path.join(DATA, name)
        if not name.endswith(".pth"):
            continue
        raw = open(path, "rb").read()
        out("pth", name, raw)
        if raw[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(path) as z:
                pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                out("unpickle", name.replace(".pth", ".pkl"), z.read(pkl))
        elif name == "vgg_legacy.pth":
            out("unpickle", "vgg_legacy_state_dict.pkl", legacy_pickles(raw)[3])
        else:
            out("unpickle", name.replace(".pth", ".pkl"), raw)

    out("unpickle", "self_appended_list.pkl", b"\x80\x02]2a.")
    out("pth", "zero_stride_bomb.pth", legacy_zero_stride_bomb())

    # conv1_1 of VGG: weight [64, 3, 3, 3], bias [64], small deterministic values.
    w = struct.pack("<1728f", *[((i * 37) % 101 - 50) / 500.0 for i in range(1728)])
    b = struct.pack("<64f", *[i / 64.0 for i in range(64)])
    b16 = struct.pack("<64e", *[i / 64.0 for i in range(64)])
    meta = {"architecture": "vgg16", "preprocessing": "torch", "format": "impasto-conv"}
    conv = [("features.0.weight", "F32", [64, 3, 3, 3], w), ("features.0.bias", "F32", [64], b)]
    f16 = [conv[0], ("features.0.bias", "F16", [64], b16)]
    out("safetensors_weights", "vgg16_relu1_1", b"\x00" + safetensors(conv, meta))
    out("safetensors_weights", "vgg19_relu1_1_f16_bias", b"\x01" + safetensors(f16, {"input": "BGR"}))
    fixture = open(os.path.join(DATA, "expected.safetensors"), "rb").read()
    out("safetensors_weights", "vgg16_deepest_fixture", b"\x06" + fixture)


if __name__ == "__main__":
    main()
