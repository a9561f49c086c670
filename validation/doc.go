// Package validation is the schema of validation.json, the file validate
// writes and the gate and the renderers read: every metric of each model
// side by side with the candidate's deltas and their intervals (Metric,
// Interval), the per-layer view, the inputs and the config it was made
// with. It also holds the metric keys and which direction is better for
// each, the JSON number that may be null (NullableFloat), the reading of
// a validation.json (Read) and the aggregation of a candidate's
// validations over the seeds of a sweep (AggregateSeeds).
//
// It is a leaf: it imports only the shared helpers below every package
// (provenance, inputerr) and compute's names, so that stages (which
// writes validation.json), the gate and the renderers (which read it) all
// import it and none of them imports another to reach the types.
package validation
