package cli_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-ml/strata/render"
)

// chromium returns the path of a Chromium binary. Without one the test
// is skipped on a workstation and fails in CI (env CI set), where
// .ci/run installs Debian's chromium package.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (.ci/run installs Debian's chromium package)")
	}
	t.Skip("chromium is not installed; apt-get install chromium to run this test")
	return ""
}

// runChromium runs headless Chromium on a page with extra arguments and
// returns its stdout and stderr.
func runChromium(t *testing.T, bin, profile, page string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
		"--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0"}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), "file://"+page)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// TestReportHTMLInChromium opens the demo's report.html in a real headless
// Chromium: the page renders with no console message at all (it has no
// scripts), a screenshot is not blank, and the decision and every plot
// are in the DOM.
func TestReportHTMLInChromium(t *testing.T) {
	bin := chromium(t)
	dir := t.TempDir()
	r := run(t, "pilot", "--demo", "--workdir", filepath.Join(dir, "work"))
	if r.code != 0 {
		t.Fatalf("pilot --demo: exit %d\n%s", r.code, r.stderr)
	}
	decision := regexp.MustCompile(`^Decision: (\S+)`).FindStringSubmatch(r.stdout)
	if decision == nil {
		t.Fatalf("no decision on stdout:\n%s", r.stdout)
	}
	page := filepath.Join(dir, "work", "report", "report.html")
	html := readBytes(t, page)
	if bytes.Contains(bytes.ToLower(html), []byte("<script")) {
		t.Error("report.html has a script")
	}

	// Screenshot: not blank.
	shot := filepath.Join(dir, "shot.png")
	_, stderr := runChromium(t, bin, filepath.Join(dir, "profile-shot"), page, "--screenshot="+shot, "--window-size=1200,2000")
	checkConsole(t, stderr)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	colours := map[uint32]bool{}
	nonWhite := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[r>>8<<16|g>>8<<8|bl>>8] = true
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				nonWhite++
			}
		}
	}
	share := float64(nonWhite) / float64(b.Dx()*b.Dy())
	t.Logf("screenshot %dx%d: %d colours, %.1f%% not white", b.Dx(), b.Dy(), len(colours), 100*share)
	if b.Dx() != 1200 || b.Dy() != 2000 || len(colours) < 50 || share < 0.03 {
		t.Errorf("the screenshot looks blank: %dx%d, %d colours, %.2f%% not white", b.Dx(), b.Dy(), len(colours), 100*share)
	}

	// The DOM as Chromium built it.
	dom, stderr := runChromium(t, bin, filepath.Join(dir, "profile-dom"), page, "--dump-dom")
	checkConsole(t, stderr)
	label := regexp.MustCompile(`<h2 id="` + render.HTMLLabelID + `">([^<]*)</h2>`).FindStringSubmatch(dom)
	if label == nil || label[1] != decision[1] {
		t.Errorf("decision label %v in the DOM, want %q", label, decision[1])
	}
	if !strings.Contains(dom, `id="`+render.HTMLRulesID+`"`) || !strings.Contains(dom, `id="`+render.HTMLMetricsID+`"`) {
		t.Error("the rules or the metrics table is missing from the DOM")
	}
	for _, id := range render.PlotIDs {
		svg := "svg-" + strings.TrimPrefix(id, "plot-")
		re := regexp.MustCompile(`<figure id="` + id + `">\s*<svg id="` + svg + `"[^>]*>[\s\S]*?</svg>`)
		m := re.FindString(dom)
		if m == "" {
			t.Errorf("plot %s: no inline <svg id=%q> in its figure", id, svg)
			continue
		}
		if strings.Count(m, "<path") < 5 {
			t.Errorf("plot %s: its SVG draws almost nothing", id)
		}
	}
}

// checkConsole fails on any message of the page's console: the page has no
// scripts, so there must be none (an error would be a failed load).
func checkConsole(t *testing.T, stderr string) {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, ":CONSOLE") || strings.Contains(line, "Uncaught") {
			t.Errorf("console message: %s", line)
		}
	}
}
