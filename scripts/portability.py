#!/usr/bin/env python3
"""Every OpenCL program variant the engine builds, compiled offline for GPUs it cannot run on here.

usage: scripts/portability.py ATTAMBA_BINARY [--out FILE] [--presets LIST] [--jobs N]

The variants are the ones `attamba compile` finds for each preset with the CPU rows of the tuning
table and with the GPU rows (ATTAMBA_TUNE_CLASS=gpu): the program, its -D options (the default
presets include tiny reshaped to two heads of 128, the attention kernels' DH = 128). Each is compiled
by clang-15 as OpenCL C 1.2 (the sources cl/common.cl [+ cl/dot.cl] + cl/<program>.cl, as the runtime joins them)
for AMD gfx90a and gfx1030 (with Debian's rocm-device-libs; resource use from clang's
kernel-resource-usage remarks), NVIDIA nvptx64 (PTX for sm_80, linked with Debian's libclc where it is
installed: the per-kernel local-memory stack, where private arrays and spills land; then, where NVIDIA's
ptxas is on PATH or in /usr/local/cuda/bin (not in Debian, so not in CI), assembled for sm_90: physical
registers, stack frame and spill stores) and SPIR (spir64: a front-end check). Any compile error fails
the run. The table goes to FILE (default docs/portability.md), with a flag on every kernel that spills
or keeps a stack, or whose occupancy falls below FLOOR waves per SIMD on gfx90a or SM90_FLOOR warps per
SM on sm_90.
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLANG = "clang-15"
DEVICE_LIBS = "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode"
FLOOR = 4  # waves per SIMD on gfx90a: below it a kernel cannot hide memory latency
SM90_FLOOR = 16  # warps per SM on sm_90 (of 64): 25%, the register budget of 128 per thread
AMD = ["gfx90a", "gfx1030"]
LIBCLC = "/usr/lib/clc/nvptx64--nvidiacl.bc"  # libclc-15: the OpenCL builtins for nvptx
PTXAS = shutil.which("ptxas") or shutil.which("ptxas", path="/usr/local/cuda/bin")


def changed(cli, name, sets, out):
    """A model directory made by `attamba init` from preset NAME with its config's integer fields
    changed (["head_dim=128"]): its path."""
    subprocess.run([cli, "init", "--preset", name, "--out", out], check=True, capture_output=True)
    with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    for field, _, value in (x.partition("=") for x in sets):
        config[field] = int(value)
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(config, f)
    shutil.rmtree(out)
    subprocess.run([cli, "init", "--config", out + ".json", "--out", out], check=True, capture_output=True)
    return out


def variants(cli, presets):
    """(program, options) pairs, each with the classes and presets that build it."""
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cls in ("cpu", "gpu"):
            for preset in presets:
                out = os.path.join(tmp, f"{cls}-{preset}".replace(":", "-"))
                env = dict(os.environ, ATTAMBA_TUNE_CLASS=cls, ATTAMBA_GEMM="own")
                spec, _, wtype = preset.partition(":")  # NAME:TYPE: the preset with f16 / q8 weights
                name, *sets = spec.split("+")  # NAME+field=value: the preset with config fields changed
                model = ["--preset", name] if not sets else ["--model", changed(cli, name, sets, out + "-model")]
                r = subprocess.run([cli, "compile"] + model + ["--out", out, "--max-prompt", "128",
                                    "--train-seq", "64"] + (["--weight-type", wtype] if wtype else []),
                                   env=env, capture_output=True, text=True)
                if r.returncode:
                    sys.exit(f"portability: attamba compile --preset {preset} ({cls}) failed:\n{r.stderr[-3000:]}")
                with open(os.path.join(out, "bundle.json"), encoding="utf-8") as f:
                    for p in json.load(f)["programs"]:
                        key = (p["program"], p["options"])
                        found.setdefault(key, set()).add(f"{cls}/{preset}")
    return found


def source(program):
    parts = [] if program == "common" else ["common"]  # as src/runtime/rt_program.c's program_sources
    parts += ["dot"] if program in ("gemm", "ssm") else []
    text = ""
    for name in parts + [program]:
        with open(os.path.join(ROOT, "cl", name + ".cl"), encoding="utf-8") as f:
            text += f.read()
    return text


REMARK = re.compile(r"remark:\s+(Function Name|VGPRs|AGPRs|ScratchSize \[bytes/lane\]|Occupancy \[waves/SIMD\]|"
                    r"VGPRs Spill|SGPRs Spill|LDS Size \[bytes/block\]):\s*(\S+)")


def compile_one(program, options, target):
    """Compiles one variant for one target: (kernel -> resources, error text or None)."""
    base = [CLANG, "-x", "cl", "-cl-std=CL1.2", "-DATB_HAS_FP16=0", "-DATB_HAS_FP64=0"] + options.split()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, program + ".cl")
        with open(src, "w", encoding="utf-8") as f:
            f.write(source(program))
        if target in AMD:
            cmd = base + ["-target", "amdgcn-amd-amdhsa", "-mcpu=" + target, "--rocm-device-lib-path=" + DEVICE_LIBS,
                          "-O3", "-Rpass-analysis=kernel-resource-usage", "-c", src, "-o", os.path.join(tmp, "o")]
        elif target == "nvptx64":
            cmd = base + ["-target", "nvptx64-nvidia-nvcl", "-Xclang", "-target-cpu", "-Xclang", "sm_80", "-O3", "-S",
                          src, "-o", os.path.join(tmp, "o.ptx")]
            if os.path.exists(LIBCLC):  # builtins resolved (ptxas needs them), the triples differ in name only
                cmd += ["-Xclang", "-mlink-builtin-bitcode", "-Xclang", LIBCLC, "-Wno-linker-warnings"]
        else:
            cmd = base + ["-target", "spir64", "-O0", "-emit-llvm", "-c", src, "-o", os.path.join(tmp, "o.bc")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            return {}, r.stderr[-2000:]
        kernels = {}
        if target in AMD:
            name = None
            for m in REMARK.finditer(r.stderr):
                if m.group(1) == "Function Name":
                    name = m.group(2)
                    kernels[name] = {}
                elif name:
                    kernels[name][m.group(1).split(" [")[0]] = int(m.group(2))
        elif target == "nvptx64":
            with open(os.path.join(tmp, "o.ptx"), encoding="utf-8") as f:
                ptx = f.read()
            for m in re.finditer(r"\.entry\s+(\w+)\s*\((.*?)\n\}", ptx, re.S):
                depot = re.search(r"__local_depot\d+\[(\d+)\]", m.group(2))
                kernels[m.group(1)] = {"local": int(depot.group(1)) if depot else 0}
            if PTXAS and os.path.exists(LIBCLC):
                return sm90(kernels, os.path.join(tmp, "o.ptx"))
        return kernels, None


SASS = re.compile(r"Compiling entry function '(\w+)' for 'sm_90'.*?(\d+) bytes stack frame, (\d+) bytes spill stores"
                  r".*?Used (\d+) registers", re.S)


def sm90(kernels, ptx):
    """ptxas -arch=sm_90 -v on the PTX: each kernel's registers, stack frame and spill stores added."""
    r = subprocess.run([PTXAS, "-arch=sm_90", "-v", ptx, "-o", ptx + ".cubin"], capture_output=True, text=True)
    if r.returncode:
        return kernels, "ptxas: " + r.stderr[-2000:]
    for m in SASS.finditer(r.stderr):
        regs = int(m.group(4))
        warps = min(64, 65536 // (((regs + 7) // 8) * 8 * 32))
        kernels.setdefault(m.group(1), {}).update(
            {"regs": regs, "stack": int(m.group(2)), "spill": int(m.group(3)), "warps": warps})
    return kernels, None


def short(options):
    """The options without the ones every variant of the program shares with the others' defaults."""
    return " ".join(o[2:] for o in options.split()) or "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cli")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "portability.md"))
    ap.add_argument("--presets", default="tiny,paper-60m,tiny:f16,tiny:q8,tiny+dim=256+n_heads=2+n_kv_heads=2+head_dim=128",
                    help="presets to compile, NAME or NAME:f16 / NAME:q8 for low-precision weights, "
                         "NAME+FIELD=N+... for the preset with integer config fields changed")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    found = variants(a.cli, a.presets.split(","))
    targets = AMD + ["nvptx64", "spir64"]
    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        for key in found:
            for t in targets:
                jobs[(key, t)] = pool.submit(compile_one, key[0], key[1], t)
    errors, rows, flagged, ran = [], [], 0, False  # ran: ptxas gave figures
    for key in sorted(found):
        program, options = key
        res = {t: jobs[(key, t)].result() for t in targets}
        for t in targets:
            if res[t][1]:
                errors.append(f"{program} [{options}] for {t}:\n{res[t][1]}")
        for kernel in sorted(res["gfx90a"][0]):
            g, r = res["gfx90a"][0][kernel], res["gfx1030"][0].get(kernel, {})
            p = res["nvptx64"][0].get(kernel, {})
            flags = []
            if g.get("ScratchSize", 0) or g.get("VGPRs Spill", 0):
                flags.append("gfx90a scratch")
            if g.get("Occupancy", 99) < FLOOR:
                flags.append(f"gfx90a occupancy < {FLOOR}")
            if r.get("ScratchSize", 0):
                flags.append("gfx1030 scratch")
            ran |= "regs" in p
            if "regs" in p:  # ptxas ran: its figures replace the PTX stack's
                if p["spill"]:
                    flags.append("sm_90 spills")
                if p["stack"]:
                    flags.append("sm_90 stack")
                if p["warps"] < SM90_FLOOR:
                    flags.append(f"sm_90 occupancy < {SM90_FLOOR} warps")
            elif p.get("local", 0):
                flags.append("PTX local stack")
            flagged += bool(flags)
            rows.append(f"| {program} | {kernel} | {short(options)} | {g.get('VGPRs', '?')} | {g.get('AGPRs', '?')} | "
                        f"{g.get('ScratchSize', '?')} | {g.get('Occupancy', '?')} | {g.get('LDS Size', '?')} | "
                        f"{r.get('VGPRs', '?')} | {r.get('ScratchSize', '?')} | {r.get('Occupancy', '?')} | "
                        f"{p.get('local', '?')} | {p.get('regs', '-')} | {p.get('stack', '-')} | {p.get('spill', '-')} | "
                        f"{p.get('warps', '-')} | {', '.join(flags) or '-'} |")
    version = subprocess.run([PTXAS, "--version"], capture_output=True, text=True).stdout if ran else ""
    release = re.search(r"release ([\d.]+)", version)
    sm90_how = (f"that PTX assembled for sm_90 by NVIDIA's ptxas (CUDA {release.group(1) if release else '?'}):"
                if ran else "where NVIDIA's ptxas is installed (not on the machine that wrote this table: '-'),")
    with open(a.out + ".tmp", "w", encoding="utf-8") as f:
        f.write(f"""# Portability: every program variant, compiled offline for GPUs

Generated by `scripts/portability.py build/attamba` (clang-15, OpenCL C 1.2, no extension required): the
{len(found)} variants `attamba compile` finds for the presets {a.presets} with the CPU and the GPU
rows of the tuning table, each compiled for AMD gfx90a and gfx1030 (Debian's rocm-device-libs),
NVIDIA nvptx64 and SPIR (spir64). Every compile succeeded ({len(found) * len(targets)} compiles);
CI runs the script and fails on any error.

Columns: gfx90a vector registers (VGPR), accumulation registers (AGPR), scratch bytes per lane
(spills and private arrays), waves per SIMD (occupancy, of 8), LDS bytes per group; gfx1030 (RDNA2:
Debian's ROCm 5.2 device libraries stop before gfx1100) VGPRs, scratch and occupancy (of 16); the PTX
local-memory stack per thread (sm_80 PTX: where nvptx puts private arrays and spills); then,
{sm90_how}
registers per thread, stack frame bytes (private arrays in local memory), spill-store bytes and warps
per SM (of 64) that its registers allow. Flagged: any scratch, spill or stack (the PTX stack where
ptxas did not run), gfx90a occupancy below {FLOOR} waves per SIMD, sm_90 below {SM90_FLOOR} warps per
SM: {flagged} of {len(rows)} kernels. The options column drops the `-D`.

| program | kernel | options | 90a VGPR | 90a AGPR | 90a scratch | 90a waves | 90a LDS | 1030 VGPR | 1030 scratch | 1030 waves | PTX local | sm_90 regs | sm_90 stack | sm_90 spill | sm_90 warps | flags |
|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
""")
        f.write("\n".join(rows) + "\n")
    os.replace(a.out + ".tmp", a.out)
    print(f"portability: {len(found)} variants x {len(targets)} targets, {len(rows)} kernels, {flagged} flagged, "
          f"{len(errors)} errors -> {a.out}")
    for e in errors:
        print("error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
