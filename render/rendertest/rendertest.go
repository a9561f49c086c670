// Package rendertest checks what render writes, for the tests of render
// and of the stages that write its output.
package rendertest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/render"
)

// CheckOpenMetrics checks the OpenMetrics text exposition format: families
// with TYPE before their samples, label values quoted, numbers parse, and
// the # EOF terminator. It returns the text.
func CheckOpenMetrics(t *testing.T, b []byte) string {
	t.Helper()
	text := string(b)
	if !strings.HasSuffix(text, "# EOF\n") {
		t.Errorf("OpenMetrics text does not end with # EOF")
	}
	sample := regexp.MustCompile(`^([a-z_]+)\{([a-z_]+="[^"\\]*(?:\\.[^"\\]*)*"(?:,[a-z_]+="[^"\\]*(?:\\.[^"\\]*)*")*)\} (-?[0-9.e+-]+|NaN)$`)
	typed := map[string]bool{}
	body := strings.TrimSuffix(strings.TrimSuffix(text, "# EOF\n"), "\n")
	for _, line := range strings.Split(body, "\n") {
		switch {
		case line == "":
			t.Errorf("empty line in OpenMetrics text")
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			typed[f[2]] = true
		case strings.HasPrefix(line, "# HELP "):
		default:
			m := sample.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("bad sample line %q", line)
				continue
			}
			if !typed[m[1]] {
				t.Errorf("sample %q before its # TYPE", line)
			}
		}
	}
	return text
}

// CheckHTML checks that report.html is one well-formed, self-contained
// document: it parses as XML (the page is written as polyglot markup),
// ids are unique, there is no script, no external resource and no
// stylesheet or image from elsewhere, the decision label reads label, and
// every plot id is a figure holding an inline SVG.
func CheckHTML(t *testing.T, page []byte, label string, plots []string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(page))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	ids := map[string]bool{}
	figureSVG := map[string]bool{}
	var stack []string // ids of the open elements
	var decisionText strings.Builder
	inLabel := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("report.html is not well-formed: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			id := ""
			for _, a := range e.Attr {
				if a.Name.Local == "id" {
					id = a.Value
					if ids[id] {
						t.Errorf("duplicate id %q", id)
					}
					ids[id] = true
				}
				if (a.Name.Local == "src" || a.Name.Local == "href") && !strings.HasPrefix(a.Value, "#") {
					t.Errorf("<%s %s=%q>: the page must not load anything", e.Name.Local, a.Name.Local, a.Value)
				}
			}
			switch e.Name.Local {
			case "script", "link", "img", "iframe", "object", "embed":
				t.Errorf("report.html has a <%s>", e.Name.Local)
			case "svg":
				for _, open := range stack {
					if slices.Contains(plots, open) {
						figureSVG[open] = true
					}
				}
			}
			if id == render.HTMLLabelID {
				inLabel++
			} else if inLabel > 0 {
				inLabel++
			}
			stack = append(stack, id)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
			if inLabel > 0 {
				inLabel--
			}
		case xml.CharData:
			if inLabel > 0 {
				decisionText.Write(e)
			}
		}
	}
	if got := strings.TrimSpace(decisionText.String()); got != label {
		t.Errorf("decision label %q, want %q", got, label)
	}
	for _, id := range plots {
		if !figureSVG[id] {
			t.Errorf("plot %s has no inline SVG", id)
		}
	}
	if bytes.Contains(page, []byte("@import")) || bytes.Contains(page, []byte("url(")) {
		t.Errorf("report.html loads a resource from CSS")
	}
}
