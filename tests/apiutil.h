/* apiutil.h: what the tests of the public API share. Those tests include nothing internal, only
 * attamba/attamba.h and this (implemented in testutil.c, which testutil.h's suites also use). */
#ifndef ATTAMBA_APIUTIL_H
#define ATTAMBA_APIUTIL_H

#include <check.h>

#include "attamba/attamba.h"

/* A new context on the default device; the test fails with the message when there is none. */
attamba_context *tu_api_context(void);
/* A new temporary directory (malloc'd); tu_remove_dir deletes it with what it holds, and frees the path. */
char *tu_temp_dir(void);
void tu_remove_dir(char *dir);
/* Runs the suite; returns the process exit code. */
int tu_run(Suite *s);

/* Fails the test unless expr is ATTAMBA_OK, with the status and the context's message. */
#define API_OK(expr, ctx)                                                                              \
    do {                                                                                               \
        attamba_status api_ok_s_ = (expr);                                                             \
        ck_assert_msg(api_ok_s_ == ATTAMBA_OK, "%s -> %s: %s", #expr, attamba_status_str(api_ok_s_),   \
                      (ctx) ? attamba_context_last_error(ctx) : "");                                  \
    } while (0)

#endif
