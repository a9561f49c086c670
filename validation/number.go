package validation

import (
	"encoding/json"
	"math"
)

// NullableFloat is a float64 that encodes NaN and infinities as JSON
// null, so a summary stays valid JSON when a condition number is
// infinite; null reads back as NaN. A *NullableFloat that is nil encodes
// as null too: strata's outputs use nil for a value that was not
// computed.
type NullableFloat float64

// MarshalJSON implements json.Marshaler.
func (f NullableFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

// UnmarshalJSON implements json.Unmarshaler; null reads as NaN.
func (f *NullableFloat) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = NullableFloat(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = NullableFloat(v)
	return nil
}

// Num returns v as a JSON number, or nil (null) when it is NaN or
// infinite.
func Num(v float64) *NullableFloat {
	if !isFinite(v) {
		return nil
	}
	f := NullableFloat(v)
	return &f
}

// Floats converts v (nil stays nil).
func Floats(v []float64) []NullableFloat {
	if v == nil {
		return nil
	}
	out := make([]NullableFloat, len(v))
	for i, x := range v {
		out[i] = NullableFloat(x)
	}
	return out
}

// Finite reports whether f is present and finite.
func Finite(f *NullableFloat) bool { return f != nil && isFinite(float64(*f)) }

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
