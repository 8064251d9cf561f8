/*
 * dkim_screen.c - keeps hostile DKIM-Signature fields away from libopendkim
 * (see dkim_screen.h; the library's defects are in docs/dkim.md).
 */
#include <string.h>
#include <strings.h>

#include "dkim_screen.h"
#include "dkim_tags.h"

#define SIGNAME "DKIM-Signature"
#define SIGNAME_LEN 14

static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int dkimscreen_field_name(const char *p, size_t n, const char **name, size_t *namelen)
{
    /* dkim_header(): every byte before the colon must be printable ASCII
     * or SP, and a ';' in the name is refused. */
    size_t c = 0;
    while (c < n && p[c] != ':') {
        unsigned char b = (unsigned char)p[c];
        if (b < 32 || b > 126 || b == ';')
            return -1;
        c++;
    }
    if (c == n)
        return -1;
    size_t e = c;
    while (e > 0 && (p[e - 1] == ' ' || p[e - 1] == '\t'))
        e--;
    *name = p;
    *namelen = e;
    return 0;
}

size_t dkimscreen_hlist_count(const char *v, size_t n, const char *name)
{
    /* libopendkim removes all white space from tag values
     * (dkim_collapse()) and then splits h= at ':' with strtok_r(), which
     * skips empty entries; names compare with strncasecmp(). */
    size_t want = strlen(name), count = 0, i = 0;
    while (i < n) {
        size_t k = 0;
        int match = 1;
        for (; i < n && v[i] != ':'; i++) {
            if (is_fws(v[i]))
                continue;
            if (k >= want || (v[i] | 0x20) != (name[k] | 0x20))
                match = 0;
            k++;
        }
        if (match && k == want)
            count++;
        i++;
    }
    return count;
}

/* RFC 6376 2.11 dkim-quoted-printable: '=' and two upper-case hex digits
 * (FWS may sit anywhere and is removed first, as libopendkim does).
 * dkim_qp_decode() accepts "=" or "=X" at the end of the string, because
 * strchr() finds the terminating NUL in its digit table, and then steps
 * over the NUL and reads past the value. */
static int qp_valid(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] != '=')
            continue;
        int digits = 0;
        size_t j = i + 1;
        for (; j < n && digits < 2; j++) {
            if (is_fws(v[j]))
                continue;
            if (!((v[j] >= '0' && v[j] <= '9') || (v[j] >= 'A' && v[j] <= 'F')))
                return 0;
            digits++;
        }
        if (digits < 2)
            return 0;
        i = j - 1;
    }
    return 1;
}

static const char *parse_reason(const char *err)
{
    static const char *const known[][2] = {
        { "tag without '='", "malformed signature: tag without '='" },
        { "bad tag name", "malformed signature: bad tag name" },
        { "control character in tag value", "malformed signature: control character in tag value" },
        { "duplicate tag", "malformed signature: duplicate tag" },
        { "too many tags", "malformed signature: too many tags" },
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (err && strcmp(err, known[i][0]) == 0)
            return known[i][1];
    return "malformed signature";
}

const char *dkimscreen_sig(const char *v, size_t n, size_t nsig)
{
    /* libopendkim drops every tag of a field with an 8-bit byte (and a
     * NUL ends its copy early): what it would parse is not what we see. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] >= 0x80 || v[i] == 0)
            return "non-ASCII signature field";
    struct dkim_taglist tl;
    const char *err = NULL;
    if (dkimtag_parse(v, n, &tl, &err) < 0)
        return parse_reason(err);
    /* RFC 6376 3.2 tag names are case-sensitive ("H" is an unknown tag),
     * libopendkim's are not: "h=from; H=x" is verified with h=x. */
    for (size_t i = 0; i < tl.n; i++)
        for (size_t j = i + 1; j < tl.n; j++)
            if (tl.tags[i].name.n == tl.tags[j].name.n &&
                strncasecmp(tl.tags[i].name.p, tl.tags[j].name.p, tl.tags[i].name.n) == 0)
                return "malformed signature: tag names differ only in case";
    const struct dkim_slice *h = dkimtag_get(&tl, "h");
    if (h) {
        if (h->n > DKIM_SCREEN_HLIST_MAX)
            return "h= longer than 4095 bytes";
        /* The header selection of dkim_canon_selecthdrs() takes, for each
         * h= entry, the last unused field of that name, and stores into an
         * array with one slot per header field *before* it checks for room:
         * once every field is used, the next entry writes past the array
         * (issue 10.1).  Every field used up includes this signature's own
         * field, which RFC 6376 3.5 says h= cannot cover (its b= would sign
         * itself): so naming DKIM-Signature as often as there are
         * signature fields is never verifiable, and is refused. */
        if (nsig > 0 && dkimscreen_hlist_count(h->p, h->n, SIGNAME) >= nsig)
            return "h= covers the signature's own field (RFC 6376 3.5)";
    }
    const struct dkim_slice *i = dkimtag_get(&tl, "i");
    if (i && i->n > DKIM_SCREEN_ID_MAX)
        return "i= longer than 256 bytes";
    if (i && !qp_valid(i->p, i->n))
        return "bad quoted-printable in i=";
    const struct dkim_slice *z = dkimtag_get(&tl, "z");
    if (z && !qp_valid(z->p, z->n))
        return "bad quoted-printable in z=";
    return NULL;
}

static int name_is_sig(const char *p, size_t n)
{
    const char *name;
    size_t len;
    return dkimscreen_field_name(p, n, &name, &len) == 0 && len == SIGNAME_LEN &&
           strncasecmp(name, SIGNAME, SIGNAME_LEN) == 0;
}

void dkimscreen_fields(struct dkim_field *f, size_t n, size_t max_sigs)
{
    size_t nsigs = 0;
    for (size_t i = 0; i < n; i++) {
        f[i].is_sig = name_is_sig(f[i].p, f[i].n);
        f[i].withhold = f[i].ignored = 0;
        f[i].why = NULL;
        if (!f[i].is_sig)
            continue;
        if (nsigs++ >= max_sigs) {
            f[i].withhold = f[i].ignored = 1;
        } else if (f[i].n > DKIM_SCREEN_SIG_MAX) {
            f[i].withhold = 1;
            f[i].why = "signature field longer than 16384 bytes";
        }
    }
    /* Withholding a signature lowers the count the own-field rule compares
     * with, so repeat until nothing changes (at most max_sigs rounds). */
    for (int changed = 1; changed;) {
        changed = 0;
        size_t held = 0;
        for (size_t i = 0; i < n; i++)
            held += f[i].is_sig && !f[i].withhold;
        for (size_t i = 0; i < n; i++) {
            if (!f[i].is_sig || f[i].withhold)
                continue;
            const char *colon = memchr(f[i].p, ':', f[i].n);
            size_t off = (size_t)(colon - f[i].p) + 1;
            const char *why = dkimscreen_sig(f[i].p + off, f[i].n - off, held);
            if (why) {
                f[i].withhold = 1;
                f[i].why = why;
                changed = 1;
                break;
            }
        }
    }
    /* A kept signature whose h= reaches a withheld DKIM-Signature cannot
     * be verified as it was signed: the k-th "dkim-signature" entry of h=
     * selects the k-th such field from the bottom. */
    size_t rank = 0, lowest = 0;
    for (size_t i = n; i-- > 0;) {
        if (!f[i].is_sig)
            continue;
        rank++;
        if (f[i].withhold && !lowest)
            lowest = rank;
    }
    if (!lowest)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!f[i].is_sig || f[i].withhold)
            continue;
        struct dkim_taglist tl;
        const char *err;
        const char *colon = memchr(f[i].p, ':', f[i].n);
        size_t off = (size_t)(colon - f[i].p) + 1;
        if (dkimtag_parse(f[i].p + off, f[i].n - off, &tl, &err) < 0)
            continue;   /* cannot happen: dkimscreen_sig() parsed it */
        const struct dkim_slice *h = dkimtag_get(&tl, "h");
        if (h && dkimscreen_hlist_count(h->p, h->n, SIGNAME) >= lowest)
            f[i].why = "h= covers a signature field withheld from the verifier";
    }
}
