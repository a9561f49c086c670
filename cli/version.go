package cli

import (
	"context"
	"fmt"

	"github.com/strata-ml/strata/internal/provenance"
)

type versionCommand struct{ env }

func (c *versionCommand) Usage() string {
	return "Usage: strata version\n\nPrints the strata version, the commit it was built from and the Go version.\n"
}

func (c *versionCommand) Run(_ context.Context, args []string) error {
	fs := newFlagSet("version", c.env, c.Usage)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("version takes no arguments, got %q", fs.Args())
	}
	v := provenance.Version()
	fmt.Fprintf(c.stdout, "strata %s (commit %s, %s, %s backend)\n", v.Version, v.Commit, v.GoVersion, v.Backend)
	return nil
}
