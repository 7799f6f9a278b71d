package queuecli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"path/filepath"
	"testing"
	"time"
)

func TestExitCodesWithoutARelay(t *testing.T) {
	spoolDir := t.TempDir() // no relay, so no socket
	for name, c := range map[string]struct {
		args []string
		code int
	}{
		"a listing finds no relay":            {[]string{"list"}, ExitUnavailable},
		"a command finds no relay":            {[]string{"hold", "01JB8Z4K2M7XQ3N5P6", "--reason", "why"}, ExitUnavailable},
		"no subcommand":                       {nil, ExitUsage},
		"an unknown subcommand":               {[]string{"flush"}, ExitUsage},
		"a command without its id":            {[]string{"delete"}, ExitUsage},
		"a command with two ids":              {[]string{"delete", "A", "B"}, ExitUsage},
		"retry with an id and --all":          {[]string{"retry", "A", "--all"}, ExitUsage},
		"list with an argument":               {[]string{"list", "A"}, ExitUsage},
		"an age that is not one":              {[]string{"list", "--older-than", "soon"}, ExitUsage},
		"an unknown output":                   {[]string{"list", "-o", "yaml"}, ExitUsage},
		"an unknown flag":                     {[]string{"show", "A", "--verbose"}, ExitUsage},
		"flags after the id are still parsed": {[]string{"show", "A", "-o", "yaml"}, ExitUsage},
	} {
		var out, errs bytes.Buffer
		err := Run(context.Background(), append(c.args, "--spool-dir", spoolDir), &out, &errs)
		var exit *ExitError
		if !errors.As(err, &exit) || exit.Code != c.code {
			t.Errorf("%s: Run(%q) = %v, want exit code %d", name, c.args, err, c.code)
		}
	}
	if err := Run(context.Background(), []string{"list", "-h"}, &bytes.Buffer{}, &bytes.Buffer{}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("list -h = %v, want flag.ErrHelp (exit 0)", err)
	}
}

func TestTheSocketIsInTheSpoolFolderByDefault(t *testing.T) {
	var errs bytes.Buffer
	err := Run(context.Background(), []string{"list", "--spool-dir", "/nonexistent/spool"}, &bytes.Buffer{}, &errs)
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte(filepath.Join("/nonexistent/spool", "admin.sock"))) {
		t.Errorf("list --spool-dir /nonexistent/spool = %v, want it to name the socket there", err)
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "90m": 90 * time.Minute, "2h": 2 * time.Hour, "3d": 72 * time.Hour, "0d": 0} {
		if got, err := parseAge("older-than", in); err != nil || got != want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"3 days", "-1h", "1.5d", "d"} {
		if _, err := parseAge("older-than", in); err == nil {
			t.Errorf("parseAge(%q) took it", in)
		}
	}
}

func TestAgeIsShortForPeople(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 45 * time.Second: "45s", 12*time.Minute + 5*time.Second: "12m",
		5*time.Hour + 3*time.Minute: "5h03m", 76 * time.Hour: "3d04h",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}
