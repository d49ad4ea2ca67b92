"""The Pythonic layer over libattamba: contexts, models, tokenizers, samplers, sessions, generation."""

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
           "Sampler", "Session", "generate_batch", "Trainer", "TrainStats"]


# ---- helpers -------------------------------------------------------------------------------------

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

    __slots__ = ("ptr", "destroy", "parent", "children", "open_children", "want_close", "lock", "__weakref__")

    def __init__(self, ptr, destroy, parent=None):
        self.ptr = ptr
        self.destroy = destroy
        self.parent = parent
        self.children = weakref.WeakSet()
        self.open_children = 0
        self.want_close = False
        self.lock = parent.lock if parent is not None else threading.RLock()
        if parent is not None:
            parent.children.add(self)
            parent.open_children += 1

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
            parent, self.parent = self.parent, None
            if parent is not None:
                parent.open_children -= 1
                if parent.want_close and parent.open_children == 0:
                    parent.release()

    def __del__(self):
        try:
            self.release()
        except Exception:  # interpreter shutdown: nothing useful left to do
            pass


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

    def __repr__(self):
        if self.closed:
            return "<attamba.Context closed>"
        d = self.device
        return f"<attamba.Context {d.selector} {d.name!r} ({d.type})>"


# ---- model ---------------------------------------------------------------------------------------

class Model(_Owned):
    """An Attamba model or transformer baseline on a context's device.

    Make one with :meth:`Model.load` or :meth:`Model.init`. The model keeps its context alive; it is
    freed by :meth:`close`, by leaving a ``with`` block, or when it is garbage (after its sessions).
    """

    _kind = "Model"

    def __init__(self, *args, **kwargs):
        raise TypeError("use Model.load(ctx, dir) or Model.init(ctx, config, seed)")

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
        """The Model owning a C model the library just made on ctx (the caller holds ctx's lock)."""
        self = object.__new__(cls)
        self.context = ctx
        self._h = _Handle(ptr, L.lib().model_destroy, ctx._h)
        self._eos = self._bos = None
        self._specials_known = False
        return self

    @classmethod
    def load(cls, ctx, dir):
        """Loads ``dir/config.json`` and ``dir/model.safetensors`` onto ctx's device.

        Raises :class:`Error` for a missing, corrupt or inconsistent model (the message names the file).
        """
        path = _path_bytes(dir, "dir")
        return cls._wrap(ctx, lambda c, out: L.lib().model_load(c, path, out))

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
        ids = _tokens(tokens)
        if ids.ndim not in (1, 2):
            raise ValueError(f"tokens must have shape [T] or [B, T], got {ids.shape}")
        B, T = (1, ids.shape[0]) if ids.ndim == 1 else ids.shape
        if B < 1 or T < 1:
            raise ValueError(f"tokens must not be empty, got shape {ids.shape}")
        if B > INT32_MAX or T > INT32_MAX:
            raise ValueError(f"tokens shape {ids.shape} is too large")
        V = self.vocab_size
        logits = np.empty((B, T, V), dtype=np.float32)
        self._call(L.lib().model_forward, _i32p(ids), B, T, _f32p(logits))
        return logits[0] if ids.ndim == 1 else logits

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
    text gives its bytes back). Owned by its model (it keeps the model alive)."""

    def __init__(self, model):
        if not isinstance(model, Model):
            raise TypeError(f"model must be an attamba.Model, got {type(model).__name__}")
        self.model = model
        out = c_void_p()
        model._call(L.lib().model_tokenizer, byref(out))

    def _ptr(self):
        out = c_void_p()  # owned by the model: asked for again on each use, so a closed model is caught
        self.model._call(L.lib().model_tokenizer, byref(out))
        return out.value

    def _call(self, fn, *args):
        with self.model._h.lock:
            L.check(fn(self._ptr(), *args), self.model.context._h.ptr)

    @property
    def vocab_size(self):
        """The number of ids."""
        with self.model._h.lock:
            return L.lib().tokenizer_vocab_size(self._ptr())

    @property
    def bos(self):
        """The beginning-of-sequence id."""
        with self.model._h.lock:
            return int(L.lib().tokenizer_bos(self._ptr()))

    @property
    def eos(self):
        """The end-of-sequence id."""
        with self.model._h.lock:
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
        with self.model._h.lock:
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
        with self.model._h.lock:
            self._call(lib.tokenizer_decode, _i32p(arr), arr.size, None, 0, byref(n))
            need = n.value
            buf = ctypes.create_string_buffer(need + 1)
            self._call(lib.tokenizer_decode, _i32p(arr), arr.size, buf, need + 1, byref(n))
        return buf.raw[:need]

    def decode(self, ids):
        """The text of ids: their bytes decoded as UTF-8 (invalid sequences become U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def __repr__(self):
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
    together (one pass over the weights per step).
    """

    _kind = "Session"

    def __init__(self, model, max_tokens, n_seq=1):
        if not isinstance(model, Model):
            raise TypeError(f"model must be an attamba.Model, got {type(model).__name__}")
        self.model = model
        self.max_tokens = _int(max_tokens, "max_tokens", -INT64_MAX, INT64_MAX)
        self.n_seq = _int(n_seq, "n_seq", INT32_MIN, INT32_MAX)
        lib = L.lib()
        out = c_void_p()
        with model._h.lock:
            mptr = model._ptr()
            if self.n_seq == 1:
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

    def __init__(self, model, steps, **params):
        if not isinstance(model, Model):
            raise TypeError(f"model must be an attamba.Model, got {type(model).__name__}")
        unknown = set(params) - set(self._FIELDS)
        if unknown:
            raise TypeError(f"unknown training parameter(s): {', '.join(sorted(unknown))}")
        p = L.lib().train_params_default(_int(steps, "steps", 1, INT64_MAX))
        for k, v in params.items():
            if isinstance(getattr(p, k), float):
                setattr(p, k, _float(v, k))
            else:
                setattr(p, k, _int(v, k, 0, INT64_MAX) if k == "warmup" else _int(v, k, INT32_MIN, INT32_MAX))
        out = c_void_p()
        with model._h.lock:
            mptr = model._ptr()
            L.check(L.lib().trainer_create(mptr, byref(p), byref(out)), model.context._h.ptr)
            self._h = _Handle(out.value, L.lib().trainer_destroy, model._h)
        self.model = model

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
