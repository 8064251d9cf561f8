/*
 * protocol.c - see protocol.h.
 */
#include <string.h>
#include "net/controller_adapter.h"
#include "net/http_adapter.h"
#include "net/milter_adapter.h"
#include "net/protocol.h"
#include "net/spamd_adapter.h"
#include "util/util.h"

/* Every adapter, by name.  A new protocol is one more line here. */
static const struct as_protocol *const protocols[] = {
    &as_http_protocol,
    &as_milter_protocol,
    &as_spamd_protocol,
    &as_controller_protocol,
};

size_t as_protocol_count(void) { return AS_ARRAY_LEN(protocols); }

const struct as_protocol *as_protocol_at(size_t i) { return protocols[i]; }

int as_protocol_check_config(const struct as_config *cfg, const int *listened, char *err,
                             size_t errlen)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(protocols); i++)
        if (protocols[i]->check && protocols[i]->check(cfg, listened[i], err, errlen) < 0)
            return -1;
    return 0;
}

const struct as_protocol *as_protocol_find(const char *name)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(protocols); i++)
        if (strcmp(protocols[i]->name, name) == 0) return protocols[i];
    return NULL;
}

void as_protocol_names(char *buf, size_t len)
{
    struct sbuf b = {0};
    for (size_t i = 0; i < AS_ARRAY_LEN(protocols); i++)
        sbuf_printf(&b, "%s%s", i ? ", " : "", protocols[i]->name);
    as_strlcpy(buf, b.data ? b.data : "", len);
    sbuf_free(&b);
}
