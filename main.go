// Command postwarden is the Postwarden operator and SMTP relay in one binary.
//
//	postwarden operator   reconcile the custom resources into relay config
//	postwarden relay      run the SMTP relay
//	postwarden queue      list, retry, hold, release, delete or bounce a running relay's
//	                      queued mail, through its admin socket (exit codes: sysexits)
//	postwarden version    print the version
//	postwarden dev        run the whole system locally (make run); only in a binary built
//	                      with -tags dev, see main_dev.go
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/postwarden/postwarden/controllers"
	"github.com/postwarden/postwarden/relay"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{
	"operator": {"reconcile MailDomains, SMTPCredentials and policies into relay config", controllers.RunOperator},
	"relay":    {"run the SMTP relay (submission and inbound)", relay.RunCommand},
	"queue":    {"manage a running relay's queue (list, show, retry, hold, release, delete, bounce)", relay.RunQueueCommand},
	"version":  {"print the version", printVersion},
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]].run == nil {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := commands[os.Args[1]].run(ctx, os.Args[2:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "postwarden %s: %v\n", os.Args[1], err)
		// A command whose exit codes mean something (queue) says which; others fail with 1.
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			os.Exit(coded.ExitCode())
		}
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: postwarden <command> [flags]\n\ncommands:")
	for _, name := range []string{"operator", "relay", "queue", "dev", "version"} {
		if c, ok := commands[name]; ok {
			fmt.Fprintf(os.Stderr, "  %-10s %s\n", name, c.summary)
		}
	}
	fmt.Fprintln(os.Stderr, "\nRun 'postwarden <command> -h' for a command's flags.")
}

func printVersion(context.Context, []string) error {
	goVersion := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
	}
	fmt.Printf("postwarden %s (%s)\n", version, goVersion)
	return nil
}
