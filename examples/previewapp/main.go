// Command previewapp is the small web app Drydock's local demo and tests
// preview. It keeps a visit counter in memory, so a preview that survives a
// machine's sleep and wake shows the count carrying on where it stopped.
//
// It listens on 127.0.0.1:$PORT (the emulator gives every machine a PORT) and
// shows the commit it was built from ($DRYDOCK_SHA, set by the preview
// workflow).
package main

import (
	"encoding/json"
	"fmt"
	"html"
	"log"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	var visits atomic.Int64
	started := time.Now().UTC()
	sha := os.Getenv("DRYDOCK_SHA")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"count": visits.Add(1), "pid": os.Getpid(), "sha": sha, "started": started,
		})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		n := visits.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>Drydock preview</title><h1>Drydock preview</h1>"+
			"<p>commit <code id=sha>%s</code></p><p>visits since start: <b id=visits>%d</b></p><p>process started %s</p>",
			html.EscapeString(sha), n, started.Format(time.RFC3339))
	})
	log.Printf("previewapp listening on 127.0.0.1:%s (commit %q)", port, sha)
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
