module github.com/strata-ml/strata

go 1.26

require (
	github.com/spf13/pflag v1.1.0
	gonum.org/v1/gonum v0.17.0
)

require github.com/apache/arrow-go/v18 v18.8.0 // indirect
