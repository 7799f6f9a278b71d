package testkit

import (
	"bytes"
	"encoding/json"
	"sync"
)

// LogBuffer collects the output of a JSON log handler written from many goroutines (an
// SMTP server's sessions, a queue runner's workers) and reads it back as records.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Records returns the JSON lines whose msg is msg, each decoded into a map; lines that
// are not JSON are skipped.
func (b *LogBuffer) Records(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range bytes.Lines(b.buf.Bytes()) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
