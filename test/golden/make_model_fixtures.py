#!/usr/bin/env python3
"""
make_model_fixtures.py -- small checkpoint files for the engine's readers of
safetensors (src/core/safetensors.c) and pytorch_model.bin
(src/core/torch_pickle.c), written by the real libraries, plus the float32
values those libraries say each tensor holds.

Run from the repository root:

    python3 test/golden/make_model_fixtures.py

It writes test/fixtures/models/ (about 40 KB) and test/fuzz/corpus/ (about
30 KB).  It needs torch, numpy and safetensors (PyPI) and is meant for
developer machines only: the build and the tests only read what it wrote.
The random values are seeded, but torch and safetensors put
version-dependent bytes in their files (zip padding, serialization ids), so
a rerun may change the files, never the values.

Files
-----
dtypes.safetensors           F32, F16, BF16, F64 tensors with the special
                             values (subnormals, +-inf, NaN, -0, extremes),
                             a scalar, an empty tensor, an I32 tensor (which
                             the reader must refuse to convert), __metadata__
sharded/                     model-0000{1,2}-of-00002.safetensors and
                             model.safetensors.index.json (safetensors'
                             save_file + an index written as transformers
                             writes it); bad_*.index.json: a tensor missing
                             from its shard, a shard path escaping the folder
torch_f32.bin                torch.save of a state dict: an nn.Module's
torch_f16.bin                (Linear + LayerNorm, with _metadata), a storage
torch_bf16.bin               shared by two tensors (a view at an offset), a
                             transposed (non-contiguous) weight, a scalar and
                             an int64 counter; one file per float dtype
torch_proto4.bin             torch_f32's dict saved with pickle_protocol=4
torch_zip64_prefix.bin       torch_f32.bin's entries re-zipped by hand under
                             the folder "my model", every size and offset in
                             ZIP64 extra fields
expected.txt                 per tensor: file, name, dtype, shape, then the
                             float32 bit patterns torch gives for
                             t.contiguous().float() (hex, row-major)
corrupt/                     files every reader must reject with an error:
  truncated.safetensors      dtypes.safetensors cut short
  header_past_end.safetensors header length larger than the file
  huge_header.safetensors    header length 2^40
  bad_dtype.safetensors      dtype "F31"
  overlap.safetensors        two tensors' data_offsets overlap
  not_utf8.safetensors       invalid UTF-8 in the header
  truncated.bin              torch_f32.bin cut short (no end record)
  compressed.bin             torch_f32.bin's entries DEFLATE-compressed
  legacy.bin                 torch.save(_use_new_zipfile_serialization=False)
  bad_global.bin             data.pkl calling os.system("echo pwned")
  short_storage.bin          a storage entry shorter than its pickle says

It also writes the fuzzers' seed corpora, test/fuzz/corpus/<target>/, from
these files: JSON documents (the indexes, the safetensors headers, a few
written here), the safetensors files, the torch files, and their data.pkl
pickles alone (fuzz_pickle wraps its input in an archive itself).
"""
import json
import os
import struct
import zipfile
import zlib

import numpy as np
import torch
from safetensors.torch import save_file

OUT = os.path.join("test", "fixtures", "models")


def bits_hex(t):
    """float32 bit patterns of t as torch converts it, row-major."""
    a = t.detach().contiguous().float().numpy().reshape(-1)
    return [f"{v:08x}" for v in a.view(np.uint32)]


def expect_line(file, name, t):
    dtype = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
             torch.float64: "F64"}[t.dtype]
    dims = " ".join(str(d) for d in t.shape)
    return f"{file} {name} {dtype} {t.dim()} {dims} : {' '.join(bits_hex(t))}".replace("  ", " ")


def special_values(dtype):
    fi = torch.finfo(dtype)
    vals = [0.0, -0.0, 1.0, -2.5, float("inf"), float("-inf"), float("nan"),
            fi.max, -fi.max, fi.tiny, fi.tiny / 2, fi.tiny / 8]
    if dtype == torch.float16:
        vals += [2.0 ** -24, -(2.0 ** -24), 65504.0, 0.1, 1023 * 2.0 ** -24]
    return torch.tensor(vals, dtype=torch.float64).to(dtype)


def dtypes_file(g, lines):
    tensors = {
        "f32.matrix": torch.randn(3, 4, generator=g),
        "f32.special": special_values(torch.float32),
        "f16.vector": special_values(torch.float16),
        "f16.matrix": torch.randn(2, 3, generator=g).half(),
        "bf16.matrix": torch.randn(2, 5, generator=g).bfloat16(),
        "bf16.special": special_values(torch.bfloat16),
        "f64.vector": torch.tensor([0.1, -1e300, 1e300, 1e-50, float("nan"), 3.4028235677973366e38,
                                    3.4028235677973362e38, -7.25], dtype=torch.float64),
        "f32.scalar": torch.tensor(3.5),
        "f32.empty": torch.zeros(0, 3),
        "i32.ids": torch.tensor([1, 2, 3, 4], dtype=torch.int32),
    }
    save_file(tensors, os.path.join(OUT, "dtypes.safetensors"),
              metadata={"format": "pt", "note": "fixture"})
    for name, t in sorted(tensors.items()):
        if t.dtype != torch.int32:
            lines.append(expect_line("dtypes.safetensors", name, t))


def sharded_files(g, lines):
    d = os.path.join(OUT, "sharded")
    os.makedirs(d, exist_ok=True)
    shards = [
        {"a.weight": torch.randn(4, 3, generator=g), "a.bias": torch.randn(4, generator=g)},
        {"b.weight": torch.randn(2, 4, generator=g).half(), "b.bias": torch.randn(2, generator=g).bfloat16()},
    ]
    weight_map = {}
    total = 0
    for i, tensors in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, os.path.join(d, fname), metadata={"format": "pt"})
        for name, t in sorted(tensors.items()):
            weight_map[name] = fname
            total += t.numel() * t.element_size()
            lines.append(expect_line("sharded/" + fname, name, t))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    bad = dict(weight_map, **{"c.weight": "model-00001-of-00002.safetensors"})
    with open(os.path.join(d, "bad_missing.index.json"), "w") as f:
        json.dump({"weight_map": bad}, f, indent=2)
    bad = dict(weight_map, **{"a.weight": "../dtypes.safetensors"})
    with open(os.path.join(d, "bad_escape.index.json"), "w") as f:
        json.dump({"weight_map": bad}, f, indent=2)


def state_dict(g, dtype):
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    sd = m.to(dtype).state_dict()
    base = torch.randn(12, generator=g).to(dtype)
    sd["shared.base"] = base
    sd["shared.view"] = base[2:8].view(2, 3)
    sd["transposed"] = torch.randn(3, 4, generator=g).to(dtype).t()
    sd["scalar"] = torch.tensor(-1.25, dtype=dtype)
    sd["steps"] = torch.tensor(7, dtype=torch.int64)
    assert not sd["transposed"].is_contiguous()
    return sd


def torch_files(g, lines):
    for tag, dtype in (("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)):
        sd = state_dict(g, dtype)
        fname = f"torch_{tag}.bin"
        torch.save(sd, os.path.join(OUT, fname))
        for name, t in sorted(sd.items()):
            if t.dtype != torch.int64:
                lines.append(expect_line(fname, name, t))
        if tag == "f32":
            torch.save(sd, os.path.join(OUT, "torch_proto4.bin"), pickle_protocol=4)
            for name, t in sorted(sd.items()):
                if t.dtype != torch.int64:
                    lines.append(expect_line("torch_proto4.bin", name, t))
                    lines.append(expect_line("torch_zip64_prefix.bin", name, t))


def write_zip64(path, entries):
    """A STORED zip whose central directory keeps every size and offset in
    ZIP64 extra fields (0xffffffff in the 32-bit fields), ended by a ZIP64
    end record and locator, as large torch archives are."""
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        nb = name.encode()
        crc = zlib.crc32(data)
        offset = len(out)
        local_extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0, crc,
                           0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(local_extra)) + nb + local_extra + data
        extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0, crc,
                               0xFFFFFFFF, 0xFFFFFFFF, len(nb), len(extra), 0, 0, 0, 0,
                               0xFFFFFFFF) + nb + extra
    cd_offset = len(out)
    out += central
    z64 = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries),
                       len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, z64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(path, "wb") as f:
        f.write(out)


def rezip(src, dst, prefix=None, compress=zipfile.ZIP_STORED, replace=None):
    """src's entries into dst: under a new folder, compressed, or with one entry's bytes replaced."""
    with zipfile.ZipFile(src) as zin:
        entries = []
        for info in zin.infolist():
            name = info.filename
            if prefix is not None:
                name = prefix + name[name.index("/"):]
            data = zin.read(info)
            if replace and info.filename.endswith(replace[0]):
                data = replace[1](data)
            entries.append((name, data))
    if dst.endswith("zip64_prefix.bin"):
        write_zip64(dst, entries)
        with zipfile.ZipFile(dst) as z:     # Python's reader agrees with ours on the layout
            assert [(i.filename, z.read(i)) for i in z.infolist()] == entries
        return
    with zipfile.ZipFile(dst, "w", compression=compress) as zout:
        for name, data in entries:
            zout.writestr(name, data)


def safetensors_corrupt(d):
    with open(os.path.join(OUT, "dtypes.safetensors"), "rb") as f:
        good = f.read()
    n = struct.unpack("<Q", good[:8])[0]
    header = good[8:8 + n]

    def put(name, data):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

    def with_header(h):
        h = h + b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h

    put("truncated.safetensors", good[:len(good) - 10])
    put("header_past_end.safetensors", struct.pack("<Q", len(good)) + good[8:])
    put("huge_header.safetensors", struct.pack("<Q", 1 << 40) + good[8:])
    put("bad_dtype.safetensors", good[:8] + header.replace(b'"F32"', b'"F31"', 1) + good[8 + n:])
    put("overlap.safetensors",
        with_header(b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                    b'"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}') + bytes(12))
    put("not_utf8.safetensors",
        with_header(b'{"a\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}') + bytes(4))


def torch_corrupt(d, g):
    src = os.path.join(OUT, "torch_f32.bin")
    with open(src, "rb") as f:
        good = f.read()
    with open(os.path.join(d, "truncated.bin"), "wb") as f:
        f.write(good[:len(good) // 2])
    rezip(src, os.path.join(d, "compressed.bin"), compress=zipfile.ZIP_DEFLATED)
    torch.save({"w": torch.randn(2, generator=g)}, os.path.join(d, "legacy.bin"),
               _use_new_zipfile_serialization=False)
    # GLOBAL os.system, then REDUCE with ("echo pwned",): what a malicious pickle does
    evil = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03."
    with zipfile.ZipFile(os.path.join(d, "bad_global.bin"), "w") as z:
        z.writestr("archive/data.pkl", evil)
        z.writestr("archive/version", "3\n")
    rezip(src, os.path.join(d, "short_storage.bin"), replace=("/data/0", lambda b: b[:-4]))


def fuzz_seeds():
    root = os.path.join("test", "fuzz", "corpus")
    seeds = {"json": {}, "safetensors": {}, "torch": {}, "pickle": {}}
    for rel in ("dtypes.safetensors", "sharded/model-00001-of-00002.safetensors",
                "sharded/model-00002-of-00002.safetensors", "corrupt/overlap.safetensors",
                "corrupt/not_utf8.safetensors", "corrupt/bad_dtype.safetensors"):
        with open(os.path.join(OUT, rel), "rb") as f:
            data = f.read()
        seeds["safetensors"][rel.replace("/", "_")] = data
        n = struct.unpack("<Q", data[:8])[0]
        if n < len(data):
            seeds["json"][rel.replace("/", "_") + ".header.json"] = data[8:8 + n]
    for rel in ("sharded/model.safetensors.index.json", "sharded/bad_escape.index.json"):
        with open(os.path.join(OUT, rel), "rb") as f:
            seeds["json"][rel.replace("/", "_")] = f.read()
    seeds["json"]["values.json"] = '{"a":[1,-0,2.5e-3,"\\u00e9\\ud83d\\ude00\\n",true,false,null],"b":{}}'.encode()
    seeds["json"]["tokenizer.json"] = '{"model":{"vocab":{"a":0,"\\u0120b":1},"merges":["a b"]}}'.encode()
    seeds["json"]["nested.json"] = b"[[[[{\"x\":[]}]]]]"
    for rel in ("torch_f32.bin", "torch_bf16.bin", "torch_proto4.bin", "torch_zip64_prefix.bin",
                "corrupt/bad_global.bin", "corrupt/compressed.bin", "corrupt/legacy.bin"):
        with open(os.path.join(OUT, rel), "rb") as f:
            seeds["torch"][rel.replace("/", "_")] = f.read()
        if zipfile.is_zipfile(os.path.join(OUT, rel)):
            with zipfile.ZipFile(os.path.join(OUT, rel)) as z:
                pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
                seeds["pickle"][rel.replace("/", "_") + ".pkl"] = z.read(pkl)
    for target, files in seeds.items():
        os.makedirs(os.path.join(root, target), exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(root, target, name), "wb") as f:
                f.write(data)


def main():
    g = torch.Generator().manual_seed(20240601)
    os.makedirs(os.path.join(OUT, "corrupt"), exist_ok=True)
    lines = []
    dtypes_file(g, lines)
    sharded_files(g, lines)
    torch_files(g, lines)
    rezip(os.path.join(OUT, "torch_f32.bin"), os.path.join(OUT, "torch_zip64_prefix.bin"),
          prefix="my model")
    safetensors_corrupt(os.path.join(OUT, "corrupt"))
    torch_corrupt(os.path.join(OUT, "corrupt"), g)
    fuzz_seeds()
    with open(os.path.join(OUT, "expected.txt"), "w") as f:
        f.write("# file tensor dtype ndim dims... : float32 bits (hex) of t.contiguous().float()\n")
        f.write("\n".join(lines) + "\n")
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total} bytes, {len(lines)} expected tensors)")


if __name__ == "__main__":
    main()
