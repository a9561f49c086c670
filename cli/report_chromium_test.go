package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	stdhtml "html"
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
// scripts), a screenshot is not blank, the decision, the regressions
// (right under it) and every plot are in the DOM, and no data mark of any
// plot lies outside its axes as Chromium lays them out.
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
	// The regressions are shown as loudly as the passes: right under the
	// decision, before the rules.
	reg := regexp.MustCompile(`<section id="` + render.HTMLRegressionsID + `"[^>]*>\s*<h2>Regressions: ([^<]*)</h2>`).FindStringSubmatch(dom)
	if reg == nil || strings.Index(dom, `id="`+render.HTMLRegressionsID+`"`) > strings.Index(dom, `id="`+render.HTMLRulesID+`"`) {
		t.Errorf("no regressions section between the decision and the rules")
	} else {
		t.Logf("regressions: %s", reg[1])
	}
	checkPlotGeometry(t, bin, dir, html)
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

// geometryScript measures every inline plot of a report as Chromium lays
// it out and writes the findings into the page: per tile of each figure
// (a white plot background), the span of its axis lines and its
// labelled (long) tick marks, and every data mark (a path in a model's
// colour: a line, a point, a bar) that lies outside them, beyond a point's
// radius and a line's width. A point above the top labelled tick of the y
// axis, or a bar past the end of the x axis, is outside.
const geometryScript = `<script>
(function () {
  var colours = /(stroke|fill):#(1F77B4|E06C00|2CA02C|994CC0)/i;
  var report = {figures: 0, tiles: 0, marks: 0, outside: [], skipped: []};
  var figs = document.querySelectorAll("figure svg");
  for (var f = 0; f < figs.length; f++) {
    report.figures++;
    var svg = figs[f], id = svg.id;
    var paths = Array.prototype.slice.call(svg.querySelectorAll("path"));
    var style = function (p) { return p.getAttribute("style") || ""; };
    var tiles = paths.filter(function (p, i) { return i > 0 && /fill:#FFFFFF/i.test(style(p)); }).map(function (p) { return p.getBBox(); });
    var black = paths.filter(function (p) { return /stroke:#000000/i.test(style(p)); }).map(function (p) { return p.getBBox(); });
    var marks = paths.filter(function (p) { return colours.test(style(p)); });
    for (var t = 0; t < tiles.length; t++) {
      var T = tiles[t];
      var inT = function (b) { return b.x >= T.x - 0.01 && b.x + b.width <= T.x + T.width + 0.01 && b.y >= T.y - 0.01 && b.y + b.height <= T.y + T.height + 0.01; };
      var own = black.filter(inT);
      var xs = own.filter(function (b) { return b.height === 0 && b.width > 8.5; });
      var ys = own.filter(function (b) { return b.width === 0 && b.height > 8.5; });
      var yticks = own.filter(function (b) { return b.height === 0 && Math.abs(b.width - 8) < 0.01; });
      if (xs.length === 0 || ys.length === 0 || yticks.length < 2) {
        report.skipped.push(id + " tile " + t + ": " + xs.length + " x axes, " + ys.length + " y axes, " + yticks.length + " labelled y ticks");
        continue;
      }
      report.tiles++;
      var xlo = Math.min.apply(null, xs.map(function (b) { return b.x; })), xhi = Math.max.apply(null, xs.map(function (b) { return b.x + b.width; }));
      var ylo = Math.min.apply(null, yticks.map(function (b) { return b.y; })), yhi = Math.max.apply(null, yticks.map(function (b) { return b.y; }));
      ylo = Math.max(ylo, Math.min.apply(null, ys.map(function (b) { return b.y; })));
      yhi = Math.min(yhi, Math.max.apply(null, ys.map(function (b) { return b.y + b.height; })));
      for (var m = 0; m < marks.length; m++) {
        var b = marks[m].getBBox();
        var cx = b.x + b.width / 2, cy = b.y + b.height / 2;
        if (!(cx >= T.x && cx <= T.x + T.width && cy >= T.y && cy <= T.y + T.height)) { continue; }
        report.marks++;
        var tol = 3;
        if (b.x < xlo - tol || b.x + b.width > xhi + tol || b.y < ylo - tol || b.y + b.height > yhi + tol) {
          report.outside.push(id + " tile " + t + ": mark [" + b.x.toFixed(1) + ", " + (b.x + b.width).toFixed(1) + "] x [" + b.y.toFixed(1) + ", " + (b.y + b.height).toFixed(1) +
            "] outside the axes [" + xlo.toFixed(1) + ", " + xhi.toFixed(1) + "] x [" + ylo.toFixed(1) + ", " + yhi.toFixed(1) + "]");
        }
      }
    }
  }
  var pre = document.createElement("pre");
  pre.id = "geometry-check";
  pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
})();
</script>`

// checkPlotGeometry opens a copy of report.html with geometryScript in
// headless Chromium and fails on any data mark outside its axes.
func checkPlotGeometry(t *testing.T, bin, dir string, html []byte) {
	t.Helper()
	page := filepath.Join(dir, "geometry.html")
	doc := strings.Replace(string(html), "</body>", geometryScript+"</body>", 1)
	if err := os.WriteFile(page, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	dom, stderr := runChromium(t, bin, filepath.Join(dir, "profile-geometry"), page, "--dump-dom", "--virtual-time-budget=10000")
	checkConsole(t, stderr)
	m := regexp.MustCompile(`<pre id="geometry-check">([^<]*)</pre>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the geometry script wrote nothing:\n%s", stderr)
	}
	var got struct {
		Figures, Tiles, Marks int
		Outside, Skipped      []string
	}
	if err := json.Unmarshal([]byte(stdhtml.UnescapeString(m[1])), &got); err != nil {
		t.Fatalf("%v: %s", err, m[1])
	}
	t.Logf("geometry: %d figures, %d tiles, %d data marks; skipped %q", got.Figures, got.Tiles, got.Marks, got.Skipped)
	if got.Tiles < 8 || got.Marks < 50 {
		t.Errorf("the check found %d tiles and %d data marks: it measured almost nothing", got.Tiles, got.Marks)
	}
	for _, o := range got.Outside {
		t.Errorf("outside its axes: %s", o)
	}
	for _, o := range got.Skipped {
		t.Errorf("not measured (no axes found): %s", o)
	}
}
