// Package queuecli is `postwarden queue`, a relay's mailq, postqueue and postsuper:
// it lists, shows, retries, holds, releases, deletes and bounces queued messages by
// asking the relay over its admin socket (relay/internal/queueadmin), which is in the
// spool volume, so it runs inside the relay's pod (kubectl exec). It owns the command
// line, the output for people and scripts, and the exit codes.
package queuecli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/postwarden/postwarden/relay/internal/queueadmin"
)

// DefaultSpoolDir is the relay's --spool-dir default and the chart's spool mount path.
const DefaultSpoolDir = "/var/spool/postwarden"

// Exit codes, from sysexits.h, so scripts can tell "try again" from "no such message".
const (
	ExitOK          = 0
	ExitUsage       = 64 // EX_USAGE: bad command line, or a request the relay refused as malformed
	ExitDataErr     = 65 // EX_DATAERR: retry of a held message; release it first
	ExitNoInput     = 66 // EX_NOINPUT: no such message in the queue
	ExitUnavailable = 69 // EX_UNAVAILABLE: no relay answers on the socket, it is shutting down, or it does not deliver (retry, bounce)
	ExitSoftware    = 70 // EX_SOFTWARE: the relay failed to carry out the command (its log says why)
	ExitTempFail    = 75 // EX_TEMPFAIL: the message is being delivered or changed by another command, or no answer in time; try again
	ExitNoPerm      = 77 // EX_NOPERM: not the relay's user nor root
)

var exitOf = map[string]int{
	queueadmin.CodeBadRequest:   ExitUsage,
	queueadmin.CodeHeld:         ExitDataErr,
	queueadmin.CodeNotFound:     ExitNoInput,
	queueadmin.CodeUnreachable:  ExitUnavailable,
	queueadmin.CodeShuttingDown: ExitUnavailable,
	queueadmin.CodeDeliveryOff:  ExitUnavailable,
	queueadmin.CodeInternal:     ExitSoftware,
	queueadmin.CodeInFlight:     ExitTempFail,
	queueadmin.CodeBusy:         ExitTempFail,
	queueadmin.CodeTimeout:      ExitTempFail,
	queueadmin.CodeForbidden:    ExitNoPerm,
}

// ExitError is an error with the exit code the process ends with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitCode is what main exits with.
func (e *ExitError) ExitCode() int { return e.Code }

func usageError(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// options are the flags of every subcommand, each using the ones it defines.
type options struct {
	spoolDir, socket, output, reason string
	timeout                          time.Duration
	all                              bool
	filter                           queueadmin.Filter
	olderThan, newerThan             string
}

type subcommand struct {
	summary, args string
	flags         func(fs *flag.FlagSet, o *options)
	run           func(ctx context.Context, c *queueadmin.Client, o *options, args []string, w io.Writer) error
}

var subcommands = map[string]subcommand{
	"list":    {"list queued messages (mailq)", "", listFlags, runList},
	"show":    {"show a message's envelope, state per recipient and headers (postcat -eh)", "ID", nil, runShow},
	"retry":   {"attempt a message, or every message, now (postqueue -i / -f)", "ID | --all", retryFlags, runRetry},
	"hold":    {"keep a message from being attempted until released (postsuper -h)", "ID", reasonFlag, runCommand(queueadmin.CmdHold)},
	"release": {"release a held message (postsuper -H)", "ID", reasonFlag, runCommand(queueadmin.CmdRelease)},
	"delete":  {"remove a message from the queue, telling nobody (postsuper -d)", "ID", reasonFlag, runCommand(queueadmin.CmdDelete)},
	"bounce":  {"fail a message's pending recipients and send its sender a bounce", "ID", reasonFlag, runCommand(queueadmin.CmdBounce)},
}

var order = []string{"list", "show", "retry", "hold", "release", "delete", "bounce"}

// Run runs `postwarden queue` with args (after "queue"), writing results to stdout and
// usage to stderr. Its errors carry an exit code (ExitError), except flag.ErrHelp.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return usageError("a subcommand is required")
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		return flag.ErrHelp
	}
	name := args[0]
	sub, ok := subcommands[name]
	if !ok {
		usage(stderr)
		return usageError("no subcommand %q", name)
	}
	fs := flag.NewFlagSet("postwarden queue "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: postwarden queue %s [flags] %s\n\n%s.\n\nflags:\n", name, sub.args, sub.summary)
		fs.PrintDefaults()
	}
	o := &options{}
	fs.StringVar(&o.spoolDir, "spool-dir", DefaultSpoolDir, "the relay's spool folder, where its admin socket is")
	fs.StringVar(&o.socket, "socket", "", "the relay's admin socket (default: <spool-dir>/"+queueadmin.SocketName+")")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "how long to wait for the relay's answer")
	fs.StringVar(&o.output, "o", "text", "output: text, json, or wide (list only: adds each message's last reply)")
	fs.StringVar(&o.output, "output", "text", "same as -o")
	if sub.flags != nil {
		sub.flags(fs, o)
	}
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	switch o.output {
	case "text", "json", "wide":
	default:
		return usageError("-o %q is not text, json or wide", o.output)
	}
	if o.socket == "" {
		o.socket = filepath.Join(o.spoolDir, queueadmin.SocketName)
	}
	err = sub.run(ctx, queueadmin.NewClient(o.socket, o.timeout), o, pos, stdout)
	var e *queueadmin.Error
	if errors.As(err, &e) {
		code, ok := exitOf[e.Code]
		if !ok {
			code = ExitSoftware
		}
		return &ExitError{Code: code, Err: err}
	}
	return err
}

// parseInterspersed parses flags anywhere among the arguments, as in
// `postwarden queue show ID -o json`, and returns the others.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: postwarden queue <subcommand> [flags] [ID]\n\nManage the queue of the relay whose spool is --spool-dir, through its admin socket.\n\nsubcommands:")
	for _, name := range order {
		s := subcommands[name]
		fmt.Fprintf(w, "  %-8s %-11s %s\n", name, s.args, s.summary)
	}
	fmt.Fprintln(w, "\nExit codes: 0 done; 64 usage; 65 held (retry); 66 no such message; 69 no relay answers, or it does not deliver;"+
		"\n70 the relay failed; 75 being delivered or changed, try again; 77 not allowed."+
		"\nRun 'postwarden queue <subcommand> -h' for its flags.")
}

func listFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.filter.Sender, "sender", "", "only mail from this address, or @domain; <> is the null sender")
	fs.StringVar(&o.filter.Recipient, "recipient", "", "only mail with a recipient at this address, or @domain")
	fs.StringVar(&o.filter.Credential, "credential", "", "only mail submitted with this SMTP AUTH user name")
	fs.StringVar(&o.filter.State, "state", "", "only mail in this state: active, deferred or held")
	fs.StringVar(&o.olderThan, "older-than", "", "only mail received longer ago than this (90m, 2h, 3d)")
	fs.StringVar(&o.newerThan, "newer-than", "", "only mail received less long ago than this")
}

func retryFlags(fs *flag.FlagSet, o *options) {
	fs.BoolVar(&o.all, "all", false, "every queued message that is not held (postqueue -f)")
	reasonFlag(fs, o)
}

func reasonFlag(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.reason, "reason", "", "why, for the relay's log (the sender never sees it)")
}

// oneID returns the one message id of args.
func oneID(args []string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		return "", usageError("one message id is required, got %d arguments", len(args))
	}
	return args[0], nil
}

// parseAge parses a Go duration, or a whole number of days such as 3d.
func parseAge(flagName, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, usageError("--%s %q is not a duration such as 90m, 2h or 3d", flagName, s)
	}
	return d, nil
}
