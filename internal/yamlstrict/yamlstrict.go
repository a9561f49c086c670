// Package yamlstrict decodes the YAML files a user writes (gate
// policies, pilot and sweep configs) strictly, and reports every problem
// as a *ConfigError naming the file, the line and the key.
package yamlstrict

import (
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/strata-ml/strata/internal/inputerr"
	yaml "go.yaml.in/yaml/v3"
)

// ConfigError is a problem in a YAML file a user wrote (a gate policy, a
// pilot config): it names the file, the line and the key, e.g.
//
//	policy.yaml:7: rules[1].max_degredation: unknown key (did you mean max_degradation?)
//
// It is bad input: errors.Is(err, inputerr.ErrInput) holds.
type ConfigError struct {
	File string
	// Line is 1-based; 0 when the problem has no position.
	Line int
	// Key is the path of the key, e.g. "rules[1].metric"; empty for the
	// document as a whole.
	Key string
	Err error
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ConfigError) Unwrap() error        { return e.Err }
func (e *ConfigError) Is(target error) bool { return target == inputerr.ErrInput }

// yamlLine finds the line number yaml.v3 puts in its syntax errors.
var yamlLine = regexp.MustCompile(`line (\d+):?\s*`)

// Decode decodes the YAML document src into v, a pointer to a
// struct whose fields are named by their `yaml` tags (",inline" embeds a
// struct's keys). Fields already set in v are defaults: a key that is
// absent leaves its field alone. It returns the line of every key and list
// item it decoded, by path ("rules[1]", "rules[1].metric"), for the checks
// that come after decoding to cite.
//
// It is strict, and every error is a *ConfigError naming the line and the
// key: an unknown key (with the closest known one suggested), a duplicate
// key, a value of the wrong type or kind (a list where a number belongs),
// a non-finite number, more than one document. yaml.v3's own strict mode
// (Decoder.KnownFields) catches unknown keys too, but its type errors do
// not name the key and its messages name Go types, so the document is
// decoded to a yaml.Node and walked here, and yaml.v3 decodes only the
// scalars.
func Decode(file string, src []byte, v any) (lines map[string]int, err error) {
	dec := yaml.NewDecoder(strings.NewReader(string(src)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{File: file, Err: errors.New("the file is empty")}
		}
		return nil, yamlSyntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlSyntaxError(file, err)
		}
		return nil, &ConfigError{File: file, Line: extra.Line, Err: errors.New("more than one YAML document; want one")}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d := &yamlDecoder{file: file, lines: map[string]int{}}
	if err := d.decode(root, reflect.ValueOf(v).Elem(), ""); err != nil {
		return nil, err
	}
	return d.lines, nil
}

// yamlDecoder walks a document.
type yamlDecoder struct {
	file  string
	lines map[string]int
}

func yamlSyntaxError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = strings.Replace(msg, m[0], "", 1)
	}
	return &ConfigError{File: file, Line: line, Err: fmt.Errorf("not valid YAML: %s", msg)}
}

// decode decodes n into the settable value v; key is n's path.
func (d *yamlDecoder) decode(n *yaml.Node, v reflect.Value, key string) error {
	file := d.file
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if _, ok := d.lines[key]; !ok {
		d.lines[key] = n.Line
	}
	fail := func(format string, args ...any) error {
		return &ConfigError{File: file, Line: n.Line, Key: key, Err: fmt.Errorf(format, args...)}
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if isNull(n) && key != "" {
				return nil // "section:" with nothing under it keeps the defaults
			}
			return fail("want a mapping of keys, got %s", describeNode(n))
		}
		fields := structFields(v)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			name := k.Value
			sub := joinKey(key, name)
			if k.Kind != yaml.ScalarNode {
				return &ConfigError{File: file, Line: k.Line, Key: key, Err: fmt.Errorf("a key must be a plain name, got %s", describeNode(k))}
			}
			if first, dup := seen[name]; dup {
				return &ConfigError{File: file, Line: k.Line, Key: sub, Err: fmt.Errorf("duplicate key (first at line %d)", first)}
			}
			seen[name] = k.Line
			d.lines[sub] = k.Line
			f, ok := fields[name]
			if !ok {
				return &ConfigError{File: file, Line: k.Line, Key: sub, Err: unknownKey(name, fields)}
			}
			if err := d.decode(val, f, sub); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fail("want a list, got %s", describeNode(n))
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := d.decode(item, out.Index(i), fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	case reflect.Pointer:
		if isNull(n) {
			v.Set(reflect.Zero(v.Type()))
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := d.decode(n, p.Elem(), key); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fail("want %s, got %s", describeKind(v.Kind()), describeNode(n))
	}
	if isNull(n) {
		return fail("want %s, got nothing (null)", describeKind(v.Kind()))
	}
	if isInteger(v.Kind()) && n.ShortTag() == "!!float" {
		// yaml.v3 truncates a float into an integer field (2.5 -> 2).
		var f float64
		if err := n.Decode(&f); err != nil || f != math.Trunc(f) {
			return fail("want %s, got %q", describeKind(v.Kind()), n.Value)
		}
	}
	p := reflect.New(v.Type())
	if err := n.Decode(p.Interface()); err != nil {
		return fail("want %s, got %q", describeKind(v.Kind()), n.Value)
	}
	if f, ok := p.Elem().Interface().(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return fail("want a finite number, got %q", n.Value)
	}
	v.Set(p.Elem())
	return nil
}

// isInteger reports whether k is a signed or unsigned integer kind.
func isInteger(k reflect.Kind) bool {
	return reflect.Int <= k && k <= reflect.Uint64
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func joinKey(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// structFields maps the yaml keys of a struct to its fields, descending
// into ",inline" fields.
func structFields(v reflect.Value) map[string]reflect.Value {
	fields := map[string]reflect.Value{}
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, ok := sf.Tag.Lookup("yaml")
		if !ok || tag == "-" || !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for k, f := range structFields(v.Field(i)) {
				fields[k] = f
			}
			continue
		}
		fields[name] = v.Field(i)
	}
	return fields
}

// unknownKey explains an unknown key, suggesting the closest known one.
func unknownKey(name string, fields map[string]reflect.Value) error {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	slices.Sort(known)
	if s := Closest(name, known); s != "" {
		return fmt.Errorf("unknown key (did you mean %s?)", s)
	}
	return fmt.Errorf("unknown key (want one of %s)", strings.Join(known, ", "))
}

// Closest returns the candidate nearest to s by edit distance, if it is
// near enough to be a likely typo.
func Closest(s string, candidates []string) string {
	best, bestD := "", math.MaxInt
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD <= max(2, len(s)/4) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing (null)"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func describeKind(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "a non-negative whole number"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return k.String()
}

// DecodeFields decodes key=value options (a command line's, an Argo
// item's) into v as strictly as Decode decodes a file: each value is read
// as the YAML scalar it spells (4, 0.01, true, monarch), into the field of
// v whose yaml key it names. what names the options in errors (e.g.
// "--candidate"). Keys are applied in sorted order.
func DecodeFields(what string, fields map[string]string, v any) error {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	doc := &yaml.Node{Kind: yaml.MappingNode}
	for _, k := range keys {
		doc.Content = append(doc.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: k},
			&yaml.Node{Kind: yaml.ScalarNode, Value: strings.TrimSpace(fields[k])})
	}
	d := &yamlDecoder{file: what, lines: map[string]int{}}
	return d.decode(doc, reflect.ValueOf(v).Elem(), "")
}
