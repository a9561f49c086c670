package validation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
)

// Read reads a validation.json with its hash. A file that does
// not read, is not JSON of the validation schema, or has another
// schema_version or no metrics is bad input.
func Read(path string) (*Result, provenance.File, error) {
	b, err := inputfile.ReadFile(path, limits.JSONBytes, "JSON file")
	if err != nil {
		return nil, provenance.File{}, fmt.Errorf("report: %w", err)
	}
	var v Result
	if err := json.Unmarshal(b, &v); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
			return nil, provenance.File{}, inputerr.Errorf("%s:%d: not valid JSON: %v", path, line, err)
		case errors.As(err, &te):
			line := 1 + bytes.Count(b[:min(int(te.Offset), len(b))], []byte("\n"))
			return nil, provenance.File{}, inputerr.Errorf("%s:%d: %s: want %s, got a JSON %s", path, line, te.Field, jsonKind(te.Type), te.Value)
		}
		return nil, provenance.File{}, inputerr.Errorf("%s: %v", path, err)
	}
	switch {
	case v.SchemaVersion != SchemaVersion:
		return nil, provenance.File{}, inputerr.Errorf("%s: schema_version %d: this strata reads validation.json version %d (is it a validation.json?)",
			path, v.SchemaVersion, SchemaVersion)
	case len(v.Metrics) == 0:
		return nil, provenance.File{}, inputerr.Errorf("%s: no metrics", path)
	}
	for k, m := range v.Metrics {
		if m == nil {
			delete(v.Metrics, k) // "key": null reads as missing
		}
	}
	return &v, provenance.Bytes(path, b), nil
}

// jsonKind names what JSON a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Float32, reflect.Float64, reflect.Int, reflect.Int64, reflect.Uint64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}
