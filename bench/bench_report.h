/* bench_report.h: the report side of `attamba bench suite`: report.md and SVG plots from a directory
 * of per-device JSON reports, and a side-by-side comparison of reports (docs/bench/schema.json). */
#ifndef ATTAMBA_BENCH_REPORT_H
#define ATTAMBA_BENCH_REPORT_H

#include <stddef.h>

/* Reads every *.json in dir whose top level has "schema": "attamba-bench" (sorted by file name) and
 * writes dir/report.md, dir/roofline-<slug>.svg per report (slug: the file's base name without .json,
 * made filesystem-safe) and dir/decode.svg when some report has decode entries. The output is a pure
 * function of the JSON files (no time, no paths, fixed number formats: byte-identical when
 * regenerated); each file is written via a temporary name and rename. Returns 0 on success, else
 * nonzero with a message in err (naming the file and field for a malformed report). */
int bench_report_write(const char *dir, char *err, size_t err_size);

/* attamba bench report DIR: bench_report_write. 0 on success, 1 on failure, 2 on usage. */
int bench_report_main(int argc, char **argv);

/* attamba bench compare A.json B.json [C.json ...]: entries matched by (bench, op, shape, variant)
 * side by side: each file's median ms and roofline fraction, and each file's speed relative to the
 * first (A.ms / X.ms), "-" where a file lacks the entry; a header naming each file's device, commit
 * and suite; a last line with each file's geometric mean speed over the entries it shares with A.
 * Takes suite reports and the plain entry arrays of `attamba bench <name> --json` (no roofline).
 * 0 on success, 1 on an unreadable or invalid file, 2 on usage. */
int bench_compare_main(int argc, char **argv);

#endif
