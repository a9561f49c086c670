package cli

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress draws a progress bar on stderr when stderr is a terminal, and
// nothing otherwise (commands then log periodic lines instead). Log lines
// written through logWriter clear the bar first, so the two do not
// interleave on one line; the bar is redrawn on its next update.
type progress struct {
	w    io.Writer
	what string
	// tty reports whether w is a terminal; bar is created on the first
	// update, when the total is known.
	tty bool
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

// newProgress returns the progress display of a command named what.
func newProgress(stderr io.Writer, what string) *progress {
	p := &progress{w: stderr, what: what}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

// active reports whether a bar is shown (stderr is a terminal).
func (p *progress) active() bool { return p.tty }

// update moves the bar to done of total with a description.
func (p *progress) update(done, total int, desc string) {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar == nil {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.what),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("steps"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
		)
	}
	if p.bar.GetMax() != total {
		p.bar.ChangeMax(total)
	}
	p.bar.Describe(desc)
	_ = p.bar.Set(done)
}

// logWriter returns the writer a command's logger should use.
func (p *progress) logWriter() io.Writer {
	if !p.tty {
		return p.w
	}
	return clearingWriter{p}
}

// finish ends the bar's line.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Exit()
		_, _ = io.WriteString(p.w, "\n")
		p.bar = nil
	}
}

// clearingWriter clears the bar before each write.
type clearingWriter struct{ p *progress }

func (c clearingWriter) Write(b []byte) (int, error) {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	if c.p.bar != nil {
		_ = c.p.bar.Clear()
	}
	return c.p.w.Write(b)
}
