// report_parse.js - the independent consumer of test_report.py: npm's
// dmarc-report-parser (pinned in scripts/test) parses what `authscan report`
// wrote.  Usage: node report_parse.js FILE...  (.xml.gz report files, or .eml
// report mails).  Prints one JSON object per file:
//   {"file": F, "ok": true, "reports": [{"domain": D, "report_id": I,
//    "org_name": O, "records": N, "messages": M}]}   or {"file": F, "ok": false, "error": E}
"use strict";
const fs = require("fs");
const zlib = require("zlib");
const parser = require("dmarc-report-parser");

function summary(res) {
  return res.reports.map((r) => ({
    domain: r.policyPublished.domain,
    report_id: String(r.reportMetadata.reportId),
    org_name: r.reportMetadata.orgName,
    records: r.record.length,
    messages: r.record.reduce((n, rec) => n + Number(rec.row.count), 0),
  }));
}

async function main() {
  for (const file of process.argv.slice(2)) {
    try {
      const data = fs.readFileSync(file);
      const res = file.endsWith(".eml")
        ? await parser.parseDmarcReportFromEmail(data.toString("latin1"))
        : await parser.parseDmarcReportsFromXml([zlib.gunzipSync(data)]);
      console.log(JSON.stringify({ file, ok: true, reports: summary(res) }));
    } catch (e) {
      console.log(JSON.stringify({ file, ok: false, error: String(e && e.message || e) }));
    }
  }
}
main();
