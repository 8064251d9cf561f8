/*
 * arc_parse.c - ARC header field text (see arc_parse.h).
 */
#include <string.h>
#include <strings.h>

#include "arc_parse.h"

const char *const arc_kind_names[ARC_NKINDS] = {
    "ARC-Authentication-Results", "ARC-Message-Signature", "ARC-Seal",
};

int arc_field_kind(const char *name, size_t n)
{
    for (int k = 0; k < ARC_NKINDS; k++)
        if (strlen(arc_kind_names[k]) == n && strncasecmp(name, arc_kind_names[k], n) == 0)
            return k;
    return -1;
}

/* 1..AS_ARC_MAX_SETS from decimal digits only (no sign, no leading zero
 * to hide a large number behind). */
static int instance_value(const char *p, size_t n, const char **err)
{
    if (n == 0 || n > 2 || p[0] == '0') {
        *err = n > 2 ? "instance over 50" : "bad instance number";
        return -1;
    }
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            *err = "bad instance number";
            return -1;
        }
        v = v * 10 + (p[i] - '0');
    }
    if (v > AS_ARC_MAX_SETS) {
        *err = "instance over 50";
        return -1;
    }
    return v;
}

int arc_tags_instance(const struct dkim_taglist *tl, const char **err)
{
    const struct dkim_slice *v = dkimtag_get(tl, "i");
    if (!v) {
        *err = "no i= tag";
        return -1;
    }
    return instance_value(v->p, v->n, err);
}

static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int arc_aar_instance(const char *v, size_t n, const char **err)
{
    size_t i = 0;
    while (i < n && is_fws(v[i]))
        i++;
    if (i >= n || v[i] != 'i') {
        *err = "ARC-Authentication-Results does not start with i=";
        return -1;
    }
    i++;
    while (i < n && is_fws(v[i]))
        i++;
    if (i >= n || v[i] != '=') {
        *err = "ARC-Authentication-Results does not start with i=";
        return -1;
    }
    i++;
    while (i < n && is_fws(v[i]))
        i++;
    size_t s = i;
    while (i < n && v[i] >= '0' && v[i] <= '9')
        i++;
    size_t e = i;
    while (i < n && is_fws(v[i]))
        i++;
    if (i >= n || v[i] != ';') {
        *err = "ARC-Authentication-Results: no ';' after i=";
        return -1;
    }
    return instance_value(v + s, e - s, err);
}

static enum as_arc_cv cv_parse(const struct dkim_slice *v, int *ok)
{
    *ok = 1;
    if (v && v->n == 4 && strncasecmp(v->p, "none", 4) == 0)
        return AS_ARC_NONE;
    if (v && v->n == 4 && strncasecmp(v->p, "pass", 4) == 0)
        return AS_ARC_PASS;
    if (v && v->n == 4 && strncasecmp(v->p, "fail", 4) == 0)
        return AS_ARC_FAIL;
    *ok = 0;
    return AS_ARC_FAIL;
}

/* RFC 6376 3.2 allows one trailing ';' only; dkimtag_parse() tolerates
 * "a=1;;b=2" for DKIM's sake, ARC verifiers (dkimpy, the ValiMail suite)
 * refuse it, and so do we: a seal is machine-written. */
static int empty_spec(const char *v, size_t n)
{
    int seen_text = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == ';') {
            if (!seen_text)
                return 1;
            seen_text = 0;
        } else if (!is_fws(v[i])) {
            seen_text = 1;
        }
    }
    return 0;
}

int arc_chain_build(const struct arc_field *fields, const int *kinds, size_t nf,
                    struct arc_chain *c, const char **err)
{
    memset(c, 0, sizeof *c);
    if (nf == 0)
        return 0;
    if (nf > (size_t)AS_ARC_MAX_SETS * ARC_NKINDS) {
        *err = "more than 50 ARC sets";
        return -1;
    }
    struct dkim_taglist tl;
    unsigned maxi = 0;
    for (size_t k = 0; k < nf; k++) {
        const struct arc_field *f = &fields[k];
        int kind = kinds[k], inst;
        if (kind < 0 || kind >= ARC_NKINDS)
            continue;
        if (f->rawlen > ARC_FIELD_MAX) {
            *err = "ARC header field too long";
            c->n = 0;
            return -1;
        }
        if (kind == ARC_AAR) {
            inst = arc_aar_instance(f->val, f->vallen, err);
        } else if (dkimtag_parse(f->val, f->vallen, &tl, err) < 0) {
            inst = -1;
        } else if (empty_spec(f->val, f->vallen)) {
            *err = kind == ARC_AS ? "ARC-Seal: empty tag-spec" : "ARC-Message-Signature: empty tag-spec";
            inst = -1;
        } else {
            inst = arc_tags_instance(&tl, err);
        }
        if (inst < 0) {
            c->n = 0;
            return -1;
        }
        if (c->set[inst - 1][kind]) {
            *err = kind == ARC_AAR ? "two ARC-Authentication-Results with the same i="
                 : kind == ARC_AMS ? "two ARC-Message-Signature with the same i="
                                   : "two ARC-Seal with the same i=";
            c->n = 0;
            return -1;
        }
        c->set[inst - 1][kind] = f;
        if (kind == ARC_AS) {
            int ok;
            c->cv[inst - 1] = cv_parse(dkimtag_get(&tl, "cv"), &ok);
            if (!ok) {
                *err = "ARC-Seal without a valid cv=";
                c->n = 0;
                return -1;
            }
        }
        if ((unsigned)inst > maxi)
            maxi = (unsigned)inst;
    }
    c->n = maxi;
    if (maxi == 0)
        return 0;
    /* Step 2 before step 3: a newest seal saying fail ends the chain. */
    if (c->set[maxi - 1][ARC_AS] && c->cv[maxi - 1] == AS_ARC_FAIL) {
        *err = "the newest ARC-Seal says cv=fail";
        return -2;
    }
    for (unsigned i = 0; i < maxi; i++) {
        for (int k = 0; k < ARC_NKINDS; k++) {
            if (!c->set[i][k]) {
                *err = k == ARC_AAR ? "an ARC set lacks ARC-Authentication-Results"
                     : k == ARC_AMS ? "an ARC set lacks ARC-Message-Signature"
                                    : "an ARC set lacks ARC-Seal";
                return -1;
            }
        }
        if (i == 0 && c->cv[i] != AS_ARC_NONE) {
            *err = "ARC-Seal i=1 does not say cv=none";
            return -1;
        }
        if (i > 0 && c->cv[i] != AS_ARC_PASS) {
            *err = "ARC-Seal past i=1 does not say cv=pass";
            return -1;
        }
    }
    return 1;
}

/* ---- ARC-Authentication-Results ---------------------------------------- */

struct scanner {
    const char *p;
    size_t n, i;
    const char *err;
};

/* CFWS: white space, line breaks and (nested, escaped) comments.  Returns
 * -1 on an unterminated comment. */
static int skip_cfws(struct scanner *s)
{
    for (;;) {
        while (s->i < s->n && is_fws(s->p[s->i]))
            s->i++;
        if (s->i >= s->n || s->p[s->i] != '(')
            return 0;
        int depth = 0;
        while (s->i < s->n) {
            char c = s->p[s->i++];
            if (c == '\\') {
                if (s->i < s->n)
                    s->i++;
            } else if (c == '(') {
                if (++depth > 16) {
                    s->err = "comments nested too deep";
                    return -1;
                }
            } else if (c == ')') {
                if (--depth == 0)
                    break;
            }
        }
        if (depth != 0) {
            s->err = "unterminated comment";
            return -1;
        }
    }
}

static int is_tokchar(char c)
{
    return (unsigned char)c > ' ' && (unsigned char)c < 0x7f && !strchr("()<>,;:\\\"[]?=", c);
}

/* A token (RFC 2045, plus '@' and '/' for local-part@domain values and
 * "method/version") or a quoted-string; the slice excludes the quotes. */
static int value(struct scanner *s, struct dkim_slice *out)
{
    if (s->i < s->n && s->p[s->i] == '"') {
        size_t st = ++s->i;
        while (s->i < s->n && s->p[s->i] != '"') {
            if (s->p[s->i] == '\\' && s->i + 1 < s->n)
                s->i++;
            s->i++;
        }
        if (s->i >= s->n) {
            s->err = "unterminated quoted-string";
            return -1;
        }
        out->p = s->p + st;
        out->n = s->i - st;
        s->i++;
        return 0;
    }
    size_t st = s->i;
    while (s->i < s->n && (is_tokchar(s->p[s->i]) || s->p[s->i] == '@' || s->p[s->i] == ':'))
        s->i++;
    if (s->i == st) {
        s->err = "token expected";
        return -1;
    }
    out->p = s->p + st;
    out->n = s->i - st;
    return 0;
}

static int expect(struct scanner *s, char c, const char *what)
{
    if (skip_cfws(s) < 0)
        return -1;
    if (s->i >= s->n || s->p[s->i] != c) {
        s->err = what;
        return -1;
    }
    s->i++;
    return skip_cfws(s);
}

int arc_aar_parse(const char *v, size_t n, struct arc_aar *out, const char **err)
{
    struct scanner s = { v, n, 0, NULL };
    memset(out, 0, sizeof *out);
    int inst = arc_aar_instance(v, n, err);
    if (inst < 0)
        return -1;
    out->instance = (unsigned)inst;
    s.i = (size_t)((const char *)memchr(v, ';', n) - v) + 1;
    if (skip_cfws(&s) < 0 || value(&s, &out->authserv_id) < 0)
        goto bad;
    if (skip_cfws(&s) < 0)
        goto bad;
    /* an optional authres-version after the authserv-id */
    if (s.i < s.n && s.p[s.i] >= '0' && s.p[s.i] <= '9') {
        struct dkim_slice ver;
        if (value(&s, &ver) < 0 || skip_cfws(&s) < 0)
            goto bad;
    }
    while (s.i < s.n) {
        if (s.p[s.i] != ';') {
            s.err = "';' expected between results";
            goto bad;
        }
        s.i++;
        if (skip_cfws(&s) < 0)
            goto bad;
        if (s.i >= s.n)
            break;
        if (s.p[s.i] == ';')
            continue;
        struct dkim_slice method, result;
        if (value(&s, &method) < 0)
            goto bad;
        if (skip_cfws(&s) < 0)
            goto bad;
        if (method.n == 4 && strncasecmp(method.p, "none", 4) == 0 &&
            (s.i >= s.n || s.p[s.i] == ';'))
            continue;     /* "no-result" (RFC 8601 2.2) */
        if (expect(&s, '=', "'=' expected after the method") < 0 || value(&s, &result) < 0)
            goto bad;
        const char *slash = memchr(method.p, '/', method.n);
        if (slash)
            method.n = (size_t)(slash - method.p);
        if (out->nres == ARC_AAR_RESULTS_MAX) {
            s.err = "too many results";
            goto bad;
        }
        struct arc_aar_res *r = &out->res[out->nres++];
        r->method = method;
        r->result = result;
        for (;;) {
            if (skip_cfws(&s) < 0)
                goto bad;
            if (s.i >= s.n || s.p[s.i] == ';')
                break;
            struct dkim_slice name, val;
            if (value(&s, &name) < 0 || expect(&s, '=', "'=' expected after a property") < 0 ||
                value(&s, &val) < 0)
                goto bad;
            if (name.n == 6 && strncasecmp(name.p, "reason", 6) == 0)
                continue;
            if (r->nprops < ARC_AAR_PROPS_MAX)
                r->props[r->nprops++] = (struct arc_aar_prop){ name, val };
        }
    }
    return 0;
bad:
    *err = s.err ? s.err : "malformed ARC-Authentication-Results";
    return -1;
}
