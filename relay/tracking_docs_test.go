package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/postwarden/postwarden/relay/internal/tracking"
)

// trackingDocs is what the "Message tracking" section of docs/operating.md says: the
// tests hold the code and a relay's real log to it, so the two cannot drift apart.
type trackingDocs struct {
	kinds  map[string]string   // event → its kind (transaction, recipient, notification)
	fields map[string][]string // event → the fields documented for it, sorted
	// examples maps each marked example's name to its jq arguments, exactly as written
	// after "| jq" in the docs.
	examples map[string][]string
	logql    []string
}

var exampleMarker = regexp.MustCompile(`^<!-- tracking-example: ([a-z-]+) -->$`)

func readTrackingDocs(t *testing.T) trackingDocs {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "operating.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Message tracking\n")
	if !ok {
		t.Fatal(`docs/operating.md has no "## Message tracking" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	d := trackingDocs{kinds: map[string]string{}, fields: map[string][]string{}, examples: map[string][]string{}}
	var table, block, example string
	var fieldEvents [][2]string // field, its Events cell; resolved once the kinds are known
	for line := range strings.Lines(section) {
		line = strings.TrimRight(line, "\n")
		switch {
		case block != "":
			if line == "```" {
				block = ""
			} else if block == "sh" && example != "" {
				d.examples[example] = jqArgs(t, example, line)
				example = ""
			} else if block == "logql" && line != "" && !strings.HasPrefix(line, "#") {
				d.logql = append(d.logql, line)
			}
		case strings.HasPrefix(line, "```"):
			block = strings.TrimPrefix(line, "```")
			if example != "" && block != "sh" {
				t.Fatalf("example %s is not followed by a sh block", example)
			}
		case exampleMarker.MatchString(line):
			example = exampleMarker.FindStringSubmatch(line)[1]
		case strings.HasPrefix(line, "| `event` | Kind |"), strings.HasPrefix(line, "| Field | Type | Events |"):
			table = line
		case strings.HasPrefix(line, "| ---"):
		case strings.HasPrefix(line, "|") && table != "":
			cells := strings.Split(line, "|")
			name := strings.Trim(strings.TrimSpace(cells[1]), "`")
			if strings.HasPrefix(table, "| `event`") {
				d.kinds[name] = strings.TrimSpace(cells[2])
			} else {
				fieldEvents = append(fieldEvents, [2]string{name, strings.TrimSpace(cells[3])})
			}
		default:
			table = ""
		}
	}
	for _, fe := range fieldEvents {
		for _, event := range d.eventsOf(t, fe[1]) {
			d.fields[event] = append(d.fields[event], fe[0])
		}
	}
	for _, f := range d.fields {
		slices.Sort(f)
	}
	return d
}

// eventsOf reads an Events cell: "all", kinds, or event names in backquotes.
func (d trackingDocs) eventsOf(t *testing.T, cell string) []string {
	var out []string
	for _, tok := range strings.Split(cell, ",") {
		tok = strings.TrimSpace(tok)
		switch {
		case tok == "all":
			out = append(out, slices.Collect(maps.Keys(d.kinds))...)
		case strings.HasPrefix(tok, "`"):
			out = append(out, strings.Trim(tok, "`"))
		default:
			n := len(out)
			for event, kind := range d.kinds {
				if kind == tok {
					out = append(out, event)
				}
			}
			if len(out) == n {
				t.Fatalf("the fields table names %q, which is neither an event nor a kind", tok)
			}
		}
	}
	return out
}

// jqArgs splits the jq part of an example's command line as a shell would. The example
// must end with jq, and use only the options the test knows how to feed.
func jqArgs(t *testing.T, name, line string) []string {
	t.Helper()
	_, cmd, ok := strings.Cut(line, "| jq ")
	if !ok {
		t.Fatalf("example %s does not pipe into jq: %s", name, line)
	}
	args := shellWords(t, cmd)
	for i, a := range args {
		if a == "|" || a == ">" {
			t.Fatalf("example %s goes on after jq: %s", name, line)
		}
		if strings.HasPrefix(a, "-") && !slices.Contains([]string{"-c", "-r", "-s", "-sc", "--arg"}, a) {
			t.Fatalf("example %s uses jq option %s, which the test does not know", name, a)
		}
		if a == "--arg" && i+2 >= len(args) {
			t.Fatalf("example %s: --arg needs a name and a value", name)
		}
	}
	return args
}

// shellWords splits s into words: blanks separate them, single quotes keep everything
// literally, as in the examples.
func shellWords(t *testing.T, s string) []string {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for _, r := range s {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			w.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case r == '"' || r == '\\' || r == '$' || r == '`':
			t.Fatalf("the test reads only single quotes, not %q in: %s", r, s)
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in: %s", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// sampleKeys writes each event once through the tracking package and returns the keys
// of its line: what the code writes, whatever the docs say.
func sampleKeys(t *testing.T) map[string][]string {
	t.Helper()
	var buf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	for _, e := range []tracking.Event{tracking.Accepted, tracking.Rejected, tracking.Abandoned} {
		(&tracking.Transaction{Event: e}).Log(ctx, l)
	}
	for _, e := range []tracking.Event{tracking.Delivered, tracking.Deferred, tracking.Bounced, tracking.Expired} {
		(&tracking.Outcome{Event: e}).Log(ctx, l)
	}
	(&tracking.Notification{}).Log(ctx, l)
	out := map[string][]string{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		out[rec[tracking.KeyEvent].(string)] = slices.Sorted(maps.Keys(rec))
	}
	return out
}

// The events and fields tables list exactly what the tracking package writes.
func TestTrackingDocsMatchTheSchema(t *testing.T) {
	docs := readTrackingDocs(t)
	samples := sampleKeys(t)
	if got, want := slices.Sorted(maps.Keys(docs.kinds)), slices.Sorted(maps.Keys(samples)); !slices.Equal(got, want) {
		t.Fatalf("the events table lists %v; the code writes %v", got, want)
	}
	for event, keys := range samples {
		if !slices.Equal(docs.fields[event], keys) {
			t.Errorf("event %s: the fields table documents %v; the code writes %v", event, docs.fields[event], keys)
		}
	}
	if len(docs.examples) == 0 || len(docs.logql) == 0 {
		t.Fatalf("no jq examples (%d) or LogQL queries (%d) found", len(docs.examples), len(docs.logql))
	}
}

var (
	logqlTemplate = regexp.MustCompile(`\{\{\s*\.([A-Za-z_]+)\s*\}\}`)
	logqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	logqlFilter   = regexp.MustCompile(`\b([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|>=|<=|==|=|>|<)`)
	logqlBy       = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
)

// Loki cannot run here, but its queries must at least name fields the log has.
func TestTrackingDocsLogQLNamesSchemaFields(t *testing.T) {
	docs := readTrackingDocs(t)
	known := map[string]bool{}
	for _, fields := range docs.fields {
		for _, f := range fields {
			known[f] = true
		}
	}
	for _, q := range docs.logql {
		_, pipeline, ok := strings.Cut(q, "| json")
		if !ok {
			t.Errorf("LogQL query without | json: %s", q)
			continue
		}
		var names []string
		for _, m := range logqlTemplate.FindAllStringSubmatch(pipeline, -1) {
			names = append(names, m[1])
		}
		for _, m := range logqlBy.FindAllStringSubmatch(q, -1) {
			for _, n := range strings.Split(m[1], ",") {
				names = append(names, strings.TrimSpace(n))
			}
		}
		for _, m := range logqlFilter.FindAllStringSubmatch(logqlString.ReplaceAllString(pipeline, `""`), -1) {
			names = append(names, m[1])
		}
		for _, n := range names {
			if !known[n] {
				t.Errorf("LogQL query uses %q, which is not a tracking field: %s", n, q)
			}
		}
	}
}
