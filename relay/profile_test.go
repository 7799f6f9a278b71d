package relay

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// --profile-listen serves Go's profiles on loopback, and nothing else; any other
// address is refused at start.
func TestProfileServerIsLoopbackOnly(t *testing.T) {
	a, _ := creds(t)
	f := startFileRelay(t, newSnapshot(t, certEntry, a), func(c *Config) { c.ProfileAddr = "127.0.0.1:0" })
	resp, err := http.Get("http://" + f.ProfileAddr().String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile:") {
		t.Errorf("goroutine profile: %s\n%.200s", resp.Status, body)
	}
	resp, err = http.Get("http://" + f.HTTPAddr().String() + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("the metrics server answers /debug/pprof/ with %s", resp.Status)
	}

	cfg := Config{Hostname: relayName, ConfigFile: f.config, SpoolDir: t.TempDir(), ProfileAddr: "0.0.0.0:0",
		Submission: Listener{Addr: "127.0.0.1:0"}}
	if r, err := New(cfg); err == nil {
		r.closeListeners()
		t.Fatal("a profile server on every interface was accepted")
	} else if !strings.Contains(err.Error(), "loopback only") {
		t.Errorf("error %v does not say why", err)
	}
}
