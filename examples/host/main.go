// Command host is a small Go host that loads strata as a go-plugin plugin
// and runs the whole pilot through it on the embedded digits data, with
// no files: the data go to the plugin as Arrow record batches, every
// model comes back as Arrow and goes to the next stage the same way, and
// the decision is printed. It runs the stages `strata pilot --demo` runs,
// with the same configs, and reaches the same models and decision.
//
//	go build -o bin/strata . && go run ./examples/host -plugin bin/strata
//
// Progress goes to stderr; stdout gets the decision and why. The exit
// code is the report's (0 GO, 3 NO-GO, 4 INCONCLUSIVE, 1 on error).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/plugin/host"
	"github.com/strata-ml/strata/stages"
)

func main() {
	pluginPath := flag.String("plugin", "bin/strata", "the strata binary to load as a plugin")
	quiet := flag.Bool("quiet", false, "no progress on stderr")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	progress := io.Writer(os.Stderr)
	if *quiet {
		progress = io.Discard
	}
	p, err := runPilot(ctx, *pluginPath, stages.DemoPilotConfig(), progress)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		os.Exit(1)
	}
	fmt.Printf("decision: %s\n%s\n", p.Decision.Label(), p.Why)
	os.Exit(int(p.Decision.ExitCode(false)))
}

// pilot is the outcome of a pilot run through the plugin.
type pilot struct {
	Decision gate.Decision
	Why      string
	// Results holds each stage's result by name: baseline, convert,
	// finetune, control, validate, report.
	Results map[string]host.Result
}

// runPilot opens the plugin at pluginPath and runs the pilot cfg
// describes on its embedded data set, as stages.Pilot does with files.
func runPilot(ctx context.Context, pluginPath string, cfg stages.PilotConfig, progress io.Writer) (*pilot, error) {
	client, err := host.Open(ctx, pluginPath)
	if err != nil {
		return nil, err
	}
	defer client.Close()

	set, err := datasets.Load(cfg.Data)
	if err != nil {
		return nil, err
	}
	train, test, err := stages.Split(set.Dataset, cfg.TestFraction, cfg.Seed)
	if err != nil {
		return nil, err
	}
	label := arrowio.WithLabel(cfg.Label)
	p := &pilot{Results: map[string]host.Result{}}
	run := func(name, stage string, config any, inputs host.Inputs) (host.Result, error) {
		fmt.Fprintf(progress, "[%s] %s\n", name, stage)
		res, err := client.Run(ctx, stage, config, inputs, func(e host.Event) {
			fmt.Fprintf(progress, "[%s] %s\n", name, e.Message)
		})
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		p.Results[name] = res
		return res, nil
	}
	output := func(name, out string) host.Input {
		in, err := p.Results[name].Input(out)
		if err != nil {
			panic(err) // every stage below has these outputs
		}
		return in
	}

	// The dense baseline, trained from scratch.
	baseline := training(cfg, cfg.Baseline)
	if baseline.Init == "" {
		baseline.Init = fmt.Sprintf("mlp:%d-128-128-%d:relu", train.D, len(set.Classes))
	}
	if _, err := run("baseline", "finetune", baseline, host.Inputs{"train": host.Dataset(train, label)}); err != nil {
		return nil, err
	}

	// The candidate: the baseline converted to S + R, then fine-tuned.
	cv := cfg.Convert
	cv.Seed, cv.Activation = cfg.Seed, cfg.Activation
	if _, err := run("convert", "convert", cv, host.Inputs{"model": output("baseline", "model")}); err != nil {
		return nil, err
	}
	ft := training(cfg, cfg.Finetune)
	if _, err := run("finetune", "finetune", ft, host.Inputs{"model": output("convert", "model"), "train": host.Dataset(train, label)}); err != nil {
		return nil, err
	}

	// The equal-budget control: the dense baseline fine-tuned alike.
	valInputs := host.Inputs{
		"baseline": output("baseline", "model"), "candidate": output("finetune", "model"),
		"data": host.Dataset(test, label), "train_log": output("finetune", "log"), "baseline_train_log": output("baseline", "log"),
	}
	if cfg.Control {
		if _, err := run("control", "finetune", ft, host.Inputs{"model": output("baseline", "model"), "train": host.Dataset(train, label)}); err != nil {
			return nil, err
		}
		valInputs["control"] = output("control", "model")
		valInputs["control_train_log"] = output("control", "log")
	}

	va := cfg.Validate
	va.Label, va.Seed, va.Activation = cfg.Label, cfg.Seed, cfg.Activation
	validated, err := run("validate", "validate", va, valInputs)
	if err != nil {
		return nil, err
	}

	rc := stages.ReportConfig{Title: "strata pilot report"}
	// The training logs go along too, for the report's training curves.
	inputs := host.Inputs{"validation": host.Bytes("validation.json", validated.JSON)}
	// (Inputs are read once, so each is taken afresh from its result.)
	inputs["train_log"], inputs["baseline_train_log"] = output("finetune", "log"), output("baseline", "log")
	if cfg.Control {
		inputs["control_train_log"] = output("control", "log")
	}
	if cfg.Policy != "" {
		policy, err := os.ReadFile(cfg.Policy)
		if err != nil {
			return nil, err
		}
		inputs["policy"] = host.Bytes("policy.yaml", policy)
	}
	report, err := run("report", "report", rc, inputs)
	if err != nil {
		return nil, err
	}
	var rr stages.ReportResult
	if err := report.Decode(&rr); err != nil {
		return nil, err
	}
	p.Decision, p.Why = gate.Decision(report.Decision), rr.Why
	return p, nil
}

// training is the finetune config of a pilot training run, as
// stages.Pilot builds it (the data and the output come with the run).
func training(cfg stages.PilotConfig, t stages.FinetuneConfig) stages.FinetuneConfig {
	t.Label, t.Seed, t.Activation = cfg.Label, cfg.Seed, cfg.Activation
	return t
}
