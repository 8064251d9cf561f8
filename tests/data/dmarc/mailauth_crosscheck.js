'use strict';
// Runs the cases of rfc9989-audit.json through mailauth's DMARC evaluation
// (an independent RFC 9989 implementation, npm "mailauth"), with a resolver
// that answers from each case's zone exactly as the C suite's fake resolver
// does (test_dmarc_conformance.c fz_fetch), and prints one JSON object:
// { id: {result, policy, policy_domain, org_domain, queries} }.
//
// usage: node mailauth_crosscheck.js AUDIT.json   (mailauth found through
// NODE_PATH or the current directory's node_modules)
const fs = require('node:fs');
const { evaluateDmarc } = require('mailauth/lib/dmarc');

const fail = code => {
    const err = new Error(code);
    err.code = code;
    return err;
};

const clean = name => name.toLowerCase().replace(/\.$/, '');

// NXDOMAIN only when neither the name nor anything below it is listed
// (an empty non-terminal exists, RFC 8020); a listed name without the type
// is NODATA.
const makeResolver = (zone, log) => {
    const entries = Object.entries(zone).map(([k, v]) => [clean(k), v]);
    return async (name, type) => {
        name = clean(name);
        if (type === 'TXT' && name.startsWith('_dmarc.') && !log.includes(name)) {
            log.push(name);
        }
        const hit = entries.find(([k]) => k === name);
        if (hit && hit[1].SERVFAIL) {
            throw fail('ESERVFAIL');
        }
        const exists = hit || entries.some(([k]) => k.endsWith('.' + name));
        if (!exists) {
            throw fail('ENOTFOUND');
        }
        const values = hit && hit[1][type];
        if (!values || !values.length) {
            throw fail('ENODATA');
        }
        return values;
    };
};

const main = async () => {
    const audit = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
    const out = {};
    for (const c of audit.cases) {
        const log = [];
        const { response } = await evaluateDmarc({
            headerFrom: c.input.header_from,
            spfDomains: c.input.spf_pass_domains,
            dkimDomains: c.input.dkim_pass_domains,
            resolver: makeResolver(c.zone, log)
        });
        const r = response || { status: { result: 'none' } };
        out[c.id] = {
            result: r.status.result,
            policy: r.status.result === 'fail' ? r.policy : null,
            policy_domain: r.policyDomain || null,
            org_domain: r.domain || null,
            queries: log
        };
    }
    process.stdout.write(JSON.stringify(out, null, 1) + '\n');
};

main().catch(err => {
    process.stderr.write(`mailauth_crosscheck: ${err.stack}\n`);
    process.exit(2);
});
