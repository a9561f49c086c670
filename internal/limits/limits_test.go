package limits

import (
	"os"
	"strings"
	"testing"
)

// TestDocsListLimits: docs/FORMATS.md shows every bound of Table with
// its value, as a row of its table.
func TestDocsListLimits(t *testing.T) {
	b, err := os.ReadFile("../../docs/FORMATS.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range Table {
		if row := "| " + l.Name + " | " + l.String() + " |"; !strings.Contains(string(b), row) {
			t.Errorf("docs/FORMATS.md lacks the row %q", row)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		l    Limit
		want string
	}{
		{Limit{Value: 1 << 20, Bytes: true}, "1 MiB"},
		{Limit{Value: 2 << 30, Bytes: true}, "2 GiB"},
		{Limit{Value: 1000, Bytes: true}, "1,000 bytes"},
		{Limit{Value: 268435456}, "268,435,456"},
		{Limit{Value: 999}, "999"},
		{Limit{Value: -1234}, "-1,234"},
	}
	for _, tt := range tests {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.l, got, tt.want)
		}
	}
}
