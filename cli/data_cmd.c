/* attamba data mqar|passkey: a seeded recall task as a task file (docs/tasks.md) that train maps
 * (windows = examples, only the answers scored) and eval --task scores. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: attamba data mqar    --out FILE [--examples N] [--seq T] [--pairs 4,8,...] [--vocab V] [--seed S]\n"
            "       attamba data passkey --out FILE [--examples N] [--seq T] [--digits D] [--depth 0,0.5,1]\n"
            "                            [--filler TEXT] [--seed S]\n\n"
            "Writes N examples of T tokens each (default 1000 x 256), deterministic by seed; train on the\n"
            "file with --seq T (only the answers are scored) and score a model with eval --task.\n"
            "  mqar     pairs k v (distinct keys from [1, V/2), values from [V/2, V); default 8 pairs,\n"
            "           V 256), then every key asked once at a random place, its value the answer; with a\n"
            "           list, example e has the e-th count (cyclically)\n"
            "  passkey  a D-digit number (default 5) hidden in filler text at a depth (a fraction of the\n"
            "           text; a list cycles over examples; default uniform at random), asked for at the end;\n"
            "           filler from TEXT (default build/corpus/kjv-train.txt; for held-out sets, kjv-valid.txt)\n");
}

/* "a,b,c" into at most max numbers in [lo, hi]; the count, or -1 (said). */
static int parse_list(const char *name, const char *arg, double lo, double hi, int integer, double *out, int max) {
    int n = 0;
    char *copy = strdup(arg);
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == max) {
            cli_error("data", "--%s takes at most %d values", name, max);
            n = -1;
            break;
        }
        if (!cli_number("data", name, tok, lo, hi, integer, &out[n])) {
            n = -1;
            break;
        }
        n++;
    }
    free(copy);
    return n;
}

int cli_data(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},    {"examples", required_argument, 0, 'n'},
        {"seq", required_argument, 0, 'T'},    {"pairs", required_argument, 0, 'p'},
        {"vocab", required_argument, 0, 'V'},  {"seed", required_argument, 0, 's'},
        {"digits", required_argument, 0, 'D'}, {"depth", required_argument, 0, 'd'},
        {"filler", required_argument, 0, 'f'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "mqar") && strcmp(argv[1], "passkey"))
        return cli_error("data", "unknown task '%s' (want mqar or passkey)", argv[1]), 2;
    attamba_task_params p = attamba_task_params_default(argv[1]);
    p.filler = "build/corpus/kjv-train.txt";
    const char *out = NULL;
    double v, list[16];
    int c, bad = 0, n;
    optind = 2;
    while ((c = getopt_long(argc, argv, "o:n:T:p:V:s:D:d:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f': p.filler = optarg; break;
        case 'n': bad |= !cli_number("data", "examples", optarg, 1, 1 << 24, 1, &v), p.examples = (int)v; break;
        case 'T': bad |= !cli_number("data", "seq", optarg, 8, 1 << 20, 1, &v), p.example = (int)v; break;
        case 'V': bad |= !cli_number("data", "vocab", optarg, 4, 65536, 1, &v), p.vocab = (int)v; break;
        case 'D': bad |= !cli_number("data", "digits", optarg, 1, 12, 1, &v), p.digits = (int)v; break;
        case 's': bad |= !cli_number("data", "seed", optarg, 0, 9007199254740992.0, 1, &v), p.seed = (uint64_t)v; break;
        case 'p':
            if ((n = parse_list("pairs", optarg, 1, 32767, 1, list, 16)) < 0) bad = 1;
            for (int i = 0; i < n; i++) p.pairs[i] = (int)list[i];
            p.n_pairs = n > 0 ? n : p.n_pairs;
            break;
        case 'd':
            if ((n = parse_list("depth", optarg, 0, 1, 0, p.depth, 16)) < 0) bad = 1;
            p.n_depth = n > 0 ? n : 0;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (bad) return 2;
    if (!out) return cli_error("data", "--out FILE is required"), 2;
    char err[1024];
    int64_t answers = 0;
    if (attamba_task_generate(&p, out, &answers, err, sizeof err)) {
        static const char filler[] = "the filler text: ";
        int bundled = !strncmp(err, filler, sizeof filler - 1); /* the default filler is made by a script */
        return cli_error("data", "%s%s", err, bundled ? " (scripts/corpus.sh makes the bundled one)" : "");
    }
    printf("wrote %s: %s, %d examples of %d tokens, %lld answers scored (seed %llu)\n", out, p.kind, p.examples,
           p.example, (long long)answers, (unsigned long long)p.seed);
    return 0;
}
