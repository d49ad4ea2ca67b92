"""The Pythonic layer over libattamba: contexts, models, tokenizers, samplers, sessions, generation."""

import contextlib
import ctypes
import dataclasses
import operator
import os
import threading
import weakref
from collections import namedtuple
from ctypes import byref, c_double, c_int32, c_int64, c_size_t, c_uint64, c_void_p

import numpy as np

from . import _lib as L
from ._lib import Error, INT32_MAX, INT32_MIN, INT64_MAX, UINT64_MAX

TOKEN_SKIP = -1  # ATTAMBA_TOKEN_SKIP: Session.step leaves that sequence as it is

__all__ = ["TOKEN_SKIP", "version", "devices", "DeviceInfo", "Memory", "Counters", "Context", "Model", "Tokenizer",
           "Sampler", "Session", "generate_batch", "Trainer", "TrainStats",
           # API 0.3
           "MAX_DEVICES", "CacheStats", "contexts", "Config", "quantize", "have_sentencepiece", "train_tokenizer",
           "tokenize_file", "train_run", "checkpoint_exists", "generate_task"]


# ---- helpers -------------------------------------------------------------------------------------


def _cache_type(name):
    """"f32" / "f16" as attamba_cache_type."""
    if name not in ("f32", "f16"):
        raise ValueError(f"cache_type must be 'f32' or 'f16', got {name!r}")
    return L.CACHE_F16 if name == "f16" else L.CACHE_F32


def _int(value, name, lo, hi):
    """value as a Python int in [lo, hi] (TypeError for non-integers, ValueError outside)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def _float(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None


def _tokens(tokens, name="tokens"):
    """tokens as a C-contiguous int32 array (any integer dtype or sequence of ints; values that do not
    fit int32 are refused here, since a cast would wrap them to other valid-looking ids)."""
    if isinstance(tokens, (str, bytes, bytearray)):
        raise TypeError(f"{name} must be token ids, not {type(tokens).__name__} (encode text with model.tokenizer)")
    arr = np.asarray(tokens)
    if arr.dtype == object:
        try:
            arr = np.asarray(tokens, dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"{name} must be integers") from None
    if arr.size == 0 and arr.dtype.kind == "f":  # np.asarray([]) is float64
        arr = arr.astype(np.int32)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.size and arr.dtype != np.int32:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < INT32_MIN or hi > INT32_MAX:
            bad = lo if lo < INT32_MIN else hi
            raise ValueError(f"{name}: token id {bad} does not fit int32")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _i32p(arr):
    return arr.ctypes.data_as(L.P_I32)


def _f32p(arr):
    return arr.ctypes.data_as(L.P_F32)


def _path_bytes(path, name):
    try:
        return os.fsencode(path)
    except TypeError:
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}") from None


def _cstr(s, name):
    if isinstance(s, bytes):
        b = s
    elif isinstance(s, str):
        b = s.encode("utf-8")
    else:
        raise TypeError(f"{name} must be a string, got {type(s).__name__}")
    if b"\0" in b:
        raise ValueError(f"{name} must not contain NUL characters")
    return b


class _Handle:
    """Owns one C object: its pointer, its destroy function and its parent's handle.

    A handle is destroyed only after all its children (a context after its models and samplers, a model
    after its sessions), whatever order Python finalises them in: a release asked for while children
    are open is deferred until the last child goes. An explicit close() closes the children first.
    All handles of a context share its lock: the C objects of one context are not thread-safe, so
    every call into the library holds it.
    """

    __slots__ = ("ptr", "destroy", "parent", "others", "children", "open_children", "want_close", "lock",
                 "__weakref__")

    def __init__(self, ptr, destroy, parent=None, others=()):
        """others: further parents (the other contexts of a model over several devices, or of a
        data-parallel trainer), each kept open until this handle is released; the handle then holds
        all their locks at once."""
        self.ptr = ptr
        self.destroy = destroy
        self.parent = parent
        self.others = [h for h in dict.fromkeys(others) if h is not parent]
        self.children = weakref.WeakSet()
        self.open_children = 0
        self.want_close = False
        if not self.others:
            self.lock = parent.lock if parent is not None else threading.RLock()
        else:
            self.lock = _MultiLock([parent.lock] + [h.lock for h in self.others])
        for p in [parent] + self.others:
            if p is not None:
                p.children.add(self)
                p.open_children += 1

    def close(self):
        with self.lock:
            for child in list(self.children):
                child.close()
            self.release()

    def release(self):
        with self.lock:
            if self.ptr is None:
                return
            self.want_close = True
            if self.open_children > 0:
                return  # the last child to go releases this one
            ptr, self.ptr = self.ptr, None
            self.destroy(ptr)
            parents, self.parent, self.others = [self.parent] + self.others, None, []
            for parent in parents:
                if parent is not None:
                    parent.open_children -= 1
                    if parent.want_close and parent.open_children == 0:
                        parent.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # interpreter shutdown: nothing useful left to do
            pass


class _MultiLock:
    """The locks of several contexts taken together (always in the same order, so two of these cannot
    deadlock on each other): the lock of an object that spans several contexts."""

    def __init__(self, locks):
        uniq = list({id(lk): lk for lk in locks}.values())
        self.locks = sorted(uniq, key=id)

    def acquire(self):
        for i, lk in enumerate(self.locks):
            try:
                lk.acquire()
            except BaseException:
                for held in reversed(self.locks[:i]):
                    held.release()
                raise
        return True

    def release(self):
        for lk in reversed(self.locks):
            lk.release()

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()


class _Owned:
    """Base of the objects that own a C handle: close(), context manager, __del__."""

    _h = None
    _kind = "object"

    def _ptr(self):
        h = self._h
        if h is None or h.ptr is None or h.want_close:
            raise ValueError(f"operation on a closed {self._kind}")
        return h.ptr

    @property
    def closed(self):
        """True once close() was called (or a parent was closed)."""
        h = self._h
        return h is None or h.ptr is None or h.want_close

    def close(self):
        """Frees the C object (and first every object made from it). Safe to call more than once."""
        if self._h is not None:
            self._h.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        h = getattr(self, "_h", None)
        if h is not None:
            try:
                h.release()
            except Exception:
                pass


# ---- library and devices -------------------------------------------------------------------------

def version():
    """The library's version, "major.minor.patch" (attamba_version)."""
    return L.lib().version().decode()


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """One OpenCL device, as attamba_devices_list and attamba_context_device describe it."""
    platform_index: int
    device_index: int
    platform_name: str
    name: str
    vendor: str
    driver_version: str
    opencl_c_version: str
    type: str  # "cpu", "gpu", "accelerator" or "other"
    compute_units: int
    global_mem_bytes: int
    max_alloc_bytes: int
    local_mem_bytes: int
    max_work_group_size: int
    has_fp16: bool
    has_fp64: bool
    has_subgroups: bool

    @property
    def selector(self):
        """The "P:D" string that selects this device in Context(device=...)."""
        return f"{self.platform_index}:{self.device_index}"

    @classmethod
    def _from_struct(cls, s):
        lib = L.lib()
        d = L._decode
        return cls(platform_index=s.platform_index, device_index=s.device_index,
                   platform_name=d(s.platform_name), name=d(s.name), vendor=d(s.vendor),
                   driver_version=d(s.driver_version), opencl_c_version=d(s.opencl_c_version),
                   type=d(lib.device_type_name(s.type)), compute_units=int(s.compute_units),
                   global_mem_bytes=int(s.global_mem_bytes), max_alloc_bytes=int(s.max_alloc_bytes),
                   local_mem_bytes=int(s.local_mem_bytes), max_work_group_size=int(s.max_work_group_size),
                   has_fp16=bool(s.has_fp16), has_fp64=bool(s.has_fp64), has_subgroups=bool(s.has_subgroups))


def devices():
    """Every OpenCL device of every platform, as a list of :class:`DeviceInfo` (attamba_devices_list).

    Raises :class:`Error` (``Status.ERR_NO_PLATFORM``) when no OpenCL platform is installed.
    """
    lib = L.lib()
    arr = ctypes.POINTER(L.DeviceInfoStruct)()
    count = ctypes.c_int(0)
    err = L.errbuf()
    status = lib.devices_list(byref(arr), byref(count), err, len(err))
    try:
        L.fail_from_errbuf(status, err)
        return [DeviceInfo._from_struct(arr[i]) for i in range(count.value)]
    finally:
        if arr:
            lib.devices_free(arr)


Memory = namedtuple("Memory", ["current", "peak"])
Memory.__doc__ = "Device memory of a context in bytes: in use now, and the peak since creation."
Counters = namedtuple("Counters", ["launches", "allocations", "uploads", "copies", "blocking_reads"])
Counters.__doc__ = "What a context has asked of its device since creation (attamba_context_counters)."


CacheStats = namedtuple("CacheStats", ["misses", "hits", "prebuilt"])
CacheStats.__doc__ = ("A context's programs since creation: built from source, loaded from the kernel cache, loaded "
                      "from a program bundle (attamba_context_cache_stats).")

MAX_DEVICES = 16  # ATTAMBA_MAX_DEVICES


# ---- context -------------------------------------------------------------------------------------

class Context(_Owned):
    """One OpenCL device with its queue, program cache and memory accounting.

    ``device``: None (``$ATTAMBA_DEVICE``, else the first GPU, then accelerator, then CPU), a
    selection string ("P:D", "gpu", "cpu", "accelerator") or a :class:`DeviceInfo` from
    :func:`devices`. Use it as a context manager, or call :meth:`close`; models, samplers and sessions
    made from it keep it alive while they exist, and closing it closes them first.
    """

    _kind = "Context"

    def __init__(self, device=None):
        lib = L.lib()
        if isinstance(device, DeviceInfo):
            device = device.selector
        sel = None if device is None else _cstr(device, "device")
        out = c_void_p()
        err = L.errbuf()
        L.fail_from_errbuf(lib.context_create(sel, byref(out), err, len(err)), err)
        self._h = _Handle(out.value, lib.context_destroy)

    @property
    def device(self):
        """The selected device, a :class:`DeviceInfo`."""
        with self._h.lock:
            return DeviceInfo._from_struct(L.lib().context_device(self._ptr()).contents)

    def memory(self):
        """Device memory in use by this context and its peak, in bytes: a :class:`Memory`."""
        cur, peak = c_uint64(), c_uint64()
        with self._h.lock:
            L.lib().context_memory(self._ptr(), byref(cur), byref(peak))
        return Memory(cur.value, peak.value)

    def counters(self):
        """Kernel launches, allocations, uploads, copies and blocking reads so far: :class:`Counters`."""
        c = L.CountersStruct()
        with self._h.lock:
            L.lib().context_counters(self._ptr(), byref(c))
        return Counters(*(int(getattr(c, f)) for f in Counters._fields))

    @classmethod
    def _adopt(cls, ptr):
        self = object.__new__(cls)
        self._h = _Handle(ptr, L.lib().context_destroy)
        return self

    def reset_peak(self):
        """Starts the peak of :meth:`memory` again from the memory in use now."""
        with self._h.lock:
            L.lib().context_memory_reset_peak(self._ptr())

    def finish(self):
        """Waits until the work queued on the device is done (to time asynchronous calls)."""
        with self._h.lock:
            ptr = self._ptr()
            L.check(L.lib().context_finish(ptr), ptr)

    def cache_stats(self):
        """Programs since creation: built from source (misses), loaded from the kernel cache (hits), loaded
        from a program bundle (prebuilt): a :class:`CacheStats`."""
        c = L.CacheStatsStruct()
        with self._h.lock:
            L.lib().context_cache_stats(self._ptr(), byref(c))
        return CacheStats(int(c.misses), int(c.hits), int(c.prebuilt))

    def save_programs(self, dir):
        """Writes every OpenCL program this context has built to dir as binaries, with dir/bundle.json
        (``ATTAMBA_PROGRAM_DIR=dir`` then serves them); returns how many."""
        path = _path_bytes(dir, "dir")
        n = ctypes.c_int(0)
        with self._h.lock:
            ptr = self._ptr()
            L.check(L.lib().context_save_programs(ptr, path, byref(n)), ptr)
        return int(n.value)

    def __repr__(self):
        if self.closed:
            return "<attamba.Context closed>"
        d = self.device
        return f"<attamba.Context {d.selector} {d.name!r} ({d.type})>"


def contexts(devices=None):
    """A device set: one :class:`Context` per device (attamba_contexts_create). devices: None
    (``$ATTAMBA_DEVICES``, else the one default device), "all", "gpu", "cpu", "accelerator" (every
    device of that type), or a list "P:D,P:D,..." (also a Python list of selections or
    :class:`DeviceInfo`). Each context is independent (close each, or use them in ``with`` blocks)."""
    if isinstance(devices, (list, tuple)):
        devices = ",".join(d.selector if isinstance(d, DeviceInfo) else d for d in devices)
    sel = None if devices is None else _cstr(devices, "devices")
    arr = (c_void_p * MAX_DEVICES)()
    n = ctypes.c_int(0)
    err = L.errbuf()
    L.fail_from_errbuf(L.lib().contexts_create(sel, arr, MAX_DEVICES, byref(n), err, len(err)), err)
    return [Context._adopt(arr[i]) for i in range(n.value)]


def _context_list(ctx, name="ctx"):
    """ctx (a Context, or a non-empty sequence of distinct Contexts) as a list."""
    ctxs = [ctx] if isinstance(ctx, Context) else list(ctx) if isinstance(ctx, (list, tuple)) else None
    if not ctxs or not all(isinstance(c, Context) for c in ctxs):
        raise TypeError(f"{name} must be an attamba.Context or a non-empty list of them, got {ctx!r}")
    if len(ctxs) > MAX_DEVICES:
        raise ValueError(f"{name}: at most {MAX_DEVICES} contexts, got {len(ctxs)}")
    return ctxs


def _context_ptrs(ctxs):
    """The C array of the contexts' pointers (the caller holds their locks)."""
    return (c_void_p * len(ctxs))(*[c._ptr() for c in ctxs])


_SPLITS = {None: L.SPLIT_NONE, "none": L.SPLIT_NONE, "layer": L.SPLIT_LAYER, "rows": L.SPLIT_ROWS}


def _model_params(ctxs, split, tensor_split):
    """attamba_model_params for contexts (their locks held), and the arrays it points to (keep them
    alive for the call)."""
    if split not in _SPLITS:
        raise ValueError(f"split must be None, 'none', 'layer' or 'rows', got {split!r}")
    p = L.lib().model_params_default()
    devs = _context_ptrs(ctxs)
    p.devices = ctypes.cast(devs, ctypes.POINTER(c_void_p))
    p.n_devices = len(ctxs)
    p.split_mode = _SPLITS[split]
    shares = None
    if tensor_split is not None:
        vals = [_float(v, "tensor_split") for v in tensor_split]
        if len(vals) != len(ctxs):
            raise ValueError(f"tensor_split: one share per context, {len(ctxs)}; got {len(vals)}")
        shares = (ctypes.c_double * len(vals))(*vals)
        p.tensor_split = ctypes.cast(shares, ctypes.POINTER(ctypes.c_double))
    return p, (devs, shares)


def _tally(t):
    return {"key": int(t.key), "right": int(t.right), "total": int(t.total), "lo": float(t.lo), "hi": float(t.hi)}


# ---- configs and model files (no device needed) -----------------------------------------------------

def _json_value(value):
    """config_set's value text: a str as given (JSON text or a bare word), anything else as JSON."""
    import json
    if isinstance(value, (str, bytes)):
        return _cstr(value, "value")
    if isinstance(value, np.generic):
        value = value.item()
    return json.dumps(value).encode()


class Config(_Owned):
    """A model's architecture and attention pattern: the fields of config.json (docs/weights.md), as a
    C object (attamba_config) that checks every change.

    ``Config(spec)`` or ``Config.load(spec)``: a preset name ("tiny", "small", "paper-60m"), a config
    file (ending in ".json") or a model directory (its config.json). Raises :class:`Error` otherwise.
    """

    _kind = "Config"

    def __init__(self, spec="tiny"):
        p = _path_bytes(spec, "spec")
        out = c_void_p()
        err = L.errbuf()
        L.fail_from_errbuf(L.lib().config_load(p, byref(out), err, len(err)), err)
        self._h = _Handle(out.value, L.lib().config_destroy)

    @classmethod
    def load(cls, spec):
        """The config of a preset name, a .json file or a model directory."""
        return cls(spec)

    @classmethod
    def _adopt(cls, ptr):
        self = object.__new__(cls)
        self._h = _Handle(ptr, L.lib().config_destroy)
        return self

    def _errcall(self, fn, *args):
        err = L.errbuf()
        with self._h.lock:
            L.fail_from_errbuf(fn(self._ptr(), *args, err, len(err)), err)

    def set(self, key, value):
        """Sets one field of config.json: value is JSON text ("8", "true", '"q8"') or a bare word taken as
        a string ("transformer", "q8"); other Python values (ints, floats, bools, lists) are written as
        JSON. "boundaries" also takes "random:SEED". The whole config must stay valid, else nothing
        changes and :class:`Error` says why. Returns self."""
        self._errcall(L.lib().config_set, _cstr(key, "key"), _json_value(value))
        return self

    def update(self, fields=None, **kwargs):
        """Sets several fields at once (a dict and/or keywords), checked together: a wider model
        (``{"dim": 1024, "n_heads": 16, ...}``) passes through no invalid config. Returns self."""
        import json
        d = dict(fields or {}, **kwargs)
        if not d:
            return self
        d = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()}
        self._errcall(L.lib().config_set, None, json.dumps(d).encode())
        return self

    @property
    def json(self):
        """The config as config.json text."""
        lib = L.lib()
        with self._h.lock:
            text = lib.take_string(lib.config_json(self._ptr()))
        if text is None:
            raise Error(L.Status.ERR_OUT_OF_MEMORY, "attamba_config_json: out of memory")
        return text.decode("utf-8")

    def to_dict(self):
        """The config as a dict (config.json's fields)."""
        import json
        return json.loads(self.json)

    def describe(self):
        """The main fields and what they imply, a dict (attamba_config_info): kind, boundaries, tokenizer,
        weights, vocab_size, d_model, n_layers, n_heads, n_kv_heads, head_dim, chunk, window, pseudo,
        bos, eos, parameters."""
        info = L.ConfigInfoStruct()
        with self._h.lock:
            L.lib().config_describe(self._ptr(), byref(info))
        out = {}
        for name, ctype in L.ConfigInfoStruct._fields_:
            v = getattr(info, name)
            out[name] = L._decode(v) if isinstance(v, bytes) else int(v)
        out["pseudo"] = bool(out["pseudo"])
        return out

    def estimate(self, context, cache_type="f32"):
        """What a sequence of ``context`` tokens costs, per sequence and all layers (a dict):
        cache_bytes (the compressed KV cache), cache_bytes_full (a full-attention cache of the same width
        and depth), key_visits (keys a query visits per layer, mean over the positions), attention_flops
        (per token, mean over the positions). cache_type: the caches' stored keys and values, as Session's."""
        c = L.ConfigCostStruct()
        t = _cache_type(cache_type)
        with self._h.lock:
            L.lib().config_estimate_with(self._ptr(), _int(context, "context", 0, INT64_MAX), t, byref(c))
        return {"cache_bytes": int(c.cache_bytes), "cache_bytes_full": int(c.cache_bytes_full),
                "key_visits": float(c.key_visits), "attention_flops": float(c.attention_flops)}

    def measure_memory(self, ctx, batch, context, cache_type="f32"):
        """Device memory (bytes) a model of this config needs at batch x context, measured on ctx's device
        with random weights: a dict with weights, prefill_arena, prefill_peak, kv_cache, decode_arena,
        decode_peak, idle_scratch. cache_type: the caches' stored keys and values, as Session's."""
        if not isinstance(ctx, Context):
            raise TypeError(f"ctx must be an attamba.Context, got {type(ctx).__name__}")
        r = L.MemoryReportStruct()
        b = _int(batch, "batch", INT32_MIN, INT32_MAX)
        t = _int(context, "context", -INT64_MAX, INT64_MAX)
        ct = _cache_type(cache_type)
        with _MultiLock([ctx._h.lock, self._h.lock]):
            cptr = ctx._ptr()
            L.check(L.lib().config_measure_memory_with(cptr, self._ptr(), b, t, ct, byref(r)), cptr)
        return {name: int(getattr(r, name)) for name, _ in L.MemoryReportStruct._fields_}

    def use_tokenizer(self, path):
        """Makes the SentencePiece model file at path the config's tokenizer (tokenizer "sentencepiece",
        tokenizer_file "tokenizer.model", vocab_size, bos_id and eos_id from the file). Returns self."""
        self._errcall(L.lib().config_use_tokenizer, _path_bytes(path, "path"))
        return self

    def create_file(self, dir, seed=0):
        """Writes dir/config.json and dir/model.safetensors of a model of this config with seeded random
        weights (those :meth:`Model.init` and :meth:`Model.create` make for the seed), and the tokenizer
        file a SentencePiece config names; no device is needed."""
        seed = _int(seed, "seed", 0, UINT64_MAX)
        err = L.errbuf()
        with self._h.lock:
            L.fail_from_errbuf(L.lib().model_create_file(self._ptr(), seed, _path_bytes(dir, "dir"), err, len(err)),
                               err)

    def __repr__(self):
        if self.closed:
            return "<attamba.Config closed>"
        d = self.describe()
        return (f"<attamba.Config {d['kind']} d_model={d['d_model']} n_layers={d['n_layers']} "
                f"vocab_size={d['vocab_size']} parameters={d['parameters']}>")


def quantize(in_dir, out_dir, type="q8"):
    """Writes the model in in_dir to out_dir with its projection matrices and output layer stored as type
    ("f16", "q8", or "f32": back to f32, the rounded values); embeddings, norms, convs and SSM parameters
    stay f32. Returns (parameters converted, parameters kept f32). No device is needed."""
    n_conv, n_f32 = c_int64(), c_int64()
    err = L.errbuf()
    L.fail_from_errbuf(L.lib().model_quantize(_path_bytes(in_dir, "in_dir"), _path_bytes(out_dir, "out_dir"),
                                              _cstr(type, "type"), byref(n_conv), byref(n_f32), err, len(err)), err)
    return int(n_conv.value), int(n_f32.value)


# ---- model ---------------------------------------------------------------------------------------

class Model(_Owned):
    """An Attamba model or transformer baseline on a context's device.

    Make one with :meth:`Model.load`, :meth:`Model.init` or :meth:`Model.create`. The model keeps its
    context (all its contexts, when placed over several) alive; it is freed by :meth:`close`, by leaving
    a ``with`` block, or when it is garbage (after its sessions).
    """

    _kind = "Model"

    def __init__(self, *args, **kwargs):
        raise TypeError("use Model.load(ctx, dir), Model.init(ctx, config, seed) or Model.create(ctx, config, seed)")

    @classmethod
    def _wrap(cls, ctx, make):
        if not isinstance(ctx, Context):
            raise TypeError(f"ctx must be an attamba.Context, got {type(ctx).__name__}")
        out = c_void_p()
        with ctx._h.lock:
            cptr = ctx._ptr()
            L.check(make(cptr, byref(out)), cptr)
            return cls._adopt(ctx, out.value)

    @classmethod
    def _adopt(cls, ctx, ptr):
        """The Model owning a C model the library just made on ctx, a Context or a list of them (the
        caller holds their locks). Messages go to the first context."""
        ctxs = _context_list(ctx)
        self = object.__new__(cls)
        self.context = ctxs[0]
        self.contexts = tuple(ctxs)
        self._h = _Handle(ptr, L.lib().model_destroy, ctxs[0]._h, others=[c._h for c in ctxs[1:]])
        self._eos = self._bos = None
        self._specials_known = False
        return self

    @classmethod
    def _placed(cls, ctx, split, tensor_split, make):
        """A model made by make(params, out) over the contexts of ctx, placed as split says."""
        ctxs = _context_list(ctx)
        out = c_void_p()
        with _MultiLock([c._h.lock for c in ctxs]):
            p, keep = _model_params(ctxs, split, tensor_split)
            L.check(make(byref(p), byref(out)), ctxs[0]._ptr())
            return cls._adopt(ctxs, out.value)

    @classmethod
    def load(cls, ctx, dir, split=None, tensor_split=None):
        """Loads ``dir/config.json`` and ``dir/model.safetensors`` onto ctx's device.

        ctx may also be a list of contexts (:func:`contexts`) with ``split="layer"`` (the layers
        spread over them) or ``split="rows"`` (a whole copy on each; forward, loss and argmax share
        each batch's rows out over them); tensor_split: each context's share (None: equal). Such a
        model keeps all its contexts alive; messages go to the first.

        Raises :class:`Error` for a missing, corrupt or inconsistent model (the message names the file).
        """
        path = _path_bytes(dir, "dir")
        if isinstance(ctx, Context) and split is None and tensor_split is None:
            return cls._wrap(ctx, lambda c, out: L.lib().model_load(c, path, out))
        return cls._placed(ctx, split, tensor_split, lambda p, out: L.lib().model_load_with(path, p, out))

    @classmethod
    def create(cls, ctx, config, seed=0, split=None, tensor_split=None):
        """A new model of ``config`` (a :class:`Config`, or a spec for :meth:`Config.load`) with seeded
        random weights, the same as :meth:`init` gives for the seed, placed as :meth:`load` places
        one (split None or "layer")."""
        cfg = config if isinstance(config, Config) else Config.load(config)
        seed = _int(seed, "seed", 0, UINT64_MAX)
        with cfg._h.lock:
            cptr = cfg._ptr()
            return cls._placed(ctx, split, tensor_split, lambda p, out: L.lib().model_create(cptr, p, seed, out))

    @classmethod
    def init(cls, ctx, config="tiny", seed=0):
        """A new model with seeded random weights: ``config`` is a preset name ("tiny", "small",
        "paper-60m") or the path of a config.json. The same seed gives the same weights as
        ``attamba init``."""
        cfg = _path_bytes(config, "config")
        seed = _int(seed, "seed", 0, UINT64_MAX)
        return cls._wrap(ctx, lambda c, out: L.lib().model_init(c, cfg, seed, out))

    def _call(self, fn, *args):
        with self._h.lock:
            L.check(fn(self._ptr(), *args), self.context._h.ptr)

    def save(self, dir):
        """Writes ``dir/config.json`` and ``dir/model.safetensors`` (creating dir)."""
        self._call(L.lib().model_save, _path_bytes(dir, "dir"))

    @property
    def config(self):
        """The model's config as a dict (config.json's fields: kind, sizes, the chunk, window and
        boundaries in force, tokenizer)."""
        import json
        with self._h.lock:
            text = L.lib().model_config(self._ptr())
            if text is None:
                L.check(L.Status.ERR_OUT_OF_MEMORY, self.context._h.ptr)
        return json.loads(text.decode())

    @property
    def vocab_size(self):
        """The number of token ids, V (logits have V columns)."""
        with self._h.lock:
            return L.lib().model_vocab_size(self._ptr())

    def set_attention(self, chunk=None, window=None, boundaries=None):
        """Changes the attention pattern at test time (Attamba models); None keeps a setting.

        chunk: the chunk size P (>= 1); window: the window of leading tokens L (>= 0); boundaries:
        "uniform", "cyclic", "random" or "random:SEED".
        """
        c = 0 if chunk is None else _int(chunk, "chunk", 1, INT32_MAX)
        w = -1 if window is None else _int(window, "window", 0, INT32_MAX)
        b = None if boundaries is None else _cstr(boundaries, "boundaries")
        self._call(L.lib().model_set_attention, c, w, b)

    def forward(self, tokens):
        """Logits of token sequences: tokens [B, T] give float32 logits [B, T, V]; tokens [T] give [T, V].

        Every sequence starts at position 0. Ids outside [0, V) raise :class:`Error`.
        """
        ids, B, T = self._rows(tokens)
        V = self.vocab_size
        logits = np.empty((B, T, V), dtype=np.float32)
        self._call(L.lib().model_forward, _i32p(ids), B, T, _f32p(logits))
        return logits[0] if ids.ndim == 1 else logits

    def _rows(self, tokens, name="tokens"):
        ids = _tokens(tokens, name)
        if ids.ndim not in (1, 2):
            raise ValueError(f"{name} must have shape [T] or [B, T], got {ids.shape}")
        B, T = (1, ids.shape[0]) if ids.ndim == 1 else ids.shape
        if B < 1 or T < 1:
            raise ValueError(f"{name} must not be empty, got shape {ids.shape}")
        if B > INT32_MAX or T > INT32_MAX:
            raise ValueError(f"{name} shape {ids.shape} is too large")
        return ids, B, T

    def loss(self, tokens, targets):
        """The summed cross-entropy (nats) of token sequences ([B, T] or [T]) over their scored targets
        (the same shape; a target < 0 is not scored) and how many were scored: ``(sum, count)``. Nothing
        changes; no gradients."""
        ids, B, T = self._rows(tokens)
        tgt = _tokens(targets, "targets")
        if tgt.shape != ids.shape:
            raise ValueError(f"tokens {ids.shape} and targets {tgt.shape} differ")
        total, count = c_double(), c_int64()
        self._call(L.lib().model_loss, _i32p(ids), _i32p(tgt), B, T, byref(total), byref(count))
        return float(total.value), int(count.value)

    def argmax(self, tokens):
        """The greedy prediction after every position: the argmax of the logits, computed on the device
        (np.int32, the shape of tokens: [B, T] or [T])."""
        ids, B, T = self._rows(tokens)
        out = np.empty(ids.shape, dtype=np.int32)
        self._call(L.lib().model_argmax, _i32p(ids), B, T, _i32p(out))
        return out

    def validate(self, data, val_frac=0.05, T=256, batch=8, n_windows=32):
        """The mean loss on n_windows windows of T tokens (BOS, then T-1 tokens of the file) taken in order
        from the held-out tail (the last val_frac) of a text, token or task file: what a training run
        validates. batch windows per forward."""
        path = _path_bytes(data, "data")
        loss = c_double()
        self._call(L.lib().model_validate, path, _float(val_frac, "val_frac"), _int(T, "T", INT32_MIN, INT32_MAX),
                   _int(batch, "batch", INT32_MIN, INT32_MAX), _int(n_windows, "n_windows", INT32_MIN, INT32_MAX),
                   byref(loss))
        return float(loss.value)

    def score_task(self, path, kind=None, batch=4):
        """Exact-match (greedy) accuracy on a task file (:func:`generate_task`, ``attamba data``), batch
        examples at a time. kind: "mqar" or "passkey" (a file of the other kind is refused), None takes
        either. Returns a dict: kind, example (tokens per example), examples, and tallies
        ``{"key", "right", "total", "lo", "hi"}`` (lo, hi: the 95% Wilson interval): all (whole answers),
        tokens (answer tokens one by one), and lists by group (mqar: pairs; passkey: depth %), offset
        (the fact's position mod P) and distance (tokens from the fact to the answer)."""
        p = _path_bytes(path, "path")
        k = None if kind is None else _cstr(kind, "kind")
        r = L.TaskReportStruct()
        self._call(L.lib().model_score_task, p, k, _int(batch, "batch", INT32_MIN, INT32_MAX), byref(r))
        n = L.TASK_MAX_GROUPS
        return {"kind": L._decode(r.kind), "example": int(r.example), "examples": int(r.examples),
                "all": _tally(r.all), "tokens": _tally(r.tokens),
                "group": [_tally(r.group[i]) for i in range(min(r.n_group, n))],
                "offset": [_tally(r.offset[i]) for i in range(min(r.n_offset, n))],
                "distance": [_tally(r.distance[i]) for i in range(min(r.n_distance, n))]}

    def get_config(self):
        """The config in force (after :meth:`set_attention`), as a new :class:`Config`."""
        out = c_void_p()
        self._call(L.lib().model_get_config, byref(out))
        return Config._adopt(out.value)

    @property
    def tokenizer(self):
        """The model's :class:`Tokenizer` (raises :class:`Error` for a byte-level model whose vocabulary
        cannot hold the 256 bytes plus BOS and EOS, e.g. the golden test models)."""
        return Tokenizer(self)

    def _specials(self):
        """(bos, eos), or (None, None) for a model without a tokenizer."""
        if not self._specials_known:
            try:
                t = self.tokenizer
                self._bos, self._eos = t.bos, t.eos
            except Error:
                self._bos = self._eos = None
            self._specials_known = True
        return self._bos, self._eos

    def generate(self, prompt, n, sampler=None, stop_at_eos=True):
        """Generates up to n tokens after a prompt, as ``attamba generate`` does; returns the new ids
        (np.int32 array; decode them with ``model.tokenizer.decode``).

        prompt: text (str or bytes: encoded with BOS first) or token ids (used as given).
        sampler: a :class:`Sampler`, or None for greedy decoding (the argmax). The prompt's tokens are
        counted for its repetition penalty (but a leading BOS is not); the sampler is not reset first.
        stop_at_eos: stop after the model's EOS token (which is included in the result).
        """
        n = _int(n, "n", 0, INT32_MAX)
        ids = _prompt_ids(self, prompt)
        if n == 0:
            return np.empty(0, dtype=np.int32)
        _check_sampler(sampler, self)
        bos, eos = self._specials()
        if not stop_at_eos:
            eos = None
        with Session(self, max_tokens=len(ids) + n + 1) as s:
            _accept_prompt(sampler, ids, bos)
            logits = s.feed(ids)
            out = []
            while True:
                nxt = _pick(logits, sampler)
                out.append(nxt)
                if nxt == eos or len(out) == n:
                    break
                logits = s.feed([nxt])
        return np.asarray(out, dtype=np.int32)

    def __repr__(self):
        if self.closed:
            return "<attamba.Model closed>"
        return f"<attamba.Model vocab_size={self.vocab_size}>"


# ---- tokenizer -----------------------------------------------------------------------------------

class Tokenizer:
    """Text <-> token ids: the tokenizer a model's config names: "bytes" (ids 0..255 are the bytes, BOS and
    EOS from the config) or "sentencepiece" (the model's tokenizer file; lossless: decoding the ids of a
    text gives its bytes back). A model's is owned by its model (it keeps the model alive);
    :meth:`Tokenizer.load` opens a SentencePiece file on its own (no model, no device), which
    :meth:`close` frees."""

    def __init__(self, model):
        if not isinstance(model, Model):
            raise TypeError(f"model must be an attamba.Model, got {type(model).__name__}")
        self.model = model
        self._own = None
        out = c_void_p()
        model._call(L.lib().model_tokenizer, byref(out))

    @classmethod
    def load(cls, path):
        """A SentencePiece model file on its own (for tokenizing data before a model exists).
        Raises :class:`Error` for a missing or corrupt file, or ``Status.ERR_UNSUPPORTED`` in a build
        without SentencePiece (:func:`have_sentencepiece`)."""
        p = _path_bytes(path, "path")
        out = c_void_p()
        err = L.errbuf()
        L.fail_from_errbuf(L.lib().tokenizer_load(p, byref(out), err, len(err)), err)
        self = object.__new__(cls)
        self.model = None
        self._own = _Handle(out.value, L.lib().tokenizer_destroy)
        return self

    def _lock(self):
        return self.model._h.lock if self.model is not None else self._own.lock

    def _ptr(self):
        if self.model is None:
            if self._own.ptr is None:
                raise ValueError("operation on a closed Tokenizer")
            return self._own.ptr
        out = c_void_p()  # owned by the model: asked for again on each use, so a closed model is caught
        self.model._call(L.lib().model_tokenizer, byref(out))
        return out.value

    def _call(self, fn, *args):
        with self._lock():
            status = fn(self._ptr(), *args)
            if self.model is not None:
                L.check(status, self.model.context._h.ptr)
            elif status != 0:  # a tokenizer alone has no context: the library wrote its message to stderr
                raise Error(status, "the tokenizer failed (its message went to stderr)")

    @property
    def closed(self):
        """True once a tokenizer of :meth:`load` was closed, or the model of a model's tokenizer was."""
        return self._own.ptr is None if self.model is None else self.model.closed

    def close(self):
        """Frees a tokenizer of :meth:`load` (a model's tokenizer is the model's: nothing to do)."""
        if self.model is None:
            self._own.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def vocab_size(self):
        """The number of ids."""
        with self._lock():
            return L.lib().tokenizer_vocab_size(self._ptr())

    @property
    def bos(self):
        """The beginning-of-sequence id."""
        with self._lock():
            return int(L.lib().tokenizer_bos(self._ptr()))

    @property
    def eos(self):
        """The end-of-sequence id."""
        with self._lock():
            return int(L.lib().tokenizer_eos(self._ptr()))

    def encode(self, text, add_bos=True):
        """The ids of text (str, encoded UTF-8, or bytes), BOS first when add_bos: an np.int32 array."""
        if isinstance(text, str):
            data = text.encode("utf-8")
        elif isinstance(text, (bytes, bytearray, memoryview)):
            data = bytes(text)
        else:
            raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
        lib = L.lib()
        n = c_int64(0)
        with self._lock():
            self._call(lib.tokenizer_encode, data, len(data), int(bool(add_bos)), None, 0, byref(n))
            ids = np.empty(n.value, dtype=np.int32)
            need = n.value
            self._call(lib.tokenizer_encode, data, len(data), int(bool(add_bos)), _i32p(ids), need, byref(n))
        if n.value != need:
            raise Error(L.Status.ERR_INTERNAL, f"tokenizer_encode: {n.value} ids after sizing {need}")
        return ids

    def decode_bytes(self, ids):
        """The bytes of ids (an int or a 1-D sequence); BOS, EOS and other specials give none."""
        arr = _tokens(ids, "ids").reshape(-1)
        lib = L.lib()
        n = c_size_t(0)
        with self._lock():
            self._call(lib.tokenizer_decode, _i32p(arr), arr.size, None, 0, byref(n))
            need = n.value
            buf = ctypes.create_string_buffer(need + 1)
            self._call(lib.tokenizer_decode, _i32p(arr), arr.size, buf, need + 1, byref(n))
        return buf.raw[:need]

    def decode(self, ids):
        """The text of ids: their bytes decoded as UTF-8 (invalid sequences become U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def __repr__(self):
        if self.closed:
            return "<attamba.Tokenizer closed>"
        return f"<attamba.Tokenizer vocab_size={self.vocab_size} bos={self.bos} eos={self.eos}>"


# ---- sampler -------------------------------------------------------------------------------------

class Sampler(_Owned):
    """Chooses tokens from logits on the host, in llama.cpp's order: repetition penalty, temperature
    softmax, top-k, top-p, min-p, then a seeded draw (temperature <= 0: the argmax).

    ctx: the :class:`Context` (or a :class:`Model`, meaning its context) whose error messages it uses.
    The same seed and inputs give the same tokens on every device.
    """

    _kind = "Sampler"

    def __init__(self, ctx, temperature=0.8, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                 repeat_last_n=64, seed=0):
        if isinstance(ctx, Model):
            ctx = ctx.context
        if not isinstance(ctx, Context):
            raise TypeError(f"ctx must be an attamba.Context or Model, got {type(ctx).__name__}")
        self.context = ctx
        p = L.lib().sampler_params_default()
        p.temperature = self.temperature = _float(temperature, "temperature")
        p.top_k = self.top_k = _int(top_k, "top_k", INT32_MIN, INT32_MAX)
        p.top_p = self.top_p = _float(top_p, "top_p")
        p.min_p = self.min_p = _float(min_p, "min_p")
        p.repeat_penalty = self.repeat_penalty = _float(repeat_penalty, "repeat_penalty")
        p.repeat_last_n = self.repeat_last_n = _int(repeat_last_n, "repeat_last_n", INT32_MIN, INT32_MAX)
        p.seed = self.seed = _int(seed, "seed", 0, UINT64_MAX)
        out = c_void_p()
        with ctx._h.lock:
            cptr = ctx._ptr()
            L.check(L.lib().sampler_create(cptr, byref(p), byref(out)), cptr)
            self._h = _Handle(out.value, L.lib().sampler_destroy, ctx._h)

    def sample(self, logits):
        """One token id (int) from a 1-D array of logits (not modified); the token is then counted for
        the repetition penalty. Logits with no finite softmax (NaN, +inf, all -inf) raise :class:`Error`."""
        row = np.ascontiguousarray(logits, dtype=np.float32)
        if row.ndim != 1 or row.size < 1:
            raise ValueError(f"logits must be a non-empty 1-D array, got shape {row.shape}")
        if row.size > INT32_MAX:
            raise ValueError("logits are too long")
        tok = c_int32()
        with self._h.lock:
            ptr = self._ptr()
            L.check(L.lib().sampler_sample(ptr, _f32p(row), row.size, byref(tok)), self.context._h.ptr)
        return int(tok.value)

    def accept(self, token):
        """Counts a token for the repetition penalty without drawing it (e.g. the prompt's tokens)."""
        t = _int(token, "token", INT32_MIN, INT32_MAX)
        with self._h.lock:
            L.lib().sampler_accept(self._ptr(), t)

    def reset(self, seed=None):
        """Forgets the accepted tokens and restarts the random numbers from the seed (a new one when
        given)."""
        with self._h.lock:
            if seed is None:
                L.lib().sampler_reset(self._ptr())
            else:
                self.seed = _int(seed, "seed", 0, UINT64_MAX)
                L.lib().sampler_set_seed(self._ptr(), self.seed)

    def __repr__(self):
        return (f"<attamba.Sampler temperature={self.temperature} top_k={self.top_k} top_p={self.top_p} "
                f"min_p={self.min_p} repeat_penalty={self.repeat_penalty} repeat_last_n={self.repeat_last_n} "
                f"seed={self.seed}{' closed' if self.closed else ''}>")


# ---- session -------------------------------------------------------------------------------------

class Session(_Owned):
    """The compressed KV caches of one sequence, or of n_seq sequences decoded together, each up to
    max_tokens tokens. Keeps its model alive.

    One sequence: :meth:`feed`. Several: :meth:`prefill` each prompt, then :meth:`step` them all
    together (one pass over the weights per step). cache_type "f16" keeps the stored keys and values as
    halves (half the bytes; logits within f16 rounding of the forward pass; docs/api.md).
    """

    _kind = "Session"

    def __init__(self, model, max_tokens, n_seq=1, cache_type="f32"):
        if not isinstance(model, Model):
            raise TypeError(f"model must be an attamba.Model, got {type(model).__name__}")
        ct = _cache_type(cache_type)
        self.model = model
        self.max_tokens = _int(max_tokens, "max_tokens", -INT64_MAX, INT64_MAX)
        self.n_seq = _int(n_seq, "n_seq", INT32_MIN, INT32_MAX)
        self.cache_type = cache_type
        lib = L.lib()
        out = c_void_p()
        with model._h.lock:
            mptr = model._ptr()
            if ct == L.CACHE_F16:
                p = L.SessionParamsStruct(self.n_seq, self.max_tokens, ct)
                status = lib.session_create_with(mptr, byref(p), byref(out))
            elif self.n_seq == 1:
                status = lib.session_create(mptr, self.max_tokens, byref(out))
            else:
                status = lib.session_create_batch(mptr, self.n_seq, self.max_tokens, byref(out))
            L.check(status, model.context._h.ptr)
            self._h = _Handle(out.value, lib.session_destroy, model._h)
        self._V = model.vocab_size

    def _call(self, fn, *args):
        with self._h.lock:
            L.check(fn(self._ptr(), *args), self.model.context._h.ptr)

    def _ids(self, tokens):
        ids = _tokens(tokens).reshape(-1) if np.ndim(tokens) == 0 else _tokens(tokens)
        if ids.ndim != 1 or ids.size < 1:
            raise ValueError(f"tokens must be a non-empty 1-D sequence, got shape {ids.shape}")
        if ids.size > INT32_MAX:
            raise ValueError("too many tokens")
        return ids

    def feed(self, tokens):
        """One sequence only: feeds tokens (an int or 1-D ids; a prefill when the session is empty,
        else one decode step per token) and returns the logits after the last one (float32 [V])."""
        ids = self._ids(tokens)
        logits = np.empty(self._V, dtype=np.float32)
        self._call(L.lib().session_feed, _i32p(ids), ids.size, _f32p(logits))
        return logits

    def prefill(self, seq, tokens):
        """The prompt of sequence seq, which must be empty (new or reset); returns the logits after its
        last token (float32 [V]). The other sequences are untouched."""
        seq = _int(seq, "seq", INT32_MIN, INT32_MAX)
        ids = self._ids(tokens)
        logits = np.empty(self._V, dtype=np.float32)
        self._call(L.lib().session_prefill, seq, _i32p(ids), ids.size, _f32p(logits))
        return logits

    def step(self, tokens):
        """One decode step of every sequence: sequence i appends tokens[i] (n_seq ids). Returns the
        logits, float32 [n_seq, V]. A sequence given :data:`TOKEN_SKIP` stays as it is (its row of
        logits means nothing)."""
        ids = self._ids(tokens)
        if ids.size != self.n_seq:
            raise ValueError(f"step needs one token per sequence: {self.n_seq}, got {ids.size}")
        logits = np.empty((self.n_seq, self._V), dtype=np.float32)
        self._call(L.lib().session_step, _i32p(ids), _f32p(logits))
        return logits

    def step_sample(self, tokens, samplers):
        """A decode step (as :meth:`step`), then sequence i's next token drawn by samplers[i] (n_seq
        :class:`Sampler` or None) as :meth:`Sampler.sample` would from its logits; a greedy sampler
        without a penalty history takes the argmax on the device (only the tokens come back). Returns
        the tokens, int32 [n_seq]; :data:`TOKEN_SKIP` where the sampler is None or the sequence skipped."""
        ids = self._ids(tokens)
        if ids.size != self.n_seq or len(samplers) != self.n_seq:
            raise ValueError(f"step_sample needs one token and one sampler (or None) per sequence: {self.n_seq}")
        for sm in samplers:
            if sm is not None and not isinstance(sm, Sampler):
                raise TypeError(f"samplers must be attamba.Sampler or None, got {type(sm).__name__}")
        out = np.empty(self.n_seq, dtype=np.int32)
        with contextlib.ExitStack() as held:  # each distinct sampler once (one may serve several sequences)
            distinct = list({id(sm): sm for sm in samplers if sm is not None}.values())
            for sm in distinct:
                held.enter_context(sm._h.lock)
            ptrs = (c_void_p * self.n_seq)(*[None if sm is None else sm._ptr() for sm in samplers])
            self._call(L.lib().session_step_sample, _i32p(ids), ptrs, _i32p(out))
        return out

    def fill_synthetic(self, tokens):
        """Every sequence (which must be empty) as if ``tokens`` tokens had been fed: caches filled with
        deterministic pseudo-random keys, values and states, the position ``tokens``. For measuring decode
        at a long context without its prefill; the logits that follow mean nothing."""
        self._call(L.lib().session_fill_synthetic, _int(tokens, "tokens", -INT64_MAX, INT64_MAX))

    def reset(self, seq=-1):
        """Forgets sequence seq (every sequence when seq < 0); its cache is then empty."""
        self._call(L.lib().session_reset, _int(seq, "seq", INT32_MIN, INT32_MAX))

    def _seq_query(self, fn, seq):
        seq = _int(seq, "seq", INT32_MIN, INT32_MAX)
        with self._h.lock:
            v = fn(self._ptr(), seq)
        if v < 0:
            raise IndexError(f"sequence {seq} outside [0, {self.n_seq})")
        return int(v)

    def position(self, seq=0):
        """How many tokens sequence seq has been fed."""
        return self._seq_query(L.lib().session_position, seq)

    def cache_bytes(self, seq=0):
        """The bytes sequence seq's cache holds now."""
        return self._seq_query(L.lib().session_cache_bytes, seq)

    def __repr__(self):
        if self.closed:
            return "<attamba.Session closed>"
        pos = [self.position(i) for i in range(min(self.n_seq, 8))]
        return f"<attamba.Session n_seq={self.n_seq} max_tokens={self.max_tokens} positions={pos}>"


# ---- generation ----------------------------------------------------------------------------------

def _prompt_ids(model, prompt):
    if isinstance(prompt, (str, bytes, bytearray)):
        return model.tokenizer.encode(prompt, add_bos=True)
    ids = _tokens(prompt, "prompt")
    if ids.ndim != 1 or ids.size < 1:
        raise ValueError(f"a prompt of ids must be a non-empty 1-D sequence, got shape {ids.shape}")
    return ids


def _check_sampler(sampler, model):
    if sampler is not None and not isinstance(sampler, Sampler):
        raise TypeError(f"sampler must be an attamba.Sampler or None, got {type(sampler).__name__}")


def _accept_prompt(sampler, ids, bos):
    if sampler is None:
        return
    for i, t in enumerate(ids.tolist()):
        if i == 0 and t == bos:
            continue
        sampler.accept(t)


def _pick(logits, sampler):
    return int(np.argmax(logits)) if sampler is None else sampler.sample(logits)


def generate_batch(model, prompts, n, samplers=None, stop_at_eos=True):
    """Generates up to n tokens after each of several prompts, decoded together through one batched
    :class:`Session` (each prompt prefilled, then one step for all per token). Returns a list with
    each prompt's new ids (np.int32 arrays), the same tokens :meth:`Model.generate` gives for the
    prompt alone.

    prompts: a list of prompts, each text or ids as for :meth:`Model.generate`.
    samplers: None for greedy decoding, or one :class:`Sampler` per prompt.
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an attamba.Model, got {type(model).__name__}")
    if isinstance(prompts, (str, bytes, bytearray)):
        raise TypeError("prompts must be a list of prompts (wrap a single prompt in a list)")
    prompts = [_prompt_ids(model, p) for p in prompts]
    n = _int(n, "n", 0, INT32_MAX)
    B = len(prompts)
    if samplers is not None:
        samplers = list(samplers)
        if len(samplers) != B:
            raise ValueError(f"samplers: one per prompt, {B}; got {len(samplers)}")
        for s in samplers:
            _check_sampler(s, model)
        if len({id(s) for s in samplers}) != B:
            raise ValueError("samplers: each prompt needs its own Sampler (they keep state)")
    else:
        samplers = [None] * B
    if B == 0:
        return []
    if n == 0:
        return [np.empty(0, dtype=np.int32) for _ in range(B)]
    bos, eos = model._specials()
    if not stop_at_eos:
        eos = None
    outs = [[] for _ in range(B)]
    done = [False] * B
    with Session(model, max_tokens=max(len(p) for p in prompts) + n + 1, n_seq=B) as s:
        nxt = [0] * B
        for i, ids in enumerate(prompts):
            _accept_prompt(samplers[i], ids, bos)
            nxt[i] = _pick(s.prefill(i, ids), samplers[i])
            outs[i].append(nxt[i])
            done[i] = nxt[i] == eos or len(outs[i]) == n
        while not all(done):
            logits = s.step([TOKEN_SKIP if d else t for d, t in zip(done, nxt)])  # finished ones stay put
            for i in range(B):
                if done[i]:
                    continue
                nxt[i] = _pick(logits[i], samplers[i])
                outs[i].append(nxt[i])
                done[i] = nxt[i] == eos or len(outs[i]) == n
    return [np.asarray(o, dtype=np.int32) for o in outs]


# ---- training ------------------------------------------------------------------------------------

TrainStats = namedtuple("TrainStats", ["step", "loss", "grad_norm", "lr"])
TrainStats.__doc__ = ("One optimiser step: steps done (this one included), its mean loss (nats per scored target), "
                      "the gradient norm before clipping, the learning rate it used.")


def _windows(tokens, targets, rows, seq, what):
    """tokens [rows, seq] (or flat) with targets of the same shape, or, without targets, windows
    [rows, seq + 1] whose last seq ids are the targets."""
    ids = _tokens(tokens, "tokens")
    if targets is None:
        w = ids.reshape(-1, seq + 1) if ids.ndim == 1 and ids.size % (seq + 1) == 0 else ids
        if w.ndim != 2 or w.shape[1] != seq + 1 or (rows is not None and w.shape[0] != rows):
            want = f"[{rows if rows is not None else 'n'}, {seq + 1}]"
            raise ValueError(f"{what}: windows without targets must be {want} ids, got shape {ids.shape}")
        return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])
    tgt = _tokens(targets, "targets")
    if ids.shape != tgt.shape:
        raise ValueError(f"{what}: tokens {ids.shape} and targets {tgt.shape} differ")
    if ids.size % seq or (rows is not None and ids.size != rows * seq):
        want = f"{rows} x {seq}" if rows is not None else f"a multiple of {seq}"
        raise ValueError(f"{what}: need {want} ids, got {ids.size}")
    return ids.reshape(-1, seq), tgt.reshape(-1, seq)


class Trainer(_Owned):
    """Trains a model in place: AdamW with a linear warmup and a cosine decay to min_lr at ``steps``,
    gradient clipping and accumulation (SPEC 5), on batches you supply, or on random windows of a
    token array with :meth:`fit`. The defaults are ``attamba train``'s. Keeps its model alive.
    """

    _kind = "Trainer"
    _FIELDS = ("batch", "seq", "accum", "lr", "min_lr", "warmup", "beta1", "beta2", "eps", "weight_decay", "clip",
               "ignore_id")

    def __init__(self, model, steps, devices=None, **params):
        """devices: None (the model's device), or a list of contexts, the first the model's: a
        data-parallel trainer (as :meth:`create_parallel`)."""
        if not isinstance(model, Model):
            raise TypeError(f"model must be an attamba.Model, got {type(model).__name__}")
        unknown = set(params) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"unknown training parameter(s): {', '.join(sorted(unknown))}")
        p = L.lib().train_params_default(_int(steps, "steps", 1, INT64_MAX))
        _set_train_params(p, params)
        out = c_void_p()
        ctxs = None if devices is None else _context_list(devices, "devices")
        if ctxs is None:
            with model._h.lock:
                mptr = model._ptr()
                L.check(L.lib().trainer_create(mptr, byref(p), byref(out)), model.context._h.ptr)
                self._h = _Handle(out.value, L.lib().trainer_destroy, model._h)
        else:
            with _MultiLock([model._h.lock] + [c._h.lock for c in ctxs]):
                mptr = model._ptr()
                arr = _context_ptrs(ctxs)
                L.check(L.lib().trainer_create_parallel(mptr, arr, len(ctxs), byref(p), byref(out)),
                        model.context._h.ptr)
                self._h = _Handle(out.value, L.lib().trainer_destroy, model._h,
                                  others=[c._h for c in ctxs if c._h is not model.context._h])
        self.model = model
        self.contexts = tuple(ctxs) if ctxs is not None else (model.context,)

    @classmethod
    def create_parallel(cls, model, devices, steps, **params):
        """A data-parallel trainer of model (which lives on devices[0]) over a list of contexts: a replica
        of the model on each other device, each micro-batch's rows shared out by measured speed, the
        gradients summed into devices[0]'s, which applies AdamW and sends the weights back. A step's
        loss and update are those of the whole micro-batch, as on one device (up to the order of float
        sums). Keeps every context alive."""
        return cls(model, steps, devices=devices, **params)

    def split(self):
        """How the rows are shared out now, e.g. "0:0 pthread 5 rows (41.2 rows/s), 0:1 basic 3 rows
        (24.9 rows/s)", and whether that changed since the last call: ``(text, changed)``."""
        buf = ctypes.create_string_buffer(1024)
        with self._h.lock:
            changed = L.lib().trainer_split(self._ptr(), buf, len(buf))
        return L._decode(buf.value), bool(changed)

    @property
    def params(self):
        """The parameters in force (a dict: batch, seq, accum, lr, min_lr, warmup, steps, ...)."""
        with self._h.lock:
            p = L.lib().trainer_params(self._ptr())
        return {k: getattr(p, k) for k in self._FIELDS + ("steps",)}

    @classmethod
    def load(cls, ctx, dir):
        """Resumes the newest checkpoint in dir (written by :meth:`save`): returns (model, trainer),
        which continue exactly where the saved trainer stopped."""
        if not isinstance(ctx, Context):
            raise TypeError(f"ctx must be an attamba.Context, got {type(ctx).__name__}")
        path = _path_bytes(dir, "dir")
        m, t = c_void_p(), c_void_p()
        with ctx._h.lock:
            cptr = ctx._ptr()
            L.check(L.lib().trainer_load(cptr, path, byref(m), byref(t)), cptr)
            model = Model._adopt(ctx, m.value)
            self = object.__new__(cls)
            self._h = _Handle(t.value, L.lib().trainer_destroy, model._h)
        self.model = model
        self.contexts = (ctx,)
        return model, self

    def _call(self, fn, *args):
        with self._h.lock:
            L.check(fn(self._ptr(), *args), self.model.context._h.ptr)

    def _shape(self):
        p = self.params
        return p["batch"] * p["accum"], p["seq"]

    def step(self, tokens, targets=None):
        """One optimiser step over accum micro-batches: tokens and targets [accum * batch, seq] ids, or
        tokens alone as windows [accum * batch, seq + 1]. Returns :class:`TrainStats`."""
        rows, seq = self._shape()
        tok, tgt = _windows(tokens, targets, rows, seq, "step")
        st = L.TrainStatsStruct()
        self._call(L.lib().trainer_step, _i32p(tok), _i32p(tgt), byref(st))
        return TrainStats(int(st.step), float(st.loss), float(st.grad_norm), float(st.lr))

    def evaluate(self, tokens, targets=None):
        """The mean loss (nats per scored target) on rows of seq tokens, without changing anything."""
        _, seq = self._shape()
        tok, tgt = _windows(tokens, targets, None, seq, "evaluate")
        if tok.shape[0] > INT32_MAX:
            raise ValueError("too many rows")
        loss = c_double()
        self._call(L.lib().trainer_evaluate, _i32p(tok), _i32p(tgt), tok.shape[0], byref(loss))
        return float(loss.value)

    @property
    def steps_done(self):
        """Optimiser steps done so far."""
        with self._h.lock:
            return int(L.lib().trainer_steps_done(self._ptr()))

    def save(self, dir):
        """A checkpoint in dir (``dir/ckpt-<step>``, ``dir/latest``): model, AdamW moments, parameters and
        step; it is also a model directory for :meth:`Model.load`."""
        self._call(L.lib().trainer_save, _path_bytes(dir, "dir"))

    def fit(self, data, steps=None, callback=None, seed=0, val_data=None, val_rows=16):
        """Trains on random windows of a 1-D array of token ids for ``steps`` optimiser steps (default:
        up to the schedule's end). After each step ``callback(stats, val_loss)`` is called: the step's
        :class:`TrainStats`, and the mean loss on ``val_rows`` windows spread over ``val_data`` (None
        without val_data); a callback returning False stops. Returns the last :class:`TrainStats`."""
        rows, seq = self._shape()
        ids = _tokens(data, "data").reshape(-1)
        if ids.size < seq + 2:
            raise ValueError(f"data: need more than {seq + 1} tokens, got {ids.size}")
        rng = np.random.default_rng(seed)
        if steps is None:
            steps = max(0, self.params["steps"] - self.steps_done)
        val = None
        if val_data is not None:
            v = _tokens(val_data, "val_data").reshape(-1)
            starts = np.linspace(0, v.size - seq - 1, num=val_rows).astype(np.int64)
            val = np.stack([v[s:s + seq + 1] for s in starts])
        last = None
        for _ in range(_int(steps, "steps", 0, INT64_MAX)):
            starts = rng.integers(0, ids.size - seq - 1, size=rows)
            last = self.step(np.stack([ids[s:s + seq + 1] for s in starts]))
            if callback is not None and callback(last, self.evaluate(val) if val is not None else None) is False:
                break
        return last

    def __repr__(self):
        return "<attamba.Trainer closed>" if self.closed else f"<attamba.Trainer steps_done={self.steps_done}>"


# ---- tokenizers without a model, token files ----------------------------------------------------------

def have_sentencepiece():
    """Whether this build of the library reads and trains SentencePiece models."""
    return bool(L.lib().have_sentencepiece())


def train_tokenizer(text_path, vocab, out_path):
    """Trains a SentencePiece model of ``vocab`` pieces (unigram, byte fallback: every byte sequence
    representable) on the text file at text_path and writes it to out_path, after checking that the text
    comes back exactly from its ids. ``Status.ERR_UNSUPPORTED`` without SentencePiece."""
    err = L.errbuf()
    L.fail_from_errbuf(L.lib().tokenizer_train(_path_bytes(text_path, "text_path"),
                                               _int(vocab, "vocab", INT32_MIN, INT32_MAX),
                                               _path_bytes(out_path, "out_path"), err, len(err)), err)


def tokenize_file(in_path, out_path, tokenizer=None):
    """Writes a binary token file (docs/training.md) for training: the ids of the text file at in_path
    under tokenizer (a :class:`Tokenizer`, or the path of a SentencePiece file), or with None the file as
    training reads it (a text file's bytes, a token or task file's tokens). Returns (ids written, bytes
    read)."""
    n_tok, n_bytes = c_int64(), c_int64()
    src, dst = _path_bytes(in_path, "in_path"), _path_bytes(out_path, "out_path")
    opened = None
    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        tokenizer = opened = Tokenizer.load(tokenizer)
    try:
        err = L.errbuf()
        if tokenizer is None:
            status = L.lib().tokenize_file(None, src, dst, byref(n_tok), byref(n_bytes), err, len(err))
        else:
            with tokenizer._lock():
                status = L.lib().tokenize_file(tokenizer._ptr(), src, dst, byref(n_tok), byref(n_bytes), err,
                                               len(err))
        L.fail_from_errbuf(status, err)
    finally:
        if opened is not None:
            opened.close()
    return int(n_tok.value), int(n_bytes.value)


# ---- training runs and tasks ---------------------------------------------------------------------

_RUN_FIELDS = ("val_frac", "resume", "seed", "val_every", "val_windows", "ckpt_every", "progress")


def _set_train_params(p, params):
    """Sets attamba_train_params fields of p from a dict (TypeError for unknown ones)."""
    for k, v in params.items():
        if isinstance(getattr(p, k), float):
            setattr(p, k, _float(v, k))
        else:
            setattr(p, k, _int(v, k, 0, INT64_MAX) if k == "warmup" else _int(v, k, INT32_MIN, INT32_MAX))


def train_run(ctx, config, data, out, steps, progress=False, **params):
    """A whole training run, as ``attamba train`` does it: random windows of a text, token or task file,
    its held-out tail validated every val_every steps, metrics in out/metrics.jsonl, checkpoints in
    out/ckpt-* and the final model in out. Returns the last validation loss.

    ctx: a :class:`Context`, or a list of them (data-parallel: each micro-batch's rows shared out by
    measured speed). config: a :class:`Config` or a spec for :meth:`Config.load` (None when resuming:
    ``resume=True`` continues from out/latest with the checkpoint's config). params: the training
    parameters of :class:`Trainer` (batch, seq, accum, lr, min_lr, warmup, beta1, beta2, eps,
    weight_decay, clip, ignore_id) and val_frac (0.05), resume, seed, val_every (0: only at the end),
    val_windows (32), ckpt_every (0: only at the end). progress: a live line on stderr (off by default
    here, on in ``attamba train``). One process only (no MPI communicator), and no stop flag.
    """
    ctxs = _context_list(ctx)
    unknown = set(params) - set(Trainer._FIELDS) - set(_RUN_FIELDS)
    if unknown:
        raise TypeError(f"unknown training parameter(s): {', '.join(sorted(unknown))}")
    cfg = None if config is None else config if isinstance(config, Config) else Config.load(config)
    p = L.lib().train_run_params_default(_int(steps, "steps", 1, INT64_MAX))
    _set_train_params(p.train, {k: v for k, v in params.items() if k in Trainer._FIELDS})
    p.data = _path_bytes(data, "data")
    p.out = _path_bytes(out, "out")
    p.progress = int(bool(progress))
    for k in _RUN_FIELDS:
        if k not in params or k == "progress":
            continue
        v = params[k]
        if k == "val_frac":
            p.val_frac = _float(v, k)
        elif k == "resume":
            p.resume = int(bool(v))
        elif k == "seed":
            p.seed = _int(v, k, 0, UINT64_MAX)
        elif k == "val_windows":
            p.val_windows = _int(v, k, INT32_MIN, INT32_MAX)
        else:
            setattr(p, k, _int(v, k, 0, INT64_MAX))
    p.stop = None
    p.comm = None
    final = c_double(float("nan"))
    locks = [c._h.lock for c in ctxs] + ([cfg._h.lock] if cfg is not None else [])
    with _MultiLock(locks):
        arr = _context_ptrs(ctxs)
        cptr = cfg._ptr() if cfg is not None else None
        L.check(L.lib().train_run(arr, len(ctxs), cptr, byref(p), byref(final)), ctxs[0]._ptr())
    return float(final.value)


def checkpoint_exists(dir):
    """Whether dir holds a checkpoint a training run can resume."""
    return bool(L.lib().checkpoint_exists(_path_bytes(dir, "dir")))


def generate_task(path, kind, example=None, examples=None, seed=None, vocab=None, pairs=None, digits=None,
                  depth=None, filler=None):
    """Writes a task file of synthetic recall examples to path (docs/tasks.md) and returns how many answer
    tokens are scored. kind: "mqar" (pairs of key and value, each key asked once) or "passkey" (a number
    hidden in filler text). example: tokens per example (256); examples: how many (1000); seed (1);
    mqar: vocab (256; keys from [1, vocab/2), values from [vocab/2, vocab)) and pairs (an int or a list
    of up to 16: example e has pairs[e % len] pairs; 8); passkey: digits (5), depth (a list of up to 16
    fractions of the filler; None: uniform at random) and filler (the path of a text file, required)."""
    k = _cstr(kind, "kind")
    p = L.lib().task_params_default(k)
    p.kind = k
    if example is not None:
        p.example = _int(example, "example", INT32_MIN, INT32_MAX)
    if examples is not None:
        p.examples = _int(examples, "examples", INT32_MIN, INT32_MAX)
    if seed is not None:
        p.seed = _int(seed, "seed", 0, UINT64_MAX)
    if vocab is not None:
        p.vocab = _int(vocab, "vocab", INT32_MIN, INT32_MAX)
    if digits is not None:
        p.digits = _int(digits, "digits", INT32_MIN, INT32_MAX)
    if pairs is not None:
        pl = [pairs] if np.ndim(pairs) == 0 else list(pairs)
        if not 1 <= len(pl) <= 16:
            raise ValueError(f"pairs: 1 to 16 counts, got {len(pl)}")
        for i, v in enumerate(pl):
            p.pairs[i] = _int(v, "pairs", INT32_MIN, INT32_MAX)
        p.n_pairs = len(pl)
    if depth is not None:
        dl = [depth] if np.ndim(depth) == 0 else list(depth)
        if len(dl) > 16:
            raise ValueError(f"depth: at most 16 fractions, got {len(dl)}")
        for i, v in enumerate(dl):
            p.depth[i] = _float(v, "depth")
        p.n_depth = len(dl)
    if filler is not None:
        p.filler = _path_bytes(filler, "filler")
    n = c_int64()
    err = L.errbuf()
    L.fail_from_errbuf(L.lib().task_generate(byref(p), _path_bytes(path, "path"), byref(n), err, len(err)), err)
    return int(n.value)
