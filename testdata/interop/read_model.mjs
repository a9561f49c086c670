// read_model.mjs FILE: reads a strata model file (Arrow IPC file format)
// with arrow-js and prints, as JSON on stdout, the schema metadata and every
// tensor's name, role, shape and data. Float values are printed as the hex
// of their IEEE 754 bits, so the Go test can compare them exactly. A
// version 2 file's dtype is printed as it is and its raw bytes as hex.
import { readFileSync } from "node:fs";
import { tableFromIPC } from "apache-arrow";

const path = process.argv[2];
if (!path) {
  console.error("usage: node read_model.mjs MODEL.arrow");
  process.exit(2);
}

const table = tableFromIPC(readFileSync(path));
const metadata = Object.fromEntries(table.schema.metadata);
const fields = table.schema.fields.map((f) => ({ name: f.name, type: String(f.type) }));

const bitsHex = (x) => {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, x, true);
  return view.getUint32(0, true).toString(16).padStart(8, "0");
};

const tensors = [];
for (let i = 0; i < table.numRows; i++) {
  const row = table.get(i);
  const shape = Array.from(row.shape.toArray(), (d) => Number(d));
  const data = Array.from(row.data.toArray(), bitsHex);
  const t = { name: row.name, role: row.role, shape, data };
  if (row.dtype !== undefined) {
    t.dtype = row.dtype;
    t.raw = Buffer.from(row.raw).toString("hex");
  }
  tensors.push(t);
}

process.stdout.write(JSON.stringify({ metadata, fields, tensors }));
