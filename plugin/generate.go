package plugin

//go:generate go run ./internal/gendocs -stages ../stages -out fielddocs_gen.go
