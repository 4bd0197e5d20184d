/* SPDX-License-Identifier: MIT */
/*
 * lib/ui.h: the dashboard (spec section 13), served by the metrics
 * listener from files embedded at build time: lib/ui_embed.cmake turns
 * ui/ into the table below (ui_files.c in the build dir). GET / is
 * index.html, GET /ui/NAME the others; each with its ETag (304 on
 * If-None-Match), Cache-Control: no-cache and a strict
 * Content-Security-Policy.
 */
#ifndef AQ_UI_H
#define AQ_UI_H

#include <stdbool.h>
#include <stddef.h>

struct evhttp_request;

struct aq_ui_file {
    const char *name; /* "app.js": the path under /ui/ */
    const char *type; /* Content-Type */
    const char *etag; /* quoted, as sent: "\"0123456789abcdef\"" */
    const unsigned char *data;
    size_t len;
};

extern const struct aq_ui_file aq_ui_files[]; /* sorted by name */
extern const size_t aq_ui_nfiles;

/* The embedded file called name, or NULL. */
const struct aq_ui_file *aq_ui_find(const char *name);

/* Answers req if its path is the dashboard's (/ or /ui/...): the file,
 * 304, 404 for an unknown file, 405 for a method other than GET or HEAD.
 * Returns false, leaving req alone, for any other path. */
bool aq_ui_serve(struct evhttp_request *req);

#endif
