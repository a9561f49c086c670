// Command strata pilots structured + residual layers on a trained dense
// model: convert, finetune, validate and report, ending in a go / no-go
// decision a pipeline can gate on. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/strata-ml/strata/cli"
	"github.com/strata-ml/strata/internal/crashexit"
)

func main() {
	crashexit.Setup() // a crash must not exit 2, strata's code for bad input
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
