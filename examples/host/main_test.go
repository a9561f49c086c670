package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/testbin"
	"github.com/strata-ml/strata/plugin"
	"github.com/strata-ml/strata/stages"
)

// TestPilotMatchesCLI runs the demo pilot through the plugin, with no
// files on this side, and `strata pilot --demo`: same decision, and the
// baseline, candidate and control models byte for byte the same.
func TestPilotMatchesCLI(t *testing.T) {
	dir := t.TempDir()
	bin, err := testbin.Path()
	if err != nil {
		t.Fatal(err)
	}
	p, err := runPilot(context.Background(), bin, stages.DemoPilotConfig(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "pilot")
	cmd := exec.Command(bin, "pilot", "--demo", "--workdir", work)
	if out, err := cmd.CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() < 3 {
			t.Fatalf("strata pilot --demo: %v\n%s", err, out)
		}
	}
	var want stages.PilotResult
	b, err := os.ReadFile(filepath.Join(work, "pilot.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if p.Decision != want.Decision || p.Why != want.Why {
		t.Errorf("decision %s (%s), the CLI's %s (%s)", p.Decision, p.Why, want.Decision, want.Why)
	}
	for _, stage := range []string{"baseline", "finetune", "control"} {
		a, ok := p.Results[stage].Output("model")
		if !ok || a.Encoding != plugin.EncodingArrowStream {
			t.Fatalf("%s: no streamed model", stage)
		}
		var got bytes.Buffer
		if err := arrowio.StreamToFile(&got, bytes.NewReader(a.Data), int64(len(a.Data)), stage); err != nil {
			t.Fatal(err)
		}
		cli, err := os.ReadFile(filepath.Join(work, stage, "model.arrow"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), cli) {
			t.Errorf("%s: the plugin's model differs from the CLI pilot's", stage)
		}
	}
}
