/* SPDX-License-Identifier: MIT */
/*
 * lib/handler_exec.c: the exec kind. args: argv (argv[0] absolute, or a
 * bare name looked up in the queue's exec.path), env, cwd, stdin. The
 * program must be allowed by exec.allow, checked at put. The process runs
 * without a shell, with PATH, HOME=/, LANG=C.UTF-8 and the job's env.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "handler.h"
#include "params.h"
#include "proc.h"
#include "xmalloc.h"

/* Resolves argv0 against path into buf (PATH_MAX). 0, or -1 with err. */
static int
resolve_program(const struct aq_queue_config *qc, const char *argv0, char *buf,
                struct aq_error *err)
{
    const char *dir = qc->exec.path;

    if (argv0[0] == '/') {
        if (strlen(argv0) >= PATH_MAX)
            goto too_long;
        strcpy(buf, argv0);
        return 0;
    }
    if (argv0[0] == '\0' || strchr(argv0, '/') != NULL) {
        aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                     "params.args.argv[0]: expected an absolute path or a "
                     "program name, got \"%.200s\"",
                     argv0);
        return -1;
    }
    while (dir != NULL && *dir != '\0') {
        const char *end = strchr(dir, ':');
        size_t dlen = end != NULL ? (size_t)(end - dir) : strlen(dir);
        int n = snprintf(buf, PATH_MAX, "%.*s/%s", (int)dlen, dir, argv0);

        if (n > 0 && n < PATH_MAX && access(buf, X_OK) == 0)
            return 0;
        dir = end != NULL ? end + 1 : NULL;
    }
    aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                 "params.args.argv[0]: %.200s: not found in exec.path %.200s",
                 argv0, qc->exec.path);
    return -1;
too_long:
    aq_error_set(err, AQ_ERR_INVALID_PARAMS,
                 "params.args.argv[0]: path too long");
    return -1;
}

static bool
is_allowed(const struct aq_queue_config *qc, const char *program)
{
    for (size_t i = 0; i < qc->exec.nallow; i++) {
        if (strcmp(qc->exec.allow[i], "*") == 0 ||
            strcmp(qc->exec.allow[i], program) == 0)
            return true;
    }
    return false;
}

/* Variables that make the dynamic loader run code of the producer's
 * choosing inside an allowed program: refused unless any program may run. */
static bool
is_loader_variable(const char *name)
{
    return strncmp(name, "LD_", 3) == 0 || strcmp(name, "GCONV_PATH") == 0 ||
           strcmp(name, "MALLOC_CHECK_") == 0 ||
           strcmp(name, "GLIBC_TUNABLES") == 0;
}

static bool
allows_all(const struct aq_queue_config *qc)
{
    for (size_t i = 0; i < qc->exec.nallow; i++) {
        if (strcmp(qc->exec.allow[i], "*") == 0)
            return true;
    }
    return false;
}

/* env: variables (names without '=') and their values. */
static int
check_env(const struct aq_queue_config *qc, const struct aq_params *env)
{
    const char *name, *value;
    json_t *v;

    json_object_foreach ((json_t *)env->v, name, v) {
        if (name[0] == '\0' || strchr(name, '=') != NULL)
            return aq_params_fail(env, NULL, "invalid variable name \"%.100s\"",
                                  name);
        if (aq_params_string(env, name, 0, &value) < 0)
            return -1;
        if (is_loader_variable(name) && !allows_all(qc)) {
            aq_error_set(env->err, AQ_ERR_NOT_ALLOWED,
                         "exec: env %.100s: not allowed: it would load code "
                         "into a program of queues.%s.exec.allow",
                         name, qc->name);
            return -1;
        }
    }
    return 0;
}

static int
exec_check(const struct aq_queue_config *qc, const json_t *args,
           struct aq_error *err)
{
    static const char *const fields[] = {"argv", "env", "cwd", "stdin", NULL};
    char program[PATH_MAX];
    struct aq_params p, argv, env;
    const char *s, *argv0 = NULL;
    int rc;

    aq_params_init(&p, args, "params.args", "exec", err);
    if (aq_params_fields(&p, fields) < 0 ||
        aq_params_array(&p, "argv", AQ_PARAM_REQUIRED, "strings", &argv) < 0)
        return -1;
    for (size_t i = 0; i < json_array_size(argv.v); i++) {
        if (aq_params_string_at(&argv, i, 0, i == 0 ? &argv0 : &s) < 0)
            return -1;
    }
    if ((rc = aq_params_object(&p, "env", 0, "strings", &env)) < 0 ||
        (rc > 0 && check_env(qc, &env) < 0) ||
        aq_params_string(&p, "cwd", 0, &s) < 0 ||
        /* stdin is bytes: U+0000 is fine there. */
        aq_params_string(&p, "stdin", AQ_PARAM_NUL_OK, &s) < 0)
        return -1;
    if (resolve_program(qc, argv0, program, err) < 0)
        return -1;
    if (!is_allowed(qc, program)) {
        aq_error_set(err, AQ_ERR_NOT_ALLOWED,
                     "exec: %.200s: not allowed by queues.%s.exec.allow",
                     program, qc->name);
        return -1;
    }
    return 0;
}

/* ---- running ---- */

struct exec_run {
    struct aq_proc *proc;
    aq_run_done_cb *cb;
    void *arg;
};

static void
exec_exit_cb(struct aq_proc *p, const struct aq_proc_result *res, void *arg)
{
    struct exec_run *r = arg;
    struct aq_outcome out = {.ok = res->exit_code == 0 && res->signal == 0};
    json_t *v = json_object();
    aq_run_done_cb *cb = r->cb;
    void *cb_arg = r->arg;

    json_object_set_new(v, "exit_code", json_integer(res->exit_code));
    if (res->signal != 0)
        json_object_set_new(v, "signal", json_integer(res->signal));
    json_object_set_new(v, "stdout",
                        aq_json_string_lossy(res->out, res->out_len));
    json_object_set_new(v, "stderr",
                        aq_json_string_lossy(res->err, res->err_len));
    json_object_set_new(v, "truncated",
                        json_boolean(res->out_truncated || res->err_truncated));
    json_object_set_new(v, "duration",
                        json_real((double)res->duration_us / 1e6));
    aq_outcome_set_result(&out, v);
    if (res->signal != 0)
        aq_outcome_fail(&out, "signal", "exec: killed by signal %d (%s)",
                        res->signal, strsignal(res->signal));
    else if (res->exit_code != 0)
        aq_outcome_fail(&out, "exit", "exec: exited with status %d",
                        res->exit_code);
    aq_proc_free(p);
    free(r);
    cb(cb_arg, &out);
}

/* Builds "NAME=value" strings: the job's env, then the minimal environment
 * for the names it did not set. Returns a NULL-terminated array whose
 * strings and array are the caller's. */
static char **
build_env(const struct aq_queue_config *qc, const json_t *env)
{
    static const char *const base_names[] = {"PATH", "HOME", "LANG"};
    const char *base_values[] = {qc->exec.path, "/", "C.UTF-8"};
    size_t n = 0, cap = json_object_size(env) + 4;
    char **envp = xcalloc(cap, sizeof *envp);
    const char *name;
    json_t *v;

    json_object_foreach ((json_t *)env, name, v) {
        if (json_is_string(v))
            envp[n++] = xasprintf("%s=%s", name, json_string_value(v));
    }
    for (size_t i = 0; i < 3; i++) {
        if (json_object_get(env, base_names[i]) == NULL)
            envp[n++] = xasprintf("%s=%s", base_names[i], base_values[i]);
    }
    envp[n] = NULL;
    return envp;
}

static void
free_strv(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static void *
exec_start(const struct aq_run_env *env, const struct aq_job *j,
           aq_run_done_cb *cb, void *arg)
{
    struct aq_outcome out = {0};
    struct aq_error err = {0};
    json_t *args = aq_args_parse(j->args, j->args_len, NULL);
    const json_t *argv_json = json_object_get(args, "argv");
    char program[PATH_MAX];
    const char **argv = NULL;
    char **envp = NULL;
    struct exec_run *r = NULL;
    size_t i;
    json_t *s;

    if (args == NULL || exec_check(env->qc, args, &err) < 0)
        goto fail;
    resolve_program(env->qc, json_string_value(json_array_get(argv_json, 0)),
                    program, &err);
    argv = xcalloc(json_array_size(argv_json) + 1, sizeof *argv);
    json_array_foreach (argv_json, i, s)
        argv[i] = json_string_value(s);
    argv[0] = program;
    envp = build_env(env->qc, json_object_get(args, "env"));

    const json_t *in = json_object_get(args, "stdin");
    struct aq_proc_opts opts = {
        .argv = argv,
        .envp = (const char *const *)envp,
        .cwd = json_string_value(json_object_get(args, "cwd")),
        .stdin_data = json_string_value(in),
        .stdin_len = json_string_length(in),
        .capture = env->qc->exec.capture,
        .kill_grace_us = (int64_t)(env->qc->exec.kill_grace * 1e6),
        .job_id = j->id,
    };
    r = xcalloc(1, sizeof *r);
    r->cb = cb;
    r->arg = arg;
    r->proc = aq_proc_spawn(env->procs, &opts, exec_exit_cb, r, &err);
    if (r->proc == NULL)
        goto fail;
    free(argv);
    free_strv(envp);
    json_decref(args);
    return r;
fail:
    free(r);
    free(argv);
    free_strv(envp);
    json_decref(args);
    aq_outcome_fail(&out, "spawn", "%s",
                    err.message[0] != '\0' ? err.message : "exec: bad args");
    cb(arg, &out);
    return NULL;
}

static void
exec_cancel(void *run)
{
    struct exec_run *r = run;

    aq_proc_kill(r->proc);
}

static void
exec_abandon(void *run)
{
    struct exec_run *r = run;

    aq_proc_free(r->proc); /* kills all it left; the reaper collects it */
    free(r);
}

const struct aq_handler aq_handler_exec = {
    AQ_KIND_EXEC, true, exec_check, exec_start, exec_cancel, exec_abandon};
