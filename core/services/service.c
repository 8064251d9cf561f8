/*
 * service.c - the table of built-in services (see service.h).
 */
#include <stdint.h>
#include "services/dns.h"
#include "services/lua.h"
#include "services/redis.h"
#include "services/service.h"
#include "util/util.h"

/* Start order: a later service may use an earlier one (Redis will want
 * DNS for its server names). */
static const struct as_service *const services[] = {
    &as_dns_service,
    &as_redis_service,
    &as_lua_service,
};

size_t as_service_count(void) { return AS_ARRAY_LEN(services); }

const struct as_service *as_service_at(size_t i)
{
    return i < AS_ARRAY_LEN(services) ? services[i] : NULL;
}

size_t as_service_index(const struct as_service *s)
{
    for (size_t i = 0; i < AS_ARRAY_LEN(services); i++)
        if (services[i] == s) return i;
    return SIZE_MAX;
}
