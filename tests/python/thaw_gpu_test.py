"""Tests of runtimes/python3/lib/thaw_gpu.py on the CPU (run by tests/gpu_loader_test.cc with
Debian's /usr/bin/python3 and its torch): the byte layout against safetensors' spec (files
built by hand here, not by the module), round trips of every dtype and odd shapes, chunk
boundaries that cut tensors anywhere, several reader threads, sharded folders, store names,
and every malformed file refused with a message naming the problem."""
import json
import os
import struct
import sys
import tempfile
import unittest

import torch

sys.path.insert(0, os.environ.get("THAW_GPU_LIB", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "runtimes", "python3", "lib")))
import thaw_gpu  # noqa: E402

# Chunk sizes: 1 byte, primes that straddle tensors, one tensor's size, larger than the file.
CHUNKS = (1, 7, 13, 64, 1000, 1 << 20)


def sample():
    g = torch.Generator().manual_seed(7)
    return {
        "f32": torch.randn(3, 5, generator=g),
        "f16": torch.randn(4, 7, generator=g).half(),
        "bf16": torch.randn(9, generator=g).bfloat16(),
        "f64": torch.randn(2, 2, 2, generator=g, dtype=torch.float64),
        "i64": torch.arange(-5, 6, dtype=torch.int64),
        "i32": torch.tensor([[1, -2], [3, 2**31 - 1]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "wide": torch.randn(1, 1, 1, 33, generator=g),
    }


def spec_file(path, entries, pad=True, raw_header=None):
    """A safetensors file built from the spec alone: entries are (name, dtype name, shape,
    bytes), laid out in the given order."""
    header, blob = {}, b""
    for name, dname, shape, data in entries:
        header[name] = {"dtype": dname, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    raw = raw_header if raw_header is not None else json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + blob)


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def assertSame(self, got, want):
        self.assertEqual(sorted(got), sorted(want))
        for k, t in want.items():
            self.assertEqual(got[k].dtype, t.dtype, k)
            self.assertEqual(tuple(got[k].shape), tuple(t.shape), k)
            self.assertTrue(torch.equal(got[k], t), k)


class Format(Base):
    def test_save_writes_the_spec_layout(self):
        t = sample()
        thaw_gpu.save(t, self.path("a.safetensors"), metadata={"format": "pt"})
        data = open(self.path("a.safetensors"), "rb").read()
        (n,) = struct.unpack("<Q", data[:8])
        self.assertEqual((8 + n) % 8, 0)  # padded with spaces to 8 bytes
        header = json.loads(data[8:8 + n].decode())
        self.assertEqual(header.pop("__metadata__"), {"format": "pt"})
        names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                 torch.float64: "F64", torch.int64: "I64", torch.int32: "I32",
                 torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
        body = data[8 + n:]
        spans = []
        for name, tensor in t.items():
            info = header[name]
            self.assertEqual(info["dtype"], names[tensor.dtype], name)
            self.assertEqual(info["shape"], list(tensor.shape), name)
            b, e = info["data_offsets"]
            spans.append((b, e))
            # Raw little-endian row-major bytes, aligned to the element size.
            want = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() \
                if tensor.numel() else b""
            self.assertEqual(body[b:e], want, name)
            self.assertEqual(b % tensor.element_size(), 0, name)
        spans.sort()
        self.assertEqual(spans[0][0], 0)
        self.assertEqual(spans[-1][1], len(body))
        for (_, e), (b, _) in zip(spans, spans[1:]):
            self.assertEqual(e, b)

    def test_loads_a_file_built_from_the_spec(self):
        # Unaligned on purpose: an odd-length I8 first puts the F32 at byte 3 (a copy, not a
        # view) and no padding after the header.
        f32 = struct.pack("<4f", 1.5, -2.0, 0.25, 1024.0)
        entries = [("b", "I8", [3], bytes([1, 0xFF, 0x80])), ("a", "F32", [2, 2], f32),
                   ("h", "F16", [1], struct.pack("<e", -0.5)),
                   ("bf", "BF16", [2], bytes([0x80, 0x3F, 0x00, 0xC0])),
                   ("q", "I64", [], struct.pack("<q", -(2**40))),
                   ("t", "BOOL", [2], bytes([1, 0]))]
        p = self.path("spec.safetensors")
        for pad in (True, False):
            spec_file(p, entries, pad=pad)
            for chunk in CHUNKS:
                got = thaw_gpu.load(p, device="cpu", chunk_bytes=chunk, threads=3)
                self.assertEqual(got["b"].tolist(), [1, -1, -128])
                self.assertEqual(got["a"].tolist(), [[1.5, -2.0], [0.25, 1024.0]])
                self.assertEqual(got["h"].tolist(), [-0.5])
                self.assertEqual(got["bf"].tolist(), [1.0, -2.0])
                self.assertEqual(got["q"].shape, torch.Size([]))
                self.assertEqual(got["q"].item(), -(2**40))
                self.assertEqual(got["t"].tolist(), [True, False])

    def test_header_lists_what_load_returns(self):
        thaw_gpu.save({"x": torch.ones(2, 3)}, self.path("h.safetensors"), {"k": "v"})
        meta, tensors = thaw_gpu.read_header(self.path("h.safetensors"))
        self.assertEqual(meta, {"k": "v"})
        self.assertEqual(tensors, {"x": (torch.float32, (2, 3), (0, 24))})


class RoundTrip(Base):
    def test_every_dtype_and_shape_at_every_chunk_size(self):
        t = sample()
        p = self.path("rt.safetensors")
        thaw_gpu.save(t, p)
        for chunk in CHUNKS:
            for threads in (1, 4):
                stats = {}
                got = thaw_gpu.load(p, device="cpu", chunk_bytes=chunk, threads=threads,
                                    stats=stats)
                self.assertSame(got, t)
                with open(p, "rb") as f:
                    data = os.path.getsize(p) - 8 - struct.unpack("<Q", f.read(8))[0]
                self.assertEqual(stats["bytes"], data)
                self.assertEqual(stats["chunks"], -(-data // chunk))
                self.assertEqual(stats["files"], 1)

    def test_views_share_one_buffer_and_are_writable(self):
        p = self.path("v.safetensors")
        thaw_gpu.save({"a": torch.ones(4), "b": torch.zeros(3)}, p)
        got = thaw_gpu.load(p, device="cpu")
        self.assertEqual(got["a"].untyped_storage().data_ptr()
                         if hasattr(got["a"], "untyped_storage")
                         else got["a"].storage().data_ptr(),
                         got["b"].untyped_storage().data_ptr()
                         if hasattr(got["b"], "untyped_storage")
                         else got["b"].storage().data_ptr())
        got["a"].add_(1)  # a model may train on it
        self.assertEqual(got["a"].tolist(), [2.0] * 4)
        self.assertEqual(got["b"].tolist(), [0.0] * 3)

    def test_non_contiguous_and_gradients_save_as_plain_data(self):
        base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
        t = {"tr": base.t(), "slice": base[:, 1], "grad": torch.ones(2, requires_grad=True)}
        p = self.path("nc.safetensors")
        thaw_gpu.save(t, p)
        got = thaw_gpu.load(p, device="cpu", chunk_bytes=5)
        self.assertTrue(torch.equal(got["tr"], base.t()))
        self.assertTrue(torch.equal(got["slice"], base[:, 1]))
        self.assertFalse(got["grad"].requires_grad)

    def test_all_empty_and_no_tensors(self):
        for t in ({"e": torch.zeros(0)}, {}):
            p = self.path("e.safetensors")
            thaw_gpu.save(t, p)
            self.assertSame(thaw_gpu.load(p, device="cpu"), t)

    def test_a_large_file_in_many_chunks(self):
        t = {f"layer{i}": torch.randn(256, 1000).half() for i in range(6)}
        p = self.path("big.safetensors")
        thaw_gpu.save(t, p)
        self.assertSame(thaw_gpu.load(p, device="cpu", chunk_bytes=100_003, threads=4), t)


class Names(Base):
    def test_folder_shards_and_store_names(self):
        os.makedirs(self.path("m/sub"))
        thaw_gpu.save({"a": torch.ones(2)}, self.path("m/model-00001.safetensors"))
        thaw_gpu.save({"b": torch.zeros(3)}, self.path("m/sub/model-00002.safetensors"))
        with open(self.path("m/config.json"), "w") as f:
            f.write("{}")
        want = {"a": torch.ones(2), "b": torch.zeros(3)}
        self.assertSame(thaw_gpu.load(self.path("m"), device="cpu"), want)
        os.environ["THAW_MODEL_MY_LLM"] = self.path("m")
        self.addCleanup(os.environ.pop, "THAW_MODEL_MY_LLM")
        self.assertSame(thaw_gpu.load("my-llm", device="cpu"), want)
        self.assertSame(thaw_gpu.load("my-llm/sub/model-00002.safetensors", device="cpu"),
                        {"b": torch.zeros(3)})
        with self.assertRaisesRegex(FileNotFoundError, "THAW_MODEL_OTHER is unset"):
            thaw_gpu.load("other", device="cpu")
        with self.assertRaisesRegex(FileNotFoundError, "no 'nope' in model my-llm"):
            thaw_gpu.load("my-llm/nope", device="cpu")

    def test_a_tensor_in_two_shards_is_refused(self):
        os.makedirs(self.path("d"))
        thaw_gpu.save({"a": torch.ones(2)}, self.path("d/1.safetensors"))
        thaw_gpu.save({"a": torch.ones(2)}, self.path("d/2.safetensors"))
        with self.assertRaisesRegex(ValueError, "tensor a is also in an earlier file"):
            thaw_gpu.load(self.path("d"), device="cpu")
        os.makedirs(self.path("none"))
        with self.assertRaisesRegex(FileNotFoundError, "no .safetensors file"):
            thaw_gpu.load(self.path("none"), device="cpu")


class Refusals(Base):
    def refused(self, pattern, content=None, entries=None, **kw):
        p = self.path("bad.safetensors")
        if content is not None:
            with open(p, "wb") as f:
                f.write(content)
        else:
            spec_file(p, entries, **kw)
        with self.assertRaisesRegex(ValueError, pattern):
            thaw_gpu.load(p, device="cpu")

    def test_malformed_files(self):
        one = [("x", "F32", [1], b"\0" * 4)]
        self.refused("too short", content=b"\1\0")
        self.refused("over the 100000000-byte limit", content=struct.pack("<Q", 10**9) + b"{}")
        self.refused("runs past the end", content=struct.pack("<Q", 100) + b"{}")
        self.refused("does not start with", entries=[], raw_header=b"[]")
        self.refused("not JSON", entries=[], raw_header=b"{nope")
        self.refused("not JSON", entries=[], raw_header=b"{\"a\": \xff}")
        self.refused("x: dtype 'F128': unknown", entries=[("x", "F128", [1], b"\0" * 16)])
        self.refused("shape must be", entries=[("x", "F32", [-1], b"")])
        self.refused("x: 4 bytes, but F32 \\[2\\] needs 8", entries=[("x", "F32", [2], b"\0" * 4)])
        self.refused("__metadata__ must map", entries=[],
                     raw_header=b'{"__metadata__": {"a": 1}}')
        self.refused("data_offsets must be", entries=[],
                     raw_header=b'{"x": {"dtype": "U8", "shape": [1], "data_offsets": [1, 0]}}')
        # A hole, an overlap, trailing bytes, and a file cut short.
        hole = b'{"x":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}'
        self.refused("a hole", content=struct.pack("<Q", len(hole)) + hole + b"\0\0")
        lap = (b'{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
               b'"y":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}')
        self.refused("an overlap", content=struct.pack("<Q", len(lap)) + lap + b"\0\0\0")
        p = self.path("ok.safetensors")
        spec_file(p, one)
        whole = open(p, "rb").read()
        self.refused("cover 4 bytes, the data is 5", content=whole + b"\0")
        self.refused("cover 4 bytes, the data is 3", content=whole[:-1])

    def test_bad_arguments(self):
        p = self.path("ok.safetensors")
        thaw_gpu.save({"x": torch.ones(1)}, p)
        with self.assertRaisesRegex(ValueError, "only cpu and cuda"):
            thaw_gpu.load(p, device="meta")
        with self.assertRaisesRegex(ValueError, "must be >= 1"):
            thaw_gpu.load(p, device="cpu", chunk_bytes=0)
        if not torch.cuda.is_available():
            with self.assertRaisesRegex(ValueError, "CUDA is not available"):
                thaw_gpu.load(p, device="cuda")
        with self.assertRaisesRegex(ValueError, "reserved"):
            thaw_gpu.save({"__metadata__": torch.ones(1)}, p)
        with self.assertRaisesRegex(ValueError, "takes {name: tensor}"):
            thaw_gpu.save({"x": [1, 2]}, p)
        with self.assertRaisesRegex(ValueError, "metadata must map"):
            thaw_gpu.save({"x": torch.ones(1)}, p, metadata={"a": 1})
        with self.assertRaisesRegex(ValueError, "dtype torch.complex64"):
            thaw_gpu.save({"x": torch.ones(1, dtype=torch.complex64)}, p)
        # A refused save leaves the old file and no temp file behind.
        self.assertEqual(sorted(os.listdir(self.dir.name)), ["ok.safetensors"])
        self.assertEqual(thaw_gpu.load(p, device="cpu")["x"].tolist(), [1.0])


@unittest.skipUnless(torch.cuda.is_available(), "no CUDA here: the pinned, double-buffered "
                     "path runs in scripts/gpu-check.sh")
class Cuda(Base):
    def test_round_trip_on_the_gpu(self):
        t = sample()
        p = self.path("g.safetensors")
        thaw_gpu.save(t, p)
        for chunk in CHUNKS[1:]:
            got = thaw_gpu.load(p, device="cuda", chunk_bytes=chunk, buffers=2)
            self.assertTrue(all(v.is_cuda for v in got.values()))
            self.assertSame({k: v.cpu() for k, v in got.items()}, t)


if __name__ == "__main__":
    unittest.main(verbosity=2)
