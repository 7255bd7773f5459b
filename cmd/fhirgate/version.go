package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the module version.
var version = ""

func init() {
	register(command{name: "version", summary: "print the version", run: func(_ context.Context, e env) error {
		_, err := fmt.Fprintf(e.stdout, "fhirgate %s\n", versionString())
		return err
	}})
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
