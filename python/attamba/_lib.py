"""Loading libattamba and declaring its C API (include/attamba/attamba.h, API 0.3) for ctypes.

Nothing here is public except what ``attamba/__init__.py`` re-exports: :class:`Error`,
:class:`Status`, :class:`LibraryNotFoundError` and :func:`load_library`.
"""

import ctypes
import ctypes.util
import enum
import os
import threading
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint, c_uint64, c_void_p)

__all__ = ["Error", "Status", "LibraryNotFoundError", "load_library", "lib", "check", "fail_from_errbuf", "errbuf"]

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1
INT64_MAX = 2 ** 63 - 1
UINT64_MAX = 2 ** 64 - 1


class Status(enum.IntEnum):
    """The C library's status codes (``attamba_status``)."""
    OK = 0
    ERR_INVALID_ARG = 1
    ERR_SHAPE = 2
    ERR_NO_PLATFORM = 3
    ERR_NO_DEVICE = 4
    ERR_OUT_OF_MEMORY = 5
    ERR_BUILD = 6
    ERR_OPENCL = 7
    ERR_IO = 8
    ERR_FORMAT = 9
    ERR_UNSUPPORTED = 10
    ERR_INTERNAL = 11
    ERR_INTERRUPTED = 12


class Error(RuntimeError):
    """A call into libattamba failed.

    Attributes:
        status: the :class:`Status` (an int if the library returned a code this module does not know).
        status_name: the library's description of the status (``attamba_status_str``), e.g.
            ``"invalid argument"``.
        message: the library's message for this failure (``attamba_context_last_error`` of the context
            involved, or the error buffer of the call), e.g. which file or which token was at fault.
    """

    def __init__(self, status, message="", status_name=None):
        try:
            status = Status(status)
        except ValueError:
            status = int(status)
        if status_name is None:
            status_name = _status_str(status)
        self.status = status
        self.status_name = status_name
        self.message = message
        super().__init__(f"{status_name}: {message}" if message else status_name)

    def __reduce__(self):
        return (type(self), (int(self.status), self.message, self.status_name))


class LibraryNotFoundError(ImportError):
    """libattamba.so could not be found or loaded (raised on first use of the library)."""


# ---- C types -------------------------------------------------------------------------------------

class DeviceInfoStruct(Structure):
    _fields_ = [
        ("platform_index", c_int),
        ("device_index", c_int),
        ("platform_name", c_char * 128),
        ("name", c_char * 128),
        ("vendor", c_char * 128),
        ("driver_version", c_char * 64),
        ("opencl_c_version", c_char * 64),
        ("type", c_int),
        ("compute_units", c_uint),
        ("global_mem_bytes", c_uint64),
        ("max_alloc_bytes", c_uint64),
        ("local_mem_bytes", c_uint64),
        ("max_work_group_size", c_size_t),
        ("has_fp16", c_int),
        ("has_fp64", c_int),
        ("has_subgroups", c_int),
    ]


class CountersStruct(Structure):
    _fields_ = [(name, c_uint64) for name in ("launches", "allocations", "uploads", "copies", "blocking_reads")]


class TrainParamsStruct(Structure):
    _fields_ = [
        ("batch", c_int),
        ("seq", c_int),
        ("accum", c_int),
        ("lr", c_float),
        ("min_lr", c_float),
        ("warmup", c_int64),
        ("steps", c_int64),
        ("beta1", c_float),
        ("beta2", c_float),
        ("eps", c_float),
        ("weight_decay", c_float),
        ("clip", c_float),
        ("ignore_id", c_int32),
    ]


class TrainStatsStruct(Structure):
    _fields_ = [("step", c_int64), ("loss", c_double), ("grad_norm", c_double), ("lr", c_float)]


class SamplerParamsStruct(Structure):
    _fields_ = [
        ("temperature", c_float),
        ("top_k", c_int),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("repeat_last_n", c_int),
        ("seed", c_uint64),
    ]


# ---- C types of API 0.3 ----------------------------------------------------------------------------

class CacheStatsStruct(Structure):
    _fields_ = [(name, c_uint64) for name in ("misses", "hits", "prebuilt")]


class ConfigInfoStruct(Structure):
    _fields_ = [
        ("kind", c_char * 24),
        ("boundaries", c_char * 24),
        ("tokenizer", c_char * 24),
        ("weights", c_char * 8),
        ("vocab_size", c_int),
        ("d_model", c_int),
        ("n_layers", c_int),
        ("n_heads", c_int),
        ("n_kv_heads", c_int),
        ("head_dim", c_int),
        ("chunk", c_int),
        ("window", c_int),
        ("pseudo", c_int),
        ("bos", c_int32),
        ("eos", c_int32),
        ("parameters", c_int64),
    ]


class ConfigCostStruct(Structure):
    _fields_ = [
        ("cache_bytes", c_int64),
        ("cache_bytes_full", c_int64),
        ("key_visits", c_double),
        ("attention_flops", c_double),
    ]


class MemoryReportStruct(Structure):
    _fields_ = [(name, c_uint64) for name in ("weights", "prefill_arena", "prefill_peak", "kv_cache", "decode_arena",
                                              "decode_peak", "idle_scratch")]


SPLIT_NONE, SPLIT_LAYER, SPLIT_ROWS = 0, 1, 2  # attamba_split_mode


class ModelParamsStruct(Structure):
    _fields_ = [
        ("devices", POINTER(c_void_p)),       # attamba_context *const *
        ("n_devices", c_int),
        ("split_mode", c_int),                # attamba_split_mode
        ("tensor_split", POINTER(c_double)),  # const double *
    ]


CACHE_F32, CACHE_F16 = 0, 1  # attamba_cache_type


class SessionParamsStruct(Structure):
    _fields_ = [("n_seq", c_int), ("max_tokens", c_int64), ("cache_type", c_int)]


class TallyStruct(Structure):
    _fields_ = [("key", c_int), ("right", c_int64), ("total", c_int64), ("lo", c_double), ("hi", c_double)]


TASK_MAX_GROUPS = 64  # ATTAMBA_TASK_MAX_GROUPS


class TaskReportStruct(Structure):
    _fields_ = [
        ("kind", c_char * 16),
        ("example", c_int),
        ("examples", c_int64),
        ("all", TallyStruct),
        ("tokens", TallyStruct),
        ("group", TallyStruct * TASK_MAX_GROUPS),
        ("offset", TallyStruct * TASK_MAX_GROUPS),
        ("distance", TallyStruct * TASK_MAX_GROUPS),
        ("n_group", c_int),
        ("n_offset", c_int),
        ("n_distance", c_int),
    ]


class TaskParamsStruct(Structure):
    _fields_ = [
        ("kind", c_char_p),
        ("example", c_int),
        ("examples", c_int),
        ("seed", c_uint64),
        ("vocab", c_int),
        ("pairs", c_int * 16),
        ("n_pairs", c_int),
        ("digits", c_int),
        ("depth", c_double * 16),
        ("n_depth", c_int),
        ("filler", c_char_p),
    ]


class TrainRunParamsStruct(Structure):
    _fields_ = [
        ("train", TrainParamsStruct),
        ("data", c_char_p),
        ("val_frac", c_double),
        ("out", c_char_p),
        ("resume", c_int),
        ("seed", c_uint64),
        ("val_every", c_int64),
        ("val_windows", c_int),
        ("ckpt_every", c_int64),
        ("progress", c_int),
        ("stop", c_void_p),   # volatile sig_atomic_t *: always NULL from Python
        ("comm", c_void_p),   # const attamba_comm *: always NULL from Python (no MPI)
    ]


P_I32 = POINTER(c_int32)
P_F32 = POINTER(c_float)
P_HANDLE = POINTER(c_void_p)

# name: (restype, argtypes). Opaque handles (context, model, session, sampler, tokenizer) are c_void_p.
_PROTOTYPES = {
    "attamba_status_str": (c_char_p, [c_int]),
    "attamba_version": (c_char_p, []),
    "attamba_device_type_name": (c_char_p, [c_int]),
    "attamba_devices_list": (c_int, [POINTER(POINTER(DeviceInfoStruct)), POINTER(c_int), POINTER(c_char), c_size_t]),
    "attamba_devices_free": (None, [POINTER(DeviceInfoStruct)]),
    "attamba_context_create": (c_int, [c_char_p, P_HANDLE, POINTER(c_char), c_size_t]),
    "attamba_context_destroy": (None, [c_void_p]),
    "attamba_context_last_error": (c_char_p, [c_void_p]),
    "attamba_context_device": (POINTER(DeviceInfoStruct), [c_void_p]),
    "attamba_context_memory": (None, [c_void_p, POINTER(c_uint64), POINTER(c_uint64)]),
    "attamba_context_counters": (None, [c_void_p, POINTER(CountersStruct)]),
    "attamba_model_load": (c_int, [c_void_p, c_char_p, P_HANDLE]),
    "attamba_model_init": (c_int, [c_void_p, c_char_p, c_uint64, P_HANDLE]),
    "attamba_model_save": (c_int, [c_void_p, c_char_p]),
    "attamba_model_destroy": (None, [c_void_p]),
    "attamba_model_vocab_size": (c_int, [c_void_p]),
    "attamba_model_config": (c_char_p, [c_void_p]),
    "attamba_model_set_attention": (c_int, [c_void_p, c_int, c_int, c_char_p]),
    "attamba_model_forward": (c_int, [c_void_p, P_I32, c_int, c_int, P_F32]),
    "attamba_model_tokenizer": (c_int, [c_void_p, P_HANDLE]),
    "attamba_tokenizer_vocab_size": (c_int, [c_void_p]),
    "attamba_tokenizer_bos": (c_int32, [c_void_p]),
    "attamba_tokenizer_eos": (c_int32, [c_void_p]),
    "attamba_tokenizer_encode": (c_int, [c_void_p, c_char_p, c_size_t, c_int, P_I32, c_int64, POINTER(c_int64)]),
    "attamba_tokenizer_decode": (c_int, [c_void_p, P_I32, c_int64, POINTER(c_char), c_size_t, POINTER(c_size_t)]),
    "attamba_sampler_params_default": (SamplerParamsStruct, []),
    "attamba_sampler_create": (c_int, [c_void_p, POINTER(SamplerParamsStruct), P_HANDLE]),
    "attamba_sampler_destroy": (None, [c_void_p]),
    "attamba_sampler_sample": (c_int, [c_void_p, P_F32, c_int, P_I32]),
    "attamba_sampler_accept": (None, [c_void_p, c_int32]),
    "attamba_sampler_reset": (None, [c_void_p]),
    "attamba_session_create": (c_int, [c_void_p, c_int64, P_HANDLE]),
    "attamba_session_create_batch": (c_int, [c_void_p, c_int, c_int64, P_HANDLE]),
    "attamba_session_destroy": (None, [c_void_p]),
    "attamba_session_sequences": (c_int, [c_void_p]),
    "attamba_session_feed": (c_int, [c_void_p, P_I32, c_int, P_F32]),
    "attamba_session_prefill": (c_int, [c_void_p, c_int, P_I32, c_int, P_F32]),
    "attamba_session_step": (c_int, [c_void_p, P_I32, P_F32]),
    "attamba_session_step_sample": (c_int, [c_void_p, P_I32, P_HANDLE, P_I32]),
    "attamba_session_reset": (c_int, [c_void_p, c_int]),
    "attamba_session_position": (c_int64, [c_void_p, c_int]),
    "attamba_session_cache_bytes": (c_int64, [c_void_p, c_int]),
    "attamba_sampler_set_seed": (None, [c_void_p, c_uint64]),
    "attamba_train_params_default": (TrainParamsStruct, [c_int64]),
    "attamba_trainer_create": (c_int, [c_void_p, POINTER(TrainParamsStruct), P_HANDLE]),
    "attamba_trainer_destroy": (None, [c_void_p]),
    "attamba_trainer_step": (c_int, [c_void_p, P_I32, P_I32, POINTER(TrainStatsStruct)]),
    "attamba_trainer_evaluate": (c_int, [c_void_p, P_I32, P_I32, c_int, POINTER(c_double)]),
    "attamba_trainer_steps_done": (c_int64, [c_void_p]),
    "attamba_trainer_params": (TrainParamsStruct, [c_void_p]),
    "attamba_trainer_save": (c_int, [c_void_p, c_char_p]),
    "attamba_trainer_load": (c_int, [c_void_p, c_char_p, P_HANDLE, P_HANDLE]),
}

# API 0.3: without them the 0.2 bindings still work; calling one raises LibraryNotFoundError.
_PROTOTYPES_03 = {
    "attamba_contexts_create": (c_int, [c_char_p, P_HANDLE, c_int, POINTER(c_int), POINTER(c_char), c_size_t]),
    "attamba_context_finish": (c_int, [c_void_p]),
    "attamba_context_memory_reset_peak": (None, [c_void_p]),
    "attamba_context_save_programs": (c_int, [c_void_p, c_char_p, POINTER(c_int)]),
    "attamba_context_cache_stats": (None, [c_void_p, POINTER(CacheStatsStruct)]),
    "attamba_config_load": (c_int, [c_char_p, P_HANDLE, POINTER(c_char), c_size_t]),
    "attamba_config_destroy": (None, [c_void_p]),
    "attamba_config_set": (c_int, [c_void_p, c_char_p, c_char_p, POINTER(c_char), c_size_t]),
    "attamba_config_use_tokenizer": (c_int, [c_void_p, c_char_p, POINTER(c_char), c_size_t]),
    "attamba_config_json": (c_void_p, [c_void_p]),  # malloc'd char *: read, then free()
    "attamba_config_describe": (None, [c_void_p, POINTER(ConfigInfoStruct)]),
    "attamba_config_estimate": (None, [c_void_p, c_int64, POINTER(ConfigCostStruct)]),
    "attamba_config_measure_memory": (c_int, [c_void_p, c_void_p, c_int, c_int64, POINTER(MemoryReportStruct)]),
    "attamba_config_estimate_with": (None, [c_void_p, c_int64, c_int, POINTER(ConfigCostStruct)]),
    "attamba_config_measure_memory_with": (c_int, [c_void_p, c_void_p, c_int, c_int64, c_int,
                                                   POINTER(MemoryReportStruct)]),
    "attamba_model_create_file": (c_int, [c_void_p, c_uint64, c_char_p, POINTER(c_char), c_size_t]),
    "attamba_model_quantize": (c_int, [c_char_p, c_char_p, c_char_p, POINTER(c_int64), POINTER(c_int64),
                                       POINTER(c_char), c_size_t]),
    "attamba_model_params_default": (ModelParamsStruct, []),
    "attamba_session_create_with": (c_int, [c_void_p, POINTER(SessionParamsStruct), P_HANDLE]),
    "attamba_model_load_with": (c_int, [c_char_p, POINTER(ModelParamsStruct), P_HANDLE]),
    "attamba_model_create": (c_int, [c_void_p, POINTER(ModelParamsStruct), c_uint64, P_HANDLE]),
    "attamba_model_get_config": (c_int, [c_void_p, P_HANDLE]),
    "attamba_model_loss": (c_int, [c_void_p, P_I32, P_I32, c_int, c_int, POINTER(c_double), POINTER(c_int64)]),
    "attamba_model_argmax": (c_int, [c_void_p, P_I32, c_int, c_int, P_I32]),
    "attamba_model_validate": (c_int, [c_void_p, c_char_p, c_double, c_int, c_int, c_int, POINTER(c_double)]),
    "attamba_model_score_task": (c_int, [c_void_p, c_char_p, c_char_p, c_int, POINTER(TaskReportStruct)]),
    "attamba_tokenizer_load": (c_int, [c_char_p, P_HANDLE, POINTER(c_char), c_size_t]),
    "attamba_tokenizer_destroy": (None, [c_void_p]),
    "attamba_have_sentencepiece": (c_int, []),
    "attamba_tokenizer_train": (c_int, [c_char_p, c_int, c_char_p, POINTER(c_char), c_size_t]),
    "attamba_tokenize_file": (c_int, [c_void_p, c_char_p, c_char_p, POINTER(c_int64), POINTER(c_int64),
                                      POINTER(c_char), c_size_t]),
    "attamba_session_fill_synthetic": (c_int, [c_void_p, c_int64]),
    "attamba_trainer_create_parallel": (c_int, [c_void_p, P_HANDLE, c_int, POINTER(TrainParamsStruct), P_HANDLE]),
    "attamba_trainer_split": (c_int, [c_void_p, POINTER(c_char), c_size_t]),
    "attamba_train_run_params_default": (TrainRunParamsStruct, [c_int64]),
    "attamba_train_run": (c_int, [P_HANDLE, c_int, c_void_p, POINTER(TrainRunParamsStruct), POINTER(c_double)]),
    "attamba_checkpoint_exists": (c_int, [c_char_p]),
    "attamba_task_params_default": (TaskParamsStruct, [c_char_p]),
    "attamba_task_generate": (c_int, [POINTER(TaskParamsStruct), c_char_p, POINTER(c_int64), POINTER(c_char),
                                      c_size_t]),
}


class _Lib:
    """The loaded library: one attribute per C function, with its prototype set."""

    def __init__(self, path):
        try:
            self._dll = ctypes.CDLL(path)
        except OSError as e:
            raise LibraryNotFoundError(
                f"cannot load libattamba from {path!r}: {e}. Set ATTAMBA_LIBRARY to the path of "
                f"libattamba.so (e.g. build/libattamba.so in a CMake build tree)") from e
        self.path = path
        missing = []
        for name, (restype, argtypes) in _PROTOTYPES.items():
            try:
                fn = getattr(self._dll, name)
            except AttributeError:
                missing.append(name)
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name[len("attamba_"):], fn)
        if missing:
            raise LibraryNotFoundError(
                f"{path} lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}: these bindings "
                f"need the C API 0.2 or later; point ATTAMBA_LIBRARY at a newer libattamba.so")
        for name, (restype, argtypes) in _PROTOTYPES_03.items():
            try:
                fn = getattr(self._dll, name)
                fn.restype = restype
                fn.argtypes = argtypes
            except AttributeError:
                fn = _missing(path, name)
            setattr(self, name[len("attamba_"):], fn)
        libc = ctypes.util.find_library("c")
        self._free = ctypes.CDLL(libc).free if libc else ctypes.CDLL(None).free
        self._free.restype = None
        self._free.argtypes = [c_void_p]

    def take_string(self, ptr):
        """The text of a char * the library malloc'd (None for NULL), which is then freed."""
        if not ptr:
            return None
        try:
            return ctypes.string_at(ptr)
        finally:
            self._free(ptr)


def _missing(path, name):
    def fn(*args, **kwargs):
        raise LibraryNotFoundError(f"{path} lacks {name}: this needs the C API 0.3 or later; point ATTAMBA_LIBRARY "
                                   f"at a newer libattamba.so")
    fn.__name__ = name
    return fn



_lib = None
_lib_lock = threading.Lock()


def _find_path():
    path = os.environ.get("ATTAMBA_LIBRARY")
    if path:
        if not os.path.exists(path):
            raise LibraryNotFoundError(f"ATTAMBA_LIBRARY={path} does not exist; set it to the path of "
                                       f"libattamba.so (e.g. build/libattamba.so in a CMake build tree)")
        return path
    path = ctypes.util.find_library("attamba")
    if not path:
        raise LibraryNotFoundError(
            "libattamba was not found: set ATTAMBA_LIBRARY to the path of libattamba.so (e.g. "
            "ATTAMBA_LIBRARY=/path/to/attamba/build/libattamba.so), or install it where the dynamic "
            "loader finds it (cmake --install, then ldconfig)")
    return path


def load_library(path=None):
    """Loads libattamba now and returns the path it was loaded from.

    ``path`` defaults to ``$ATTAMBA_LIBRARY``, else ``ctypes.util.find_library("attamba")``. The
    library is otherwise loaded on first use; once loaded it cannot be swapped for another.
    Raises :class:`LibraryNotFoundError` when it cannot be found or lacks the 0.2 API (a library without
    the 0.3 additions loads, and calling one of them raises it).
    """
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _Lib(os.fspath(path) if path is not None else _find_path())
        elif path is not None and os.fspath(path) != _lib.path:
            raise ValueError(f"libattamba is already loaded from {_lib.path}")
        return _lib.path


def lib():
    """The loaded library (loading it on first use)."""
    if _lib is None:
        load_library()
    return _lib


def _status_str(status):
    try:
        return lib().status_str(int(status)).decode("utf-8", "replace")
    except LibraryNotFoundError:
        return f"status {int(status)}"


def _decode(b):
    return b.decode("utf-8", "replace") if b else ""


def check(status, ctx_ptr):
    """Raises Error for a failed status, with the message the context holds."""
    if status != 0:
        msg = _decode(lib().context_last_error(ctx_ptr)) if ctx_ptr else ""
        raise Error(status, msg or "(the library gave no message)")


def fail_from_errbuf(status, errbuf):
    """Raises Error for a failed status, with the message the call wrote to errbuf."""
    if status != 0:
        raise Error(status, _decode(errbuf.value) or "(the library gave no message)")


def errbuf():
    return ctypes.create_string_buffer(1024)
