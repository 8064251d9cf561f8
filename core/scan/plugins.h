/*
 * plugins.h - loading plugin shared objects.
 *
 * Every *.so in the plugins directory is checked (a regular file whose
 * ELF headers fit its size), opened with dlopen(RTLD_NOW | RTLD_LOCAL)
 * and must export `authscan_plugin` (AS_PLUGIN_SYMBOL).  The
 * loader checks the ABI version before reading anything else from it,
 * validates names, resolves `depends` and orders the plugins so that each
 * comes after its dependencies (a cycle or a missing dependency is an
 * error naming the plugins).  plugins.enable (if set) and plugins.disable
 * select plugins by name.
 */
#ifndef AS_PLUGINS_H
#define AS_PLUGINS_H

#include <stddef.h>
#include "scan/engine.h"

/* Loads the plugins selected by cfg from dir into *out (array allocated
 * with xmalloc, in dependency order).  Each file is opened once, checked
 * (a regular file whose ELF headers fit its size: see elf_check) and
 * dlopen()ed through its descriptor.  The plugins that plugins.enable or
 * plugins.disable switch off go into *off (their names and symbols).
 * Returns 0, or -1 with err naming the file; on error nothing stays
 * loaded and *off is empty. */
int as_plugins_load(const char *dir, const struct as_config *cfg,
                    struct as_engine_plugin **out, size_t *n, struct as_plugins_off *off,
                    char *err, size_t errlen);
/* Calls fini (if initialized) for each, newest first, then after_fini
 * (if not NULL: what the plugins shared, whose code is theirs, goes while
 * it is still loaded), then dlclose for each, and frees the array. */
void as_plugins_unload(struct as_engine_plugin *p, size_t n, void (*after_fini)(void *),
                       void *arg);
/* Checks each plugin's declared option defaults and sets them in cfg for
 * keys the configuration leaves unset (origin AS_PLUGINS_DEFAULT_ORIGIN,
 * line 0: as_plugin_opt_is_set() tells them from the site's values). */
#define AS_PLUGINS_DEFAULT_ORIGIN "<plugin default>"
int as_plugins_apply_defaults(struct as_engine_plugin *p, size_t n, struct as_config *cfg,
                              char *err, size_t errlen);
void as_plugins_off_free(struct as_plugins_off *off);
/* 1 if name is one of v[0..n). */
int as_plugins_off_has(char *const *v, size_t n, const char *name);
/* Until called again with NULL, the loader writes the path of the file it
 * is mapping into buf, and "" when done: a process that checks plugins
 * in a child (as_engine_check) learns from it which file killed the child. */
void as_plugins_track(char *buf, size_t len);

#endif
