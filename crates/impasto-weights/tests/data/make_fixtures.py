"""Writes the small PyTorch checkpoints the impasto-weights tests read.

Run by hand from this folder with a Python that has torch, numpy and safetensors:

    python make_fixtures.py

Outputs (a few KB each, committed):
  vgg_zip.pth        torch.save(sd, f)                                  (zip format, pickle protocol 2)
  vgg_zip_p4.pth     torch.save(sd, f, pickle_protocol=4)               (zip, FRAME/MEMOIZE/STACK_GLOBAL)
  vgg_legacy.pth     torch.save(sd, f, _use_new_zipfile_serialization=False)
  nested.pth         {"state_dict": sd, "epoch": 3, "param": nn.Parameter, "lr": 0.1} (zip)
  expected.safetensors   every tensor of sd (and of nested.pth, prefixed) as contiguous f32
  malicious_legacy.pth   a bare pickle whose GLOBAL is os.system, called by REDUCE
  malicious_zip.pth      a zip checkpoint whose data.pkl does the same via STACK_GLOBAL
"""

import collections
import io
import os
import zipfile

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def state_dict():
    g = torch.Generator().manual_seed(20240601)
    sd = collections.OrderedDict()
    # conv 1: plain contiguous f32, 3 → 4 channels
    sd["features.0.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    sd["features.0.bias"] = torch.randn(4, generator=g)
    # conv 2: a view with a storage offset into a larger storage, shared with classifier.1.weight
    big = torch.randn(5, 4, 3, 3, generator=g)
    sd["features.2.weight"] = big[1:]
    sd["features.2.bias"] = torch.randn(4, generator=g).half()  # an f16 tensor
    # conv 3: a non-contiguous (permuted) view, 4 → 6 channels, f64 bias
    sd["features.5.weight"] = torch.randn(3, 3, 4, 6, generator=g).permute(3, 2, 0, 1)
    sd["features.5.bias"] = torch.randn(6, generator=g, dtype=torch.float64)
    # what conversion must drop
    sd["classifier.0.weight"] = torch.randn(2, 6, generator=g)
    sd["classifier.0.bias"] = torch.randn(2, generator=g)
    sd["classifier.1.weight"] = big[0]
    assert not sd["features.5.weight"].is_contiguous()
    assert sd["features.2.weight"].storage_offset() == 36
    return sd


# A pickle that would run os.system("echo pwned") when unpickled by pickle.load.
MALICIOUS_P2 = b"\x80\x02cos\nsystem\nX\x0a\x00\x00\x00echo pwnedq\x00\x85q\x01Rq\x02."
MALICIOUS_P4 = (
    b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94\x8c\x0aecho pwned\x94\x85\x94R\x94."
)


def main():
    sd = state_dict()
    torch.save(sd, os.path.join(HERE, "vgg_zip.pth"))
    torch.save(sd, os.path.join(HERE, "vgg_zip_p4.pth"), pickle_protocol=4)
    torch.save(sd, os.path.join(HERE, "vgg_legacy.pth"), _use_new_zipfile_serialization=False)
    param = torch.nn.Parameter(torch.tensor([1.5, -2.25]))
    nested = {"state_dict": sd, "epoch": 3, "param": param, "lr": 0.1, "names": ["a", "b"]}
    torch.save(nested, os.path.join(HERE, "nested.pth"))

    expected = {k: v.float().contiguous().clone() for k, v in sd.items()}
    expected["param"] = param.detach().clone()
    save_file(expected, os.path.join(HERE, "expected.safetensors"), metadata={"torch": torch.__version__})

    with open(os.path.join(HERE, "malicious_legacy.pth"), "wb") as f:
        f.write(MALICIOUS_P2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", MALICIOUS_P4)
        z.writestr("archive/byteorder", "little")
    with open(os.path.join(HERE, "malicious_zip.pth"), "wb") as f:
        f.write(buf.getvalue())

    # Sanity: the real torch.load agrees with expected, and refuses the malicious files too.
    for name in ("vgg_zip.pth", "vgg_zip_p4.pth", "vgg_legacy.pth"):
        # torch's weights-only unpickler lacks FRAME (protocol 4); this file is our own, so trusted.
        got = torch.load(os.path.join(HERE, name), weights_only=name != "vgg_zip_p4.pth")
        for k, v in expected.items():
            if k != "param":
                assert torch.equal(got[k].float(), v), (name, k)
    for name in ("malicious_legacy.pth", "malicious_zip.pth"):
        try:
            torch.load(os.path.join(HERE, name), weights_only=True)
        except Exception:
            pass
        else:
            raise AssertionError(f"torch loaded {name}")


if __name__ == "__main__":
    main()
