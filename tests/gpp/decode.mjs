// Test helper: decode GPP strings with the IAB Tech Lab's own library (@iabgpp/cmpapi).
// stdin: a JSON list of GPP strings. stdout: a JSON list, one item per string:
//   {"header": {"section_ids": [...]}, "sections": {"usnat": {Field: value}, "usca": {...}},
//    "reencoded": "<the same fields encoded by the IAB library from scratch>"}
// or {"error": "..."} when the library cannot decode the string.
import { GppModel } from "@iabgpp/cmpapi";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const out = input.map((s) => {
  try {
    const model = new GppModel(s);
    const sections = {};
    const fresh = new GppModel();
    for (const name of ["usnat", "usca"]) {
      if (!model.hasSection(name)) continue;
      const fields = model.getSection(name);
      sections[name] = fields;
      for (const [field, value] of Object.entries(fields)) {
        if (field === "GpcSegmentType") continue;
        fresh.setFieldValue(name, field, value);
      }
    }
    return {
      header: { section_ids: model.getSectionIds() },
      sections,
      reencoded: fresh.encode(),
    };
  } catch (e) {
    return { error: String(e && e.stack ? e.stack : e) };
  }
});
process.stdout.write(JSON.stringify(out));
