// write_dataset.mjs OUT.arrow: writes a small dataset with arrow-js as an
// Arrow IPC file: a fixed_size_list<float32>[3] column "features" and an
// int64 column "label" (or float64 with --float-label). The values are fixed
// here and in arrowio/interop_test.go.
import { writeFileSync } from "node:fs";
import {
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int64,
  Table,
  makeData,
  makeVector,
  tableToIPC,
} from "apache-arrow";

const out = process.argv[2];
if (!out) {
  console.error("usage: node write_dataset.mjs OUT.arrow [--float-label]");
  process.exit(2);
}
const floatLabel = process.argv.includes("--float-label");

const width = 3;
const features = Float32Array.from([
  0.5, -1.25, 3, 1e-7, 65504, -0, 2.5, 0.1, -7.75, 1, 2, 3,
]);
const rows = features.length / width;
const labels = [0, 2, 1, 2];

const listType = new FixedSizeList(width, new Field("item", new Float32(), true));
const child = makeData({ type: new Float32(), length: features.length, data: features });
const featureData = makeData({ type: listType, length: rows, nullCount: 0, child });

const labelVector = floatLabel
  ? makeVector(Float64Array.from(labels, (v) => v + 0.5))
  : makeVector(BigInt64Array.from(labels, (v) => BigInt(v)));

const table = new Table({
  features: makeVector(featureData),
  label: labelVector,
});
writeFileSync(out, tableToIPC(table, "file"));
