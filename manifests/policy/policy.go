// Package policy embeds the gate policies that ship with strata, so the
// binary applies the default policy wherever it runs. docs/GATE.md
// describes the format and the semantics of every bound.
package policy

import _ "embed"

// Default is default.yaml: the policy `strata report` and `strata pilot`
// apply when no --policy is given.
//
//go:embed default.yaml
var Default []byte

// DefaultName is how reports name the embedded default policy.
const DefaultName = "manifests/policy/default.yaml (embedded)"
