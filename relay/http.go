package relay

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpHandler serves /metrics, /healthz (the process is alive) and /readyz (the relay
// serves mail: a snapshot and a certificate are loaded, and it is not draining).
func (r *Relay) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case r.draining.Load():
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
		case r.reload.Hash() == "":
			http.Error(w, "no config loaded", http.StatusServiceUnavailable)
		case r.reload.Certificates().Len() == 0:
			http.Error(w, "no certificate loaded", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok " + r.reload.Hash() + "\n"))
		}
	})
	return mux
}

// profileHandler serves net/http/pprof's handlers, on a mux of its own rather than the
// default one, so nothing else registered there is exposed.
func profileHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
