package plugin

//go:generate go run ./internal/gendocs -dirs ../stages,../validation -out fielddocs_gen.go
